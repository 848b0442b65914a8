"""The fused score head and the FP16 conversion on tiny torch modules, against float64 NumPy references."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edgeanom.errors import EdgeanomError
from edgeanom.export.fused import HEAD_PREFIX, METRICS, ScoreSpec, append_score_head
from edgeanom.export.onnx_graph import check_graph
from edgeanom.export.parity import compare, onnx_session, run_onnx

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")


def export(model, sample_shape, output="reconstruction", opset=17):
    torch.manual_seed(0)
    model = model.eval()
    buf = io.BytesIO()
    torch.onnx.export(
        model,
        (torch.zeros((2, *sample_shape)),),
        buf,
        input_names=["input"],
        output_names=[output],
        dynamic_axes={"input": {0: "batch"}, output: {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    return onnx.load_from_string(buf.getvalue())


def conv_ae(channels=3):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 4, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(4, channels, 4, stride=2, padding=1),
        torch.nn.Sigmoid(),
    )


def reference(x, recon, metric, weights=None):
    """float64 NumPy: what edgeanom.scoring computes (weights multiply d^2 or |d|; mean divides by D)."""
    d = x.astype(np.float64) - recon.astype(np.float64)
    e = np.abs(d) if metric in ("mae", "max") else d * d
    if weights is not None:
        e = e * weights.astype(np.float64)
    e = e.reshape(len(x), -1)
    out = {"mse": e.mean(1), "mae": e.mean(1), "sse": e.sum(1), "rmse": np.sqrt(e.mean(1)), "max": e.max(1)}
    return out[metric], (d * d).mean(axis=1) if x.ndim == 4 else None


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("metric", METRICS)
def test_head_matches_float64_reference(metric: str, weighted: bool) -> None:
    rng = np.random.default_rng(1)
    base = export(conv_ae(), (3, 16, 16))
    weights = rng.random((3, 16, 16), dtype=np.float32) if weighted else None
    fused = check_graph(append_score_head(base, ScoreSpec(metric, weights=weights, error_map=True)), "fused")
    assert [o.name for o in fused.graph.output] == ["score", "error_map"]
    x = rng.random((6, 3, 16, 16), dtype=np.float32)
    recon = run_onnx(onnx_session(base), x)["reconstruction"]
    out = run_onnx(onnx_session(fused), x)
    want, want_map = reference(x, recon, metric, weights)
    assert out["score"].shape == (6,) and out["error_map"].shape == (6, 16, 16)
    assert compare(want, out["score"])[1] < 1e-6, (want, out["score"])
    assert compare(want_map, out["error_map"])[1] < 1e-6


@pytest.mark.parametrize("metric", ["mse", "max"])
def test_non_finite_samples_score_inf(metric: str) -> None:
    base = export(conv_ae(1), (1, 8, 8))
    fused = append_score_head(base, ScoreSpec(metric, error_map=True))
    x = np.full((3, 1, 8, 8), 0.5, np.float32)
    x[1, 0, 2, 3] = np.nan
    x[2, 0, 0, 0] = np.inf
    out = run_onnx(onnx_session(fused), x)
    assert np.isfinite(out["score"][0])
    assert out["score"][1] == np.inf and out["score"][2] == np.inf
    assert np.isinf(out["error_map"][1]).any() and np.isfinite(out["error_map"][0]).all()


def test_deep_svdd_score_is_squared_distance_to_centre() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5, bias=False))
    base = export(net, (4, 3), output="embedding")
    center = np.random.default_rng(2).standard_normal((1, 5)).astype(np.float32)
    spec = ScoreSpec(center=center)
    assert spec.outputs == {"score": "score", "error_map": None}
    fused = check_graph(append_score_head(base, spec, output_name="embedding"), "svdd")
    x = np.random.default_rng(3).standard_normal((7, 4, 3)).astype(np.float32)
    emb = net(torch.from_numpy(x)).detach().numpy().astype(np.float64)
    want = ((emb - center) ** 2).sum(1)
    got = run_onnx(onnx_session(fused), x)["score"]
    assert compare(want, got)[1] < 1e-6
    assert [o.name for o in fused.graph.output] == ["score"]


def test_window_head_and_opset_18_reduce_signatures() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 3))
    for opset in (17, 18):
        base = export(net, (10, 3), opset=opset)
        fused = check_graph(append_score_head(base, ScoreSpec("max")), f"opset {opset}")
        x = np.random.default_rng(opset).standard_normal((4, 10, 3)).astype(np.float32)
        recon = net(torch.from_numpy(x)).detach().numpy()
        got = run_onnx(onnx_session(fused), x)["score"]
        assert compare(reference(x, recon, "max")[0], got)[1] < 1e-6
        reduce_max = next(n for n in fused.graph.node if n.op_type == "ReduceMax")
        assert (len(reduce_max.input) == 2) == (opset >= 18)


def test_head_names_and_bad_input() -> None:
    base = export(conv_ae(1), (1, 8, 8))
    fused = append_score_head(base, ScoreSpec())
    head = [n for n in fused.graph.node if n.name.startswith(HEAD_PREFIX)]
    assert head and all(n.name.startswith(HEAD_PREFIX) for n in fused.graph.node[-len(head) :])
    with pytest.raises(EdgeanomError, match="already has a fused score head"):
        append_score_head(fused, ScoreSpec())
    with pytest.raises(EdgeanomError, match="no output 'embedding'"):
        append_score_head(base, ScoreSpec(), output_name="embedding")
    with pytest.raises(EdgeanomError, match="no input"):
        append_score_head(base, ScoreSpec(), input_name="images")
    with pytest.raises(EdgeanomError, match=r"score\.metric"):
        ScoreSpec("l1")


def test_fp16_graph_has_fp32_edges_and_an_fp32_head() -> None:
    from edgeanom.export.fp16 import convert_to_fp16

    base = check_graph(export(conv_ae(), (3, 16, 16)), "base")
    half = check_graph(append_score_head(convert_to_fp16(base), ScoreSpec(error_map=True)), "half")
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert all(v.type.tensor_type.elem_type == float32 for v in [*half.graph.input, *half.graph.output])
    weights = [i for i in half.graph.initializer if not i.name.startswith(HEAD_PREFIX) and len(i.dims) > 1]
    assert weights and all(w.data_type == float16 for w in weights)  # the model part is FP16
    types = {v.name: v.type.tensor_type.elem_type for v in half.graph.value_info}
    head_tensors = [o for n in half.graph.node if n.name.startswith(HEAD_PREFIX) for o in n.output]
    float_head = [t for t in head_tensors if t in types and types[t] in (float32, float16)]
    assert float_head and all(types[t] == float32 for t in float_head)  # the reduction stays FP32
    x = np.random.default_rng(4).random((5, 3, 16, 16), dtype=np.float32)
    fused32 = append_score_head(base, ScoreSpec(error_map=True))
    s32 = run_onnx(onnx_session(fused32), x)["score"]
    s16 = run_onnx(onnx_session(half, fp16=True), x)["score"]
    assert 0 < compare(s32, s16)[1] < 1e-2  # FP16 moved the scores, a little
