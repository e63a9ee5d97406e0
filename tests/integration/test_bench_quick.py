"""Each benchmark with a quick mode runs it here on a small real case, and its result has the shape the committed
result has: the page generator (bench/report.py) renders it. A script therefore cannot drift from its result
file unnoticed. The quick results go to a temporary directory, never to bench/results/."""

from __future__ import annotations

import json
import shutil

import pytest

from bench import (feedback, gap_profile, make_test, profile_epoch, quality, report, scale, train_throughput,
                   tune_efficiency, tune_soak)

pytestmark = pytest.mark.integration


STAMP = {"commit", "environment", "quick"}  # what every result carries besides what its benchmark measured


def _rendered(tmp_path, name: str, result: dict) -> str:
    results = tmp_path / "results"
    results.mkdir(exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(result))
    return report.render(results)


def test_quality_quick_mode_has_the_committed_shape(tmp_path):
    # ours' β-VAE with the fitted latent prior: the pipeline's model, the one path that differs from pythae's
    result = quality.main(["--quick", "digits", "--vae-prior-components", "3", "--output", str(tmp_path / "quality.json")])
    digits = result["datasets"]["digits"]
    assert result["quick"] and digits["seeds"] == list(quality.QUICK.seeds) and digits["epochs"] == quality.QUICK.epochs
    assert result["ours_vae_prior_components"] == 3
    for round_ in digits["vae"]["rounds"]:
        curve = round_["ours"]["nll_per_epoch"]
        assert len(curve) == quality.QUICK.epochs and curve[-1]["nll"] == round_["ours"]["nll"]
        assert round_["pythae"]["train_seconds"] > 0 and round_["ours"]["startup_seconds"] > 0
    assert set(result["verdicts"]["digits"]) == set(json.loads(quality.RESULT.read_text())["verdicts"]["digits"])
    assert result["environment"]["libraries"]["pythae"] == "0.1.2"
    page = _rendered(tmp_path, "quality", result)
    assert "digits, 2 epochs, 2 seeds, ours' β-VAE with a 3-component fitted latent prior: β-VAE time to pythae's" in page


def test_train_throughput_quick_mode_has_the_committed_shape(tmp_path):
    result = train_throughput.main(quick=True, output=tmp_path / "train_throughput.json")
    committed = json.loads(train_throughput.RESULT.read_text())
    for dataset in train_throughput.FULL:
        block = result[dataset]
        assert set(block) == set(committed[dataset]) - {"ray_train_ddp"}, dataset  # quick: no DDP path
        for part in ("ray_train", "plain"):
            assert set(block[part]) == set(committed[dataset][part]), (dataset, part)
        assert set(block["ray_train"]["epoch"]) == set(committed[dataset]["ray_train"]["epoch"]), dataset
        assert block["ray_train"]["step_images_per_second"] > 0 and block["plain"]["epoch_images_per_second"] > 0
    assert result["fashion-mnist"]["dataset"] == "fashion-mnist (1000 training images, 28x28)"
    page = _rendered(tmp_path, "train_throughput", result)
    assert page.count("| `train_throughput` |") == 2 and "| `train_throughput` | fashion-mnist: plain loop" in page


def test_profile_epoch_quick_mode_has_the_committed_shape(tmp_path):
    result = profile_epoch.main(quick=True, output=tmp_path / "profile.json")
    committed = json.loads(profile_epoch.RESULT.read_text())
    assert set(result) == set(committed) and result["quick"] and not committed["quick"]
    assert set(result["breakdown"]) == set(committed["breakdown"])
    for case, breakdown in result["breakdown"].items():
        assert set(breakdown) == set(committed["breakdown"][case]), case
        assert set(breakdown["phase_seconds"]) == set(committed["breakdown"][case]["phase_seconds"]), case
        assert breakdown["images"] <= 500 < committed["breakdown"][case]["images"], case  # the quick budget's
    for case, switches in result["variants"].items():  # quick: no torch.compile variant
        assert set(switches) == set(committed["variants"][case]) - {"compile"}, case
    page = _rendered(tmp_path, "profile", result)
    assert "| `profile_epoch` | one epoch outside Ray: vae/digits" in page


def test_scale_quick_mode_has_the_committed_shape(tmp_path):
    result = scale.main(quick=True, output=tmp_path / "scale.json")
    committed = json.loads(scale.RESULT.read_text())
    assert set(result) - STAMP == set(committed) - STAMP
    (row,) = result["rows"]
    assert row["images"] == scale.QUICK_SIZES[0] and set(row) == set(committed["rows"][0])
    (layout,) = scale.QUICK_LAYOUTS
    assert set(row["layouts"]) == {layout} and set(row["layouts"][layout]) == set(committed["rows"][0]["layouts"][layout])
    assert set(result["verdicts"]) == set(committed["verdicts"]) - (set(scale.LAYOUTS) - {layout})
    page = _rendered(tmp_path, "scale", result)
    assert f"| `scale` | {scale.QUICK_SIZES[0]} images: import" in page


