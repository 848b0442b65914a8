"""Times the whole pipeline, stage by stage, for each backend x precision x batch (x threads).

Per iteration (one batch): decode/capture -> preprocess -> inference (H2D, compute, D2H) -> score.
Host stages use time.perf_counter_ns; GPU stages are the CUDA-event times the runner
publishes as `last_timings` (TensorRT, and torch on CUDA). Warm-up iterations
run for `warmup_s` and are discarded; then the loop runs for `duration_s`. Definitions in docs/bench.md.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from edgeanom.backends.registry import PRECISIONS, backend_names, get_backend, open_runner
from edgeanom.benchmarking import stats
from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError

BACKENDS = tuple(backend_names())
STAGES = ("decode", "preprocess", "h2d", "compute", "d2h", "infer", "score", "total")
MIN_ITERATIONS = 3


@dataclass(frozen=True)
class BenchConfig:
    backend: str
    precision: str
    batch: int
    threads: Optional[int] = None  # CPU threads of the inference runtime; None = its default

    @property
    def key(self) -> str:
        t = f"/t{self.threads}" if self.threads else ""
        return f"{self.backend}/{self.precision}/b{self.batch}{t}"

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "batch": self.batch,
            "threads": self.threads,
        }


@dataclass
class BenchPlan:
    bundle_dir: Path
    backends: Sequence[str] = ("all",)
    precisions: Sequence[str] = ("fp32",)
    batches: Sequence[int] = (1, 2, 4, 8, 16)
    threads: Sequence[Optional[int]] = (None,)
    warmup_s: float = 2.0
    duration_s: float = 10.0
    source: str = "synthetic"
    tegrastats_interval_ms: int = 100
    tegrastats_command: Optional[Sequence[str]] = None  # replaces `tegrastats --interval N` (tests)
    keep_samples: int = 5000  # end-to-end samples kept per configuration for CDF plots


@dataclass
class Skip:
    backend: str
    precision: Optional[str]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "reason": self.reason}


@dataclass
class StageSamples:
    """Per-iteration stage times in ms; a stage that does not apply stays empty (reported as null)."""

    values: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def add(self, stage: str, ms: Optional[float]) -> None:
        if ms is not None:
            self.values[stage].append(ms)


# --- availability and opening -----------------------------------------------------------------------
def backend_unavailable(backend: str, bundle: Bundle) -> Optional[str]:
    """Why a backend cannot run here (None when it can); cheap checks only, nothing is loaded."""
    if backend not in BACKENDS:
        return f"{backend}: unknown backend (choose from {', '.join(BACKENDS)})"
    return get_backend(backend).unavailable(bundle)


def precision_unavailable(backend: str, precision: str, bundle: Bundle) -> Optional[str]:
    """Precision/backend pairs that certainly cannot run; anything else is left to the runner."""
    if precision not in PRECISIONS:
        return f"{precision}: unknown precision (choose from {', '.join(PRECISIONS)})"
    return get_backend(backend).precision_unavailable(precision, bundle)


def open_backend(bundle: Bundle, config: BenchConfig) -> Any:
    """The runner for one configuration, opened with the settings `edgeanom run` uses (the production path)."""
    return open_runner(
        bundle,
        backend=config.backend,
        precision=config.precision,
        max_batch=config.batch,
        threads=config.threads or 0,
        reuse_outputs=True,
        spin_wait=False,
    )


# --- memory -------------------------------------------------------------------------------------------
def peak_rss_mb() -> Optional[float]:
    """Peak resident set size of this process so far (MB)."""
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024.0 if sys.platform != "darwin" else kb / (1024.0 * 1024.0)
    except (ImportError, OSError):
        return None


def current_rss_mb() -> Optional[float]:
    if importlib.util.find_spec("psutil") is None:
        return None
    import psutil

    return psutil.Process().memory_info().rss / (1024.0 * 1024.0)


def _torch_cuda() -> Any:
    """torch, if it is already loaded and has a CUDA device (never imported just for memory figures)."""
    torch = sys.modules.get("torch")
    try:
        return torch if torch is not None and torch.cuda.is_available() else None
    except Exception:
        return None


def reset_gpu_peak() -> None:
    torch = _torch_cuda()
    if torch is not None:
        torch.cuda.reset_peak_memory_stats()


def gpu_memory() -> Optional[dict[str, Any]]:
    """Peak GPU memory from the torch allocator, and device-wide use from NVML when pynvml is installed."""
    out: dict[str, Any] = {}
    torch = _torch_cuda()
    if torch is not None:
        out["torch_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / (1024.0 * 1024.0)
    if importlib.util.find_spec("pynvml") is not None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            out["device_used_mb"] = pynvml.nvmlDeviceGetMemoryInfo(handle).used / (1024.0 * 1024.0)
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return out or None


# --- one configuration --------------------------------------------------------------------------------
def measure_config(
    bundle: Bundle,
    runner: Any,
    config: BenchConfig,
    source: Any,
    warmup_s: float,
    duration_s: float,
    sampler: Any = None,
    keep_samples: int = 5000,
) -> dict[str, Any]:
    """Warm up, then time iterations for `duration_s`; returns the configuration's result dict."""
    from edgeanom.preprocess import Preprocessor
    from edgeanom.scorer import Scorer

    pre = Preprocessor(bundle)
    scorer = Scorer(bundle)

    def iteration(rec: Optional[StageSamples]) -> None:
        t0 = time.perf_counter_ns()
        raw, decode_ms = source.next_batch(config.batch)
        t1 = time.perf_counter_ns()
        x = pre(raw)
        t2 = time.perf_counter_ns()
        outputs = runner.infer(x)
        device_ms = _runner_timings(runner)  # CUDA-event stage times, from runners that stage on a GPU
        t3 = time.perf_counter_ns()
        scorer(x if scorer.needs_input(outputs) else None, outputs)
        t4 = time.perf_counter_ns()
        if rec is None:
            return
        infer_ms = (t3 - t2) / 1e6
        rec.add("decode", decode_ms)
        rec.add("preprocess", (t2 - t1) / 1e6)
        if device_ms is None:  # host runtime: no transfers, the whole call is compute
            rec.add("compute", infer_ms)
        else:
            for stage in ("h2d", "compute", "d2h"):
                rec.add(stage, device_ms.get(stage))
        rec.add("infer", infer_ms)
        rec.add("score", (t4 - t3) / 1e6)
        rec.add("total", (t4 - t0) / 1e6)

    iteration(None)  # first call: lazy initialisation, never timed
    deadline = time.perf_counter() + warmup_s
    while time.perf_counter() < deadline:
        iteration(None)

    reset_gpu_peak()
    rec = StageSamples()
    iterations = 0
    mono0 = time.monotonic()
    start = time.perf_counter()
    deadline = start + duration_s
    while iterations < MIN_ITERATIONS or time.perf_counter() < deadline:
        iteration(rec)
        iterations += 1
    wall_s = time.perf_counter() - start
    mono1 = time.monotonic()
    frames = iterations * config.batch
    return _result(
        bundle, runner, config, rec, iterations, frames, wall_s, sampler, (mono0, mono1), keep_samples
    )


