"""--serve in a real headless browser (Debian's chromium): the live image, the score chart and the events show."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest

from _sinks_common import FakeStats, alarm_sequence
from edgeanom.runtime.sinks.serve import WebServer

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
WINDOW = (1000, 900)


@pytest.fixture
def live_server():
    """A WebServer fed with an endless synthetic video (an alarm every 60 frames) from a thread."""
    srv = WebServer("127.0.0.1:0", FakeStats(frames=120))
    stop = threading.Event()
    samples = alarm_sequence(60, start=20, end=35, size=(180, 240))

    def feed() -> None:
        i = 0
        while not stop.is_set():
            srv.write(samples[i % len(samples)])
            i += 1
            time.sleep(0.02)

    for s in samples:  # history (chart points, events) before the page loads
        srv.write(s)
    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield srv
    stop.set()
    thread.join()
    srv.close()


def chromium(url: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", "--virtual-time-budget=4000", *args, url,
    ]  # fmt: skip
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"chromium did not finish within 60 s: {exc.stderr!r:.2000}")


def test_page_shows_live_image_chart_and_events(live_server, tmp_path):
    proc = chromium(live_server.url, tmp_path, "--dump-dom")
    dom = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0 and "</html>" in dom, proc.stderr.decode(errors="replace")[-2000:]

    img = re.search(r"<img[^>]*>", dom)
    assert img, "no live image in the page"
    assert 'src="/stream.mjpg?stream=0"' in img.group(0)
    assert 'data-loaded="1"' in img.group(0), f"the MJPEG image never loaded: {img.group(0)}"

    points = re.search(r'<canvas id="chart" data-points="(\d+)"', dom)
    assert points and int(points.group(1)) >= 60, "the score chart drew no points"

    count = re.search(r'<ul id="events" class="events" data-count="(\d+)"', dom)
    assert count and int(count.group(1)) >= 2
    assert re.search(r'<span class="badge start">start</span>[^<]*video:synthetic\.mp4[^<]*#20', dom)
    assert re.search(r'<span class="badge end">end</span>[^<]*#35[^<]*from #20', dom)
    assert re.search(r'id="status" class="status">25\.0 fps · p50 4\.5 ms · p99 9\.0 ms', dom)


def _count_near(image: np.ndarray, bgr: tuple[int, int, int], tol: int = 12) -> int:
    return int(np.all(np.abs(image.astype(np.int16) - np.array(bgr, np.int16)) <= tol, axis=2).sum())


def test_screenshot_is_a_real_page(live_server, tmp_path):
    shot = tmp_path / "page.png"
    proc = chromium(
        live_server.url,
        tmp_path,
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        f"--screenshot={shot}",
    )
    assert proc.returncode == 0 and shot.exists(), proc.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == WINDOW
    page = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert page.shape == (WINDOW[1], WINDOW[0], 3)
    assert page.std() > 10, "the screenshot is blank"
    assert _count_near(page, (0x1A, 0x16, 0x14), tol=2) > 100_000, "the page background is missing"
    assert _count_near(page, (110, 110, 110), tol=6) > 10_000, (
        "the live frame (grey scene) is not on the page"
    )
    assert _count_near(page, (0xFF, 0xA1, 0x4E), tol=30) > 200, "no score line drawn in the chart"
    assert _count_near(page, (0x3B, 0x3B, 0xFF), tol=30) > 200, "no red threshold line / start badges"
