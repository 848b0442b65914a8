"""The JSON Lines sink when the disk fills up: the lines already written stay whole, the failure is one line."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from _sinks_common import make_result
from edgeanom.errors import EdgeanomError
from edgeanom.runtime.sinks.jsonl import JsonlSink


class FillingDisk:
    """A file that takes `room` more bytes, writes part of the next write, then fails with ENOSPC."""

    def __init__(self, fh: Any, room: int) -> None:
        self.fh, self.room = fh, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.fh.write(data[: self.room])  # a partial line reaches the disk
            self.fh.flush()
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)


def test_a_full_disk_keeps_whole_lines_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path)
    for i in range(3):
        sink.write(make_result(i))
    whole = path.read_bytes()
    sink._fh = FillingDisk(sink._fh, room=25)  # type: ignore[assignment]
    with pytest.raises(
        EdgeanomError, match=r"events: writing .*events.jsonl failed after 3 lines \(No space left"
    ):
        sink.write(make_result(3))
    assert path.read_bytes() == whole and whole.endswith(b"\n")  # the half line is gone
    sink.close()  # closing after the failure is safe
    assert len(path.read_text().splitlines()) == 3
