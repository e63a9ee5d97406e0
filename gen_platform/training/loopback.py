"""Loopback means loopback: a Ray runtime meant for this machine only, and the DDP rendezvous inside it, listen
on 127.0.0.1 and nowhere else.

Ray rewrites a loopback node IP to the machine's address (and then binds its agents, metrics exporters and
workers on every interface) unless clusters are disabled: the documented switch is the environment variable
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read when `ray` is imported; for a runtime started in this process
`ensure_ray` sets the constant it fills. PyTorch's TCPStore (the rendezvous of DDP, hosted by rank 0) has no
bind address at all; it listens on every interface unless handed a socket already bound, which is what
`bind_rendezvous_to_loopback` (a Ray worker setup hook) does when the rendezvous host is loopback.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import socket
import sys

LOOPBACK_HOSTS = {"127.0.0.1", "localhost"}
CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
SETUP_HOOK = "gen_platform.training.loopback.bind_rendezvous_to_loopback"


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it; a server started soon after can take it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_disabled_by_environment() -> bool:
    return os.environ.get(CLUSTER_SWITCH, "").lower() in {"0", "false"}


def set_cluster_mode(enabled: bool) -> None:
    """Ray's own switch between a local-only runtime (everything on 127.0.0.1) and a cluster node."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = enabled


RENDEZVOUS = "torch.distributed.rendezvous"


def bind_rendezvous_to_loopback() -> None:
    """Ray worker setup hook: rank 0 hosts its TCPStore on a socket bound to 127.0.0.1 when the rendezvous
    address is loopback (any other address: torch's own behaviour).

    The hook runs in every process of the job, but only Train workers use torch's rendezvous: the patch waits
    for that module's first import, so that Ray's helper actors (placement-group cleaner, synchronization and
    dataset actors, Ray Data's autoscaling coordinator, which a fit waits for) do not each import torch as they
    start (1.5-2 s of CPU each, measured here)."""
    module = sys.modules.get(RENDEZVOUS)
    if module is not None:
        _bind_to_loopback(module)
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds torch's rendezvous module through the other finders and patches it once it has executed."""

    def find_spec(self, name, path, target=None):
        if name != RENDEZVOUS:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_source, get_filename, ... as the wrapped loader answers them
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _bind_to_loopback(module)


def _bind_to_loopback(rendezvous) -> None:
    original = rendezvous._create_c10d_store
    if getattr(original, "binds_loopback", False):
        return

    def create_store(hostname, port, rank, world_size, timeout, use_libuv=True):
        if rank != 0 or hostname not in LOOPBACK_HOSTS or rendezvous._torchelastic_use_agent_store():
            return original(hostname, port, rank, world_size, timeout, use_libuv)
        from torch.distributed import TCPStore

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        return TCPStore(host_name=hostname, port=port, world_size=world_size, is_master=True, timeout=timeout,
                        multi_tenant=True, master_listen_fd=listener.detach(), use_libuv=use_libuv)

    create_store.binds_loopback = True
    rendezvous._create_c10d_store = create_store
