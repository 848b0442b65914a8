"""The C++ core under AddressSanitizer + UndefinedBehaviorSanitizer: tools/sanitize.sh builds the stress
driver (csrc/tools/fuzz_core.cpp) and the cross-build check with both sanitizers and runs them briefly here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ with libasan/libubsan")
def test_core_is_clean_under_sanitizers() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "tools" / "sanitize.sh"), "60"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "fuzz_core: 60 rounds, 0 failures" in done.stdout
    assert "no sanitizer report" in done.stdout
