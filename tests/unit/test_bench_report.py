"""docs/benchmarks.md's results section is generated from bench/results/*.json (bench/report.py): the page and the
committed results agree, every result file is shown, and a number changed in a result changes the page."""

import json
import shutil

from bench import report


def test_the_benchmarks_page_shows_what_the_result_files_hold():
    assert report.generated_section(report.PAGE.read_text()) == report.render(), \
        "docs/benchmarks.md differs from bench/results/*.json: run `python -m bench.report`"


def test_every_result_file_has_a_renderer():
    assert {path.stem for path in report.RESULTS.glob("*.json")} <= set(report.RENDERERS)


def test_a_changed_result_changes_the_page(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(report.RESULTS, results)
    tune = json.loads((results / "tune.json").read_text())
    tune["asha"]["compute_fraction"] = 0.4321
    (results / "tune.json").write_text(json.dumps(tune))
    page = report.render(results)
    assert "compute fraction 0.4321" in page and page != report.render()
    (results / "tune.json").unlink()
    not_measured = report.render(results).split("Not measured: ", 1)[1].split(".", 1)[0]
    assert "`tune`" in not_measured.split(", ")


def test_each_result_names_its_commit_and_machine(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    stamped = {"commit": "0123456789abcdef", "environment": {"machine": {"cpu": "Some CPU", "cores": 2, "gpu": None}},
               "benchmark": "tune_soak", "criteria_met": True,
               "summaries": [{"searches": 3, "workers_per_trial": 1, "trials_failed": 0, "leaked_placement_groups": 0,
                              "startup_timeouts_in_logs": 0, "slowest_over_median": 1.1}]}
    (results / "tune_soak.json").write_text(json.dumps(stamped))
    page = report.render(results)
    assert "| `tune_soak.json` | `0123456789ab` | Some CPU, 2 cores |" in page
    assert "Results from 1 commit." in page


def test_a_quality_run_of_one_family_renders_that_family_alone(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    vae_only = json.loads((report.RESULTS / "quality.json").read_text())
    vae_only["ours_vae_prior_components"] = 10
    vae_only["datasets"] = {"fashion-mnist": {key: value for key, value in vae_only["datasets"]["fashion-mnist"].items()
                                              if not key.startswith("gan")}}
    (results / "quality_prior.json").write_text(json.dumps(vae_only))
    row = next(line for line in report.render(results).splitlines() if line.startswith("| `quality` |"))
    assert "fashion-mnist, 3 epochs, 5 seeds, ours' β-VAE with a 10-component fitted latent prior: β-VAE time" in row
    assert "NLL no worse" in row and "DCGAN" not in row and "GAN ≥" not in row
