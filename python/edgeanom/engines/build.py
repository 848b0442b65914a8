"""Build TensorRT engines from the bundle's ONNX graphs (TensorRT 10 and 11 Python API) into its engine cache.

- TensorRT 10: FP32 graph; `BuilderFlag.FP16` for FP16, `BuilderFlag.INT8` with an entropy calibrator fed from
  calibration data for INT8. The fused score head (layers named `score_head/...`) is pinned to FP32.
- TensorRT 8.5/8.6 (JetPack 5 / 6.0) builds like TensorRT 10, with an explicit-batch network.
- TensorRT 11 removed the precision flags: the network is strongly typed, so FP16 is built from the FP16 ONNX
  (whose score head is FP32 already). INT8 would need an explicitly quantized (Q/DQ) graph: not supported yet.
- One optimisation profile: batch 1 (min), a typical batch (opt) and `max_batch` (max). The builder's timing
  cache is persisted next to the engines (one per device), so rebuilds after a graph change are fast.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgeanom.engines.cache import (
    DeviceInfo,
    EngineCache,
    EngineKey,
    Profile,
    sha256_file,
    timing_cache_path,
)
from edgeanom.engines.cuda import INSTALL_HINT, cuda_api, import_tensorrt, tensorrt_major
from edgeanom.errors import EdgeanomError
from edgeanom.fileio import atomic_write

HEAD_PREFIX = "score_head/"  # names the fused score head's layers (export.fused builds them), kept FP32

if TYPE_CHECKING:
    from edgeanom.bundle import Bundle

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8
DEFAULT_WORKSPACE_MB = 1024
CALIB_BATCH = 8
NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
INT8_TRT11 = (
    "TensorRT 11 removed INT8 calibration: INT8 needs an explicitly quantized (Q/DQ) ONNX, which edgeanom "
    "does not produce yet; use --fp16"
)


def tensorrt_status() -> tuple[bool, str]:
    """(can build engines here, why not / which TensorRT). Never raises."""
    try:
        trt = import_tensorrt()
    except EdgeanomError:
        return False, f"TensorRT is not installed ({INSTALL_HINT})"
    try:
        gpu, cc = cuda_api().device()
    except EdgeanomError as exc:
        return False, f"TensorRT {trt.__version__} is installed but there is no usable CUDA device ({exc})"
    except Exception as exc:  # driver libraries missing or broken
        return False, f"TensorRT {trt.__version__} is installed but CUDA is not usable ({exc})"
    return True, f"TensorRT {trt.__version__} on {gpu} (sm {cc})"


def jetson_release(path: Path = NV_TEGRA_RELEASE) -> tuple[Optional[str], Optional[str]]:
    """(L4T release, JetPack release) on a Jetson, (None, None) elsewhere."""
    from edgeanom.jetson import parse_nv_tegra_release

    try:
        info = parse_nv_tegra_release(path.read_text(errors="replace"))
    except OSError:
        return None, None
    return (info["l4t"], info.get("jetpack")) if info else (None, None)


def detect_device() -> DeviceInfo:
    """This machine's TensorRT version, GPU and Jetson release: the device half of the engine cache key."""
    trt = import_tensorrt()
    gpu, cc = cuda_api().device()
    l4t, jetpack = jetson_release()
    return DeviceInfo(tensorrt=str(trt.__version__), gpu=gpu, compute_capability=cc, l4t=l4t, jetpack=jetpack)


@dataclass
class BuildRequest:
    onnx_path: Path
    precision: str  # fp32 | fp16 | int8
    input_name: str
    profile: Profile
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    timing_cache: Optional[Path] = None
    calib_data: Optional[np.ndarray] = None  # preprocessed model inputs, INT8 only
    calib_cache: Optional[Path] = None  # INT8 scales: read when present, written after calibration


def onnx_for_precision(bundle: Bundle, precision: str, trt_major: int) -> Path:
    """The graph an engine of this precision is built from (TensorRT 11 FP16 needs the FP16 ONNX)."""
    if precision == "fp16" and trt_major >= 11:
        name = bundle.onnx.get("fp16_file")
        if not name or not (bundle.path / name).is_file():
            raise EdgeanomError(
                f"bundle {bundle.path}: TensorRT {trt_major} builds FP16 engines from the FP16 ONNX, which is "
                f"missing; create it with: edgeanom export --model {bundle.path} --fp16"
            )
        return bundle.path / name
    if precision == "int8" and trt_major >= 11:
        raise EdgeanomError(INT8_TRT11)
    return bundle.onnx_path


