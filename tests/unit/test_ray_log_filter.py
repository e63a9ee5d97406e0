"""Ray's log filter (set up in gen_platform.training.runtime) and our block filter (gen_platform.training.
console_filter) drop expected noise and keep what matters: every crash trace other than the two known dumps."""

import re
from pathlib import Path

import pytest
from ray._private.ray_logging import WorkerStandardStreamDispatcher

from gen_platform.training.console_filter import RAY_PRINTER, drop_known_dumps, install
from gen_platform.startup import EXPECTED_NOISE, PROGRESS_LINES

# The module's own patterns, not os.environ: a developer's RAY_DEDUP_LOGS_* settings take precedence there.
SKIP = re.compile("|".join(EXPECTED_NOISE))
ALLOW = re.compile(PROGRESS_LINES)


@pytest.mark.parametrize("line", [
    "Detected that the Ray Train controller actor (a1b2c3) is dead",
    "(autoscaler +2s) 2 PYTHON worker processes have been started on node: 0f3c with address: 127.0.0.1.",
    "Checkpoint successfully created at: Checkpoint(filesystem=local, path=/tmp/run/checkpoint_000001)",
])
def test_expected_single_lines_are_dropped(line):
    assert SKIP.search(line)


@pytest.mark.parametrize("line", [
    "Traceback (most recent call last):",
    "RuntimeError: CUDA error: out of memory",
    "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.",
    "core_worker.cc:123: Check failed: something else went wrong",
    "epoch 3/4  train_loss 30.872  train_kl 10.788  val_neg_elbo 35.595  19508 img/s",
    # Parts of crash traces: Ray's line filter must not judge them, whatever trace they belong to.
    "SystemExit: 1",
    "*** StackTrace Information ***",
    "/venv/lib/python3.11/site-packages/ray/_raylet.so(+0x1812b9a) [0x7fb595c12b9a] ray::operator<<()",
    '  File "/venv/lib/python3.11/site-packages/ray/_private/worker.py", line 1063, in sigterm_handler',
    "",
])
def test_real_problems_and_progress_pass(line):
    assert not SKIP.search(line)


def _native_frames():
    return [
        "/venv/lib/python3.11/site-packages/ray/_raylet.so(+0x1812b9a) [0x7fb595c12b9a] ray::operator<<()",
        "/venv/lib/python3.11/site-packages/ray/_raylet.so(_ZN3ray6RayLogD1Ev+0x4ba) [0x7fb595c1543a] "
        "ray::RayLog::~RayLog()",
        "/lib/x86_64-linux-gnu/libc.so.6(__libc_start_main+0x85) [0x7fb596a45305] __libc_start_main",
        "ray::IDLE(_start+0x21) [0x5600e25e3081] _start",
    ]


BROKEN_PIPE_DUMP = [
    "[2026-11-26 08:04:37,788 C 16970 16970] core_worker.cc:3345:  An unexpected system state has occurred. You have "
    "likely discovered a bug in Ray. Please report this issue at https://github.com/ray-project/ray/issues and we'll "
    "work with you to fix it. Check failed: raylet_ipc_client_->ActorCreationTaskDone() Status not OK: IOError: "
    "Broken pipe",
    "*** StackTrace Information ***",
    *_native_frames(),
    "",
]


def _sigterm_exit(source_lines: list[str]) -> list[str]:
    """As Python 3.11 prints it when Ray's sigterm_handler raises SystemExit inside a WeakSet callback."""
    return [
        "Exception ignored in: <function WeakSet.__init__.<locals>._remove at 0x7fe77047c720>",
        "Traceback (most recent call last):",
        '  File "/usr/lib/python3.11/_weakrefset.py", line 39, in _remove',
        *source_lines,
        '  File "/venv/lib/python3.11/site-packages/ray/_private/worker.py", line 1063, in sigterm_handler',
        "    raise_sys_exit_with_custom_error_message(",
        '  File "python/ray/_raylet.pyx", line 712, in ray._raylet.raise_sys_exit_with_custom_error_message',
        "SystemExit: 1",
    ]


