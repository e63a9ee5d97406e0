"""Which sockets the processes the platform started are listening on."""

from __future__ import annotations

import psutil

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def process_trees(roots: list[int], marker: str | None = None) -> list[psutil.Process]:
    """`roots` and every descendant, plus processes whose command line names `marker` (and theirs): Ray's
    daemons are not children of the process that asked for them."""
    found: dict[int, psutil.Process] = {}
    starts = [psutil.Process(pid) for pid in roots if psutil.pid_exists(pid)]
    if marker:
        for process in psutil.process_iter(["cmdline"]):
            if marker in " ".join(process.info["cmdline"] or []):
                starts.append(process)
    for process in starts:
        try:
            for member in [process, *process.children(recursive=True)]:
                found[member.pid] = member
        except psutil.NoSuchProcess:
            continue
    return list(found.values())


def stop_processes_naming(*markers: str, grace_s: float = 3) -> None:
    """A test's own Ray cluster, never other Ray users': SIGTERM to every process whose command line names one of
    `markers` (its temp dir, its address) and to their descendants (Ray's agents retitle themselves and lose the
    marker), SIGKILL to those still alive after `grace_s` (gcs_server outlives SIGTERM)."""
    processes = [process for marker in markers for process in process_trees([], marker=marker)]
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)


def listening(processes: list[psutil.Process]) -> list[tuple[str, str, int]]:
    """(process, address, port) of every listening TCP socket."""
    sockets = []
    for process in processes:
        try:
            name = process.name()
            for connection in process.net_connections(kind="tcp"):
                if connection.status == psutil.CONN_LISTEN:
                    sockets.append((f"{process.pid} {name}", connection.laddr.ip, connection.laddr.port))
        except psutil.NoSuchProcess:
            continue
    return sockets


def beyond_loopback(sockets: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    return [entry for entry in sockets if entry[1] not in LOOPBACK]
