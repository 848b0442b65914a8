"""Read training and evaluation data: image folders, videos, frame folders, tables and sensor series.

Loaders return raw values (decoded BGR frames, unscaled numbers); `edgeanom.preprocess` turns them into model
input, so training, eval and the device see identical tensors. Problems with the input are EdgeanomErrors
naming the file, column and row at fault.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import numpy as np

from edgeanom.errors import EdgeanomError
from edgeanom.preprocess import sliding_windows

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
TABLE_EXTS = {".csv", ".tsv", ".txt", ".parquet", ".pq"}
NORMAL_CLASSES = ("good", "normal", "ok")
LABEL_COLUMNS = ("label", "anomaly", "is_anomaly")
TIME_COLUMNS = ("time", "timestamp", "datetime", "date", "ts")

PathLike = Union[str, Path]


def _natural_key(path: Path) -> list[Any]:
    """Sort 'frame2' before 'frame10'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _sorted_children(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=_natural_key)


# --- images and video ---------------------------------------------------------------------------------------
@dataclass
class FrameRecord:
    """One decoded frame with where it came from and its label (None when unknown)."""

    frame: np.ndarray  # uint8 BGR (H, W, 3) or grey (H, W)
    name: str  # e.g. "broken_large/003.png" or "clip.mp4#12"
    sequence: str  # class folder, frame folder or video it belongs to ("" for loose images)
    position: int  # 0-based index inside its sequence
    index: int  # 0-based index among all frames found (skipped ones included)
    label: Optional[int] = None
    cls: Optional[str] = None


@dataclass
class _Source:
    path: Path
    name: str
    sequence: str
    cls: Optional[str]
    label: Optional[int]
    video: bool = False


class FrameLabels:
    """Per-frame labels from a file: Ped2-style JSON ranges, a name,label CSV, or one label per frame."""

    def __init__(self, spec: Any) -> None:
        self.ranges: Optional[dict[str, list[tuple[int, int]]]] = None
        self.by_name: Optional[dict[str, int]] = None
        self.by_index: Optional[np.ndarray] = None
        if isinstance(spec, (str, Path)):
            self._load_file(Path(spec))
        else:
            self.by_index = _as_labels(np.asarray(spec), "labels")

    def _load_file(self, path: Path) -> None:
        if not path.is_file():
            raise EdgeanomError(f"labels file '{path}' does not exist")
        if path.suffix.lower() == ".json":
            try:
                spec = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise EdgeanomError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
            if isinstance(spec, list):
                self.by_index = _as_labels(np.asarray(spec), str(path))
                return
            seqs = spec.get("videos") or spec.get("sequences") if isinstance(spec, dict) else None
            if not isinstance(seqs, dict):
                raise EdgeanomError(
                    f'{path}: expected {{"videos": {{name: {{"anomalous_ranges": [[first, last], ...]}}}}}} '
                    "(1-based inclusive frame numbers) or a list of 0/1 labels"
                )
            self.ranges = {
                str(k): [(int(a), int(b)) for a, b in (v.get("anomalous_ranges") or [])]
                for k, v in seqs.items()
            }
            return
        if path.suffix.lower() == ".npy":
            self.by_index = _as_labels(np.load(path), str(path))
            return
        rows = [r for r in csv.reader(path.read_text().splitlines()) if r and not r[0].startswith("#")]
        if rows and len(rows[0]) >= 2:
            body = rows[1:] if not _is_number(rows[0][-1]) else rows
            try:
                self.by_name = {r[0].strip(): int(float(r[-1])) for r in body}
            except ValueError:
                raise EdgeanomError(f"{path}: expected 'name,label' rows with 0/1 labels") from None
            return
        try:
            self.by_index = _as_labels(np.asarray([float(r[0]) for r in rows]), str(path))
        except ValueError:
            raise EdgeanomError(f"{path}: expected one 0/1 label per line") from None

    def label(self, rec: FrameRecord) -> Optional[int]:
        if self.by_index is not None:
            if rec.index >= self.by_index.size:
                raise EdgeanomError(
                    f"labels: {self.by_index.size} labels given but frame {rec.name} is number {rec.index + 1}"
                )
            return int(self.by_index[rec.index])
        if self.by_name is not None:
            for key in (rec.name, Path(rec.name).name):
                if key in self.by_name:
                    return int(self.by_name[key] != 0)
            raise EdgeanomError(f"labels: no label for '{rec.name}'")
        assert self.ranges is not None
        for key in (rec.sequence, Path(rec.sequence).name, Path(rec.sequence).stem):
            if key in self.ranges:
                k = rec.position + 1
                return int(any(a <= k <= b for a, b in self.ranges[key]))
        raise EdgeanomError(f"labels: no entry for sequence '{rec.sequence}' (frame {rec.name})")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _as_labels(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values).reshape(-1)
    if values.dtype == bool:
        return values.astype(np.int8)
    try:
        numeric = values.astype(np.float64)
    except (TypeError, ValueError):
        raise EdgeanomError(f"{what}: labels must be 0 (normal) or 1 (anomaly)") from None
    if not np.all(np.isfinite(numeric)):
        bad = int(np.flatnonzero(~np.isfinite(numeric))[0])
        raise EdgeanomError(f"{what}: label number {bad + 1} is missing or not a number")
    return (numeric != 0).astype(np.int8)