SIGTERM_EXITS = [  # where in the callback the signal arrived: the source line differs, with carets or a blank line
    _sigterm_exit(["    def _remove(item, selfref=ref(self)):", ""]),
    _sigterm_exit(["    self = selfref()", "           ^^^^^^^^^"]),
    _sigterm_exit(["    self.data.discard(item)"]),
]
BEFORE = ["(trial) epoch 2/4  train_loss 30.1", "some output", ""]
AFTER = ["", "more output", "epoch 3/4  train_loss 29.0"]


@pytest.mark.parametrize("dump", [BROKEN_PIPE_DUMP, *SIGTERM_EXITS])
def test_known_dumps_are_dropped_as_whole_blocks(dump):
    assert drop_known_dumps(dump) == []
    assert drop_known_dumps(BEFORE + dump + AFTER) == BEFORE + AFTER
    assert drop_known_dumps(dump + SIGTERM_EXITS[0] + dump) == []


SEGFAULT = [
    "[2026-11-26 08:10:02,114 C 17001 17001] core_worker.cc:912:  An unexpected system state has occurred. "
    "Check failed: task_spec.IsActorTask() ",
    "*** StackTrace Information ***",
    *_native_frames(),
    "",
    "*** SIGSEGV received at time=1764144602 on cpu 1 ***",
    "PC: @     0x7fb595c12b9a  (unknown)  ray::core::CoreWorker::ExecuteTask()",
]
REAL_EXIT = [  # a trial's own code calls sys.exit(1): its traceback must stay
    "Traceback (most recent call last):",
    '  File "/work/gen_platform/training/loop.py", line 150, in train_loop',
    "    sys.exit(1)",
    "SystemExit: 1",
]
OTHER_WEAKSET_ERROR = _sigterm_exit(["    self.data.discard(item)"])[:-1] + ["KeyError: 42"]
SYS_EXIT_IN_CALLBACK = [  # SystemExit in the same callback, raised by something other than Ray's sigterm handler
    *_sigterm_exit(["    self.data.discard(item)"])[:4],
    '  File "/work/gen_platform/tuning/search.py", line 88, in on_stop',
    "    sys.exit(1)",
    "SystemExit: 1",
]
SPLIT_DUMP_START = _sigterm_exit([""])[:5]  # the rest arrived in the next batch: shown rather than held back


@pytest.mark.parametrize("trace", [SEGFAULT, REAL_EXIT, OTHER_WEAKSET_ERROR, SYS_EXIT_IN_CALLBACK, SPLIT_DUMP_START,
                                   ["first paragraph", "", "", "second paragraph", ""]])
def test_every_other_trace_and_blank_lines_pass_unchanged(trace):
    assert drop_known_dumps(trace) == trace
    assert drop_known_dumps(BEFORE + trace + AFTER) == BEFORE + trace + AFTER
    # right after a known dump, with no line between them
    assert drop_known_dumps(BROKEN_PIPE_DUMP[:-1] + trace) == trace
    assert drop_known_dumps(SIGTERM_EXITS[0] + trace) == trace


def test_the_filter_sits_in_front_of_rays_printer_of_worker_output():
    """On Ray's own dispatcher class: a change of its shape in a Ray upgrade fails here, not silently in a search."""
    printed, other = [], []
    dispatcher = WorkerStandardStreamDispatcher()
    dispatcher.add_handler(RAY_PRINTER, printed.append)
    dispatcher.add_handler("other", other.append)
    install(dispatcher)
    batch = {"pid": 17001, "ip": "127.0.0.1", "is_err": True, "lines": BEFORE + SIGTERM_EXITS[1] + REAL_EXIT}
    dispatcher.emit(batch)
    assert printed == [{**batch, "lines": BEFORE + REAL_EXIT}]
    assert other == [batch] and batch["lines"] == BEFORE + SIGTERM_EXITS[1] + REAL_EXIT
    dispatcher.remove_handler(RAY_PRINTER)  # what ray.shutdown() does: the wrapper goes with the printer
    assert [name for name, _ in dispatcher.handlers] == ["other"]


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
