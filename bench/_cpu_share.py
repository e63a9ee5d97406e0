"""Where the machine's CPU goes while a benchmark runs: every process's CPU time, sampled by a background thread,
so a benchmark can say how many cores the measured process got in a window and which processes took the rest
(e.g. Ray's controller, agents and dashboard beside a training worker on a 2-core machine).

A process that starts inside the window counts with all its CPU time; one that exits inside it is missed after
its last sample (the sampling interval bounds that loss).

`CpuLedger` answers the same question for a long run (a whole `make test`): CPU seconds per process name, summed
over every process seen, without keeping the samples.
"""

from __future__ import annotations

import bisect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

Snapshot = dict[int, tuple[str, float]]  # pid → (process name, user + system CPU seconds so far)


def process_name(cmdline: list[str]) -> str:
    """A short, stable name: a Ray actor's class (`ray::TrainController.run` → `ray::TrainController`), a Python
    program's script or module, else the executable's file name."""
    if not cmdline:
        return "?"
    first = cmdline[0].split(" ")[0]
    if first.startswith("ray::"):
        return first.split(".")[0]
    if os.path.basename(first).startswith("python"):
        for i, arg in enumerate(cmdline[1:], start=1):
            if arg == "-m" and i + 1 < len(cmdline):
                return cmdline[i + 1]
            if arg == "-c":  # e.g. pytest-xdist's workers
                return "python -c"
            if arg.endswith(".py") or ("/" in arg and not arg.startswith("-")):  # a script, or a console script
                return os.path.basename(arg)
    return os.path.basename(first)


def cpu_shares(before: Snapshot, after: Snapshot, seconds: float) -> dict[str, float]:
    """Cores used per process name between two snapshots `seconds` apart, largest first."""
    if seconds <= 0:
        raise ValueError(f"the window must be positive, got {seconds} s")
    used: Counter[str] = Counter()
    for pid, (name, cpu) in after.items():
        _, earlier = before.get(pid, (name, 0.0))
        used[name] += max(cpu - earlier, 0.0)
    return {name: round(cpu / seconds, 3) for name, cpu in used.most_common()}


def snapshot() -> Snapshot:
    processes: Snapshot = {}
    for process in psutil.process_iter(["cmdline", "cpu_times"]):
        times = process.info["cpu_times"]
        if times is not None:
            processes[process.pid] = (process_name(process.info["cmdline"] or []), times.user + times.system)
    return processes


class CpuSampler:
    """`with CpuSampler() as sampler: ...`, then `sampler.shares(start, end)` for any window (wall-clock times).

    The sampling runs in its own process (`python -m bench._cpu_share`, named so in the shares): a thread would
    compete for the GIL with a Python training loop in the measured process and slow it down.
    """

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self._times: list[float] = []
        self._snapshots: list[Snapshot] = []

    def __enter__(self) -> "CpuSampler":
        self._output = tempfile.TemporaryFile("w+")
        self._process = subprocess.Popen([sys.executable, "-m", "bench._cpu_share", str(self.interval)],
                                         stdout=self._output, cwd=Path(__file__).parents[1])
        while self._output.tell() == 0 and self._process.poll() is None:  # the first sample is taken
            time.sleep(0.01)
            self._output.seek(0, os.SEEK_END)
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.wait()
        self._output.seek(0)
        for line in self._output:
            try:
                moment, processes = json.loads(line)
            except ValueError:  # the line being written when the sampler was stopped, or the empty one after it
                continue
            self._times.append(moment)
            self._snapshots.append({int(pid): (name, cpu) for pid, (name, cpu) in processes.items()})
        self._output.close()

    def _enclosing(self, start: float, end: float) -> tuple[int, int]:
        """The samples at or before `start` and at or after `end` (clamped to the first and last), never one sample:
        a window shorter than the interval would otherwise have no width."""
        first = max(bisect.bisect_right(self._times, start) - 1, 0)
        last = min(bisect.bisect_left(self._times, end), len(self._times) - 1)
        if last <= first:
            first, last = (first, first + 1) if first + 1 < len(self._times) else (first - 1, first)
        return first, last

    def shares(self, start: float, end: float) -> dict[str, float]:
        if len(self._times) < 2:
            raise ValueError("fewer than two CPU samples were taken")
        first, last = self._enclosing(start, end)
        return cpu_shares(self._snapshots[first], self._snapshots[last], self._times[last] - self._times[first])


def _sticky_name(earlier: str | None, now: str) -> str:
    """A Ray worker process is named after the actor it hosts (`ray::RayTrainWorker`) once the actor starts: keep
    that name, not the launcher's it had before or the `ray::IDLE` it may return to."""
    if earlier and earlier.startswith("ray::") and earlier != "ray::IDLE":
        return earlier
    return now if now != "?" or not earlier else earlier


class CpuLedger:
    """`with CpuLedger() as ledger: ...`, then `ledger.totals`: {process name: [CPU seconds, processes]} used inside
    the block by every other process of the machine, largest first, and `ledger.wall_seconds`. Processes that ran
    before the block count from its start. A process that lives shorter than the interval between two samples is
    missed, and one that ends loses the CPU it used after its last sample: the totals are a lower bound."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.totals: dict[str, list[float]] = {}
        self.wall_seconds = 0.0

    def __enter__(self) -> "CpuLedger":
        self._output = tempfile.TemporaryFile("w+")
        self._process = subprocess.Popen([sys.executable, "-m", "bench._cpu_share", str(self.interval), "--ledger"],
                                         stdout=self._output, cwd=Path(__file__).parents[1])
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_seconds = round(time.monotonic() - self._started, 1)
        self._process.terminate()
        self._process.wait()
        self._output.seek(0)
        self.totals = json.loads(self._output.read() or "{}")
        self._output.close()


def _keep_ledger(interval: float) -> None:
    me = os.getpid()
    baseline: dict[tuple[int, float], float] = {}
    seen: dict[tuple[int, float], tuple[str, float]] = {}
    first = True

    def report(*_: object) -> None:
        used: Counter[str] = Counter()
        count: Counter[str] = Counter()
        for key, (name, cpu) in seen.items():
            used[name] += cpu - baseline.get(key, 0.0)
            count[name] += 1
        print(json.dumps({name: [round(cpu, 1), count[name]] for name, cpu in used.most_common()}), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, report)
    while True:
        for process in psutil.process_iter(["cmdline", "cpu_times", "create_time"]):
            times = process.info["cpu_times"]
            if process.pid == me or times is None:
                continue
            key = (process.pid, process.info["create_time"])
            cpu = times.user + times.system
            if first:
                baseline[key] = cpu
            seen[key] = (_sticky_name(seen.get(key, (None,))[0], process_name(process.info["cmdline"] or [])), cpu)
        first = False
        time.sleep(interval)


def _keep_samples(interval: float) -> None:
    try:
        while True:
            print(json.dumps([time.time(), snapshot()]), flush=True)
            time.sleep(interval)
    finally:  # terminated: a last sample, so a block shorter than the interval still has one at each end; on a line
        print("\n" + json.dumps([time.time(), snapshot()]), flush=True)  # of its own, after any line cut short


if __name__ == "__main__":  # the sampling process: one JSON line per sample until terminated, or with --ledger
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the totals once, when terminated
    (_keep_ledger if "--ledger" in sys.argv else _keep_samples)(float(sys.argv[1]))