class ImageSource:
    """All frames under a path: an image, a video, a folder of images/videos/frame folders, or MVTec-style
    class folders (``good/`` normal, every other folder an anomaly class). Iterating decodes frames in order,
    skipping (and counting) files that cannot be read.
    """

    def __init__(
        self,
        path: PathLike,
        labels: Any = None,
        frame_step: int = 1,
        max_frames: Optional[int] = None,
    ) -> None:
        self.path = Path(path)
        self.frame_step = max(1, int(frame_step))
        self.max_frames = max_frames
        self.skipped: list[str] = []
        self.truncated: list[str] = []  # "name: decoded N of M frames" for videos that ended early
        self.external = FrameLabels(labels) if labels is not None else None
        self.sources, self.class_folders, self.ordered = self._discover()
        if not self.sources:
            raise EdgeanomError(
                f"no images or videos found in '{self.path}' (looked for {', '.join(sorted(IMAGE_EXTS))} and videos)"
            )

    @property
    def labelled(self) -> bool:
        return self.class_folders or self.external is not None

    def _discover(self) -> tuple[list[_Source], bool, bool]:
        root = self.path
        if not root.exists():
            raise EdgeanomError(f"data path '{root}' does not exist")
        if root.is_file():
            ext = root.suffix.lower()
            if ext in VIDEO_EXTS:
                return [_Source(root, root.name, root.name, None, None, video=True)], False, True
            if ext in IMAGE_EXTS:
                return [_Source(root, root.name, "", None, None)], False, False
            raise EdgeanomError(f"'{root}': not an image or video file (extension '{ext}')")
        children = _sorted_children(root)
        if any(c.is_dir() and c.name.lower() in NORMAL_CLASSES for c in children):
            sources = []
            for folder in (c for c in children if c.is_dir()):
                label = 0 if folder.name.lower() in NORMAL_CLASSES else 1
                sources += self._walk(folder, root, cls=folder.name, label=label)
            return sources, True, False
        sources = self._walk(root, root, cls=None, label=None)
        ordered = any(s.video or s.sequence for s in sources)
        return sources, False, ordered

    def _walk(self, folder: Path, root: Path, cls: Optional[str], label: Optional[int]) -> list[_Source]:
        out: list[_Source] = []
        for p in _sorted_children(folder):
            rel = p.relative_to(root).as_posix()
            if p.is_dir():
                out += self._walk(p, root, cls, label)
            elif p.suffix.lower() in IMAGE_EXTS:
                seq = p.parent.relative_to(root).as_posix()
                out.append(_Source(p, rel, "" if seq == "." else seq, cls, label))
            elif p.suffix.lower() in VIDEO_EXTS:
                out.append(_Source(p, rel, rel, cls, label, video=True))
        return out

    def __iter__(self) -> Iterator[FrameRecord]:
        self.skipped = []
        self.truncated = []
        index = 0
        emitted = 0
        positions: dict[str, int] = {}
        for src in self.sources:
            frames = self._video_frames(src) if src.video else [self._read_image(src)]
            for frame in frames:
                pos = positions.get(src.sequence, 0)
                positions[src.sequence] = pos + 1
                index += 1
                if frame is None or (pos % self.frame_step):
                    continue
                name = f"{src.name}#{pos}" if src.video else src.name
                rec = FrameRecord(frame, name, src.sequence, pos, index - 1, src.label, src.cls)
                if self.external is not None:
                    rec.label = self.external.label(rec)
                yield rec
                emitted += 1
                if self.max_frames is not None and emitted >= self.max_frames:
                    return

    def _read_image(self, src: _Source) -> Optional[np.ndarray]:
        frame = None if truncated_jpeg(src.path) else cv2.imread(str(src.path), cv2.IMREAD_UNCHANGED)
        if frame is None or frame.size == 0:
            self.skipped.append(src.name)
            return None
        if frame.dtype == np.uint16:
            frame = (frame >> 8).astype(np.uint8)
        return frame

    def _video_frames(self, src: _Source) -> Iterator[Optional[np.ndarray]]:
        cap = cv2.VideoCapture(str(src.path))
        try:
            if not cap.isOpened():
                self.skipped.append(src.name)
                return
            expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            got = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                got += 1
                yield frame
            if got == 0:
                self.skipped.append(src.name)
            elif expected > 0 and got < expected:
                self.truncated.append(
                    f"{src.name}: decoded {got} of {expected} frames (cut short or damaged)"
                )
        finally:
            cap.release()


JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


def truncated_jpeg(path: Path) -> bool:
    """A JPEG without its end-of-image marker near the end of the file was cut short (a copy or a camera
    interrupted): libjpeg would fill the missing rows with grey and decode it "successfully"."""
    if path.suffix.lower() not in JPEG_SUFFIXES:
        return False
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            tail = fh.read()
    except OSError:
        return True
    return b"\xff\xd9" not in tail


def memory_frames(frames: Sequence[np.ndarray], labels: Any = None) -> Iterator[FrameRecord]:
    """In-memory BGR frames as records (one sequence, in order)."""
    y = None if labels is None else _as_labels(np.asarray(labels), "labels")
    if y is not None and y.size != len(frames):
        raise EdgeanomError(f"labels: {y.size} labels for {len(frames)} frames")
    for i, frame in enumerate(frames):
        yield FrameRecord(np.asarray(frame), f"frame#{i}", "frames", i, i, None if y is None else int(y[i]))


class ScoredPacking:
    """The packed samples `run` scores, from records of frames (`edgeanom.preprocess.FramePacker`).

    `pack` is a bundle's `preprocess.image.pack` ({"spacing": S, "frames": T}, T 3 when left out). One packer
    per sequence (video, frame folder), so packing never mixes clips; records of a sequence must arrive in
    order, as `ImageSource` and `memory_frames` give them; labels and names are kept. Each sequence's first
    (T - 1) * S frames give no sample (their past is the first frame repeated, and `run` emits nothing for
    them), so train, eval and export learn from and score what `run` scores. `read` and `kept` count frames;
    reaching the end with frames read but none kept is a one-line error naming `source`: every sequence is
    shorter than the warm-up.
    """

    def __init__(self, records: Iterable[FrameRecord], pack: dict[str, Any], source: str) -> None:
        self._records, self.pack, self.source = records, pack, source
        self.read = 0
        self.kept = 0

    @property
    def n_warmup(self) -> int:
        """Frames read that gave no sample."""
        return self.read - self.kept

    def __iter__(self) -> Iterator[FrameRecord]:
        from edgeanom.preprocess import FramePacker, pack_warmup

        spacing, frames = int(self.pack["spacing"]), int(self.pack.get("frames", 3))
        packers: dict[str, tuple[FramePacker, list[int]]] = {}
        for rec in self._records:
            self.read += 1
            if rec.sequence not in packers:
                packers[rec.sequence] = (FramePacker(spacing, frames), [-1])
            packer, last = packers[rec.sequence]
            if rec.position <= last[0]:
                raise EdgeanomError(
                    f"{rec.name}: frame {rec.position} of sequence '{rec.sequence}' came after frame "
                    f"{last[0]}; frame packing needs each sequence in order"
                )
            last[0] = rec.position
            rec.frame = packer.push(rec.frame)
            if packer.warm:
                self.kept += 1
                yield rec
        if self.read and not self.kept:
            raise EdgeanomError(
                f"{self.source}: every sequence is shorter than the model's frame packing needs "
                f"({pack_warmup(self.pack)} frames of past before the first score)"
            )


