"""`genp` leaves without the interpreter's teardown, and loses nothing of a normal exit: threads finish, every
atexit handler runs, stdio is flushed, the status is the command's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Markers written by a non-daemon thread, an atexit handler and a module-global object's finaliser (run only by
# the interpreter's teardown); then `genp ARGS` through the console script's main(), or no command at all.
SCRIPT = """
import atexit, sys, threading
from pathlib import Path
from gen_platform import cli

out = Path(sys.argv[1])
release = threading.Event()
worker = threading.Thread(target=lambda: (release.wait(), (out / "thread").write_text("done")))
worker.start()
atexit.register(lambda: (out / "atexit").write_text("ran"))

class Finaliser:
    def __del__(self):
        (out / "teardown").write_text("ran")

kept_until_teardown = Finaliser()
print("buffered output", end="")
try:
    if len(sys.argv) > 2:
        sys.argv = ["genp", *sys.argv[2:]]
        cli.main()
finally:
    release.set()
"""


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), *args], capture_output=True, text=True)
    return result, {path.name for path in tmp_path.iterdir()}


def test_a_command_skips_only_the_teardown(tmp_path):
    result, markers = _run(tmp_path, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout and result.stdout.startswith("buffered output")
    assert markers == {"thread", "atexit"}  # no "teardown": the finaliser never ran


def test_importing_the_cli_leaves_a_normal_exit(tmp_path):
    result, markers = _run(tmp_path)  # e.g. a test or a flow that imports the CLI
    assert result.returncode == 0 and result.stdout == "buffered output"
    assert markers == {"thread", "atexit", "teardown"}


def test_the_status_is_the_commands(tmp_path):
    failed, _ = _run(tmp_path, "validate", "--params", str(tmp_path / "missing.yaml"))
    assert failed.returncode == 1 and "error:" in failed.stderr and "missing.yaml" in failed.stderr
    usage, _ = _run(tmp_path, "no-such-command")
    assert usage.returncode == 2 and "No such command" in usage.stderr
