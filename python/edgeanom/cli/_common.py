"""Helpers shared by the CLI commands: turning EdgeanomError into a one-line message."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from edgeanom.errors import EdgeanomError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_BUNDLE = Path("edgeanom-model")

# Options that mean the same thing in every command are declared here once.
BUNDLE_HELP = "Model bundle directory (written by `edgeanom train`)."
BundleOption = Annotated[Path, typer.Option("--model", "-m", help=BUNDLE_HELP)]
BATCH_HELP = "Batch size: samples per inference call."
LegacyBundleArgument = Annotated[
    Optional[Path], typer.Argument(hidden=True, help="Deprecated: give the bundle as --model DIR.")
]


def deprecated(old: str, new: str) -> None:
    """One line on stderr for a spelling kept for one release."""
    typer.echo(f"edgeanom: {old} is deprecated and goes in the next release; use {new}", err=True)


def bundle_from(model: Path, legacy_positional: Optional[Path]) -> Path:
    """The bundle from --model, or from the old positional argument (with a deprecation line)."""
    if legacy_positional is None:
        return model
    deprecated("the bundle as a positional argument", f"--model {legacy_positional}")
    return legacy_positional


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Report EdgeanomError (and missing optional dependencies) as one line, exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeanomError as exc:
            raise fail(str(exc)) from None
        except ModuleNotFoundError as exc:
            extra = _EXTRA_FOR_MODULE.get((exc.name or "").split(".")[0])
            hint = f" (install it with: pip install 'edgeanom[{extra}]')" if extra else ""
            raise fail(f"missing Python package '{exc.name}'{hint}") from None

    return wrapper  # type: ignore[return-value]


_EXTRA_FOR_MODULE = {
    "torch": "train",
    "onnx": "train",
    "onnxscript": "train",
    "sklearn": "train",
    "skl2onnx": "train",
    "pandas": "train",
    "matplotlib": "train",
    "paho": "stream",
    "serial": "stream",
    "tensorrt": "trt",
    "cuda": "trt",
    "tritonclient": "triton",
}


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
