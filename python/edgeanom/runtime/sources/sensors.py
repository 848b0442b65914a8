"""Sensor sources: CSV replay, stdin, a serial port, an MQTT topic; and rows -> model windows.

Sources hand over raw text (a CSV line or an MQTT payload); `RowParser` turns it into float rows in the
bundle's column order (malformed text raises CorruptInput, quoted verbatim in the report), and
`Windower` cuts the row stream into the sliding windows the bundle was trained on.
"""

from __future__ import annotations

import collections
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from edgeanom.errors import EdgeanomError
from edgeanom.runtime.mqtt_url import connect_client, parse_mqtt_url
from edgeanom.runtime.sources.base import NOTHING, CorruptInput, SourceLost

MAX_VERBATIM = 120  # characters of a malformed line quoted in reports


def _quote(text: str) -> str:
    text = text.rstrip("\r\n")
    return repr(text if len(text) <= MAX_VERBATIM else text[:MAX_VERBATIM] + "…")


class RowParser:
    """Text -> rows of `n_features` float32 values in the bundle's column order.

    CSV lines (comma, semicolon or tab separated; an optional header row names the columns) and JSON
    payloads (an object keyed by column name, a list of values, or a list of either) are accepted.
    Without a header, a line holds the feature values in order, optionally preceded by the time column.
    """

    def __init__(
        self,
        n_features: Optional[int],
        columns: Optional[Sequence[str]] = None,
        time_column: Optional[str] = None,
    ):
        # None: learn the columns from the first header, JSON object or row (`train --sensor` capture)
        self.n_features: Optional[int] = None if n_features is None else int(n_features)
        self.columns = list(columns) if columns else None
        self.time_column = time_column
        if self.columns is not None and self.n_features is not None and len(self.columns) != self.n_features:
            raise EdgeanomError(
                f"bundle preprocess.columns lists {len(self.columns)} columns, the model input has "
                f"{self.n_features} features"
            )
        self._positions: Optional[list[int]] = None  # from a CSV header
        self._seen_data = False

    @property
    def names(self) -> list[str]:
        """Column names: the header's (or JSON keys), else c0, c1, ... in order."""
        return list(self.columns) if self.columns else [f"c{i}" for i in range(self.n_features or 0)]

    def parse(self, text: str | bytes) -> list[np.ndarray]:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise CorruptInput(f"not UTF-8 text: {text[:MAX_VERBATIM]!r}") from None
        line = text.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            return []
        if line[0] in "[{":
            return self._parse_json(line)
        row = self._parse_csv(line)
        return [] if row is None else [row]

    def _parse_csv(self, line: str) -> Optional[np.ndarray]:
        """One CSV line -> one row; None when the line is the header."""
        sep = "," if "," in line else (";" if ";" in line else ("\t" if "\t" in line else None))
        fields = [f.strip().strip('"') for f in (line.split(sep) if sep else line.split())]
        if self._positions is None and not self._seen_data and _looks_like_header(fields):
            if self.n_features is None:
                self.columns = [f for f in fields if f != self.time_column]
                self.n_features = len(self.columns)
            self._positions = self._header_positions(fields)
            return None
        if self.n_features is None:
            self.n_features = len(fields)
        if self._positions is not None:
            if len(fields) <= max(self._positions):
                raise CorruptInput(f"{len(fields)} fields, the header has more: {_quote(line)}")
            fields = [fields[i] for i in self._positions]
        elif len(fields) == self.n_features + 1 and self.time_column:
            fields = fields[1:]  # leading time stamp, as in the training CSV
        if len(fields) != self.n_features:
            raise CorruptInput(f"{len(fields)} fields, expected {self.n_features}: {_quote(line)}")
        values = _floats(fields)
        if values is None:
            raise CorruptInput(f"not numeric: {_quote(line)}")
        self._seen_data = True
        return np.asarray(values, dtype=np.float32)

    def _header_positions(self, fields: list[str]) -> list[int]:
        if self.columns is None:
            names = [f for f in fields if f != self.time_column]
            if len(names) != self.n_features:
                raise EdgeanomError(
                    f"sensor header has columns {fields}, the model expects {self.n_features} features"
                )
            return [fields.index(n) for n in names]
        missing = [c for c in self.columns if c not in fields]
        if missing:
            raise EdgeanomError(
                f"sensor header {fields} lacks the column(s) {missing} the model was trained on "
                f"(expected {self.columns})"
            )
        return [fields.index(c) for c in self.columns]

    def _parse_json(self, line: str) -> list[np.ndarray]:
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            raise CorruptInput(f"invalid JSON: {_quote(line)}") from None
        except RecursionError:  # a hostile line nested thousands deep: one bad line, not the end of the run
            raise CorruptInput(f"JSON nested too deep: {_quote(line)}") from None
        items = doc if isinstance(doc, list) and doc and isinstance(doc[0], (list, dict)) else [doc]
        rows = []
        for item in items:
            if self.n_features is None:
                keys = [k for k in item if k != self.time_column] if isinstance(item, dict) else None
                self.columns = keys
                self.n_features = (
                    len(keys) if keys is not None else len(item) if isinstance(item, list) else 0
                )
            if isinstance(item, dict):
                if self.columns is None:
                    item = {k: v for k, v in item.items() if k != self.time_column}
                    if len(item) != self.n_features:
                        raise CorruptInput(f"{len(item)} keys, expected {self.n_features}: {_quote(line)}")
                    vals = list(item.values())
                else:
                    missing = [c for c in self.columns if c not in item]
                    if missing:
                        raise CorruptInput(f"missing {missing}: {_quote(line)}")
                    vals = [item[c] for c in self.columns]
            elif isinstance(item, list):
                vals = item[1:] if len(item) == self.n_features + 1 and self.time_column else item
                if len(vals) != self.n_features:
                    raise CorruptInput(f"{len(item)} values, expected {self.n_features}: {_quote(line)}")
            else:
                raise CorruptInput(f"expected an object or a list: {_quote(line)}")
            floats = _floats(vals)
            if floats is None:
                raise CorruptInput(f"not numeric: {_quote(line)}")
            rows.append(np.asarray(floats, dtype=np.float32))
        return rows


