"""`--events FILE` (default stdout): every sample and every event as one JSON object per line.

Schema (docs/run.md): lines have ``kind`` "sample", "event" or "summary". Each line is written whole and
flushed, so a reader (or a run stopped by SIGTERM) never sees half a line. Strict JSON: the +inf score of a
non-finite input is written as null (with ``flag`` true).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

from edgeanom.errors import EdgeanomError
from edgeanom.jsonutil import to_jsonable
from edgeanom.runtime.sinks.records import sample_record
from edgeanom.runtime.types import SampleResult

SCHEMA_VERSION = 1


def sample_line(result: SampleResult) -> dict[str, Any]:
    """The shared sample record (records.py), rounded for the log and tagged ``kind: sample``."""
    record: dict[str, Any] = {"kind": "sample", **sample_record(result)}
    record["time"] = round(result.time, 6)
    record["normalised"] = round(result.normalised, 6)
    record["latency_ms"] = round(result.latency_ms, 3)
    return record


def event_line(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("type") == "summary":
        return {
            "kind": "summary",
            "schema": SCHEMA_VERSION,
            **{k: v for k, v in event.items() if k != "type"},
        }
    return {"kind": "event", **event}


class JsonlSink:
    """Writes to a file (created, truncated) or to stdout. `samples=False` writes events only."""

    def __init__(
        self, path: Optional[Path] = None, samples: bool = True, stream: Optional[TextIO] = None
    ) -> None:
        self.path = path
        self.samples = samples
        self._own = False
        if stream is not None:
            self._fh: Optional[TextIO] = stream
        elif path is None:
            self._fh = sys.stdout
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = path.open("wb")  # bytes: the offset after each whole line is exact
            except OSError as exc:
                raise EdgeanomError(f"cannot write events to '{path}': {exc.strerror}") from None
            self._own = True
        self.lines = 0
        self._whole = 0  # file offset after the last whole line (own files)

    def _emit(self, records: list[dict[str, Any]]) -> None:
        if self._fh is None or not records:
            return
        text = "".join(
            json.dumps(to_jsonable(r), separators=(",", ":"), allow_nan=False) + "\n" for r in records
        )
        data = text.encode("utf-8") if self._own else text
        try:
            self._fh.write(data)  # type: ignore[arg-type]
            self._fh.flush()
            if self._own:
                self._whole += len(data)
        except BrokenPipeError:
            # The reader went away (`| head`): stop writing; point stdout at devnull so the interpreter's
            # final flush does not complain. The pipeline treats this as a normal stop.
            if self._fh is sys.stdout:
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self._fh = None
            raise
        except OSError as exc:  # a full disk, a failing card: keep what was written whole, then say so
            if self._own:
                fh, self._fh = self._fh, None
                with contextlib.suppress(OSError, ValueError):
                    fh.truncate(self._whole)  # drop a half-written line
                with contextlib.suppress(OSError, ValueError):
                    fh.close()
                raise EdgeanomError(
                    f"events: writing {self.path} failed after {self.lines} lines ({exc.strerror or exc}); "
                    "the file holds those lines whole"
                ) from None
            raise
        self.lines += len(records)

    def write(self, result: SampleResult) -> None:
        records = [sample_line(result)] if self.samples else []
        records += [event_line(e) for e in result.events]
        self._emit(records)

    def write_event(self, event: dict[str, Any]) -> None:
        self._emit([event_line(event)])

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.flush()
        finally:
            if self._own:
                fh.close()
