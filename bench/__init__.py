"""Benchmarks, each run as `python -m bench.<name>` (all of them: `make bench`).

The process's start-up call is made here, when the package is first imported: every benchmark's process
imports this package before its own module, and so before Ray or MLflow.
"""

from gen_platform.startup import configure_process

configure_process()
