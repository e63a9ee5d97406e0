"""Data at scale: 64×64 RGB datasets of 10k, 50k and 200k images through the platform's own stages.

Per size: the import of a folder of PNG files (one subfolder per class, `genp data import-folder`) and prepare,
each in a fresh process so that its peak resident memory (VmHWM) belongs to that step alone, then Great
Expectations validation; the seconds of a training epoch (the second of two, with 1 worker using both cores and
with 2-worker DDP), the peak resident memory of each training worker and the bytes each worker read of the
training split in that epoch (its share: about 1/N with N workers). The images are distinct 64×64 crops of
scikit-learn's sample photographs (`photo-crops`, 4 classes). The VAE is kept small (8 hidden channels): this
measures how the data path scales, not the network.

Targets: import and prepare stream the images, so each one's peak memory at 200k is within 10 % of its peak at
10k (a 200k dataset is 2.4 GB of pixels; the peak includes the interpreter and its imports, reported as
`*_start_mib`); time per epoch per image stays within 20 % of the 10k value (linear growth), a worker's peak
memory at 200k is within 10 % of its peak at 10k, and each of N workers reads 1/N of the split (within 2 %).
Ray is restarted before every training, so each worker's peak belongs to that training alone.

    python -m bench.scale                              # writes bench/results/scale.json
    python -m bench.scale --sizes 2000 --data-only     # a quick check of import and prepare, no training
    python -m bench.scale --quick --output /tmp/scale.json   # smoke run: 400 images, the 1-worker layout only;
                                                             # never the committed result
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from gen_platform import stages
from gen_platform.config import parse_params
from gen_platform.data.sources import photo_crops
from gen_platform.training.hooks import EpochHook, WorkerState
from gen_platform.workspace import Workspace

from bench._results import add_quick_arguments, output_path, write_result

SIZES = (10_000, 50_000, 200_000)
LAYOUTS = {"1 worker × 2 CPUs": {"num_workers": 1, "cpus_per_worker": 2},
           "2-worker DDP × 1 CPU": {"num_workers": 2, "cpus_per_worker": 1}}
QUICK_SIZES, QUICK_LAYOUTS = (400,), ("1 worker × 2 CPUs",)  # each layout's fit starts a Ray runtime of its own
RESULT = Path(__file__).parent / "results" / "scale.json"
STEP_MEMORY_TOLERANCE = 0.10  # import's and prepare's peak at the largest size may exceed the smallest's by this


@dataclass(frozen=True)
class WorkerFootprint(EpochHook):
    """Each worker writes its peak resident set size (MiB) and the megabytes it read of the training split in
    its last epoch."""

    directory: str

    def on_epoch_reported(self, state: WorkerState, record: dict[str, float]) -> None:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        Path(self.directory, f"rank{state.rank}.json").write_text(json.dumps(
            {"peak_mib": peak_mib, "read_megabytes": record["worker_read_megabytes"]}))


def _write_folder(root: Path, images, labels) -> None:
    for label in set(labels.tolist()):
        (root / f"class{label}").mkdir(parents=True)

    def save(index: int) -> None:
        Image.fromarray(images[index]).save(root / f"class{labels[index]}" / f"{index:06d}.png", compress_level=1)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(save, range(len(images))))


def _peak_mib() -> float:
    """This process's peak resident memory: Linux's VmHWM rather than ru_maxrss, which in a spawned process starts
    at its parent's resident size at the fork (the kernel keeps it across exec) and would charge the step with the
    images the parent generated."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _measured(step: Callable[..., Any], *args: Any) -> dict:
    """`step(*args)`'s seconds and this process's peak resident memory, before the step and after it (MiB)."""
    start_mib = _peak_mib()
    started = time.perf_counter()
    step(*args)
    return {"seconds": time.perf_counter() - started, "start_mib": start_mib, "peak_mib": _peak_mib()}


def _in_fresh_process(step: Callable[..., Any], *args: Any) -> dict:
    """`_measured` in a newly spawned process: nothing this process holds (the generated images) counts in its peak,
    and no other step's does."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measured, step, *args).result()


def _train(size: int, work: Path, ws: Workspace, params, names: tuple[str, ...]) -> dict:
    """Per layout: seconds of the second epoch and each worker's peak memory and share of the split read."""
    import ray

    from gen_platform.training.launcher import fit

    train_images, layouts = len(ws.prepared("train")), {}
    for name in names:
        layout = LAYOUTS[name]
        memory = work / f"memory-{layout['num_workers']}"
        memory.mkdir()
        ray.shutdown()  # fresh worker processes: each peak belongs to this training alone
        result = fit(params.with_overrides({"train": layout}), ws.prepared("train"), ws.prepared("val"),
                     run_name=f"scale-{size}-{layout['num_workers']}", root=ws.root,
                     hooks=(WorkerFootprint(str(memory)),))
        workers = [json.loads(path.read_text()) for path in sorted(memory.glob("rank*.json"))]
        seconds = result.history[-1]["epoch_seconds"]
        split_megabytes = train_images * 64 * 64 * 3 / 1e6
        layouts[name] = {"epoch_seconds": seconds, "microseconds_per_image": 1e6 * seconds / train_images,
                         "worker_peak_mib": [worker["peak_mib"] for worker in workers],
                         "worker_read_megabytes": [worker["read_megabytes"] for worker in workers],
                         "worker_read_share_of_split": [worker["read_megabytes"] / split_megabytes
                                                        for worker in workers]}
        print(f"{size} images, {name}: epoch {seconds:.1f} s, worker peak "
              f"{max(layouts[name]['worker_peak_mib']):.0f} MiB, each worker read "
              f"{layouts[name]['worker_read_share_of_split']} of the split", flush=True)
    ray.shutdown()
    return layouts


