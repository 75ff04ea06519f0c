"""Run a function in several threads at once, for tests of concurrent writers and claimers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def in_threads(target: Callable[[T], object], items: Iterable[T], timeout: float = 60) -> None:
    """``target(item)`` for every item, each in its own thread, all started before any
    is joined; returns once all have finished (or ``timeout`` seconds each have passed)."""
    threads = [threading.Thread(target=target, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