def _floats(fields: Sequence[Any]) -> Optional[list[float]]:
    try:
        return [float(f) for f in fields]
    except (TypeError, ValueError):
        return None


def _looks_like_header(fields: list[str]) -> bool:
    return all(f and _floats([f]) is None for f in fields)


class Windower:
    """Rows of one stream -> (length, channels) windows every `stride` rows, as the bundle's training cut them."""

    def __init__(self, length: int, stride: int, channels: int) -> None:
        if length < 1 or stride < 1:
            raise EdgeanomError(f"window length and stride must be >= 1, got {length} and {stride}")
        self.length, self.stride, self.channels = int(length), int(stride), int(channels)
        self._ring = np.zeros((2 * self.length, self.channels), dtype=np.float32)
        self._rows = 0
        self.windows = 0

    def push(self, row: np.ndarray) -> Optional[np.ndarray]:
        """Add one row; returns a new window (a copy) when one is complete, else None."""
        pos = self._rows % self.length
        # Each row is stored twice (pos and pos + length) so the latest window is one contiguous slice.
        self._ring[pos] = row
        self._ring[pos + self.length] = row
        self._rows += 1
        if self._rows < self.length or (self._rows - self.length) % self.stride:
            return None
        start = self._rows % self.length
        self.windows += 1
        return self._ring[start : start + self.length].copy()


# --- sources ---------------------------------------------------------------------------------------
class _LineSource:
    kind = "rows"
    drop_stale = False
    reconnect = False
    fps: Optional[float] = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.last_ref: Optional[str] = None
        self._fh: Optional[TextIO] = None
        self._line = 0

    def read(self) -> Any:
        if self._fh is None:
            return None
        text = self._fh.readline()
        if text == "":
            return None
        self._line += 1
        self.last_ref = f"line {self._line}"
        return text

    def close(self) -> None:
        if self._fh is not None and self._fh is not sys.stdin:
            self._fh.close()
        self._fh = None


