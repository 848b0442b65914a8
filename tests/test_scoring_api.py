"""edgeanom.scoring module-level API: threads, build_info, import errors, fork safety."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgeanom import scoring


def test_build_info_fields():
    info = scoring.build_info()
    for key in (
        "compiler",
        "compiler_version",
        "cxx_standard",
        "flags",
        "simd",
        "default_threads",
        "num_threads",
    ):
        assert key in info, key
    assert info["cxx_standard"] == "C++17"
    assert "-ffast-math" not in info["flags"] and "-march" not in info["flags"]
    assert info["simd"]["active"] in info["simd"]["dispatch"]
    assert info["default_threads"] >= 1
    assert info["block_size"] == 4096


def test_thread_count_roundtrip_and_validation():
    n = scoring.get_num_threads()
    try:
        scoring.set_num_threads(3)
        assert scoring.get_num_threads() == 3
        scoring.set_num_threads(np.int64(1))
        assert scoring.get_num_threads() == 1
        for bad in (0, -2, 5000):
            with pytest.raises(ValueError, match=r"n must be in \[1, 1024\]"):
                scoring.set_num_threads(bad)
        with pytest.raises(TypeError, match="n must be an integer"):
            scoring.set_num_threads(2.0)
    finally:
        scoring.set_num_threads(n)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_compiled_module_says_how_to_build():
    res = _run(
        """
        import sys
        sys.modules["edgeanom._scoring"] = None  # simulate an unbuilt checkout
        try:
            import edgeanom.scoring
        except ImportError as e:
            print("MSG:", e)
        """
    )
    assert "MSG:" in res.stdout, res.stderr
    assert "pip install -e ." in res.stdout


def test_env_var_sets_default_threads():
    res = _run(
        "from edgeanom import scoring; print(scoring.get_num_threads(), scoring.build_info()['default_threads'])"
    )
    assert res.returncode == 0, res.stderr
    res3 = subprocess.run(
        [sys.executable, "-c", "from edgeanom import scoring; print(scoring.get_num_threads())"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**__import__("os").environ, "EDGEANOM_NUM_THREADS": "3"},
    )
    assert res3.stdout.strip() == "3", res3.stderr


def test_fork_after_threads_started_does_not_hang():
    res = _run(
        """
        import os
        import numpy as np
        from edgeanom import scoring
        scoring.set_num_threads(2)
        x = np.random.default_rng(0).random((64, 40000), dtype=np.float32)
        want = scoring.reconstruction_error(x, x * 0.5)  # starts the worker threads
        pid = os.fork()
        if pid == 0:
            ok = scoring.reconstruction_error(x, x * 0.5).tobytes() == want.tobytes()
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert "child 0" in res.stdout, res.stderr


def test_public_names():
    for name in scoring.__all__:
        assert hasattr(scoring, name)
    assert scoring.METRICS == ("mse", "mae", "sse", "rmse", "max")
