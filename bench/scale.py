"""Data at scale: 64×64 RGB datasets of 10k, 50k and 200k images through the platform's own stages.

Per size: the import of a folder of PNG files (one subfolder per class, `genp data import-folder`), prepare
plus Great Expectations validation, the seconds of a training epoch (the second of two, with 1 worker using
both cores and with 2-worker DDP), the peak resident memory of each training worker and the bytes each worker
read of the training split in that epoch (its share: about 1/N with N workers). The images are
distinct 64×64 crops of scikit-learn's sample photographs (`photo-crops`, 4 classes). The VAE is kept small
(8 hidden channels): this measures how the data path scales, not the network.

Targets: time per epoch per image stays within 20 % of the 10k value (linear growth), and a worker's peak
memory at 200k is within 10 % of its peak at 10k, and each of N workers reads 1/N of the split (within 2 %).
Ray is restarted before every training, so each worker's peak belongs to that training alone.

    python -m bench.scale                 # writes bench/results/scale.json
    python -m bench.scale --sizes 2000    # a quick check
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from gen_platform import stages
from gen_platform.config import parse_params
from gen_platform.data.sources import photo_crops
from gen_platform.training.hooks import EpochHook, WorkerState
from gen_platform.workspace import Workspace

from bench._results import write_result

SIZES = (10_000, 50_000, 200_000)
LAYOUTS = {"1 worker × 2 CPUs": {"num_workers": 1, "cpus_per_worker": 2},
           "2-worker DDP × 1 CPU": {"num_workers": 2, "cpus_per_worker": 1}}
RESULT = Path(__file__).parent / "results" / "scale.json"


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


def measure(size: int, work: Path) -> dict:
    import ray

    from gen_platform.training.launcher import fit

    data = photo_crops(size)
    folder = work / "folder"
    _write_folder(folder, data.images, data.labels)
    del data
    ws = Workspace.at(work / "repo")
    started = time.perf_counter()
    stages.import_folder(folder, "scale", ws, channels=3)
    import_seconds = time.perf_counter() - started
    shutil.rmtree(folder)
    params = parse_params({"data": {"dataset": "scale", "image_size": 64, "channels": 3, "num_classes": 4},
                           "model": {"vae": {"hidden_channels": 8, "latent_dim": 16}},
                           "train": {"epochs": 2, "batch_size": 128, "validation_images": 500}})
    started = time.perf_counter()
    stages.prepare(params, ws)
    stages.validate(params, ws)
    prepare_validate_seconds = time.perf_counter() - started
    row = {"images": size, "import_seconds": import_seconds, "prepare_validate_seconds": prepare_validate_seconds,
           "train_images": len(ws.prepared("train")), "layouts": {}}
    for name, layout in LAYOUTS.items():
        memory = work / f"memory-{layout['num_workers']}"
        memory.mkdir()
        ray.shutdown()  # fresh worker processes: each peak belongs to this training alone
        result = fit(params.with_overrides({"train": layout}), ws.prepared("train"), ws.prepared("val"),
                     run_name=f"scale-{size}-{layout['num_workers']}", root=ws.root,
                     hooks=(WorkerFootprint(str(memory)),))
        workers = [json.loads(path.read_text()) for path in sorted(memory.glob("rank*.json"))]
        seconds = result.history[-1]["epoch_seconds"]
        split_megabytes = row["train_images"] * 64 * 64 * 3 / 1e6
        row["layouts"][name] = {"epoch_seconds": seconds, "microseconds_per_image": 1e6 * seconds / row["train_images"],
                                "worker_peak_mib": [worker["peak_mib"] for worker in workers],
                                "worker_read_megabytes": [worker["read_megabytes"] for worker in workers],
                                "worker_read_share_of_split": [worker["read_megabytes"] / split_megabytes
                                                               for worker in workers]}
        print(f"{size} images, {name}: epoch {seconds:.1f} s, worker peak "
              f"{max(row['layouts'][name]['worker_peak_mib']):.0f} MiB, each worker read "
              f"{row['layouts'][name]['worker_read_share_of_split']} of the split", flush=True)
    ray.shutdown()
    return row


def verdicts(rows: list[dict]) -> dict:
    smallest, largest = rows[0], rows[-1]
    out = {}
    for name in LAYOUTS:
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


def main(sizes: tuple[int, ...] = SIZES, output: Path = RESULT) -> dict:
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="genp-scale-") as work:
            rows.append(measure(size, Path(work)))
    result = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", "rows": rows,
              "verdicts": verdicts(rows),
              "statistic": "epoch_seconds is the training pass of the second epoch; peaks are ru_maxrss per worker"}
    return write_result(output, result, shown=result["verdicts"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--output", type=Path, default=RESULT)
    arguments = parser.parse_args()
    main(tuple(arguments.sizes), arguments.output)
