"""Data loaders: real image/video decoding with OpenCV, MVTec/Ped2 layouts, tables, sensor CSVs, splits."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgeanom.data import ImageSource, load_tables, random_split, split_counts, temporal_split
from edgeanom.errors import EdgeanomError


def _texture(rng, h=32, w=32) -> np.ndarray:
    x = np.arange(w)
    img = (
        128
        + 60 * np.sin(rng.uniform(0.3, 0.5) * x[None, :] + rng.uniform(0, 6.28))
        + rng.normal(0, 4, (h, w))
    )
    return np.clip(img, 0, 255).astype(np.uint8)


def test_mvtec_layout_labels_classes_skips_corrupt_and_keeps_sizes(tmp_path):
    rng = np.random.default_rng(0)
    for cls, n in (("good", 3), ("crack", 2), ("hole", 2)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            size = (32, 32) if i % 2 == 0 else (40, 48)  # mixed sizes are fine: preprocessing resizes
            cv2.imwrite(
                str(tmp_path / cls / f"{i}.png"), cv2.cvtColor(_texture(rng, *size), cv2.COLOR_GRAY2BGR)
            )
    (tmp_path / "crack" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "good" / "notes.txt").write_text("ignored: not an image")
    src = ImageSource(tmp_path)
    recs = list(src)
    assert src.labelled and not src.ordered
    assert [(r.cls, r.label) for r in recs] == [("crack", 1)] * 2 + [("good", 0)] * 3 + [("hole", 1)] * 2
    assert src.skipped == ["crack/broken.png"]
    assert {r.frame.shape for r in recs} == {(32, 32, 3), (40, 48, 3)}


def test_frame_folders_are_ordered_sequences_with_ped2_labels(tmp_path):
    rng = np.random.default_rng(1)
    for seq in ("01", "02"):
        (tmp_path / seq).mkdir()
        for i in range(12):  # 000 .. 011, natural order must put 2 before 10
            cv2.imwrite(str(tmp_path / seq / f"{i:d}.jpg"), _texture(rng))
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps(
            {
                "videos": {
                    "01": {"frames": 12, "anomalous_ranges": [[3, 5]]},
                    "02": {"frames": 12, "anomalous_ranges": []},
                }
            }
        )
    )
    src = ImageSource(tmp_path, labels=labels)
    recs = list(src)
    assert src.ordered and src.labelled
    assert [r.name for r in recs[:4]] == ["01/0.jpg", "01/1.jpg", "01/2.jpg", "01/3.jpg"]
    assert recs[10].name == "01/10.jpg"
    assert [r.label for r in recs if r.sequence == "01"] == [0, 0, 1, 1, 1] + [0] * 7
    assert sum(r.label for r in recs if r.sequence == "02") == 0


def test_video_file_frames_decoded_with_step_and_limit(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    assert writer.isOpened()
    for i in range(10):
        frame = np.full((24, 32, 3), i * 20, np.uint8)
        writer.write(frame)
    writer.release()
    recs = list(ImageSource(path, frame_step=2, max_frames=4))
    assert [r.name for r in recs] == ["clip.avi#0", "clip.avi#2", "clip.avi#4", "clip.avi#6"]
    means = [float(r.frame.mean()) for r in recs]
    assert means == sorted(means) and abs(means[1] - 40) < 8  # decoded content follows the written ramp


def test_image_source_errors(tmp_path):
    with pytest.raises(EdgeanomError, match="does not exist"):
        ImageSource(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeanomError, match="no images or videos found in"):
        ImageSource(tmp_path / "empty")
    (tmp_path / "notes.csv").write_text("a\n1\n")
    with pytest.raises(EdgeanomError, match="not an image or video file"):
        ImageSource(tmp_path / "notes.csv")


def _write_csv(path, text):
    path.write_text(text)
    return path


def test_table_columns_labels_and_text_columns(tmp_path):
    p = _write_csv(tmp_path / "t.csv", "id,a,b,label\nx1,1.0,2.0,0\nx2,2.0,3.5,1\nx3,3.0,1.0,0\n")
    (t,) = load_tables(p)
    assert t.columns == ["a", "b"] and t.ignored_columns == ["id"]
    np.testing.assert_array_equal(t.values, [[1, 2], [2, 3.5], [3, 1]])
    np.testing.assert_array_equal(t.labels, [0, 1, 0])
    (t,) = load_tables(p, columns=["b"], label_column="label")
    assert t.columns == ["b"]
    with pytest.raises(EdgeanomError, match=r"column\(s\) 'c' not found"):
        load_tables(p, columns=["c"])
    with pytest.raises(EdgeanomError, match="label column 'y' not found"):
        load_tables(p, label_column="y")


def test_table_bad_values_name_column_and_row(tmp_path):
    p = _write_csv(tmp_path / "t.csv", "a,b\n1,2\n3,oops\n5,6\n7,8\n")
    with pytest.raises(EdgeanomError, match=r"t.csv: column 'b', row 2: 'oops' is not a number"):
        load_tables(p)
    q = _write_csv(tmp_path / "q.csv", "a,b\n1,2\n3,\n5,6\n")
    with pytest.raises(EdgeanomError, match=r"column 'b', row 2: missing or non-finite value .*--drop-na"):
        load_tables(q)
    (t,) = load_tables(q, drop_na=True)
    assert t.dropped_rows == 1 and t.values.tolist() == [[1, 2], [5, 6]]


def test_parquet_and_dataframe_and_array(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"f1": [1.0, 2.0, 3.0], "f2": [0.5, 0.1, 0.2], "label": [0, 0, 1]})
    df.to_parquet(tmp_path / "t.parquet")
    (t,) = load_tables(tmp_path / "t.parquet")
    assert t.columns == ["f1", "f2"] and t.labels.tolist() == [0, 0, 1]
    (t,) = load_tables(df)
    assert t.labels.tolist() == [0, 0, 1]
    (t,) = load_tables(np.ones((4, 3)), labels=[0, 1, 0, 0])
    assert t.columns == ["f0", "f1", "f2"] and t.labels.tolist() == [0, 1, 0, 0]


def test_sensor_csv_with_semicolons_time_column_and_folder(tmp_path):
    for i in range(2):
        _write_csv(
            tmp_path / f"{i}.csv",
            "datetime;p;q;anomaly;changepoint\n"
            + "".join(f"2020-01-01 00:00:{s:02d};{s};{-s};0;0\n" for s in range(5)),
        )
    tables = load_tables(tmp_path, detect_time=True, ignore_columns=["changepoint"])
    assert len(tables) == 2
    assert tables[0].time_column == "datetime" and tables[0].label_column == "anomaly"
    assert tables[0].columns == ["p", "q"] and tables[0].values[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_splits():
    tr, va = random_split(10, 0.2, seed=0, what="rows")
    assert len(va) == 2 and sorted([*tr, *va]) == list(range(10))
    tr, va = temporal_split(["a"] * 10 + ["b"] * 5, 0.2, "frames")
    assert va.tolist() == [8, 9, 14] and tr.max() == 13  # the tail of every sequence, nothing shuffled
    with pytest.raises(EdgeanomError, match="too little data for the validation split: 4 normal rows"):
        split_counts(4, 0.2, "rows")
    with pytest.raises(EdgeanomError, match="--val-fraction must be between 0 and 1"):
        split_counts(100, 1.5, "rows")
    # a leave-one-out bank: one image either side is enough, and a fraction that rounds to none keeps one
    assert split_counts(4, 0.2, "images", min_each=1) == 1 and split_counts(2, 0.2, "images", min_each=1) == 1
    with pytest.raises(EdgeanomError, match=r"1 normal images .*\(need at least 1 each\)"):
        split_counts(1, 0.2, "images", min_each=1)


def test_sensor_rows_are_put_in_time_order_and_say_so() -> None:
    import pandas as pd

    from edgeanom.data import table_from_frame

    df = pd.DataFrame(
        {
            "timestamp": [
                "2020-01-01 00:00:02",
                "2020-01-01 00:00:01",
                "2020-01-01 00:00:03",
                "2020-01-01 00:00:03",
            ],
            "a": [2.0, 1.0, 3.0, 4.0],
            "label": [0, 1, 0, 0],
        }
    )
    t = table_from_frame(df, "pump.csv", detect_time=True)
    assert t.values.ravel().tolist() == [1.0, 2.0, 3.0, 4.0] and t.labels.tolist() == [1, 0, 0, 0]
    assert t.time_notes == [
        "pump.csv: 2 rows were out of time order; sorted by 'timestamp'",
        "pump.csv: 1 rows repeat the previous 'timestamp'; kept in file order",
    ]
    same = pd.DataFrame({"timestamp": ["2020-01-01"] * 3, "a": [1.0, 2.0, 3.0]})
    with pytest.raises(EdgeanomError, match=r"pump.csv: every row has the same timestamp \(2020-01-01\)"):
        table_from_frame(same, "pump.csv", detect_time=True)
    in_order = pd.DataFrame({"timestamp": [1, 2, 3], "a": [1.0, 2.0, 3.0]})
    assert table_from_frame(in_order, "pump.csv", detect_time=True).time_notes == []