def test_gap_profile_quick_mode_has_the_committed_shape(tmp_path):
    result = gap_profile.main(quick=True, output=tmp_path / "gap_profile.json")
    committed = json.loads(gap_profile.RESULT.read_text())
    assert set(result) - STAMP == set(committed) - STAMP and result["rounds"] == gap_profile.QUICK.rounds
    assert set(result["families"]) == set(committed["families"]) == {"vae", "gan"}
    for family, block in result["families"].items():
        assert set(block) == set(committed["families"][family]), family
        assert all(len(rates) == gap_profile.QUICK.rounds and min(rates) > 0
                   for rates in block["images_per_second"].values()), family
    page = _rendered(tmp_path, "gap_profile", result)
    assert f"| `gap_profile` | vae, fashion-mnist ({gap_profile.QUICK.images} training images), training passes" in page


def test_tune_efficiency_quick_mode_has_the_committed_shape(tmp_path):
    result = tune_efficiency.main(quick=True, output=tmp_path / "tune.json")
    committed = json.loads(tune_efficiency.RESULT.read_text())
    assert set(result) - STAMP == set(committed) - STAMP
    for part in tune_efficiency.PARTS:
        assert set(result[part]) == set(committed[part]), part
    asha = result["asha"]
    assert asha["grid_search"]["trial_epochs"] == 2 * tune_efficiency.QUICK.max_epochs  # 2 trials, none stopped
    assert 0 < asha["compute_fraction"] <= 1
    sizes = result["fd_sample_size"]["sizes"]
    assert set(sizes) == {str(n) for n in tune_efficiency.QUICK.fd_sizes}
    assert all(set(size) == set(next(iter(committed["fd_sample_size"]["sizes"].values()))) for size in sizes.values())
    assert "| `tune_efficiency` | ASHA " in _rendered(tmp_path, "tune", result)


def test_tune_soak_quick_mode_has_the_committed_shape(tmp_path):
    result = tune_soak.main(quick=True, output=tmp_path / "tune_soak.json")
    committed = json.loads(tune_soak.RESULT.read_text())
    assert set(result) - STAMP == set(committed) - STAMP and result["criteria_met"]
    (summary,) = result["summaries"]
    assert set(summary) == set(committed["summaries"][0]) and summary["searches"] == 2
    assert [set(search) for search in result["searches"]] == [set(committed["searches"][0])] * 2
    assert "| `tune_soak` | 2 searches (1-worker trials): 0 failed trials" in _rendered(tmp_path, "tune_soak", result)


def test_feedback_quick_mode_has_the_committed_shape(tmp_path):
    """`make run` in a fresh clone of HEAD (the new user's first command, whole), then one forced repro."""
    result = feedback.main(quick=True, output=tmp_path / "feedback.json")
    committed = json.loads(feedback.RESULT.read_text())
    attached = {"dvc_repro_forced_attached_to_ray_head", "dvc_repro_attached_stage_seconds_per_round"}
    assert set(result) - STAMP == set(committed) - STAMP - attached and result["rounds"] == 1
    assert set(result["dvc_repro_stage_seconds_median"]) == set(committed["dvc_repro_stage_seconds_median"])
    (phases,) = result["train_stage_phases_per_round"]
    assert set(phases) == {"local"} and set(phases["local"]) == set(committed["train_stage_phases_per_round"][0]["local"])
    assert set(result["fixed_cost_seconds_per_round"][0]) == set(committed["fixed_cost_seconds_per_round"][0])
    (champion,) = result["make_run_champion"]["per_round"]
    assert set(champion) == set(feedback.CHAMPION_TARGETS) and all(0 <= value <= 1 for value in champion.values())
    page = _rendered(tmp_path, "feedback", result)
    assert "| `feedback` | `make run` in a fresh clone " in page and "attached to a running Ray head" not in page


def test_make_test_quick_mode_has_the_committed_shape(tmp_path):
    """`CI=true bash .ci/run` in a fresh clone of HEAD, the set-up whole and pytest narrowed to a few tests."""
    result = make_test.main(quick=True, output=tmp_path / "make_test.json")
    committed = json.loads(make_test.RESULT.read_text())
    assert set(result) - STAMP == set(committed) - STAMP
    (round_,) = result["per_round"]
    assert set(round_) == set(committed["per_round"][0]) and set(round_["cpu"]) == set(committed["per_round"][0]["cpu"])
    assert 0 < round_["tests_passed"] < 50 and round_["setup_seconds"] > 0 and round_["cpu"]["seconds"] > 0
    assert result["after_make_run"]["per_round"] == []
    page = _rendered(tmp_path, "make_test", result)
    assert "tests); after `make run` in one clone: not run |" in page


def test_quick_results_never_overwrite_the_committed_ones(tmp_path):
    before = {path.name: path.read_bytes() for path in report.RESULTS.glob("*.json")}
    with pytest.raises(SystemExit):
        quality.main(["--quick", "--output", str(quality.RESULT)])
    for benchmark in (train_throughput, profile_epoch, scale, gap_profile, tune_efficiency, tune_soak, feedback,
                      make_test):
        with pytest.raises(SystemExit):
            benchmark.main(quick=True, output=benchmark.RESULT)
    assert {path.name: path.read_bytes() for path in report.RESULTS.glob("*.json")} == before
    shutil.rmtree(tmp_path, ignore_errors=True)
