"""The decision itself: with a champion, the lower bound of the improvement's interval decides."""

import math

import pytest

from gen_platform.evaluation.bootstrap import Comparison
from gen_platform.tracking.registry import decide


def _comparison(challenger, champion, low, high):
    return Comparison("val_nll", challenger, champion, low, high, 0.95, 100, 1000)


@pytest.mark.parametrize(("value", "comparison", "margin", "promoted"), [
    (30.0, None, 0.0, True),                               # first version
    (29.0, _comparison(29.0, 30.0, 0.5, 1.5), 0.0, True),  # better beyond noise
    (29.0, _comparison(29.0, 30.0, -0.2, 2.2), 0.0, False),  # better on average, within noise
    (30.0, _comparison(30.0, 30.0, 0.0, 0.0), 0.0, False),   # identical: a tie keeps the champion
    (31.0, _comparison(31.0, 30.0, -1.5, -0.5), 0.0, False),  # worse
    (28.0, _comparison(28.0, 30.0, 0.8, 3.2), 1.0, False),  # better, but the bound is below the margin
    (28.0, _comparison(28.0, 30.0, 1.2, 2.8), 1.0, True),
    (math.nan, _comparison(math.nan, 30.0, math.nan, math.nan), 0.0, False),
    (math.nan, None, 0.0, False),
])
def test_champion_rule(value, comparison, margin, promoted):
    assert decide(value, comparison, margin)[0] is promoted


def test_the_reason_names_the_interval():
    promoted, reason = decide(29.0, _comparison(29.0, 30.0, -0.2, 2.2), 0.0)
    assert not promoted and "95% CI [-0.2, 2.2]" in reason and "val_nll: 29 vs champion 30" in reason
