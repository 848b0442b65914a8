"""edgeanom: anomaly detection from the workstation to the edge device.

`edgeanom.load(path)` opens a bundle for scoring; `edgeanom.train(...)`, `edgeanom.export(...)` and
`edgeanom.evaluate(...)` run the commands' jobs (see `edgeanom.api`). Importing the package stays cheap:
nothing heavy is imported until one of them is used.
"""

from __future__ import annotations

from typing import Any

from edgeanom._version import __version__
from edgeanom.errors import EdgeanomError

__all__ = ["EdgeanomError", "__version__", "evaluate", "export", "load", "train"]


def load(
    path: Any = "edgeanom-model", backend: str = "auto", precision: str = "fp32", threads: int = 0
) -> Any:
    """Open a bundle for scoring (a `edgeanom.api.Detector`); see `edgeanom.api.load`."""
    from edgeanom.api import load as _load

    return _load(path, backend, precision, threads)


def __getattr__(name: str) -> Any:
    if name in ("train", "export", "evaluate"):  # the subpackages, callable (edgeanom._facade)
        import importlib

        return importlib.import_module(f"edgeanom.{name}")
    raise AttributeError(f"module 'edgeanom' has no attribute {name!r}")
