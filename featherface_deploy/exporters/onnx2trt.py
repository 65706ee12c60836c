"""ONNX → serialized TensorRT engine, on the machine that will run it (a Jetson, a GPU server).

Written against the TensorRT 8.6 / 10.x / 11.x Python API
(``Builder``, ``OnnxParser``, ``IBuilderConfig.set_memory_pool_limit``,
``create_optimization_profile``, ``create_timing_cache``,
``build_serialized_network``, ``IInt8EntropyCalibrator2``) and cuda-python.
**Never run on the project's CI machines** (TensorRT cannot be installed
there, no GPU); its tests carry the ``gpu`` marker. Version differences are
explicit (:class:`~featherface_deploy.trt.versions.TrtVersion`):

- 8.x: explicit batch is a network flag; INT8 is implicit, from
  :class:`EntropyCalibrator` (fed by the project's calibration set, reading and
  writing the legacy cache of :mod:`~featherface_deploy.trt.calib_cache`);
- 10.x: explicit batch is always on; INT8 is the Q/DQ graph
  (:mod:`~featherface_deploy.exporters.onnx2trt_int8`) with ``BuilderFlag.INT8``;
- 11.x: no ``BuilderFlag.FP16``/``INT8``, no calibrators: networks are strongly
  typed ("Migrating from TensorRT 10.x to 11.x"), so INT8 is the Q/DQ graph and
  FP16 is refused (it needs an FP16 ONNX).

The decode contract goes to the sidecar ``<model>.engine.json``, never into the engine bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from featherface_deploy.calibration.dataset import CalibrationSet
from featherface_deploy.contract import DecodeContract, atomic_write_bytes
from featherface_deploy.errors import ExportError, missing_backend
from featherface_deploy.exporters.common import ExportContext, ExportResult
from featherface_deploy.metadata.onnx import read_contract
from featherface_deploy.exporters.onnx2trt_recipe import RecipeOptions
from featherface_deploy.export_options import EngineOptions
from featherface_deploy.trt.calib_cache import version_code
from featherface_deploy.trt.versions import version_for_installed

try:
    import tensorrt as trt
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("tensorrt", "tensorrt") from error


def export(source: Path, out_path: Path, row, options: EngineOptions, context: ExportContext) -> ExportResult:
    """Builds the row's engine from its source ONNX (FP32, or Q/DQ INT8 for ``engine-int8``).

    Returns:
        The :class:`ExportResult`; the contract goes to the sidecar only (written by the pipeline).
    """
    context.log(f"  TensorRT {trt.__version__}: building a {row.precision} engine from {Path(source).name}")
    contract = build_engine(source, out_path, read_contract(source), row.precision, options)
    return ExportResult(Path(out_path), contract, {}, {"tensorrt": contract.extra["tensorrt"]})


class EntropyCalibrator(trt.IInt8EntropyCalibrator2 if hasattr(trt, "IInt8EntropyCalibrator2") else object):
    """TensorRT 8.x implicit-INT8 calibrator over a project calibration set, with the legacy cache.

    Args:
        calibration: Preprocessed inputs (N, 3, H, W) float32.
        cache_path: The legacy cache: read if present (calibration is skipped), written after.
    """

    def __init__(self, calibration: CalibrationSet, cache_path: Path) -> None:
        trt.IInt8EntropyCalibrator2.__init__(self)
        from featherface_deploy.trt.cuda import check, cudart

        self._cuda, self._cudart = check, cudart
        self._batches = iter(calibration.batches(1))
        self._cache_path = Path(cache_path)
        self._device = check(cudart.cudaMalloc(calibration.inputs[:1].nbytes))

    def get_batch_size(self) -> int:
        """One image per batch."""
        return 1

    def get_batch(self, names):
        """Copies the next image to the device; ``None`` when the set is exhausted."""
        batch = next(self._batches, None)
        if batch is None:
            return None
        batch = batch.copy(order="C")
        self._cuda(self._cudart.cudaMemcpy(self._device, batch.ctypes.data, batch.nbytes,
                                           self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
        return [int(self._device)]

    def read_calibration_cache(self):
        """The cache bytes if the file exists (TensorRT then skips calibration)."""
        return self._cache_path.read_bytes() if self._cache_path.is_file() else None

    def write_calibration_cache(self, cache) -> None:
        """Writes TensorRT's cache (the same text format as :mod:`~featherface_deploy.trt.calib_cache`)."""
        atomic_write_bytes(self._cache_path, bytes(cache))


def build_engine(onnx_path: str | Path, out_path: str | Path, contract: DecodeContract, precision: str,
                 options: EngineOptions = EngineOptions(), calibration: CalibrationSet | None = None,
                 calib_cache: Path | None = None) -> DecodeContract:
    """Parses the ONNX and writes the serialized engine; returns the engine's contract (for its sidecar).

    Raises:
        ExportError: Parser errors (one line each), a precision this TensorRT cannot build, or a failed build.
    """
    version = version_for_installed(trt.__version__)
    RecipeOptions(version, precision).validate()  # the same precision rules as the recipe
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if version.major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # default (and deprecated) from 10
    if version.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT {trt.__version__} cannot parse {onnx_path}:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace << 20)
    _set_precision(config, version, precision, calibration, calib_cache)
    _add_profile(builder, network, config, options.batch_range)
    if options.dla is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    timing = _timing_cache(config, options.timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} (see its log)")
    if options.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(timing.serialize()))
    out_path = Path(out_path)
    atomic_write_bytes(out_path, bytes(serialized))
    facts = {"version": trt.__version__, "version_code": version_code(version), "precision": precision,
             "dla_core": options.dla, "batch_range": list(options.batch_range)}
    return contract.replace(precision=precision, source_format="engine", extra={**contract.extra, "tensorrt": facts})


def _set_precision(config, version, precision: str, calibration, calib_cache) -> None:
    if precision == "fp16" and version.precision_flags:
        config.set_flag(trt.BuilderFlag.FP16)
    if precision != "int8" or not version.precision_flags:
        return  # 11.x: the Q/DQ graph alone sets INT8 (strongly typed)
    config.set_flag(trt.BuilderFlag.INT8)
    if version.int8 == "calibration-cache":
        if calibration is None or calib_cache is None:
            raise ExportError("INT8 on TensorRT 8.x needs the calibration set and a cache path")
        config.int8_calibrator = EntropyCalibrator(calibration, calib_cache)


def _add_profile(builder, network, config, batch_range: tuple[int, int, int]) -> None:
    tensor = network.get_input(0)
    shape = tuple(tensor.shape)
    if all(d > 0 for d in shape):
        return  # static: no profile needed
    if any(d < 0 for d in shape[1:]):
        raise ExportError("the engine builder takes a dynamic batch only; export the ONNX with a fixed --imgsz")
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, *[(b, *shape[1:]) for b in batch_range])
    config.add_optimization_profile(profile)


def _timing_cache(config, path: Path | None):
    data = Path(path).read_bytes() if path is not None and Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache
