"""Hostile option values for `edgeanom run` (hypothesis, bounded): whatever they are, the command ends with
exit 0 or a one-line error (exit 2), never a traceback, never a hang."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edgeanom.cli.main import app
from edgeanom.runtime.testing import window_bundle

NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-1", "1e309", "nan", "", "abc", "1,2", "0x10"]),
)
OPTIONS = [
    "--batch",
    "--k",
    "--n",
    "--threshold",
    "--ewma",
    "--hysteresis",
    "--min-hold",
    "--max-frames",
    "--threads",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    bundle = window_bundle(root / "b", ["a"], 4, 1.0)
    csv = root / "s.csv"
    csv.write_text("a\n" + "\n".join(str(i % 3) for i in range(30)) + "\n")
    return bundle.path, csv


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(OPTIONS), NUMBERS), min_size=1, max_size=4))
def test_run_never_shows_a_traceback(setup: tuple[Path, Path], options: list[tuple[str, str]]) -> None:
    bundle, csv = setup
    args = ["run", "--model", str(bundle), "--sensor", str(csv), "--status-interval", "0", "--events-only"]
    for name, value in options:
        args += [name, value]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2), (args, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith(("error:", "Error", "│"))]
        assert errors, (args, result.output)
