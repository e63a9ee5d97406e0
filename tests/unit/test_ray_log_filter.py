"""Ray's log filter (set up in gen_platform.training.runtime) drops expected noise and keeps what matters."""

import re
from pathlib import Path

import pytest

from gen_platform.training.runtime import EXPECTED_NOISE, PROGRESS_LINES

# The module's own patterns, not os.environ: a developer's RAY_DEDUP_LOGS_* settings take precedence there.
SKIP = re.compile("|".join(EXPECTED_NOISE))
ALLOW = re.compile(PROGRESS_LINES)


@pytest.mark.parametrize("line", [
    "Detected that the Ray Train controller actor (a1b2c3) is dead",
    "SystemExit: 1",
    "[2026-11-26 08:04:37,788 C 16970 16970] core_worker.cc:3345:  An unexpected system state has occurred. "
    "Check failed: raylet_ipc_client_->ActorCreationTaskDone() Status not OK: IOError: Broken pipe",
    "*** StackTrace Information ***",
    "/venv/lib/python3.11/site-packages/ray/_raylet.so(+0x1812b9a) [0x7fb595c12b9a] ray::operator<<()",
    "/lib/x86_64-linux-gnu/libc.so.6(__libc_start_main+0x85) [0x7fb596a45305] __libc_start_main",
    "ray::IDLE(_start+0x21) [0x5600e25e3081] _start",
    "",
])
def test_expected_noise_is_dropped(line):
    assert SKIP.search(line)


@pytest.mark.parametrize("line", [
    "Traceback (most recent call last):",
    "RuntimeError: CUDA error: out of memory",
    "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.",
    "core_worker.cc:123: Check failed: something else went wrong",
    "epoch 3/4  train_loss 30.872  train_kl 10.788  val_neg_elbo 35.595  19508 img/s",
])
def test_real_problems_and_progress_pass(line):
    assert not SKIP.search(line)


def test_progress_lines_are_never_merged_across_workers():
    assert ALLOW.search("epoch 1/4  train_d_loss 1.240  train_g_loss 0.684  val_fd 92.050  9987 img/s")
    assert ALLOW.search("resumed from the checkpoint of epoch 2")


def test_every_progress_message_of_the_loop_is_on_the_allow_list():
    """A new kind of progress line in the loop must be added to PROGRESS_LINES, or Ray may merge it across workers."""
    import ast

    from gen_platform.training import loop

    def text(node: ast.expr) -> str:  # an f-string with each placeholder rendered as "0"
        if isinstance(node, ast.Constant):
            return node.value
        assert isinstance(node, ast.JoinedStr), ast.unparse(node)
        return "".join(part.value if isinstance(part, ast.Constant) else "0" for part in node.values)

    calls = [node for node in ast.walk(ast.parse(Path(loop.__file__).read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_progress"]
    messages = [call.args[0] for call in calls]
    formatted = [m for m in messages if isinstance(m, ast.Call) and m.func.id == "_format"]
    literal = [text(m) for m in messages if m not in formatted]
    assert formatted and literal
    assert ALLOW.search(loop._format({"epoch": 1, "images_per_second": 1.0}, 4, ()))
    for message in literal:
        assert ALLOW.search(message), message
