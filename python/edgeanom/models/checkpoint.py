"""Save and load trained models inside a bundle: torch state dicts and pickled scikit-learn baselines.

A torch checkpoint is a plain dict (format, model type, input shape, hyper-parameters, state_dict), so it
loads with `torch.load(weights_only=True)` and rebuilds through the model registry.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError, first_line
from edgeanom.fileio import atomic_write

TORCH_CHECKPOINT = "model.pt"
SKLEARN_CHECKPOINT = "model.pkl"
CHECKPOINT_FORMAT = 1


def save_torch(model: Any, path: Path) -> None:
    """Store model type, input shape, hyper-parameters and CPU weights."""
    import torch

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_type": model.type_name,
        "input_shape": list(model.input_shape),
        "params": model.params,
        "state_dict": state,
    }
    atomic_write(path, lambda fh: torch.save(payload, fh))


def save_sklearn(estimator: Any, path: Path) -> None:
    atomic_write(path, lambda fh: pickle.dump(estimator, fh, protocol=pickle.HIGHEST_PROTOCOL))


def _checkpoint_file(bundle: Bundle) -> Path:
    path = bundle.checkpoint_path
    if path is None:
        raise EdgeanomError(f"bundle {bundle.path}: it has no checkpoint (bundle.json 'checkpoint' is null)")
    if not path.is_file():
        raise EdgeanomError(f"bundle {bundle.path}: checkpoint file '{path.name}' is missing")
    return path


def load_model(bundle: Bundle, device: str = "cpu") -> Any:
    """The bundle's torch model in eval mode; forward(x) returns exactly the ONNX output."""
    import torch

    from edgeanom.models.registry import build_model

    if bundle.model_family != "torch":
        raise EdgeanomError(f"bundle {bundle.path}: model '{bundle.model_type}' is not a torch model")
    path = _checkpoint_file(bundle)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises pickle/zip errors of several types
        raise EdgeanomError(f"{path}: cannot read the checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise EdgeanomError(f"{path}: not an edgeanom checkpoint (format {found!r})")
    missing = [k for k in ("model_type", "input_shape", "params", "state_dict") if k not in payload]
    if missing:
        raise EdgeanomError(f"{path}: checkpoint lacks {', '.join(missing)}")
    model = build_model(payload["model_type"], payload["input_shape"], payload["params"], saved=True)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise EdgeanomError(
            f"{path}: the weights do not fit a {payload['model_type']} model ({first_line(exc)})"
        ) from None
    return model.to(device).eval()


def load_sklearn(bundle: Bundle) -> Any:
    """The bundle's fitted scikit-learn estimator (a trusted file: pickles run code when loaded)."""
    if bundle.model_family != "sklearn":
        raise EdgeanomError(
            f"bundle {bundle.path}: model '{bundle.model_type}' is not a scikit-learn baseline"
        )
    path = _checkpoint_file(bundle)
    with path.open("rb") as fh:
        return pickle.load(fh)
