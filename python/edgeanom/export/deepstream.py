"""Write a DeepStream `nvinfer` configuration for an image bundle, and a probe that reads its score.

DeepStream runs the graph itself (TensorRT under `nvinfer`), so the graph must compute the whole score: the
fused graph does (blur, per-pixel normalisation and top-k in the graph, `onnx.fused.map_scored`). nvinfer is
told to treat it as a network of its own kind (`network-type=100`) and to attach the raw outputs to each frame
(`output-tensor-meta=1`); `edgeanom_probe.py`, a pad probe for the DeepStream Python bindings, reads `score`
from that metadata and compares it with the bundle's threshold. Plain text is written here; the test parses
it back with configparser (DeepStream's key-file format) and checks it against the graph.

nvinfer's own scaler resizes frames (bilinear here), where edgeanom uses OpenCV's area filter when shrinking:
scores through DeepStream can differ slightly from `edgeanom run`'s on the same video.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError

CONFIG_FILE = "config_infer_edgeanom.txt"
PROBE_FILE = "edgeanom_probe.py"
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
COLOR_FORMAT = {"rgb": 0, "gray": 2}  # nvinfer's model-color-format (1 would be BGR)
SCALING_BILINEAR = 1

PROBE = '''"""Pad probe for the DeepStream Python bindings (pyds): the edgeanom score of each frame.

Attach it to the src pad of the `nvinfer` element that uses {config}:
    pad.add_probe(Gst.PadProbeType.BUFFER, edgeanom_probe, None)
Written by `edgeanom export --deepstream` for bundle {bundle!r}; the threshold is the bundle's
({method}). Scores equal `edgeanom run`'s up to the resize filter (nvinfer scales frames itself).
"""

import ctypes

THRESHOLD = {threshold!r}
SCORE_OUTPUT = {score!r}


def verdict(score):
    """(score, anomalous?) for one frame's score, as `edgeanom run` flags it (score > threshold)."""
    return float(score), bool(float(score) > THRESHOLD)


def frame_scores(layers):
    """The score in one frame's tensor metadata: `layers` is [(name, first float of the layer), ...]."""
    for name, value in layers:
        if name == SCORE_OUTPUT:
            return verdict(value)
    raise KeyError(f"no {{SCORE_OUTPUT!r}} output in the tensor metadata (got {{[n for n, _ in layers]}})")


def edgeanom_probe(pad, info, user_data):
    import pyds
    from gi.repository import Gst

    buffer = info.get_buffer()
    batch = pyds.gst_buffer_get_nvds_batch_meta(hash(buffer))
    frames = batch.frame_meta_list
    while frames is not None:
        frame = pyds.NvDsFrameMeta.cast(frames.data)
        user = frame.frame_user_meta_list
        while user is not None:
            meta = pyds.NvDsUserMeta.cast(user.data)
            if meta.base_meta.meta_type == pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META:
                tensors = pyds.NvDsInferTensorMeta.cast(meta.user_meta_data)
                layers = []
                for i in range(tensors.num_output_layers):
                    layer = pyds.get_nvds_LayerInfo(tensors, i)
                    ptr = ctypes.cast(pyds.get_ptr(layer.buffer), ctypes.POINTER(ctypes.c_float))
                    layers.append((layer.layerName, ptr[0]))
                score, flagged = frame_scores(layers)
                print(f"source {{frame.source_id}} frame {{frame.frame_num}}: score {{score:.6g}}"
                      + (" ANOMALY" if flagged else ""))
            user = user.next
        frames = frames.next
    return Gst.PadProbeReturn.OK
'''


def check_servable(bundle: Bundle) -> None:
    """nvinfer takes single frames: a sensor bundle or one that packs frames is refused, with the reason."""
    if bundle.input_kind != "image":
        raise EdgeanomError(
            f"--deepstream: DeepStream runs video models; bundle {bundle.path} takes {bundle.input_kind}s"
        )
    if (bundle.preprocess.get("image") or {}).get("pack"):
        raise EdgeanomError(
            "--deepstream: this bundle packs several frames into one input (preprocess.image.pack), which "
            "nvinfer cannot do; serve it with `edgeanom run` or Triton"
        )


def write_deepstream(
    out_dir: Path,
    bundle: Bundle,
    onnx_path: Path,
    *,
    batch_size: int,
    precision: str = "fp32",
    engine: Optional[Path] = None,
) -> list[Path]:
    """Write `CONFIG_FILE`, `PROBE_FILE` and the model (and engine) into `out_dir`; returns the paths."""
    check_servable(bundle)
    image = bundle.preprocess.get("image") or {}
    fused = bundle.onnx.get("fused") or {}
    self_scored = bundle.onnx.get("output") == "score"
    if (
        not (fused.get("score") and (fused.get("map_scored") or not bundle.score.get("map")))
        and not self_scored
    ):
        raise EdgeanomError(
            "--deepstream needs the whole score in the graph: export with fused scoring (the default), "
            "not --no-fused-score"
        )
    if precision not in NETWORK_MODE:
        raise EdgeanomError(
            f"--deepstream: precision must be one of {', '.join(NETWORK_MODE)}, got {precision!r}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    model_copy = out_dir / onnx_path.name
    shutil.copyfile(onnx_path, model_copy)
    written = [model_copy]
    engine_name = f"{onnx_path.stem}_b{batch_size}_gpu0_{precision}.engine"
    if engine is not None:
        shutil.copyfile(engine, out_dir / engine_name)
        written.append(out_dir / engine_name)
    c, h, w = bundle.input_shape
    outputs = [fused.get("score") or "score"]
    if fused.get("error_map"):
        outputs.append(str(fused["error_map"]))
    props: dict[str, Any] = {
        "gpu-id": 0,
        "net-scale-factor": repr(1.0 / 255.0),  # edgeanom's preprocessing: pixels / 255, no mean subtraction
        "offsets": ";".join(["0"] * c),
        "model-color-format": COLOR_FORMAT[str(image.get("color", "rgb"))],
        "onnx-file": model_copy.name,
        "model-engine-file": engine_name,  # nvinfer builds it from onnx-file when it is missing
        "infer-dims": f"{c};{h};{w}",
        "batch-size": int(batch_size),
        "network-mode": NETWORK_MODE[precision],
        "network-type": 100,  # "other": no detector/classifier parsing, outputs go to tensor metadata
        "output-tensor-meta": 1,
        "output-blob-names": ";".join(outputs),
        "process-mode": 1,  # primary: whole frames
        "maintain-aspect-ratio": 0,  # edgeanom stretches frames to the model size
        "scaling-filter": SCALING_BILINEAR,
        "gie-unique-id": 1,
    }
    lines = [
        f"# nvinfer config for edgeanom bundle {bundle.path.name} ({bundle.model_type}), written by edgeanom export.",
        f"# Threshold {bundle.threshold.value!r} ({bundle.threshold.method}): score > threshold is an anomaly;",
        f"# {PROBE_FILE} reads 'score' from the tensor metadata and applies it.",
        "[property]",
        *(f"{k}={v}" for k, v in props.items()),
        "",
    ]
    config = out_dir / CONFIG_FILE
    config.write_text("\n".join(lines), encoding="utf-8")
    probe = out_dir / PROBE_FILE
    probe.write_text(
        PROBE.format(
            config=CONFIG_FILE,
            bundle=bundle.path.name,
            method=bundle.threshold.method,
            threshold=float(bundle.threshold.value),
            score=outputs[0],
        ),
        encoding="utf-8",
    )
    return [config, probe, *written]
