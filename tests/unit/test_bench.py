"""The benchmarks run only under `make bench`; this keeps them importable as the library changes under them."""

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench"


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_")))
def test_benchmark_module_imports(name):
    module = importlib.import_module(f"bench.{name}")
    assert callable(module.main)


# The statistics the side-by-side benchmarks judge by (bench/_stats.py), on constructed rounds and seeds.

def test_speed_ratios_pair_rounds_and_judge_the_median_of_round_ratios():
    from bench._stats import speed_ratios

    result = speed_ratios([98.0, 120.0, 90.0], [100.0, 100.0, 100.0], target=0.98)
    assert result["round_ratios"] == [0.98, 1.2, 0.9]
    assert result["median_of_round_ratios"] == 0.98 and result["min"] == 0.9 and result["max"] == 1.2
    assert result["ratio_of_medians"] == 0.98
    assert result["met"] and result["shortfall"] is None and result["verdict_statistic"] == "median_of_round_ratios"


def test_speed_ratios_pairing_differs_from_the_ratio_of_medians_and_reports_the_shortfall():
    from bench._stats import speed_ratios

    # drift: both sides slow down together; the paired ratios stay near 2 while the medians come from one round
    result = speed_ratios([200.0, 100.0, 40.0], [100.0, 80.0, 20.0], target=2.5)
    assert result["round_ratios"] == [2.0, 1.25, 2.0]
    assert result["median_of_round_ratios"] == 2.0 and result["ratio_of_medians"] == 1.25
    assert not result["met"] and result["shortfall"] == 1.25
    skewed = speed_ratios([100.0, 100.0, 100.0], [50.0, 100.0, 200.0])
    assert skewed["median_of_round_ratios"] == 1.0 and skewed["min"] == 0.5 and skewed["max"] == 2.0
    assert "met" not in skewed  # no target, no verdict


def test_speed_ratios_need_one_reference_per_round():
    from bench._stats import speed_ratios

    with pytest.raises(ValueError):
        speed_ratios([1.0, 2.0], [1.0])


def test_no_worse_over_seeds_counts_an_interval_beyond_the_margin_as_worse():
    from bench._stats import no_worse_over_seeds

    worse = no_worse_over_seeds([0.10, 0.12, 0.11], margin=0.1)  # mean 0.11, SD 0.01: beyond the margin itself
    assert worse["mean_difference"] == 0.11 and worse["difference_sd"] == 0.01 and worse["seeds"] == 3
    assert worse["standard_error"] == pytest.approx(0.01 / 3 ** 0.5, abs=1e-4)
    assert worse["upper_bound"] == pytest.approx(0.11 + 2 * 0.01 / 3 ** 0.5, abs=1e-4)
    assert not worse["no_worse"]
    # noise cannot pass a comparison: the same mean with more spread reaches further past the margin
    assert not no_worse_over_seeds([0.5, -0.4, 0.2], margin=0.3)["no_worse"]  # mean 0.1, SE 0.27


def test_no_worse_over_seeds_accepts_a_gap_inside_the_margin_and_any_clear_improvement():
    from bench._stats import no_worse_over_seeds

    assert no_worse_over_seeds([0.10, 0.12, 0.11], margin=0.15)["no_worse"]  # upper bound 0.1215
    assert no_worse_over_seeds([-0.3, -0.31, -0.29], margin=0.0)["no_worse"]  # consistently better
    with pytest.raises(ValueError):
        no_worse_over_seeds([0.1], margin=0.1)  # no spread from one seed
    with pytest.raises(ValueError, match="margin"):
        no_worse_over_seeds([0.1, 0.2], margin=-0.1)


def test_process_names_group_ray_actors_python_programs_and_executables():
    from bench._cpu_share import process_name

    assert process_name(["ray::TrainController.run"]) == "ray::TrainController"
    assert process_name(["ray::RayTrainWorker"]) == "ray::RayTrainWorker"
    assert process_name(["/venv/bin/python", "-m", "bench.train_throughput", "--quick"]) == "bench.train_throughput"
    assert process_name(["/venv/bin/python3", "-u", "/venv/lib/ray/_private/log_monitor.py", "--x"]) == "log_monitor.py"
    assert process_name(["/venv/lib/ray/core/src/ray/raylet/raylet", "--raylet_socket_name=x"]) == "raylet"
    assert process_name([]) == "?"