def _runner_timings(runner: Any) -> Optional[dict[str, float]]:
    """A runner's own H2D/compute/D2H times (ms) for its last call, if it publishes them."""
    timings = getattr(runner, "last_timings", None)
    if not timings:
        return None
    out = {}
    for stage in ("h2d", "compute", "d2h"):
        v = timings.get(f"{stage}_ms", timings.get(stage))
        if v is not None:
            out[stage] = float(v)
    return out or None


def _result(
    bundle: Bundle,
    runner: Any,
    config: BenchConfig,
    rec: StageSamples,
    iterations: int,
    frames: int,
    wall_s: float,
    sampler: Any,
    window: tuple[float, float],
    keep_samples: int,
) -> dict[str, Any]:
    stage_stats = {s: stats.summarize(v) for s, v in rec.values.items()}
    v = rec.values
    has_device = bool(v["h2d"]) or bool(v["d2h"])
    if has_device:
        n = min(len(v["h2d"]), len(v["compute"]), len(v["d2h"]))
        latency_series = [v["h2d"][i] + v["compute"][i] + v["d2h"][i] for i in range(n)]
    else:
        latency_series = list(v["compute"])
    latency = stats.summarize(latency_series)
    end_to_end = stats.summarize(v["total"])
    stability = stats.stability(v["total"])
    warnings = [stability["warning"]] if stability["warning"] else []
    name = str(getattr(runner, "name", ""))
    if not has_device and any(tag in name.lower() for tag in ("cuda", "tensorrt")):
        warnings.append(
            f"{name} publishes no stage timings: compute includes its host<->device copies (timed on the host)"
        )
    power = None
    if sampler is not None:
        from edgeanom.benchmarking.tegrastats import summarize_power

        power = summarize_power(sampler.samples_between(*window), frames, wall_s)
        if power is None:
            warnings.append("power: no tegrastats sample during the run (run longer than the interval)")
    from edgeanom import environment

    total = v["total"]
    step = max(1, len(total) // keep_samples) if keep_samples > 0 else len(total) + 1
    return {
        "config": config.to_json(),
        "key": config.key,
        "runner": str(getattr(runner, "name", type(runner).__name__)),
        "runner_selection": getattr(runner, "selection", None),
        "precision_used": str(getattr(runner, "precision", config.precision)),
        "engine_cache_key": _engine_key(runner),
        "device_timing": "cuda-events" if has_device else "host",
        "iterations": iterations,
        "frames": frames,
        "wall_s": wall_s,
        "throughput_fps": stats.throughput(frames, wall_s),
        "latency_ms": latency,
        "end_to_end_ms": end_to_end,
        "per_frame_ms": {
            "latency": stats.per_frame(latency, config.batch),
            "end_to_end": stats.per_frame(end_to_end, config.batch),
        },
        "stages_ms": stage_stats,
        "stability": stability,
        "memory": {"peak_rss_mb": peak_rss_mb(), "rss_mb": current_rss_mb(), "gpu": gpu_memory()},
        "power": power,
        "temperatures_c": environment.temperatures(),
        "warnings": warnings,
        "samples_ms": {"end_to_end": total[::step][:keep_samples] if keep_samples > 0 else []},
    }


def _engine_key(runner: Any) -> Optional[str]:
    for attr in ("engine_cache_key", "cache_key", "engine_key"):
        value = getattr(runner, attr, None)
        if value:
            return str(value)
    return None


# --- the whole plan -----------------------------------------------------------------------------------
def expand_backends(requested: Sequence[str]) -> list[str]:
    if "all" in requested:
        return list(BACKENDS)
    return list(dict.fromkeys(requested))


def run_bench(
    plan: BenchPlan,
    on_result: Optional[Callable[[dict[str, Any]], None]] = None,
    on_skip: Optional[Callable[[Skip], None]] = None,
    on_start: Optional[Callable[[BenchConfig], None]] = None,
) -> dict[str, Any]:
    """Run every available configuration of the plan; returns the report dict (see report.py)."""
    from edgeanom import environment
    from edgeanom.benchmarking import report
    from edgeanom.benchmarking.sources import open_source
    from edgeanom.benchmarking.tegrastats import TegrastatsSampler
    from edgeanom.bundle import load_bundle

    bundle = load_bundle(plan.bundle_dir)
    load_average = report.current_load_average()  # before we add our own load
    results: list[dict[str, Any]] = []
    skipped: list[Skip] = []

    def skip(backend: str, precision: Optional[str], reason: str) -> None:
        item = Skip(backend, precision, reason)
        skipped.append(item)
        if on_skip:
            on_skip(item)

    source = open_source(plan.source, bundle)
    sampler = None
    interrupted = False
    try:
        if plan.tegrastats_command or TegrastatsSampler.available():
            sampler = TegrastatsSampler(plan.tegrastats_interval_ms, plan.tegrastats_command).start()
        _run_all(plan, bundle, source, sampler, results, skip, on_result, on_start)
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: keep and report what was measured so far
        interrupted = True
    finally:
        source.close()
        if sampler is not None:
            sampler.stop()
    env = environment.collect(import_torch="torch" in sys.modules)
    doc = report.build_report(
        plan, bundle, env, results, [s.to_json() for s in skipped], source.name, load_average
    )
    if interrupted:
        doc["interrupted"] = True
        doc["warnings"].append(f"interrupted after {len(results)} configuration(s); the rest did not run")
    else:  # both CPU runtimes timed: `run --backend auto` uses the faster one on this machine from now on
        from edgeanom.backends.cpu_choice import record_choice

        doc["cpu_backend"] = record_choice(bundle, results)
    return doc


def _run_all(
    plan: BenchPlan,
    bundle: Bundle,
    source: Any,
    sampler: Any,
    results: list[dict[str, Any]],
    skip: Callable[[str, Optional[str], str], None],
    on_result: Optional[Callable[[dict[str, Any]], None]],
    on_start: Optional[Callable[[BenchConfig], None]],
) -> None:
    explicit = "all" not in plan.backends
    for backend in expand_backends(plan.backends):
        reason = backend_unavailable(backend, bundle)
        if reason:
            if explicit and backend not in BACKENDS:
                raise EdgeanomError(reason)
            skip(backend, None, reason)
            continue
        for precision in plan.precisions:
            reason = precision_unavailable(backend, precision, bundle)
            if reason:
                skip(backend, precision, reason)
                continue
            threads_list = plan.threads if backend != "tensorrt" else (None,)
            for threads in threads_list:
                _run_batches(
                    plan,
                    bundle,
                    backend,
                    precision,
                    threads,
                    source,
                    sampler,
                    results,
                    skip,
                    on_result,
                    on_start,
                )


def _run_batches(
    plan: BenchPlan,
    bundle: Bundle,
    backend: str,
    precision: str,
    threads: Optional[int],
    source: Any,
    sampler: Any,
    results: list[dict[str, Any]],
    skip: Callable[[str, Optional[str], str], None],
    on_result: Optional[Callable[[dict[str, Any]], None]],
    on_start: Optional[Callable[[BenchConfig], None]],
) -> None:
    """One runner per (backend, precision, threads), opened for the largest batch, reused for all."""
    largest = BenchConfig(backend, precision, max(plan.batches), threads)
    try:
        runner = open_backend(bundle, largest)
    except (EdgeanomError, ImportError) as exc:
        skip(backend, precision, str(exc) if str(exc).startswith(backend) else f"{backend}: {exc}")
        return
    except Exception as exc:  # a runtime's own error type (engine build failure, provider error)
        skip(backend, precision, f"{backend}: failed to open ({type(exc).__name__}: {exc})")
        return
    try:
        for batch in plan.batches:
            config = BenchConfig(backend, precision, batch, threads)
            if on_start:
                on_start(config)
            try:
                result = measure_config(
                    bundle, runner, config, source, plan.warmup_s, plan.duration_s, sampler, plan.keep_samples
                )
            except EdgeanomError:
                raise
            except Exception as exc:
                skip(backend, precision, f"{config.key}: failed ({type(exc).__name__}: {exc})")
                continue
            results.append(result)
            if on_result:
                on_result(result)
    finally:
        close = getattr(runner, "close", None)
        if close:
            close()
