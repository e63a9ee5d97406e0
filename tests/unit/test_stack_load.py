"""bench/stack_load.py's consistency check of the champion, on constructed registry states."""

from types import SimpleNamespace

from bench.stack_load import champion_consistent, peak_concurrency


class Registry:
    def __init__(self, alias: str, decisions: dict[str, tuple[bool, str]]):
        self.alias = alias
        self.versions = [SimpleNamespace(version=v, tags={"promotion.promoted": str(promoted),
                                                          "promotion.champion_version": against})
                         for v, (promoted, against) in decisions.items()]

    def search_model_versions(self, _filter):
        return self.versions

    def get_model_version_by_alias(self, _name, _alias):
        return SimpleNamespace(version=self.alias)


def test_a_chain_of_promotions_with_refusals_is_consistent():
    # v1 first; v3 replaced it; v2 and v4 were refused (against v1 and v3)
    decisions = {"1": (True, "None"), "2": (False, "1"), "3": (True, "1"), "4": (False, "3")}
    assert champion_consistent(Registry("3", decisions), "m")


def test_two_promotions_against_the_same_champion_are_a_lost_update():
    decisions = {"1": (True, "None"), "2": (True, "1"), "3": (True, "1")}
    assert not champion_consistent(Registry("3", decisions), "m")


def test_an_alias_on_a_refused_version_is_inconsistent():
    decisions = {"1": (True, "None"), "2": (False, "1")}
    assert not champion_consistent(Registry("2", decisions), "m")


def _run(start: str, end: str) -> dict:
    return {"start_time": f"2026-01-01T00:00:{start}Z", "end_time": f"2026-01-01T00:00:{end}Z"}


def test_peak_concurrency_counts_overlaps_but_not_a_hand_over():
    # 00-10 and 05-20 overlap; 10-15 starts as the first ends; 20-30 as the second ends
    runs = [_run("00", "10"), _run("05", "20"), _run("10", "15"), _run("20", "30")]
    assert peak_concurrency(runs) == 2
    assert peak_concurrency(runs + [_run("06", "07")]) == 3
    assert peak_concurrency([_run("00", "10") | {"start_time": None}]) == 0  # never started