def is_gray_content(frames: Sequence[np.ndarray]) -> bool:
    """True when every frame is single-channel or has three identical channels (grey stored as colour)."""
    for f in frames:
        if f.ndim == 3 and f.shape[2] >= 3:
            b, g, r = f[:, :, 0], f[:, :, 1], f[:, :, 2]
            if not (np.array_equal(b, g) and np.array_equal(g, r)):
                return False
    return True


# --- tables and sensor series -------------------------------------------------------------------------------
@dataclass
class Table:
    """Raw numeric values of one table (or one sensor file) with its column names and optional labels."""

    values: np.ndarray  # float64 (rows, columns), finite
    columns: list[str]
    labels: Optional[np.ndarray] = None  # int8 (rows,), 1 = anomaly
    source: str = ""
    time_column: Optional[str] = None
    label_column: Optional[str] = None
    dropped_rows: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    time_notes: list[str] = field(default_factory=list)  # what was done about the time column's order


def _read_frame(path: Path) -> Any:
    import pandas as pd

    ext = path.suffix.lower()
    try:
        if ext in (".parquet", ".pq"):
            return pd.read_parquet(path)
        with path.open(newline="") as fh:
            head = fh.readline()
        sep = "\t" if ext == ".tsv" else max((";", ",", "\t", "|"), key=head.count)
        return pd.read_csv(path, sep=sep if head.count(sep) else ",")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise EdgeanomError(f"cannot read table '{path}': {exc}") from None


def _table_files(path: Path) -> list[Path]:
    if not path.exists():
        raise EdgeanomError(f"data path '{path}' does not exist")
    if path.is_file():
        if path.suffix.lower() not in TABLE_EXTS:
            raise EdgeanomError(f"'{path}': expected a CSV or Parquet file (extension '{path.suffix}')")
        return [path]
    files = [p for p in _sorted_children(path) if p.is_file() and p.suffix.lower() in TABLE_EXTS]
    if not files:
        raise EdgeanomError(f"no CSV or Parquet files in '{path}'")
    return files


def _find_column(
    df: Any, wanted: Optional[str], candidates: Sequence[str], what: str, source: str
) -> Optional[str]:
    if wanted:
        if wanted not in df.columns:
            raise EdgeanomError(
                f"{source}: {what} column '{wanted}' not found (columns: {', '.join(map(str, df.columns))})"
            )
        return wanted
    lower = {str(c).strip().lower(): c for c in df.columns}
    for name in candidates:
        if name in lower:
            return str(lower[name])
    return None


def _numeric_column(df: Any, col: str, source: str, required: bool) -> Optional[np.ndarray]:
    """float64 values of a column; None for a text column that was not asked for (ignored)."""
    import pandas as pd

    series = df[col]
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64)
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    coerced = pd.to_numeric(series, errors="coerce")
    present = series.notna().to_numpy()
    parsed = coerced.notna().to_numpy()
    if not required and (not present.any() or parsed[present].mean() < 0.5):
        return None
    bad = np.flatnonzero(present & ~parsed)
    if bad.size:
        row = int(bad[0])
        raise EdgeanomError(f"{source}: column '{col}', row {row + 1}: {series.iloc[row]!r} is not a number")
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