class CsvFileSource(_LineSource):
    """Replays a CSV file line by line (paced by --rate HZ, else as fast as possible)."""

    def __init__(self, path: str | Path, rate_hz: Optional[float] = None) -> None:
        self.path = Path(path)
        super().__init__(f"sensor:{self.path.name}")
        self.fps = rate_hz

    def open(self) -> None:
        if not self.path.is_file():
            raise EdgeanomError(f"sensor file '{self.path}' does not exist")
        self._fh = self.path.open("r", newline="", errors="replace")


class StdinSource(_LineSource):
    """CSV (or JSON) lines piped in on standard input; the stream ends at end of input."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        super().__init__("sensor:stdin")
        self._stream = stream

    def open(self) -> None:
        self._fh = self._stream or sys.stdin


class SerialSource:
    """Lines from a serial port: serial:///dev/ttyUSB0?baud=115200. Reconnects when the port goes away."""

    kind = "rows"
    drop_stale = False
    reconnect = True

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.port = unquote(parts.netloc + parts.path) if parts.netloc else unquote(parts.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            self.baud = int(q.get("baud", 115200))
        except ValueError:
            raise EdgeanomError(f"sensor '{url}': baud must be an integer, got {q.get('baud')!r}") from None
        if not self.port:
            raise EdgeanomError(f"sensor '{url}': expected serial:///dev/ttyUSB0?baud=115200")
        self.name = f"sensor:serial:{self.port}"
        self.fps: Optional[float] = None
        self.last_ref: Optional[str] = None
        self._serial: Any = None

    def open(self) -> None:
        import serial

        try:
            self._serial = serial.serial_for_url(self.port, baudrate=self.baud, timeout=0.2)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise EdgeanomError(f"cannot open serial port '{self.port}' at {self.baud} baud: {exc}") from None

    def read(self) -> Any:
        import serial

        if self._serial is None:
            raise SourceLost("serial port is not open")
        try:
            data = self._serial.readline()
        except (serial.SerialException, OSError) as exc:
            raise SourceLost(f"serial port error: {exc}") from None
        if not data:
            return NOTHING
        self.last_ref = None
        return data

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            finally:
                self._serial = None


class MqttSource:
    """Payloads from an MQTT topic (JSON or CSV). Messages queue up to a bound; overflow is counted."""

    kind = "rows"
    drop_stale = False
    reconnect = True
    QUEUE_LIMIT = 10_000

    def __init__(self, url: str, connect_timeout_s: float = 5.0) -> None:
        self._target = parse_mqtt_url(url, flag="--sensor", subscribe=True)
        self.host, self.port, self.topic = self._target.host, self._target.port, self._target.topic
        self.name = f"sensor:mqtt:{self.host}:{self.port}/{self.topic}"
        self.fps: Optional[float] = None
        self.last_ref: Optional[str] = None
        self.dropped = 0
        self.connect_timeout_s = connect_timeout_s
        self._queue: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._client: Any = None
        self._subscribed = threading.Event()
        self._lost: Optional[str] = None

    def open(self) -> None:

        self._lost = None
        self._subscribed.clear()
        client: Any = connect_client(self._target)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_a: self._subscribed.set()
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise EdgeanomError(f"cannot connect to MQTT broker {self.host}:{self.port}: {exc}") from None
        client.loop_start()
        if not self._subscribed.wait(self.connect_timeout_s):
            client.loop_stop()
            client.disconnect()
            raise EdgeanomError(
                f"MQTT broker {self.host}:{self.port} did not confirm the subscription to '{self.topic}' "
                f"within {self.connect_timeout_s:g} s"
            )
        self._client = client

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if not getattr(reason, "is_failure", False):
            client.subscribe(self.topic, qos=1)

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        with self._cond:
            if len(self._queue) >= self.QUEUE_LIMIT:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(msg.payload)
            self._cond.notify()

    def _on_disconnect(self, *_args: Any) -> None:
        with self._cond:
            self._lost = "MQTT broker connection lost"
            self._cond.notify()

    def read(self) -> Any:
        with self._cond:
            if not self._queue and self._lost is None:
                self._cond.wait(0.2)
            if self._queue:
                return self._queue.popleft()
            if self._lost is not None:
                raise SourceLost(self._lost)
        return NOTHING

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.on_disconnect = None
            client.disconnect()
            client.loop_stop()
