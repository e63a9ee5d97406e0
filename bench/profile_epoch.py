"""Where one training epoch's time goes, per family and dataset, in the worker's own loop code outside Ray (the
cost Ray Train adds on top, reporting and start-up, is `bench/train_throughput`'s epoch ratio).

Two parts, one process, 2 threads (the machine's cores), the default params of each family:

- `breakdown` (per family × dataset, after a warm-up epoch): wall seconds of one epoch's phases as the loop
  runs them: data (reading this worker's rows of the shards), train steps (the shared loop's `train_epoch`:
  the conversion to floats on the device and the recipe's steps), validation, snapshot and checkpoint (the
  state written to disk). The train steps are then
  profiled with torch.profiler (a separate epoch, the profiler's own overhead excluded from the wall times):
  shares of backward, optimizer and the rest (forward, losses, bookkeeping), host synchronisations per step
  (`aten::_local_scalar_dense`, one per `.item()`), and the operators with the most self CPU time.
- `variants` (the arithmetic): train-step images/s of the same recipe with one switch each (Adam's kernel:
  torch's per-parameter loop, `foreach` or `fused`; channels_last, bf16 autocast, torch.compile) against the
  recipe as it is (Adam's fused kernel), in the budget's interleaved rounds (every variant once per round, a fresh
  model and a warm-up epoch each, then as many epochs as fill `min_timed_seconds`); reported: the median of
  per-round ratios, the ratio of medians and the min–max of the per-round ratios.

    python -m bench.profile_epoch      # writes bench/results/profile.json (about 15 minutes on 2 cores)
    python -m bench.profile_epoch --quick --output /tmp/profile.json  # smoke run: 500 images per dataset, one
                                       # round, no torch.compile variant; never the committed result
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from gen_platform.checkpoint import save_checkpoint
from gen_platform.config import PipelineParams, parse_params
from gen_platform.data.arrays import ImageArrays
from gen_platform.data.shards import ShardedSplit, write_shards
from gen_platform.data.sources import builtin
from gen_platform.data.splits import split_dataset
from gen_platform.evaluation.classifier import ClassifierArchitecture, FeatureModule, train_classifier
from gen_platform.models import get_family
from gen_platform.training.feed import on_device
from gen_platform.training.loop import EpochLoop

from bench._results import add_quick_arguments, output_path, write_result

RESULT = Path(__file__).parent / "results" / "profile.json"
THREADS = 2
FAMILIES = ("vae", "gan")
ADAM_KERNELS = {"for_loop": {"foreach": False, "fused": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
VARIANTS = {"default": {}, "adam_for_loop": {"adam": "for_loop"}, "adam_foreach": {"adam": "foreach"},
            "adam_fused": {"adam": "fused"},
            "channels_last": {"channels_last": True}, "bf16": {"precision": "bf16"}, "compile": {"compile": True}}


class Budget(NamedTuple):
    datasets: dict[str, tuple[int, int | None]]  # name → (image size, training images used; None: all)
    variants: tuple[str, ...]
    rounds: int
    min_timed_seconds: float  # a digits epoch lasts about 0.1 s: time as many epochs as fill this


FULL = Budget({"digits": (8, None), "fashion-mnist": (28, 10_000)}, tuple(VARIANTS), 3, 3.0)
# torch.compile alone would take most of a quick run's time
QUICK = Budget({"digits": (8, 500), "fashion-mnist": (28, 500)}, tuple(v for v in VARIANTS if v != "compile"), 1, 0.2)
CPU = torch.device("cpu")


def _params(family: str, dataset: str, size: int) -> PipelineParams:
    return parse_params({"data": {"dataset": dataset, "image_size": size}, "model": {"family": family},
                         "train": {"num_workers": 1, "cpus_per_worker": THREADS}})


def _loop(params: PipelineParams, variant: dict) -> EpochLoop:
    torch.manual_seed(0)
    switches = {key: variant[key] for key in ("precision", "channels_last", "compile") if key in variant}
    loop = EpochLoop(get_family(params.model.family), params.model_copy(
        update={"train": params.train.model_copy(update={"precision": "fp32", **switches})}), CPU)
    optimizers = loop.recipe.optimizers
    if "adam" in variant:  # the recipe's Adam optimizers, rebuilt with the same settings and the variant's kernel
        for name, optimizer in optimizers.items():
            group = optimizer.param_groups[0]
            optimizers[name] = torch.optim.Adam(group["params"], lr=group["lr"], betas=group["betas"],
                                                **ADAM_KERNELS[variant["adam"]])
    return loop


def _batches(params: PipelineParams, train: ShardedSplit, epoch: int) -> list[np.ndarray]:
    return list(train.batches(params.train.batch_size, 0, 1, params.train.seed, epoch))


def _seconds(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _profile_summary(profile, steps: int, wall: float) -> dict:
    events = profile.key_averages()
    total_us = wall * 1e6

    def share(prefix: str) -> float:
        return round(sum(e.cpu_time_total for e in events if e.key.startswith(prefix)) / total_us, 3)

    syncs = sum(e.count for e in events if e.key == "aten::_local_scalar_dense")
    backward, optimizer = share("autograd::engine::evaluate_function"), share("Optimizer.step#")
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return {"backward_share": backward, "optimizer_step_share": optimizer,
            "zero_grad_share": share("Optimizer.zero_grad#"),
            "forward_and_rest_share": round(1 - backward - optimizer, 3),
            "host_syncs_per_step": round(syncs / steps, 2),
            "top_self_cpu": [{"op": e.key, "share": round(e.self_cpu_time_total / total_us, 3), "calls": e.count}
                             for e in top]}


def breakdown(params: PipelineParams, train: ShardedSplit, val: torch.Tensor, features) -> dict:
    loop = _loop(params, {})
    loop.train_epoch(_batches(params, train, 0))  # warm-up
    phases = {}
    batches: list[torch.Tensor] = []
    phases["data"] = _seconds(lambda: batches.extend(_batches(params, train, 1)))
    phases["train_steps"] = _seconds(lambda: loop.train_epoch(batches))
    phases["validation"] = _seconds(lambda: loop.validate(val, 0, features))
    phases["snapshot"] = _seconds(loop.recipe.snapshot)
    with tempfile.TemporaryDirectory() as directory:
        phases["checkpoint"] = _seconds(lambda: save_checkpoint(
            directory, loop.state_dict() | {"epoch": 1, "history": [], "snapshots": []}, asdict(loop.architecture),
            params.model.family))
    epoch = sum(phases.values())
    profiled_batches = _batches(params, train, 2)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        wall = _seconds(lambda: loop.train_epoch(profiled_batches))
    return {"images": sum(len(b) for b in batches), "steps": len(batches), "epoch_seconds": round(epoch, 3),
            "phase_seconds": {k: round(v, 4) for k, v in phases.items()},
            "phase_shares": {k: round(v / epoch, 3) for k, v in phases.items()},
            "train_steps_profile": _profile_summary(profile, len(profiled_batches), wall)}


def variants(cases: dict, budget: Budget) -> dict:
    rates: dict[str, dict[str, list[float]]] = {case: {v: [] for v in budget.variants} for case in cases}
    for round_index in range(budget.rounds):
        for case, (params, train) in cases.items():
            batches = _batches(params, train, 1)
            images = sum(len(b) for b in batches)
            for name in budget.variants:
                loop = _loop(params, VARIANTS[name])
                loop.train_epoch(batches)  # warm-up (and compilation)
                repeats = max(1, round(budget.min_timed_seconds / _seconds(lambda: loop.train_epoch(batches))))
                rates[case][name].append(repeats * images / _seconds(
                    lambda: [loop.train_epoch(batches) for _ in range(repeats)]))
                print(f"round {round_index + 1}/{budget.rounds} {case} {name}: {rates[case][name][-1]:.0f} img/s",
                      flush=True)
    result = {}
    for case, by_variant in rates.items():
        default = by_variant["default"]
        result[case] = {"default_images_per_second": round(statistics.median(default))}
        for name, values in by_variant.items():
            if name == "default":
                continue
            ratios = [v / d for v, d in zip(values, default)]
            result[case][name] = {"median_of_round_ratios": round(statistics.median(ratios), 3),
                                  "ratio_of_medians": round(statistics.median(values) / statistics.median(default), 3),
                                  "round_ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)]}
    return result


def main(quick: bool = False, output: Path | None = None) -> dict:
    budget = QUICK if quick else FULL
    output = output_path(RESULT, quick, output)
    torch.set_num_threads(THREADS)
    result = {"benchmark": "profile_epoch", "quick": quick, "threads": THREADS, "torch": torch.__version__,
              "breakdown": {}, "rounds": budget.rounds}
    cases = {}
    with tempfile.TemporaryDirectory() as directory:
        for dataset, (size, limit) in budget.datasets.items():
            splits = split_dataset(builtin(dataset), 0, 0.1, 0.1)
            train = splits["train"]
            if limit:
                train = ImageArrays(train.images[:limit], train.labels[:limit])
            shards = write_shards(Path(directory) / dataset, train)
            val = on_device(splits["val"].images[:2000], CPU)
            features = FeatureModule(train_classifier(train, ClassifierArchitecture(size, 1, 10), 2, 128, 1e-3, 0))
            for family in FAMILIES:
                params = _params(family, dataset, size)
                case = f"{family}/{dataset}"
                result["breakdown"][case] = breakdown(params, shards, val, features)
                print(case, json.dumps(result["breakdown"][case]["phase_shares"]), flush=True)
                cases[case] = (params, shards)
        result["variants"] = variants(cases, budget)
    return write_result(output, result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_arguments(parser, RESULT, "500 images per dataset, one round, no compile variant")
    arguments = parser.parse_args()
    main(arguments.quick, arguments.output)