def table_from_frame(
    df: Any,
    source: str,
    columns: Optional[Sequence[str]] = None,
    label_column: Optional[str] = None,
    time_column: Optional[str] = None,
    detect_time: bool = False,
    drop_na: bool = False,
    ignore_columns: Sequence[str] = (),
) -> Table:
    """Select feature columns (by name, or every numeric one) and labels from a DataFrame; check values."""
    df = df.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    label_col = _find_column(df, label_column, LABEL_COLUMNS, "label", source)
    time_col = _find_column(df, time_column, TIME_COLUMNS if detect_time else (), "time", source)
    time_notes: list[str] = []
    if time_col is not None and detect_time:
        df, time_notes = _in_time_order(df, time_col, source)
    for c in ignore_columns:
        if c not in df.columns:
            raise EdgeanomError(f"{source}: column '{c}' (to ignore) not found")
    skip = {label_col, time_col, *ignore_columns}
    if columns:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise EdgeanomError(
                f"{source}: column(s) {', '.join(map(repr, missing))} not found (columns: {', '.join(df.columns)})"
            )
        chosen = list(columns)
    else:
        chosen = [c for c in df.columns if c not in skip]
    values, names, ignored = [], [], list(ignore_columns)
    for c in chosen:
        v = _numeric_column(df, c, source, required=bool(columns))
        if v is None:
            ignored.append(c)
            continue
        values.append(v)
        names.append(c)
    if not names:
        raise EdgeanomError(f"{source}: no numeric feature columns (columns: {', '.join(df.columns)})")
    x = np.stack(values, axis=1) if len(df) else np.empty((0, len(names)))
    labels = None
    if label_col is not None:
        raw = _numeric_column(df, label_col, source, required=True)
        assert raw is not None
        labels = raw
    bad = ~np.isfinite(x)
    if labels is not None:
        bad = np.concatenate([bad, ~np.isfinite(labels)[:, None]], axis=1)
    dropped = 0
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        if not drop_na:
            r = int(rows[0])
            c = int(np.flatnonzero(bad[r])[0])
            col = names[c] if c < len(names) else label_col
            raise EdgeanomError(
                f"{source}: column '{col}', row {r + 1}: missing or non-finite value "
                f"({rows.size} such rows; pass --drop-na to drop them)"
            )
        keep = ~bad.any(axis=1)
        x = x[keep]
        labels = labels[keep] if labels is not None else None
        dropped = int(rows.size)
    y = None if labels is None else (labels != 0).astype(np.int8)
    return Table(x, names, y, source, time_col, label_col, dropped, ignored, time_notes)


def _in_time_order(df: Any, time_col: str, source: str) -> tuple[Any, list[str]]:
    """Rows sorted by their timestamps (stable), so windows are cut in time, not file, order. Timestamps that
    are all the same say nothing about the order: refused. Unparseable timestamps leave the file order."""
    import pandas as pd

    raw = df[time_col]
    t = pd.to_numeric(raw, errors="coerce")
    if t.isna().any():
        t = pd.to_datetime(raw, errors="coerce", format="mixed").astype("int64").where(raw.notna())
    if t.isna().any() or len(t) < 2:
        return df, []
    values = t.to_numpy(dtype=np.float64)
    if np.all(values == values[0]):
        raise EdgeanomError(
            f"{source}: every row has the same {time_col} ({raw.iloc[0]}), so the rows' order in time is unknown; "
            f"fix the timestamps or drop the '{time_col}' column to use the file order"
        )
    notes = []
    if np.any(np.diff(values) < 0):
        order = np.argsort(values, kind="stable")
        moved = int((order != np.arange(len(order))).sum())
        df = df.iloc[order].reset_index(drop=True)
        values = values[order]
        notes.append(f"{source}: {moved} rows were out of time order; sorted by '{time_col}'")
    repeats = int((np.diff(values) == 0).sum())
    if repeats:
        notes.append(f"{source}: {repeats} rows repeat the previous '{time_col}'; kept in file order")
    return df, notes


