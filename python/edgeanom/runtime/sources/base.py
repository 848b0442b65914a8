"""What every source is: something opened once, read item by item, and closed.

A source yields raw items (a BGR frame, or one sensor row as text/values). The capture thread that
owns it (`edgeanom.runtime.capture`) decides pacing, dropping stale frames and reconnecting; the
source itself stays a thin wrapper around OpenCV, a file, a serial port or an MQTT client.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol


class CorruptInput(Exception):
    """One frame failed to decode or one sensor line was malformed: skip it, count it, go on."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SourceLost(Exception):
    """A live source stopped delivering (camera unplugged, stream dropped, port closed)."""


class _Nothing:
    """Returned by `read()` when a live source has nothing yet; lets the capture thread check for stop."""

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()


class Source(Protocol):
    name: str  # e.g. "camera:0", "video:clip.mp4", "sensor:pump.csv"
    kind: str  # "frames" or "rows"
    drop_stale: bool  # keep only the newest item (live cameras): latency never grows
    reconnect: bool  # on SourceLost, reopen with backoff instead of ending the stream
    fps: Optional[float]  # native rate when known (video files, cameras), used by --realtime and --record

    def open(self) -> None:
        """Open the device/file; raises EdgeanomError naming the source and what was tried."""
        ...

    def read(self) -> Any:
        """The next item; None at the end of the stream; NOTHING when a live source has nothing yet.

        Raises CorruptInput for one bad item (skipped and counted), SourceLost when a live source drops.
        """
        ...

    def close(self) -> None: ...
