"""The one atomic file write: temp file in the same folder, fsync, rename; the temp file never outlives an error.

Bundles, engines, reports and saved anomaly frames all go through here, so a reader (or a power cut) sees the
old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Optional


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any], mode: Optional[int] = None) -> None:
    """Call `write(fh)` on a binary temp file beside `path`, then rename it over `path`.

    `mode` sets the permission bits (default: an ordinary file under the umask; mkstemp alone gives 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).chmod(mode if mode is not None else 0o666 & ~_umask())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, mode: Optional[int] = None) -> None:
    atomic_write(path, lambda fh: fh.write(data), mode)


def atomic_write_text(path: Path, text: str, mode: Optional[int] = None) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), mode)


def check_output_dir(path: Path, option: str) -> None:
    """Before long work: `path` can become a directory we write in (one-line EdgeanomError otherwise)."""
    from edgeanom.errors import EdgeanomError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgeanomError(f"{option} {path}: a file is in the way (a directory is written there)")
    parent = path if path.exists() else next(p for p in path.absolute().parents if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise EdgeanomError(f"{option} {path}: cannot write in {parent}")
