"""Every GPU check in one short run (about 10 minutes on one GPU): the shared training loop on the 64×64 RGB
preset's networks, plain and through Ray Train, fp32 eager against bf16 + channels_last + torch.compile, and the
tests marked `gpu`.

Per family (the `presets/rgb64.yaml` VAE and DCGAN, synthetic 64×64 RGB pixels: throughput does not depend on
them) and per setting (`fp32`: fp32, eager; `fast`: bf16 autocast + channels_last + torch.compile):
- `plain`: the platform's `EpochLoop` in this process (pinned uint8 batches, converted on the GPU);
- `ray_train`: the same loop in one Ray Train GPU worker (`fit`), where Ray is installed.
Training images/s is the median of the epochs after the first (compilation and warm-up), in `ROUNDS` rounds with
the order reversed every other round; verdicts on the median of per-round ratios. Targets: Ray Train ≥ 0.95× the
plain loop; `fast` ≥ 2× `fp32` for the DCGAN (plain loop). The last epoch's training loss of each run is kept:
a setting must train, not only run fast.

    python -m bench.gpu      # needs a CUDA GPU; writes bench/results/gpu.json
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from gen_platform.config import PipelineParams, parse_params
from gen_platform.data.arrays import ImageArrays
from gen_platform.models import get_family
from gen_platform.training.loop import EpochLoop

from bench._plain import shuffled_batches
from bench._results import write_result

RESULT = Path(__file__).parent / "results" / "gpu.json"
PRESET = Path(__file__).parents[1] / "presets" / "rgb64.yaml"
EPOCHS, IMAGES, ROUNDS, BATCH = 4, 20_000, 2, 256
SETTINGS = {"fp32": {"precision": "fp32"},
            "fast": {"precision": "bf16", "channels_last": True, "compile": True}}
TARGETS = {"ray_train_vs_plain": 0.95, "gan_fast_vs_fp32": 2.0}
DEVICE = torch.device("cuda")


def _params(family: str, setting: str) -> PipelineParams:
    preset = yaml.safe_load(PRESET.read_text())
    preset["model"]["family"] = family
    preset["train"] |= {"epochs": EPOCHS, "num_workers": 1, "use_gpu": True, "batch_size": BATCH,
                        "cpus_per_worker": 4, "max_failures": 0, "validation_images": 512, **SETTINGS[setting]}
    return parse_params(preset)


def plain(params: PipelineParams, data: ImageArrays) -> tuple[float, float]:
    """Training images/s (median after the first epoch) and the last epoch's training loss."""
    torch.manual_seed(params.train.seed)
    loop = EpochLoop(get_family(params.model.family), params, DEVICE)
    rng = np.random.default_rng(params.train.seed)
    rates, stats = [], {}
    for _ in range(EPOCHS):
        torch.cuda.synchronize()
        started = time.perf_counter()
        stats = loop.train_epoch(shuffled_batches(data.images, params.train.batch_size, rng))
        torch.cuda.synchronize()
        rates.append(stats["images"] / (time.perf_counter() - started))
    return statistics.median(rates[1:]), stats.get("loss", stats.get("g_loss", float("nan")))


def ray_train(params: PipelineParams, data: ImageArrays) -> tuple[float, float]:
    from gen_platform.training.launcher import fit

    with tempfile.TemporaryDirectory() as root:
        result = fit(params, data, data.subset(np.arange(512)), run_name="gpu-bench", root=Path(root))
    last = result.history[-1]
    return (statistics.median(record["images_per_second"] for record in result.history[1:]),
            last.get("train_loss", last.get("train_g_loss", float("nan"))))


def gpu_tests() -> dict:
    """The tests marked `gpu`, run here (they are deselected where no GPU is)."""
    run = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-p", "no:xdist", "-o", "addopts=", "-q",
                          "tests"], capture_output=True, text=True)
    return {"exit_code": run.returncode, "summary": (run.stdout.strip().splitlines() or [""])[-1]}


def _ratios(numerators: list[float], denominators: list[float]) -> dict:
    ratios = [a / b for a, b in zip(numerators, denominators)]
    return {"median_of_round_ratios": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
            "max": round(max(ratios), 3)}


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this benchmark runs on a GPU machine (README, Benchmarks)", file=sys.stderr)
        return 2
    paths = {"plain": plain} | ({"ray_train": ray_train} if importlib.util.find_spec("ray") else {})
    rng = np.random.default_rng(0)
    data = ImageArrays(rng.integers(0, 256, (IMAGES, 64, 64, 3), dtype=np.uint8), np.zeros(IMAGES, np.int64))
    runs = {(family, setting, path): [] for family in ("vae", "gan") for setting in SETTINGS for path in paths}
    for round_ in range(ROUNDS):
        for key in list(runs) if round_ % 2 == 0 else list(runs)[::-1]:
            family, setting, path = key
            runs[key].append(paths[path](_params(family, setting), data))
            print(round_, key, runs[key][-1], flush=True)
    families = {}
    for family in ("vae", "gan"):
        rate = {(setting, path): [r for r, _ in runs[(family, setting, path)]] for setting in SETTINGS for path in paths}
        families[family] = {f"{setting}/{path}": {"images_per_second": round(statistics.median(rate[(setting, path)])),
                                                  "per_round": [round(r) for r in rate[(setting, path)]],
                                                  "last_epoch_train_loss": [round(l, 4) for _, l in
                                                                            runs[(family, setting, path)]]}
                            for setting in SETTINGS for path in paths}
        families[family]["fast_vs_fp32_plain"] = _ratios(rate[("fast", "plain")], rate[("fp32", "plain")])
        if "ray_train" in paths:
            families[family]["ray_train_vs_plain"] = {setting: _ratios(rate[(setting, "ray_train")],
                                                                       rate[(setting, "plain")]) for setting in SETTINGS}
    verdicts = {"gan_fast_vs_fp32_met":
                families["gan"]["fast_vs_fp32_plain"]["median_of_round_ratios"] >= TARGETS["gan_fast_vs_fp32"]}
    if "ray_train" in paths:
        verdicts["ray_train_vs_plain_met"] = all(
            row["median_of_round_ratios"] >= TARGETS["ray_train_vs_plain"]
            for family in families.values() for row in family["ray_train_vs_plain"].values())
    write_result(RESULT, {"benchmark": "gpu", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                          "epochs": EPOCHS, "images": IMAGES, "rounds": ROUNDS, "batch_size": BATCH,
                          "settings": SETTINGS, "targets": TARGETS, "families": families, "verdicts": verdicts,
                          "ray_train": "run" if "ray_train" in paths else "not run: Ray is not installed here",
                          "gpu_tests": gpu_tests()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