def build_engine(req: BuildRequest) -> tuple[bytes, dict[str, Any]]:
    """Serialized engine bytes and facts for the sidecar. Parser errors name the ONNX nodes TensorRT rejects."""
    trt = import_tensorrt()
    major = tensorrt_major(trt)
    if req.precision not in ("fp32", "fp16", "int8"):
        raise EdgeanomError(f"precision must be fp32, fp16 or int8, got {req.precision!r}")
    if req.precision == "int8" and major >= 11:
        raise EdgeanomError(INT8_TRT11)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 11 networks are always strongly typed (the flag is accepted and ignored); TensorRT 10 builds
    # weakly typed networks so the FP16/INT8 flags can pick precisions per layer; TensorRT 8.5/8.6 (JetPack 5,
    # 6.0) still needs the explicit-batch flag.
    if major >= 11:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif major >= 10:
        flags = 0
    else:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(req.onnx_path)):
        messages = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EdgeanomError(
            f"TensorRT {trt.__version__} cannot parse {req.onnx_path}: " + " | ".join(messages)
        )
    if network.num_inputs != 1 or network.get_input(0).name != req.input_name:
        names = [network.get_input(i).name for i in range(network.num_inputs)]
        raise EdgeanomError(f"{req.onnx_path}: expected one input '{req.input_name}', TensorRT sees {names}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(req.workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(req.input_name, req.profile.min, req.profile.opt, req.profile.max)
    config.add_optimization_profile(profile)
    cache = _load_timing_cache(config, req.timing_cache)

    pinned = 0
    calibrator = None
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if req.precision == "fp32" and tf32 is not None:
        config.clear_flag(tf32)  # "fp32" means FP32: TF32 tensor cores round inputs to 10-bit mantissas
    if major < 11 and req.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = _pin_head_fp32(trt, network)
        if pinned:
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    if req.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = _make_calibrator(trt, req)
        config.int8_calibrator = calibrator
        calib_shape = (CALIB_BATCH, *req.profile.max[1:])
        calib_profile = builder.create_optimization_profile()
        calib_profile.set_shape(req.input_name, calib_shape, calib_shape, calib_shape)
        config.set_calibration_profile(calib_profile)

    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if calibrator is not None:
        calibrator.release()
    if plan is None:
        raise EdgeanomError(
            f"TensorRT {trt.__version__} could not build a {req.precision} engine from {req.onnx_path} "
            "(see TensorRT's messages above; a larger --workspace may help)"
        )
    if req.timing_cache is not None and cache is not None:
        blob = bytes(memoryview(config.get_timing_cache().serialize()))
        atomic_write(req.timing_cache, lambda fh: fh.write(blob))
    extra = {
        "onnx_file": req.onnx_path.name,
        "build_seconds": round(seconds, 2),
        "strongly_typed": major >= 11,
        "fp32_pinned_layers": pinned,
        "workspace_mb": int(req.workspace_mb),
    }
    return bytes(memoryview(plan)), extra


def _parser_error(err: Any) -> str:
    """One line per ONNX parser error: node, operator and TensorRT's description."""
    try:
        return f"node {err.node()} '{err.node_name()}' ({err.node_operator()}): {err.desc()}"
    except AttributeError:  # older bindings only format the whole error
        return str(err).strip()


def _load_timing_cache(config: Any, path: Optional[Path]) -> Any:
    """Attach the persisted timing cache (an unreadable or foreign one is replaced by an empty cache)."""
    blob = b""
    if path is not None and path.is_file():
        blob = path.read_bytes()
    cache = config.create_timing_cache(blob)
    if cache is None and blob:
        log.info("timing cache %s is not usable by this TensorRT; starting a new one", path)
        cache = config.create_timing_cache(b"")
    if cache is not None:
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _pin_head_fp32(trt: Any, network: Any) -> int:
    """Ask for FP32 in the fused score head's layers (TensorRT 10 with FP16/INT8 enabled)."""
    floating = (trt.float32, trt.float16)
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if HEAD_PREFIX not in layer.name:
            continue
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outputs or any(o.dtype not in floating for o in outputs):
            continue  # shape, boolean and constant layers keep their own types
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        count += 1
    return count


def _make_calibrator(trt: Any, req: BuildRequest) -> Any:
    """An IInt8EntropyCalibrator2 fed from `req.calib_data` (or only its cache file, when that exists)."""
    cache_path = req.calib_cache
    has_cache = cache_path is not None and cache_path.is_file()
    if req.calib_data is None and not has_cache:
        raise EdgeanomError(
            "INT8 needs calibration data: run `edgeanom export --model BUNDLE --engine --int8 --calib-data PATH` "
            "(a few hundred normal samples; the calibration is cached in the bundle for later builds)"
        )
    data = None if req.calib_data is None else np.ascontiguousarray(req.calib_data, dtype=np.float32)
    if data is not None and len(data) < CALIB_BATCH:
        raise EdgeanomError(
            f"--calib-data has {len(data)} samples; INT8 calibration needs at least {CALIB_BATCH}"
        )
    cuda = cuda_api()

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            shape = (CALIB_BATCH, *req.profile.max[1:])
            self.host, self.host_ptr = cuda.pinned(shape, np.dtype(np.float32))
            self.device = cuda.malloc(self.host.nbytes)
            self.stream = cuda.stream()

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks: the batch is in the calibration profile's shape

        def get_batch(self, names: list[str]) -> Optional[list[int]]:
            if data is None or self.index + CALIB_BATCH > len(data):
                return None
            np.copyto(self.host, data[self.index : self.index + CALIB_BATCH])
            self.index += CALIB_BATCH
            cuda.htod(self.device, self.host_ptr, self.host.nbytes, self.stream)
            cuda.synchronize(self.stream)
            return [self.device]

        def read_calibration_cache(self) -> Optional[bytes]:
            return cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_path is not None:
                blob = bytes(memoryview(cache))
                atomic_write(cache_path, lambda fh: fh.write(blob))

        def release(self) -> None:
            cuda.free(self.device)
            cuda.free_pinned(self.host_ptr)
            cuda.destroy_stream(self.stream)

    return Calibrator()


def calibration_cache_name(onnx_sha: str) -> str:
    """The INT8 calibration cache of one ONNX graph, the same name for the Python build and the trtexec recipe."""
    return f"calibration-{onnx_sha[:16]}.cache"


def ensure_engine(
    bundle: Bundle,
    precision: str = "fp32",
    max_batch: Optional[int] = None,
    opt_batch: Optional[int] = None,
    workspace_mb: Optional[int] = None,
    calib_data: Optional[np.ndarray] = None,
    discard: Optional[Path] = None,
    exact_profile: bool = False,
) -> tuple[Path, bool]:
    """The bundle's engine for this device and precision: cached, or built now and recorded in bundle.json.

    `max_batch` is the largest batch the caller will send. By default any cached engine for this device,
    precision and graph that accepts it is used; a new one is built for exactly that batch (or
    `DEFAULT_MAX_BATCH`). `exact_profile` (export with --max-batch / --opt-batch) wants that profile only.
    `discard` removes an engine TensorRT refused to load first. Returns (plan path, whether it was built now).
    """
    trt = import_tensorrt()
    device = detect_device()
    cache = EngineCache.for_bundle(bundle.path)
    if discard is not None:
        cache.remove(Path(discard).name)
    onnx_path = onnx_for_precision(bundle, precision, tensorrt_major(trt))
    input_name = str(bundle.onnx.get("input", "input"))
    onnx_sha = sha256_file(onnx_path)
    batch = int(max_batch or DEFAULT_MAX_BATCH)
    if exact_profile:
        profile = Profile.for_batch(bundle.input_shape, batch, opt_batch)
    else:
        profile = Profile.for_batch(bundle.input_shape, batch, opt_batch or (batch if max_batch else None))
        found = cache.lookup(EngineKey(device, precision, input_name, profile, onnx_sha), any_profile=True)
        if found is not None:
            return found, False
    key = EngineKey(device, precision, input_name, profile, onnx_sha)
    request = BuildRequest(
        onnx_path=onnx_path,
        precision=precision,
        input_name=input_name,
        profile=profile,
        workspace_mb=workspace_mb or DEFAULT_WORKSPACE_MB,
        timing_cache=timing_cache_path(cache.root, device),
        calib_data=calib_data,
        calib_cache=cache.root / calibration_cache_name(onnx_sha) if precision == "int8" else None,
    )
    path, built = cache.get_or_build(key, lambda: build_engine(request))
    if built:
        bundle.meta["engines"] = cache.bundle_records()
        bundle.save()
    return path, built