def load_tables(
    data: Any,
    columns: Optional[Sequence[str]] = None,
    label_column: Optional[str] = None,
    time_column: Optional[str] = None,
    detect_time: bool = False,
    drop_na: bool = False,
    labels: Any = None,
    ignore_columns: Sequence[str] = (),
) -> list[Table]:
    """One Table per file (a folder gives several), per DataFrame, or for an array of rows.

    All tables must have the same feature columns, in the same order as the first one.
    """
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frames = [(data, "table")]
    elif isinstance(data, np.ndarray) or (
        isinstance(data, (list, tuple)) and data and not isinstance(data[0], (str, Path))
    ):
        arr = np.asarray(data, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise EdgeanomError(f"table array has shape {arr.shape}, expected (rows, features)")
        names = list(columns) if columns else [f"f{i}" for i in range(arr.shape[1])]
        if len(names) != arr.shape[1]:
            raise EdgeanomError(f"{len(names)} column names for an array with {arr.shape[1]} columns")
        frames = [(pd.DataFrame(arr, columns=names), "array")]
        columns = names
    else:
        paths = [Path(p) for p in (data if isinstance(data, (list, tuple)) else [data])]
        frames = [(_read_frame(f), str(f)) for p in paths for f in _table_files(p)]
    tables = [
        table_from_frame(df, src, columns, label_column, time_column, detect_time, drop_na, ignore_columns)
        for df, src in frames
    ]
    first = tables[0]
    for t in tables[1:]:
        if t.columns != first.columns:
            raise EdgeanomError(
                f"{t.source}: columns {t.columns} differ from {first.source}'s {first.columns}"
            )
    if labels is not None:
        y = _as_labels(np.asarray(labels), "labels")
        total = sum(len(t.values) for t in tables)
        if y.size != total:
            raise EdgeanomError(f"labels: {y.size} labels for {total} rows")
        start = 0
        for t in tables:
            t.labels = y[start : start + len(t.values)]
            start += len(t.values)
    return tables


def guess_kind(data: Any) -> str:
    """Input kind for data given by path: images/videos -> image, a table with a time column -> window."""
    path = Path(data)
    if not path.exists():
        raise EdgeanomError(f"data path '{path}' does not exist")
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    exts = {p.suffix.lower() for p in files}
    if exts & (IMAGE_EXTS | VIDEO_EXTS):
        return "image"
    tables = [p for p in files if p.suffix.lower() in TABLE_EXTS]
    if not tables:
        raise EdgeanomError(f"no images, videos, CSV or Parquet files found in '{path}'")
    df = _read_frame(sorted(tables)[0])
    lower = {str(c).strip().lower() for c in df.columns}
    return "window" if lower & set(TIME_COLUMNS) else "vector"


def single_source(**sources: Any) -> str:
    """The name of the one data argument given (data=, frames=, table= or series=); an error otherwise."""
    given = [name for name, value in sources.items() if value is not None]
    if len(given) != 1:
        names = ", ".join(f"{n}=" for n in sources)
        raise EdgeanomError(f"give exactly one of {names} (got {', '.join(given) or 'none'})")
    return given[0]


# --- splits ------------------------------------------------------------------------------------------------
def split_counts(n: int, val_fraction: float, what: str, min_each: int = 2) -> int:
    """Number of validation samples; a clear error when either side would keep fewer than `min_each`.
    With `min_each` 1 a small set keeps one validation sample where the fraction rounds to none."""
    if not 0.0 < val_fraction < 1.0:
        raise EdgeanomError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    n_val = round(n * val_fraction)
    if min_each == 1 and n_val == 0:
        n_val = 1
    if n_val < min_each or n - n_val < min_each:
        raise EdgeanomError(
            f"too little data for the validation split: {n} normal {what} with --val-fraction {val_fraction} "
            f"leaves {n - n_val} for training and {n_val} for validation (need at least {min_each} each); add data"
        )
    return n_val


def random_split(
    n: int, val_fraction: float, seed: int, what: str, min_each: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    n_val = split_counts(n, val_fraction, what, min_each)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def temporal_split(sequences: Sequence[str], val_fraction: float, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The last `val_fraction` of every sequence is validation; nothing is shuffled across time."""
    seq = np.asarray(sequences, dtype=object)
    split_counts(len(seq), val_fraction, what)
    val = np.zeros(len(seq), dtype=bool)
    for name in dict.fromkeys(seq.tolist()):
        idx = np.flatnonzero(seq == name)
        k = round(len(idx) * val_fraction)
        if k:
            val[idx[-k:]] = True
    return np.flatnonzero(~val), np.flatnonzero(val)


def label_windows(labels: Optional[np.ndarray], length: int, stride: int, n_rows: int) -> np.ndarray:
    """A window is anomalous when any of its time steps is."""
    if labels is None:
        n = max(0, (n_rows - length) // stride + 1)
        return np.zeros(n, dtype=np.int8)
    w = sliding_windows(labels.astype(np.float32)[:, None], length, stride)
    return (w.max(axis=(1, 2)) > 0).astype(np.int8) if len(w) else np.zeros(0, np.int8)


def windows_with_labels(
    values: np.ndarray, labels: Optional[np.ndarray], length: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """(T, C) rows -> (W, length, C) windows in time order, each labelled like `label_windows`."""
    return sliding_windows(values, length, stride), label_windows(labels, length, stride, len(values))
