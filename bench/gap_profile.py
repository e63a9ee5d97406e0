"""Where the speed gap of `bench.quality` comes from: the same training passes without Ray, side by side.

`bench.quality` compares our Ray Train path with pythae (β-VAE) and with a plain DCGAN loop. This splits that
ratio in two, one process, 2 threads, the same networks, seed, batch size and fused Adam as there:

- `loop`: our `EpochLoop` in this process (no Ray) against the reference, both fed from memory: what our loop's
  code costs or saves (the recipe's train step, metric sums on the device, the data conversion);
- `shards`: the same `EpochLoop` reading its batches from the uint8 shards a pipeline writes (the data path of
  every Ray worker) against the memory-fed one: what the data path costs;
- the Ray Train worker against the in-process loop is `bench.train_throughput`'s step ratio on Fashion-MNIST.

The product of the three is what `bench.quality` measures end to end. Training passes only (images/s of each
epoch after the first), `FULL.rounds` interleaved rounds (every side once per round, in rotating order, a fresh
model each), the median of per-round ratios with the min and max. Fashion-MNIST's first 10,000 training images
(as bench/profile_epoch.py, which breaks our loop's own epoch into phases and operators).

    python -m bench.gap_profile    # writes bench/results/gap_profile.json (about 5 minutes on 2 cores)
    python -m bench.gap_profile --quick --output /tmp/gap.json   # smoke run: 400 images, 2 epochs, one round
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np
import torch

from gen_platform.config import PipelineParams
from gen_platform.data.arrays import ImageArrays
from gen_platform.data.shards import write_shards
from gen_platform.data.sources import builtin
from gen_platform.data.splits import split_dataset
from gen_platform.models import get_family
from gen_platform.training.loop import EpochLoop

from bench._plain import shuffled_batches
from bench._results import add_quick_arguments, output_path, write_result
from bench._stats import speed_ratios
from bench.quality import _params, _plain_dcgan, _pythae_beta_vae

RESULT = Path(__file__).parent / "results" / "gap_profile.json"
THREADS = 2
CPU = torch.device("cpu")


class Budget(NamedTuple):
    images: int  # Fashion-MNIST's first training images
    epochs: int  # each side's; its first is left out of the images/s
    rounds: int


FULL, QUICK = Budget(10_000, 3, 3), Budget(400, 2, 1)


def _ours(params: PipelineParams, batches: Callable[[int], Iterable[np.ndarray]]) -> float:
    """Our loop in this process: median images/s of its training passes after the first."""
    torch.manual_seed(params.train.seed)
    loop = EpochLoop(get_family(params.model.family), params, CPU)
    rates = []
    for epoch in range(params.train.epochs):
        started = time.perf_counter()
        images = loop.train_epoch(batches(epoch))["images"]
        rates.append(images / (time.perf_counter() - started))
    return statistics.median(rates[1:])


def main(quick: bool = False, output: Path | None = None) -> dict:
    budget = QUICK if quick else FULL
    output = output_path(RESULT, quick, output)
    torch.set_num_threads(THREADS)
    train = split_dataset(builtin("fashion-mnist"), seed=0, val_fraction=0.1, test_fraction=0.1)["train"]
    train = ImageArrays(train.images[:budget.images], train.labels[:budget.images])
    families = {}
    with tempfile.TemporaryDirectory() as directory:
        shards = write_shards(Path(directory) / "train", train)
        for family in ("vae", "gan"):
            params = _params("fashion-mnist", 28, budget.epochs, {"family": family})

            def reference() -> float:
                if family == "vae":
                    with tempfile.TemporaryDirectory() as workdir:
                        return _pythae_beta_vae(params, train, workdir).images_per_second
                return _plain_dcgan(params, train).images_per_second

            def memory() -> float:
                rng = np.random.default_rng(params.train.seed)
                return _ours(params, lambda epoch: shuffled_batches(train.images, params.train.batch_size, rng))

            def from_shards() -> float:
                return _ours(params, lambda epoch: shards.batches(params.train.batch_size, 0, 1, params.train.seed,
                                                                  epoch))

            sides = {"reference": reference, "ours_memory": memory, "ours_shards": from_shards}
            rates: dict[str, list[float]] = {name: [] for name in sides}
            for round_ in range(budget.rounds):
                names = list(sides)[round_ % 3:] + list(sides)[:round_ % 3]
                for name in names:
                    rates[name].append(sides[name]())
                print(f"[gap_profile] {family} round {round_ + 1}: "
                      + ", ".join(f"{n} {rates[n][-1]:.0f} img/s" for n in sides), file=sys.stderr, flush=True)
            families[family] = {
                "reference": "pythae BetaVAE" if family == "vae" else "plain DCGAN loop",
                "images_per_second": {name: [round(r, 1) for r in values] for name, values in rates.items()},
                "loop": speed_ratios(rates["ours_memory"], rates["reference"]),
                "shards": speed_ratios(rates["ours_shards"], rates["ours_memory"]),
            }
    return write_result(output, {"benchmark": "gap_profile", "quick": quick,
                                 "dataset": f"fashion-mnist ({budget.images} training images)", "threads": THREADS,
                                 "epochs": budget.epochs, "rounds": budget.rounds, "families": families})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_arguments(parser, RESULT, "400 images, 2 epochs, one round")
    arguments = parser.parse_args()
    main(arguments.quick, arguments.output)