def test_cpu_shares_add_up_per_name_and_count_a_process_born_in_the_window_whole():
    from bench._cpu_share import cpu_shares

    before = {1: ("worker", 10.0), 2: ("agent", 5.0), 3: ("agent", 1.0), 4: ("gone", 7.0)}
    after = {1: ("worker", 13.6), 2: ("agent", 5.2), 3: ("agent", 1.1), 5: ("newcomer", 0.4)}
    shares = cpu_shares(before, after, seconds=2.0)
    assert shares == {"worker": 1.8, "newcomer": 0.2, "agent": 0.15}
    assert list(shares) == ["worker", "newcomer", "agent"]  # largest first
    with pytest.raises(ValueError, match="positive"):
        cpu_shares(before, after, seconds=0.0)


def test_cpu_sampler_sees_this_process_busy():
    import time

    import psutil

    from bench._cpu_share import CpuSampler, process_name

    me = psutil.Process()
    with CpuSampler(interval=0.05) as sampler:
        start, used = time.time(), sum(me.cpu_times()[:2])
        while time.time() - start < 1.0:  # one thread busy
            pass
        end, used = time.time(), sum(me.cpu_times()[:2]) - used
    # what the process really got (under `make test` the other half of the suite competes for the cores); the
    # sampler adds up every process with this command line (the other xdist worker too), so at least that
    assert used / (end - start) > 0.2
    assert sampler.shares(start, end)[process_name(me.cmdline())] >= used / (end - start) - 0.15


def test_a_window_shorter_than_the_sampling_interval_spans_the_samples_around_it():
    from bench._cpu_share import CpuSampler

    sampler = CpuSampler()
    sampler._times = [10.0, 10.25, 10.5]
    sampler._snapshots = [{1: ("train", 1.0)}, {1: ("train", 1.2)}, {1: ("train", 1.45)}]
    # both ends nearest to one sample (the failure a quick run met): the window widens to the samples around it
    assert sampler.shares(10.26, 10.27) == {"train": 1.0}
    assert sampler.shares(10.0, 10.5) == {"train": 0.9}
    assert sampler.shares(10.6, 10.7) == {"train": 1.0}  # past the last sample: the last interval


def test_a_block_shorter_than_the_sampling_interval_has_a_sample_at_each_end():
    import time

    from bench._cpu_share import CpuSampler

    with CpuSampler(interval=30.0) as sampler:  # one sample on entry; the next would be 30 s later
        start = time.time()
    assert len(sampler._times) == 2 and sampler._times[0] <= start <= sampler._times[1]
    assert sampler.shares(start, time.time())  # the quick benchmark's failure: "fewer than two CPU samples"


def test_a_ledger_counts_each_process_by_name_from_the_start_of_its_block(tmp_path):
    import subprocess
    import sys

    from bench._cpu_share import CpuLedger

    burn = tmp_path / "burn.py"
    burn.write_text("import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end:\n    pass\n")
    with CpuLedger(interval=0.05) as ledger:
        subprocess.run([sys.executable, str(burn)], check=True)
    seconds, processes = ledger.totals["burn.py"]
    assert processes == 1 and 0.5 <= seconds <= 1.2  # a lower bound: the CPU after its last sample is missed
    assert ledger.wall_seconds >= 1.0


def test_a_ray_worker_keeps_the_name_of_the_actor_it_hosted():
    from bench._cpu_share import _sticky_name, process_name

    assert process_name(["/venv/bin/python", "/venv/bin/genp", "train"]) == "genp"  # a console script
    assert process_name(["/venv/bin/python", "-c", "import sys;exec(eval(sys.stdin.readline()))"]) == "python -c"
    assert _sticky_name(None, "setup_worker.py") == "setup_worker.py"
    assert _sticky_name("setup_worker.py", "ray::RayTrainWorker") == "ray::RayTrainWorker"
    assert _sticky_name("ray::RayTrainWorker", "ray::IDLE") == "ray::RayTrainWorker"
    assert _sticky_name("genp", "?") == "genp"  # a process whose command line can no longer be read


