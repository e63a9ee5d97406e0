import math

import pytest

from gen_platform.tracking.registry import decide


@pytest.mark.parametrize(("challenger", "champion", "margin", "promoted"), [
    (30.0, None, 0.0, True),    # first version
    (29.0, 30.0, 0.0, True),    # better (lower negative ELBO)
    (30.0, 30.0, 0.0, False),   # a tie keeps the champion
    (31.0, 30.0, 0.0, False),   # worse
    (29.5, 30.0, 1.0, False),   # better, but not by the required margin
    (28.5, 30.0, 1.0, True),
    (math.nan, 30.0, 0.0, False),
    (math.nan, None, 0.0, False),
])
def test_champion_rule(challenger, champion, margin, promoted):
    assert decide(challenger, champion, margin)[0] is promoted
