"""The `edgeanom` command: joins each command module's `register(app)`."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeanom._version import __version__
from edgeanom.cli import bench, demo, evaluate, export, info, run, train

app = typer.Typer(
    name="edgeanom",
    help="Train anomaly detectors on normal data, export them to ONNX/TensorRT, and run them on live streams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"edgeanom {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """edgeanom: anomaly detection from the workstation to the edge device."""


for _module in (info, train, evaluate, export, run, bench, demo):
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