def test_make_test_sorts_cpu_into_kinds_of_process():
    from bench.make_test import cpu_by_kind

    totals = {"ray::RayTrainWorker": [30.0, 3], "setup_worker.py": [5.0, 2], "raylet": [4.0, 1],
              "ray-dashboard-JobHead-0": [1.0, 1], "python -c": [50.0, 2], "genp": [20.0, 9], "something": [2.0, 1]}
    kinds = cpu_by_kind(totals)
    assert list(kinds.values()) == [50.0, 35.0, 20.0, 5.0, 2.0]  # largest first
    assert kinds[next(k for k in kinds if k.startswith("Ray actor"))] == 35.0 and kinds["other"] == 2.0


def test_make_test_reads_pytests_summary_line():
    from bench.make_test import pytest_summary

    lines = ["....", "=== 341 passed, 1 warning in 548.81s (0:09:08) ===", "rc=0"]
    assert pytest_summary(lines) == (341, 548.81)
    assert pytest_summary(["== 12 passed in 3.50s =="]) == (12, 3.5)
    with pytest.raises(SystemExit, match="no pytest summary"):  # a run with failures is no reading
        pytest_summary(["== 1 failed, 11 passed in 3.50s =="])


def test_feedback_adds_up_the_fixed_costs_as_the_six_stages_pay_them(monkeypatch, tmp_path):
    from bench import feedback

    # constructed process times, in seconds: CLI 2, MLflow's store +3, Great Expectations +4, a Ray runtime +5
    costs = {"pass": 0.1, feedback.CLI: 2.0}
    costs.update({feedback.FLOORS["cli_mlflow_store"]: 5.0, feedback.FLOORS["cli_great_expectations"]: 6.0,
                  feedback.FLOORS["cli_ray_runtime"]: 7.0})
    timings = iter([0.0, 1.0])  # the first CLI process is 1 s slower than its two repeats: the median leaves it out
    monkeypatch.setattr(feedback, "timed", lambda command, cwd: (costs[command[-1]] + next(timings, 0.0), []))
    floors = feedback._floors(tmp_path)
    assert floors["cli"] == 2.0 and floors["cli_ray_runtime"] == 7.0
    assert floors["pipeline_floor_seconds"] == 6 * 2.0 + 3 * 3.0 + 4.0 + 5.0


def test_feedback_splits_the_train_stage_at_the_lines_it_prints():
    from bench.feedback import _train_phases

    lines = [(0.0, "Running stage 'features':"), (1.0, "classifier epoch 1/5"),  # another stage's epochs
             (2.0, "Running stage 'train':"), (2.1, "> genp train"),
             (11.0, "MLflow run 0123 (vae-digits); training on Ray Train"),
             (19.0, "\x1b[36m(RayTrainWorker pid=7)\x1b[0m epoch 1/20  train_loss 38.6"),
             (20.5, "\x1b[36m(RayTrainWorker pid=7)\x1b[0m epoch 10/20  train_loss 23.0"),
             (21.0, "\x1b[36m(RayTrainWorker pid=7)\x1b[0m epoch 20/20  train_loss 22.4"),
             (23.0, "after training: prior_fit_log_likelihood -18.58"),
             (25.5, "Running stage 'evaluate':"), (26.0, "evaluation: fd 12.6")]
    assert _train_phases(lines, 40.0) == {"before_ray_train": 9.0, "ray_train_startup": 8.0, "epochs": 2.0,
                                          "after_training": 4.5}


def test_search_soak_result_covers_single_process_and_multi_worker_trials_without_failure_or_leak():
    import json

    from bench.tune_soak import SHAPES

    result = json.loads((BENCH / "results" / "tune_soak.json").read_text())
    assert {s["workers_per_trial"] for s in result["summaries"]} == {shape.workers_per_trial for shape in SHAPES}
    assert all("workers_per_trial" in search for search in result["searches"])
    for summary in result["summaries"]:
        assert summary["trials_failed"] == 0 and summary["leaked_placement_groups"] == 0, summary
        assert summary["startup_timeouts_in_logs"] == 0, summary
