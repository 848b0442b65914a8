"""Suite-wide settings. In CI (CI set), hypothesis runs derandomized so a run's examples are reproducible."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
