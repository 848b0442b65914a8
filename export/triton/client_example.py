"""Send one batch to an edgeanom model served by Triton and flag anomalies with the bundle's threshold.

Needs only numpy and tritonclient[grpc]. Inputs here are random (shape and range of the bundle's input);
a real client feeds preprocessed frames or sensor windows (see edgeanom.preprocess).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="localhost:8001", help="Triton gRPC address")
    parser.add_argument("--model", default="edgeanom-model", help="model name in the repository")
    parser.add_argument(
        "--bundle", type=Path, default=Path("edgeanom-model"), help="bundle directory (threshold)"
    )
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()

    import tritonclient.grpc as grpcclient

    meta = json.loads((args.bundle / "bundle.json").read_text())
    shape = [args.batch, *meta["input"]["shape"]]
    threshold = float(meta["threshold"]["value"])
    x = np.random.default_rng(0).random(shape, dtype=np.float32)

    client = grpcclient.InferenceServerClient(url=args.url)
    inputs = [grpcclient.InferInput("input", shape, "FP32")]
    inputs[0].set_data_from_numpy(x)
    map_spec = (meta.get("score") or {}).get("map")
    wanted = ["score", "error_map"] if map_spec else ["score"]
    result = client.infer(args.model, inputs, outputs=[grpcclient.InferRequestedOutput(n) for n in wanted])
    scores = result.as_numpy("score").reshape(-1)
    if map_spec:
        # Image bundles are calibrated on the map score: blur the error map, then max / top-k mean. That is
        # edgeanom's C++ core; without edgeanom installed, the plain mean error is shown instead.
        try:
            from edgeanom import scoring
        except ImportError:
            print("note: this bundle scores with blurred error maps; install edgeanom to apply its threshold")
            threshold = float("nan")
        else:
            maps = scoring.blur_maps(
                np.ascontiguousarray(result.as_numpy("error_map")), float(map_spec["blur_sigma"])
            )
            scores = scoring.map_score(
                maps, mode=map_spec.get("mode", "topk_mean"), k=int(map_spec.get("k", 1))
            )
    for i, s in enumerate(scores):
        verdict = "ANOMALY" if s > threshold else "normal"
        print(f"sample {i}: score {s:.6g} {verdict} (threshold {threshold:.6g})")


if __name__ == "__main__":
    main()
