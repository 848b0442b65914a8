"""The model registry: every detector family registers its classes here with `@register`.

Adding a model is one new module in `edgeanom/models/` whose class is decorated with `@register`; the
registry imports every module of the package the first time a model is looked up, so no list of names is
kept anywhere else (the CLI's help, training defaults and scoring all read the registered classes).
This module itself imports neither torch nor scikit-learn.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Optional, TypeVar

from edgeanom.errors import EdgeanomError

T = TypeVar("T")

_MODELS: dict[str, Any] = {}
_discovered = False
# Modules of the package that hold no model (imported on demand by their users, not by discovery).
_NOT_FAMILIES = frozenset({"registry", "base", "checkpoint", "onnx_export", "backbones"})
PACKED_FRAMES = "packed-frames"  # default_for key: image input whose channels are packed frames


class ModelInfo:
    """What the registry, training and the bundle read from a model class: its name and its own settings.

    Every family's base class derives from it and overrides what differs, so no caller checks model names.
    """

    type_name = ""
    family = "torch"  # torch | sklearn | stat
    kinds: tuple[str, ...] = ()  # input kinds it takes
    default_for: tuple[str, ...] = ()  # input kinds (or PACKED_FRAMES) it is the default for
    output_name = "reconstruction"  # the ONNX graph's output
    defaults: ClassVar[dict[str, Any]] = {}  # hyper-parameters
    # Hyper-parameters added after bundles were already saved, with the value those bundles were built with:
    # a checkpoint that lacks one gets this, not today's default (which may build another architecture).
    saved_before: ClassVar[dict[str, Any]] = {}
    scaler = "standard"
    weight_decay = 0.0
    score_metric = "mse"  # how the output becomes a score ("model": the output is the score)
    scores_maps = False  # image inputs: the per-pixel error map is blurred, normalised and reduced
    packed_frames = 3  # frames packed per input with --frame-pack (video models)
    trainable = True  # False: `prepare` fits it from the training data alone (a memory bank); no epochs
    map_normalize = True  # image maps: train fits per-pixel statistics (score.map.normalize) unless False
    # the default model side for an image set (not frames in time order) whose images are at least this big;
    # None: the common default (train.prepare.DEFAULT_IMAGE_SIDE)
    image_set_side: Optional[int] = None

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Checks of resolved hyper-parameters that must fail before any data is read (files they name)."""

    @classmethod
    def leave_one_out(cls, params: dict[str, Any]) -> bool:
        """Whether, with these resolved hyper-parameters, scoring one of its own training samples leaves that
        sample out (a memory bank that skips the sample's own entry): its in-sample scores are then held-out
        scores, so train fits it on every normal sample, validation split included, and calibrates on all of
        their scores (not for ordered data, whose neighbours in time are near-copies)."""
        return False

    def score_section(self, folder: Path, image_map: Optional[dict[str, Any]]) -> dict[str, Any]:
        """The bundle's `score` section; a model that needs extra files (a centre) writes them to `folder`."""
        return {"metric": self.score_metric, "center": None, "map": image_map if self.scores_maps else None}


def register(cls: T) -> T:
    """Class decorator: make a model class available under its `type_name`."""
    name = getattr(cls, "type_name", "")
    if not name:
        raise TypeError(f"{cls!r} has no type_name")
    other = _MODELS.get(name)
    if other is not None and other is not cls:
        raise TypeError(f"model name {name!r} is registered twice ({other.__module__}, {cls.__module__})")  # type: ignore[attr-defined]
    _MODELS[name] = cls
    return cls


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    package = importlib.import_module("edgeanom.models")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_FAMILIES and not module.name.startswith("_"):
            importlib.import_module(f"edgeanom.models.{module.name}")
    _discovered = True


def model_names(kind: Optional[str] = None) -> list[str]:
    """Registered model names (those that take `kind` input, when given), torch models first."""
    _discover()
    names = [n for n, c in _MODELS.items() if kind is None or kind in c.kinds]
    return sorted(names, key=lambda n: (_MODELS[n].family != "torch", n))


def get_model(name: str) -> Any:
    """The registered class for `name`; an unknown name is an error that lists the valid ones."""
    _discover()
    try:
        return _MODELS[name]
    except KeyError:
        raise EdgeanomError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}") from None


def model_kinds(name: str) -> tuple[str, ...]:
    """Input kinds a model type accepts."""
    return tuple(get_model(name).kinds)


def default_model(kind: str, packed_frames: bool = False) -> str:
    """The model trained when none is named: the one whose class lists `kind` in `default_for`."""
    _discover()
    key = PACKED_FRAMES if packed_frames else kind
    for name, cls in _MODELS.items():
        if key in cls.default_for:
            return name
    raise EdgeanomError(f"no default model for {key} input; name one with --model-type")


def describe_models() -> str:
    """One line for the CLI's help: each model with the kinds it takes."""
    return "; ".join(f"{n} ({'/'.join(get_model(n).kinds)})" for n in model_names())


def resolve_params(model_type: str, params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Defaults overridden by `params`; unknown names are an error that lists the valid ones."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise EdgeanomError(
            f"model {model_type!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(sorted(defaults))}"
        )
    return {**defaults, **params}


def build_model(
    model_type: str,
    input_shape: Sequence[int],
    params: Optional[dict[str, Any]] = None,
    *,
    saved: bool = False,
) -> Any:
    """Construct a registered torch model with resolved hyper-parameters. `saved`: the params come from a
    checkpoint, where a hyper-parameter it predates takes the value in `saved_before`."""
    cls = get_model(model_type)
    if cls.family != "torch":
        raise EdgeanomError(f"{model_type!r} is a scikit-learn baseline, not a torch model")
    given = {**cls.saved_before, **dict(params or {})} if saved else dict(params or {})
    return cls(input_shape, resolve_params(model_type, given, cls.defaults))
