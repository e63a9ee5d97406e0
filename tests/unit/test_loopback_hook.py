"""The worker setup hook patches torch's rendezvous whenever torch is imported, and never imports it itself."""

import subprocess
import sys

PROBE = """
import sys
from gen_platform.training.loopback import bind_rendezvous_to_loopback
{before}
bind_rendezvous_to_loopback()
bind_rendezvous_to_loopback()  # a second call must not wrap the patch in another patch
imported_by_hook = "torch" in sys.modules
import importlib
# the module itself: torch.distributed also exports a function named rendezvous
rendezvous = importlib.import_module("torch.distributed.rendezvous")
store = rendezvous._create_c10d_store
wrapped = dict(zip(store.__code__.co_freevars, (cell.cell_contents for cell in store.__closure__ or ())))
print(imported_by_hook, getattr(store, "binds_loopback", False),
      not getattr(wrapped["original"], "binds_loopback", False))
"""


def _probe(before: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], capture_output=True, text=True,
                         check=True).stdout
    return out.split()


def test_the_hook_defers_the_patch_until_torch_is_imported():
    imported_by_hook, patched, wraps_torchs_own = _probe(before="")
    assert imported_by_hook == "False"  # Ray's helper actors never pay for torch
    assert patched == "True" and wraps_torchs_own == "True"


def test_the_hook_patches_a_rendezvous_already_imported():
    imported_before, patched, wraps_torchs_own = _probe(before="import torch.distributed.rendezvous")
    assert imported_before == "True"
    assert patched == "True" and wraps_torchs_own == "True"
