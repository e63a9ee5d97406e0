"""Progress off a terminal: the items unchanged, and a few plain lines that say how far the work got."""

from gen_platform.progress import progress


def test_plain_lines_at_each_quarter_and_the_end(capsys):
    assert list(progress(iter(range(10)), 10, "scoring")) == list(range(10))
    assert capsys.readouterr().out.splitlines() == ["scoring: 3/10", "scoring: 6/10", "scoring: 9/10", "scoring: 10/10"]
