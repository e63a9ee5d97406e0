"""Progress of long work: a rich progress bar on a terminal, plain lines otherwise (CI, log files, Ray
workers), so a log reader sees how far it got and a person at a terminal sees a bar."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

Item = TypeVar("Item")
LINES = 4  # plain lines per task: at 25 %, 50 %, 75 % and 100 %


def progress(items: Iterable[Item], total: int, description: str) -> Iterator[Item]:
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import track

        yield from track(items, total=total, description=description, console=Console(stderr=True), transient=True)
        return
    step = max(1, -(-total // LINES))
    for index, item in enumerate(items, start=1):
        yield item
        if index % step == 0 or index == total:
            print(f"{description}: {index}/{total}", flush=True)
