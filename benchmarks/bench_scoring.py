"""Throughput of edgeanom's C++ reconstruction-error kernel vs NumPy and a memory-bandwidth probe.

For each case, on the same arrays x and x_hat:

- ours:   ``edgeanom.scoring.reconstruction_error(x, x_hat, "mse", out=out)``
- numpy:  ``((x - y) ** 2).mean(axis=1)`` on the flattened (N, D) arrays
- probe:  BLAS matrix-vector products ``x @ ones`` and ``y @ ones`` (OpenBLAS), which read the same
          bytes; for float16 the same buffers are viewed as float32 (N, D/2), since BLAS has no float16
          gemv. It runs with all BLAS threads and with one thread; per round the faster counts (on a
          busy machine OpenBLAS's spinning threads can lose to one thread). Its bandwidth is what
          "reading these bytes" costs on this machine.

Throughput = (bytes of x + bytes of x_hat) / time. Each round times every contender of every case
one after the other (interleaved, so background load hits them alike), each after one untimed call
of its own (warm caches and threads for every contender); we report the best and the median round.
Batch-1 call overhead = time(ours) - bytes / probe_bandwidth, in microseconds.

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, when set in the environment (see the machine notes), pin
OpenBLAS to an older kernel and would slow only the probe; the script re-executes itself once with
both unset (our kernel and NumPy's element-wise code do not use BLAS) and records what it did.

Run:  python benchmarks/bench_scoring.py [--rounds 200] [--out benchmarks/results/scoring.json]

On a shared machine the medians mostly measure the other processes; the best rounds are what the
targets are judged on (all contenders get the same chances). ``ours_1_thread`` (our kernel pinned to
one thread) is reported too: it is the number least disturbed by load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_REEXEC_FLAG = "EDGEANOM_BENCH_REEXEC"


def _reexec_without_blas_pins() -> None:
    pinned = {k: os.environ[k] for k in _BLAS_VARS if k in os.environ}
    if not pinned or os.environ.get(_REEXEC_FLAG):
        return
    env = {k: v for k, v in os.environ.items() if k not in _BLAS_VARS}
    env[_REEXEC_FLAG] = json.dumps(pinned)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


_reexec_without_blas_pins()

from edgeanom import scoring  # noqa: E402  (after the optional re-exec)

CASES = [
    # name, shape, dtype
    ("256x3x128x128 float32", (256, 3, 128, 128), np.float32),
    ("256x3x128x128 float16", (256, 3, 128, 128), np.float16),
    ("4096x87 float32", (4096, 87), np.float32),
    ("1x3x256x256 float32 (batch 1)", (1, 3, 256, 256), np.float32),
]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_info() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        {k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "threading_layer")}
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]


def _blas_limiter() -> Callable[[], Any]:
    """A context-manager factory limiting BLAS to one thread (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext
    return lambda: threadpool_limits(limits=1, user_api="blas")


def _loadavg() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def _time_call(fn: Callable[[], Any], inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


class Case:
    """One shape/dtype: its arrays, the contenders and their timings."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        rng = np.random.default_rng(0)
        self.name, self.shape, self.dtype = name, shape, dtype
        x = rng.random(shape, dtype=np.float32).astype(dtype)
        y = (x.astype(np.float32) + rng.standard_normal(shape, dtype=np.float32) * 0.1).astype(dtype)
        n = shape[0]
        xf, yf = x.reshape(n, -1), y.reshape(n, -1)
        # the probe reads the same bytes; float16 buffers are viewed as float32 for BLAS
        xp = xf.view(np.float32) if dtype == np.float16 else xf
        yp = yf.view(np.float32) if dtype == np.float16 else yf
        ones = np.ones(xp.shape[1], np.float32)
        out = np.empty(n, np.float32)
        self.nbytes = x.nbytes + y.nbytes
        blas_one_thread = _blas_limiter()

        def ours() -> Any:
            return scoring.reconstruction_error(x, y, "mse", out=out)

        def numpy_ref() -> Any:
            return ((xf - yf) ** 2).mean(axis=1)

        def probe() -> Any:
            return xp @ ones, yp @ ones

        def probe_1t() -> Any:
            with blas_one_thread():
                return xp @ ones, yp @ ones

        # correctness check before timing
        want = ((xf.astype(np.float64) - yf.astype(np.float64)) ** 2).mean(axis=1)
        np.testing.assert_allclose(ours(), want, rtol=1e-4)

        self.fns: dict[str, Callable[[], Any]] = {
            "ours": ours,
            "probe_all_threads": probe,
            "probe_1_thread": probe_1t,
            "numpy": numpy_ref,
        }
        # calls per timed sample: >= ~2 ms per sample, so timer resolution does not matter
        self.calls = {}
        for key, fn in self.fns.items():
            for _ in range(3):  # warm-up: threads started, pages touched
                fn()
            t = max(_time_call(fn, 1), 1e-7)
            self.calls[key] = max(1, min(200 if key == "numpy" else 2000, int(2e-3 / t)))
        self.calls["ours_1_thread"] = self.calls["ours"]
        self.times: dict[str, list[float]] = {key: [] for key in [*self.fns, "ours_1_thread"]}

    def round(self, keys: list[str]) -> None:
        for key in keys:
            fn = self.fns["ours" if key == "ours_1_thread" else key]
            # One untimed call first: every contender is timed with its own working set as warm as
            # it gets (caches, BLAS/our threads awake), whatever ran before it.
            fn()
            self.times[key].append(_time_call(fn, self.calls[key]))

    def result(self) -> dict[str, Any]:
        times = dict(self.times)
        # The probe is the better of BLAS with all threads and with one thread: on a busy machine
        # OpenBLAS's spinning threads can lose to a single thread. Taking the max is the stricter bar.
        times["probe"] = [min(a, b) for a, b in zip(times["probe_all_threads"], times["probe_1_thread"])]
        calls = dict(self.calls, probe=max(self.calls["probe_all_threads"], self.calls["probe_1_thread"]))
        nbytes = self.nbytes
        res: dict[str, Any] = {
            "case": self.name,
            "shape": list(self.shape),
            "dtype": np.dtype(self.dtype).name,
            "bytes": nbytes,
        }
        for key, ts in times.items():
            best, med = min(ts), statistics.median(ts)
            res[key] = {
                "best_s": best,
                "median_s": med,
                "best_gbps": nbytes / best / 1e9,
                "median_gbps": nbytes / med / 1e9,
                "samples": len(ts),
                "calls_per_sample": calls[key],
            }
        res["ours_over_numpy"] = res["numpy"]["best_s"] / res["ours"]["best_s"]
        res["ours_over_probe"] = res["ours"]["best_gbps"] / res["probe"]["best_gbps"]
        res["ours_over_numpy_median"] = res["numpy"]["median_s"] / res["ours"]["median_s"]
        res["ours_over_probe_median"] = res["ours"]["median_gbps"] / res["probe"]["median_gbps"]
        if self.shape[0] == 1:
            # overhead = time - bytes / probe bandwidth (= the probe's time on the same bytes)
            res["call_overhead_us"] = (res["ours"]["best_s"] - res["probe"]["best_s"]) * 1e6
            res["call_overhead_us_median"] = (res["ours"]["median_s"] - res["probe"]["median_s"]) * 1e6
            res["ours_best_us"] = res["ours"]["best_s"] * 1e6
        return res


def run_cases(rounds: int, numpy_rounds: int) -> list[dict[str, Any]]:
    cases = [Case(name, shape, dt) for name, shape, dt in CASES]
    # Rounds go over all cases in turn, so every case samples the whole run (background load on a
    # shared machine comes and goes over seconds).
    every = max(1, rounds // max(1, numpy_rounds))
    for r in range(rounds):
        for case in cases:
            keys = ["ours", "probe_all_threads", "probe_1_thread"] + (["numpy"] if r % every == 0 else [])
            case.round(keys)
    # Our kernel on one thread, in a phase of its own: changing the pool size restarts its workers,
    # and freshly started threads need a while before the OS spreads them over the cores.
    nthreads = scoring.get_num_threads()
    scoring.set_num_threads(1)
    try:
        for _ in range(max(1, rounds // 2)):
            for case in cases:
                case.round(["ours_1_thread"])
    finally:
        scoring.set_num_threads(nthreads)
    return [case.result() for case in cases]


def tiny_call_us() -> float:
    """Fixed cost of one call (argument checks, dispatch, result) on a (1, 8) float32 input."""
    x = np.ones((1, 8), np.float32)
    out = np.empty(1, np.float32)
    best = min(
        _time_call(lambda: scoring.reconstruction_error(x, x, "mse", out=out), 2000) for _ in range(20)
    )
    return best * 1e6


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["case"]: r for r in results}
    big32, big16 = by[CASES[0][0]], by[CASES[1][0]]
    b1 = by[CASES[3][0]]
    targets = {
        "large_float32_vs_numpy >= 4x": big32["ours_over_numpy"],
        "large_float32_vs_probe >= 0.70": big32["ours_over_probe"],
        "float16_vs_float32_per_byte >= 1.0": big16["ours"]["best_gbps"] / big32["ours"]["best_gbps"],
        "batch1_overhead_us < 10": b1["call_overhead_us"],
    }
    passed = {
        "large_float32_vs_numpy >= 4x": targets["large_float32_vs_numpy >= 4x"] >= 4.0,
        "large_float32_vs_probe >= 0.70": targets["large_float32_vs_probe >= 0.70"] >= 0.70,
        "float16_vs_float32_per_byte >= 1.0": targets["float16_vs_float32_per_byte >= 1.0"] >= 1.0,
        "batch1_overhead_us < 10": targets["batch1_overhead_us < 10"] < 10.0,
    }
    info = {
        "float16_vs_float32_per_byte_1_thread": big16["ours_1_thread"]["best_gbps"]
        / big32["ours_1_thread"]["best_gbps"],
        "large_float32_1_thread_vs_probe": big32["ours_1_thread"]["best_gbps"] / big32["probe"]["best_gbps"],
    }
    return {"values": targets, "passed": passed, "info": info}


def print_table(results: list[dict[str, Any]], summary: dict[str, Any], load: Any) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain fallback
        for r in results:
            print(json.dumps(r))
        print(json.dumps(summary))
        return
    table = Table(title="reconstruction_error (mse): GB/s of x + x_hat read (best / median of rounds)")
    cols = (
        "case",
        "ours GB/s",
        "ours 1 thr",
        "numpy GB/s",
        "probe GB/s",
        "ours/numpy",
        "ours/probe",
        "batch-1 overhead",
    )
    for col in cols:
        table.add_column(col, justify="right" if col != "case" else "left")
    for r in results:
        table.add_row(
            r["case"],
            f"{r['ours']['best_gbps']:.1f} / {r['ours']['median_gbps']:.1f}",
            f"{r['ours_1_thread']['best_gbps']:.1f} / {r['ours_1_thread']['median_gbps']:.1f}",
            f"{r['numpy']['best_gbps']:.2f} / {r['numpy']['median_gbps']:.2f}",
            f"{r['probe']['best_gbps']:.1f} / {r['probe']['median_gbps']:.1f}",
            f"{r['ours_over_numpy']:.1f}x",
            f"{r['ours_over_probe']:.2f}",
            f"{r['call_overhead_us']:.1f} us ({r['ours_best_us']:.1f} us/call)"
            if "call_overhead_us" in r
            else "",
        )
    console = Console(width=140)
    console.print(table)
    console.print(f"load average (1, 5, 15 min) at the end: {load}")
    console.print(f"fixed cost of one call on a (1, 8) input: {summary['info']['tiny_call_us']:.2f} us")
    t2 = Table(title="targets (best rounds)")
    t2.add_column("target")
    t2.add_column("value", justify="right")
    t2.add_column("met")
    for k, v in summary["values"].items():
        t2.add_row(k, f"{v:.2f}", "yes" if summary["passed"][k] else "NO")
    console.print(t2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200, help="timed rounds per case (default 200)")
    ap.add_argument("--numpy-rounds", type=int, default=8, help="rounds with the (slow) NumPy baseline")
    ap.add_argument("--threads", type=int, default=None, help="scoring threads (default: all CPUs)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scoring.json"))
    args = ap.parse_args()
    if args.threads:
        scoring.set_num_threads(args.threads)

    load_before = _loadavg()
    t0 = time.time()
    results = run_cases(args.rounds, args.numpy_rounds)
    summary = summarize(results)
    summary["info"]["tiny_call_us"] = tiny_call_us()
    reexec = os.environ.get(_REEXEC_FLAG)
    doc = {
        "benchmark": "reconstruction_error mse vs numpy vs BLAS gemv bandwidth probe",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": round(time.time() - t0, 1),
        "machine": {
            "cpu_model": _cpu_model(),
            "cpus_available": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scoring_threads": scoring.get_num_threads(),
            "blas": _blas_info(),
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
        },
        "openblas_env": {
            "unset_for_run": json.loads(reexec) if reexec else {},
            "note": "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE were unset (re-exec) so the probe uses the CPU's "
            "native OpenBLAS kernel; only the probe uses BLAS."
            if reexec
            else "neither OPENBLAS_CORETYPE nor OPENBLAS_L2_SIZE was set",
        },
        "build_info": scoring.build_info(),
        "method": "interleaved rounds over all cases and contenders, each timed after one untimed warm "
        "call; best and median of rounds; GB/s = (x.nbytes + x_hat.nbytes) / time; ratios use the "
        "best rounds; probe = faster of BLAS gemv with all threads / one thread per round",
        "results": results,
        "targets": summary,
    }
    print_table(results, summary, doc["machine"]["loadavg_after"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
