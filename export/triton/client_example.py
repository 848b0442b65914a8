"""Send one batch to an edgeanom model served by Triton and flag anomalies with the bundle's threshold.

Needs only numpy and tritonclient[grpc]. Serve the bundle's fused graph (`edgeanom export --triton DIR`):
it computes the whole score (for images: blur, per-pixel normalisation and top-k inside the graph), so the
`score` Triton returns is the number `edgeanom run` compares with the threshold. Give preprocessed samples
with `--npy FILE` (float32, shape [N, *input.shape], as `edgeanom.preprocess.Preprocessor` makes them);
without it, random inputs of the right shape are sent.

    python client_example.py --url localhost:8001 --model edgeanom-model --bundle edgeanom-model [--npy x.npy]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="localhost:8001", help="Triton gRPC address")
    parser.add_argument("--model", default="edgeanom-model", help="model name in the repository")
    parser.add_argument(
        "--bundle", type=Path, default=Path("edgeanom-model"), help="bundle directory (threshold)"
    )
    parser.add_argument("--npy", type=Path, default=None, help="preprocessed samples to send (.npy)")
    parser.add_argument("--batch", type=int, default=4, help="random samples to send when --npy is not given")
    args = parser.parse_args()

    import tritonclient.grpc as grpcclient

    meta = json.loads((args.bundle / "bundle.json").read_text())
    shape = list(meta["input"]["shape"])
    threshold = float(meta["threshold"]["value"])
    fused = (meta.get("onnx") or {}).get("fused") or {}
    if (meta.get("score") or {}).get("map") and not fused.get("map_scored"):
        print("error: this bundle's graph does not compute its map score; re-export it with "
              "`edgeanom export` and serve the new model.fused.onnx", file=sys.stderr)  # fmt: skip
        return 2
    x = (
        np.load(args.npy)
        if args.npy
        else np.random.default_rng(0).random([args.batch, *shape], dtype=np.float32)
    )
    if list(x.shape[1:]) != shape:
        print(
            f"error: {args.npy}: samples of shape {list(x.shape[1:])}, the bundle takes {shape}",
            file=sys.stderr,
        )
        return 2
    x = np.ascontiguousarray(x, dtype=np.float32)
    client = grpcclient.InferenceServerClient(url=args.url)
    request = grpcclient.InferInput("input", list(x.shape), "FP32")
    request.set_data_from_numpy(x)
    result = client.infer(args.model, [request], outputs=[grpcclient.InferRequestedOutput("score")])
    for i, s in enumerate(result.as_numpy("score").reshape(-1)):
        verdict = "ANOMALY" if s > threshold else "normal"
        print(f"sample {i}: score {s:.9g} {verdict} (threshold {threshold:.6g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
