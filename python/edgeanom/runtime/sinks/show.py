"""`--show`: the annotated stream in an OpenCV window (one per stream), when OpenCV was built with a GUI.

opencv-python-headless (the default dependency) has no GUI; `gui_unavailable()` says so up front and points
to `--serve`, which shows the same view in a browser.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from edgeanom.runtime.types import SampleResult


def gui_unavailable() -> Optional[str]:
    """Why `--show` cannot work here, or None when OpenCV has a GUI backend."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        text = line.strip()
        if text.startswith("GUI:"):
            if text.split(":", 1)[1].strip().upper() in ("NONE", "NO", ""):
                return (
                    "--show needs an OpenCV build with a GUI, and this one has none "
                    "(opencv-python-headless); use --serve :8080 and open http://localhost:8080/ in a browser "
                    "(or pip install opencv-python)"
                )
            return None
    return None


class ShowWindow:
    """A Sink drawing each annotated frame with cv2.imshow; pressing q or Esc calls `on_quit`."""

    def __init__(self, on_quit: Optional[Callable[[], None]] = None) -> None:
        self.on_quit = on_quit
        self._windows: set[str] = set()

    def write(self, result: SampleResult) -> None:
        import cv2

        from edgeanom.runtime.annotate import annotate

        image = annotate(result)
        if image is None:
            return
        title = f"edgeanom - {result.stream_name}"
        cv2.imshow(title, image)
        self._windows.add(title)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) and self.on_quit is not None:
            self.on_quit()

    def write_event(self, event: dict[str, Any]) -> None:
        del event

    def close(self) -> None:
        import cv2

        if self._windows:
            cv2.destroyAllWindows()
            self._windows.clear()