def measure(size: int, work: Path, layouts: tuple[str, ...] = tuple(LAYOUTS)) -> dict:
    """One size's row; training in each of `layouts` (none: data only)."""
    data = photo_crops(size)
    folder = work / "folder"
    _write_folder(folder, data.images, data.labels)
    del data
    ws = Workspace.at(work / "repo")
    imported = _in_fresh_process(stages.import_folder, folder, "scale", ws, 3)
    shutil.rmtree(folder)
    params = parse_params({"data": {"dataset": "scale", "image_size": 64, "channels": 3, "num_classes": 4},
                           "model": {"vae": {"hidden_channels": 8, "latent_dim": 16}},
                           "train": {"epochs": 2, "batch_size": 128, "validation_images": 500}})
    prepared = _in_fresh_process(stages.prepare, params, ws)
    started = time.perf_counter()
    stages.validate(params, ws)
    validate_seconds = time.perf_counter() - started
    row = {"images": size, "import_seconds": imported["seconds"], "import_peak_mib": imported["peak_mib"],
           "import_start_mib": imported["start_mib"], "prepare_seconds": prepared["seconds"],
           "prepare_peak_mib": prepared["peak_mib"], "prepare_start_mib": prepared["start_mib"],
           "validate_seconds": validate_seconds, "prepare_validate_seconds": prepared["seconds"] + validate_seconds,
           "train_images": len(ws.prepared("train")), "layouts": _train(size, work, ws, params, layouts) if layouts else {}}
    print(f"{size} images: import {imported['seconds']:.1f} s, peak {imported['peak_mib']:.0f} MiB; prepare "
          f"{prepared['seconds']:.1f} s, peak {prepared['peak_mib']:.0f} MiB", flush=True)
    return row


def _step_verdicts(rows: list[dict]) -> dict:
    out = {}
    for step in ("import", "prepare"):
        ratio = rows[-1][f"{step}_peak_mib"] / rows[0][f"{step}_peak_mib"]
        out[f"{step}_peak_memory_largest_vs_smallest"] = ratio
        out[f"{step}_memory_flat"] = ratio <= 1 + STEP_MEMORY_TOLERANCE
    return out


def verdicts(rows: list[dict]) -> dict:
    smallest, largest = rows[0], rows[-1]
    out = _step_verdicts(rows)
    for name in LAYOUTS:
        if name not in smallest["layouts"]:
            continue  # not trained (--data-only, or not in a quick run)
        base = smallest["layouts"][name]
        per_image = [row["layouts"][name]["microseconds_per_image"] / base["microseconds_per_image"] for row in rows]
        memory = max(largest["layouts"][name]["worker_peak_mib"]) / max(base["worker_peak_mib"])
        workers = LAYOUTS[name]["num_workers"]
        shares = [share for row in rows for share in row["layouts"][name]["worker_read_share_of_split"]]
        out[name] = {"per_image_time_vs_smallest": per_image, "linear_within_20_percent": all(0.8 <= r <= 1.2 for r in per_image),
                     "peak_memory_largest_vs_smallest": memory, "memory_within_10_percent": memory <= 1.10,
                     "each_worker_reads_1_over_n_within_2_percent": all(abs(share * workers - 1) <= 0.02
                                                                        for share in shares)}
    return out


def main(sizes: tuple[int, ...] = SIZES, output: Path | None = None, layouts: tuple[str, ...] = tuple(LAYOUTS),
         quick: bool = False) -> dict:
    if quick:
        sizes, layouts = QUICK_SIZES, QUICK_LAYOUTS
    output = output_path(RESULT, quick, output)
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="genp-scale-") as work:
            rows.append(measure(size, Path(work), layouts))
    result = {"quick": quick, "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", "rows": rows,
              "verdicts": verdicts(rows),
              "statistic": "epoch_seconds is the training pass of the second epoch; peaks are ru_maxrss per worker, "
                           "and VmHWM of a fresh process per import and per prepare; memory_flat: the largest size's "
                           f"peak within {STEP_MEMORY_TOLERANCE:.0%} of the smallest's"}
    return write_result(output, result, shown=result["verdicts"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--data-only", action="store_true", help="import, prepare and validate; no training")
    add_quick_arguments(parser, RESULT, f"{QUICK_SIZES[0]} images, the 1-worker layout only")
    arguments = parser.parse_args()
    main(tuple(arguments.sizes), arguments.output, () if arguments.data_only else tuple(LAYOUTS), arguments.quick)
