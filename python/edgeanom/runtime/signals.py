"""Ctrl-C and SIGTERM stop a run gracefully: the loop finishes its batch, every sink is flushed and closed.

The handler only sets a flag (it never raises in the middle of a write), so a JSON line or an mp4 frame is
never cut in half. A second Ctrl-C while stopping raises KeyboardInterrupt for users who really mean it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any, Callable


@contextlib.contextmanager
def graceful_stop(stop: Callable[[str], None]) -> Iterator[None]:
    """Route SIGINT/SIGTERM to `stop(signal_name)` inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if seen and signum == signal.SIGINT:
            raise KeyboardInterrupt
        seen.append(signum)
        stop(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
