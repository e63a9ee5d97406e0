"""The ranking-agreement statistic of bench/tune_efficiency.py's `fd_sample_size`, on constructed draws."""

import pytest

from bench.tune_efficiency import _agreement

REFERENCE = {"a": 1.0, "b": 2.0, "c": 3.0}


def test_draws_that_keep_the_reference_order_agree_fully():
    draws = {"a": [1.1, 0.9], "b": [2.2, 1.8], "c": [3.0, 3.1]}
    assert _agreement(draws, REFERENCE) == (1.0, 1.0)


def test_a_swapped_pair_and_a_wrong_best_are_counted():
    # draw 0 swaps a and b (a wrong best, one of three pairs wrong); draw 1 keeps the order
    draws = {"a": [2.5, 1.0], "b": [2.0, 2.0], "c": [3.0, 3.0]}
    pairs, best = _agreement(draws, REFERENCE)
    assert pairs == pytest.approx(5 / 6) and best == 0.5
