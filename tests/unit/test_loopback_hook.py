"""The worker setup hook patches torch's rendezvous whenever torch is imported, and never imports it itself."""

import subprocess
import sys

PROBE = """
import sys
from gen_platform.training.loopback import bind_rendezvous_to_loopback
{before}
bind_rendezvous_to_loopback()
bind_rendezvous_to_loopback()  # a second call (a re-used worker) must not patch twice
imported_by_hook = "torch" in sys.modules
import importlib
rendezvous = importlib.import_module("torch.distributed.rendezvous")  # the module (torch.distributed exports a function of that name)
print(imported_by_hook, getattr(rendezvous._create_c10d_store, "binds_loopback", False))
"""


def _probe(before: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], capture_output=True, text=True,
                         check=True).stdout
    return out.split()


def test_the_hook_defers_the_patch_until_torch_is_imported():
    imported_by_hook, patched = _probe(before="")
    assert imported_by_hook == "False"  # Ray's helper actors never pay for torch
    assert patched == "True"


def test_the_hook_patches_a_rendezvous_already_imported():
    imported_before, patched = _probe(before="import torch.distributed.rendezvous")
    assert imported_before == "True"
    assert patched == "True"
