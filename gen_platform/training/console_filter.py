"""Drops two known multi-line dumps, as whole blocks, from the worker output that Ray prints on this driver.

Ray's own filter (RAY_DEDUP_LOGS_SKIP_REGEX) judges one line at a time. To hide these dumps with it, every native
stack frame, blank line and `SystemExit: 1` would have to go, those of a real crash included. Both dumps are expected
in a search and say nothing to a user (they stay in the Ray session logs):

- a worker still starting for a trial that was just killed loses its raylet pipe and dumps a C++ stack: a line with
  `Check failed: raylet_ipc_client_->ActorCreationTaskDone() Status not OK: IOError: Broken pipe`, then
  `*** StackTrace Information ***` and native frames;
- a trial driver stopped by ASHA whose SIGTERM arrives inside a WeakSet callback: Python ignores the SystemExit that
  Ray's `sigterm_handler` raises there and prints it as `Exception ignored in: <function WeakSet...`.

Anything else, including any other crash trace and a dump that deviates from these shapes, is printed unchanged.
Each batch (consecutive lines of one worker's stdout or stderr, as Ray's log monitor read them) is filtered on its
own: a dump split across two batches is printed rather than holding a worker's output back to wait for the rest.
A dying process writes its dump at once, so a split is rare.
"""

from __future__ import annotations

import re
from typing import Any, Callable

BROKEN_PIPE = "Check failed: raylet_ipc_client_->ActorCreationTaskDone() Status not OK: IOError: Broken pipe"
NATIVE_DUMP_LINE = re.compile(r"\*\*\* StackTrace Information \*\*\*|\S+\(\S*\+0x[0-9a-f]+\) \[0x[0-9a-f]+\].*")

WEAKSET_CALLBACK = "Exception ignored in: <function WeakSet.__init__.<locals>._remove at "
TRACEBACK = "Traceback (most recent call last):"
FRAME = re.compile(r'  File "(?P<file>[^"]+)", line \d+, in (?P<function>\S+)')
# (file name ending, function) of each frame, innermost last: the callback, Ray's handler, what raises SystemExit.
SIGTERM_FRAMES = [("_weakrefset.py", "_remove"), ("ray/_private/worker.py", "sigterm_handler"),
                  ("ray/_raylet.pyx", "ray._raylet.raise_sys_exit_with_custom_error_message")]

RAY_PRINTER = "ray_print_logs"  # the name under which ray.init registers its printer of worker output


def _broken_pipe_dump_end(lines: list[str], start: int) -> int | None:
    """Where the C++ dump that starts at `start` ends (exclusive); None when none starts there."""
    if BROKEN_PIPE not in lines[start]:
        return None
    end = start + 1
    while end < len(lines) and NATIVE_DUMP_LINE.fullmatch(lines[end]):
        end += 1
    # Ray ends each frame with a newline and its logger adds one: the dump's last line is blank.
    return end + 1 if lines[end:end + 1] == [""] else end


def _sigterm_exit_end(lines: list[str], start: int) -> int | None:
    """Where the sigterm exit that starts at `start` ends (exclusive); None when none starts there or the traceback
    differs from it anywhere."""
    if not lines[start].startswith(WEAKSET_CALLBACK) or lines[start + 1:start + 2] != [TRACEBACK]:
        return None
    end = start + 2
    while end < len(lines) and lines[end][:1] in ("", " "):  # frames, source lines, carets, blank lines
        end += 1
    frames = [(m["file"], m["function"]) for m in map(FRAME.fullmatch, lines[start + 2:end]) if m]
    known = len(frames) == len(SIGTERM_FRAMES) and all(
        file.endswith(suffix) and function == name for (file, function), (suffix, name) in zip(frames, SIGTERM_FRAMES))
    return end + 1 if known and lines[end:end + 1] == ["SystemExit: 1"] else None


def drop_known_dumps(lines: list[str]) -> list[str]:
    """`lines` of one batch without the known dumps; every other line, in order."""
    kept: list[str] = []
    position = 0
    while position < len(lines):
        end = _broken_pipe_dump_end(lines, position) or _sigterm_exit_end(lines, position)
        if end is None:
            kept.append(lines[position])
            position += 1
        else:
            position = end
    return kept


def install(dispatcher: Any = None) -> None:
    """Filter what Ray's printer of worker output receives on this driver, before its own filter and deduplication.

    Call after `ray.init(log_to_driver=True)`, which registers that printer with the dispatcher of worker output;
    `ray.shutdown()` unregisters it, wrapper included, by its name.
    """
    if dispatcher is None:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    def filtered(printer: Callable[[dict], None]) -> Callable[[dict], None]:
        # The same batch goes to every handler: pass a copy, never change it.
        return lambda data: printer({**data, "lines": drop_known_dumps(data["lines"])})

    # Replaced in place under the dispatcher's lock: a batch emitted meanwhile finds exactly one printer.
    with dispatcher._lock:
        dispatcher.handlers = [(name, filtered(handler) if name == RAY_PRINTER else handler)
                               for name, handler in dispatcher.handlers]
