"""Hands scored batches to the sinks on their own thread, in order, through a bounded queue.

Encoding an mp4 or serving a JPEG must not stall inference, and inference must not outrun the sinks
without bound: the queue blocks when full (back-pressure) so memory stays flat and nothing is dropped.
`close()` delivers everything already queued, then closes every sink, even when one of them fails.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any, Callable, Optional

from edgeanom.runtime.types import SampleResult, Sink

_STOP = object()


class SinkDispatcher:
    def __init__(
        self,
        sinks: Sequence[Sink],
        capacity: int = 64,
        on_error: Optional[Callable[[BaseException], None]] = None,
    ) -> None:
        self.sinks = list(sinks)
        self.on_error = on_error
        self.error: Optional[BaseException] = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, capacity))
        self._thread = threading.Thread(target=self._work, name="sinks", daemon=True)
        self._closed = False
        self._thread.start()

    def write(self, results: list[SampleResult]) -> None:
        if self.sinks and not self._closed:
            self._queue.put(("samples", results))

    def write_event(self, event: dict[str, Any]) -> None:
        if self.sinks and not self._closed:
            self._queue.put(("event", event))

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            if self.error is not None:
                continue  # a sink failed: the run is stopping; keep draining so producers never block
            kind, payload = job
            try:
                for sink in self.sinks:
                    if kind == "samples":
                        for result in payload:
                            sink.write(result)
                    else:
                        sink.write_event(payload)
            except BaseException as exc:
                self.error = exc
                if self.on_error is not None:
                    self.on_error(exc)

    def close(self) -> list[BaseException]:
        """Deliver what is queued, close every sink; returns the errors met (the first is `self.error`)."""
        errors: list[BaseException] = []
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
        if self.error is not None:
            errors.append(self.error)
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as exc:
                errors.append(exc)
        self.sinks = []
        return errors
