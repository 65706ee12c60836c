"""Which artifacts ``compare`` can build, how, and where they are cached.

An :class:`ArtifactSpec` names a format row of :data:`featherface_deploy.formats.FORMATS`
(which runtime opens the file) plus a precision and the builder that writes it
from its source (the checkpoint, or another artifact: ``onnx-int8`` is built
from ``onnx``). A new backend plugs in by adding one spec here and one row to
the format table; the harness itself does not change.

Built files are cached in a folder (``compare``: ``<out>/artifacts/``) by the checkpoint's content
hash and the build settings, so a second ``compare`` re-exports nothing.
Exporters (and torch) are imported only when something has to be built.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from featherface_deploy.contract import sidecar_path
from featherface_deploy.errors import ExportError, FeatherFaceError
from featherface_deploy.formats import FORMATS, get_format, resolve
from featherface_deploy.harness.latency import open_for_timing
from featherface_deploy.runtimes.base import Runtime

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildSettings:
    """What every builder may need.

    Attributes:
        imgsz: Export input (height, width).
        calibration_dir: Folder of calibration photos (INT8), or ``None``.
        parity_images: Images for the exporters' own parity checks.
        log: Progress lines.
        scratch: Intermediate results builders share within one run (e.g. the TFLite FP32
            conversion that FP16 and INT8 reuse).
    """

    imgsz: tuple[int, int] = (640, 640)
    calibration_dir: Path | None = None
    parity_images: Sequence[Path] = ()
    log: Log = field(default=lambda message: None, compare=False)
    scratch: dict = field(default_factory=dict, compare=False)

    def cache_key(self) -> dict:
        """The settings that change the built file (hashed into its name)."""
        return {"imgsz": list(self.imgsz),
                "calibration": str(self.calibration_dir) if self.calibration_dir else None}


@dataclass(frozen=True)
class ArtifactSpec:
    """One artifact of the comparison.

    Attributes:
        name: CLI name (``onnx-int8``).
        format: Row of the format table whose runtime opens it.
        precision: ``fp32``, ``fp16`` or ``int8``.
        source: Spec whose artifact is the builder's input; ``None`` = the checkpoint.
        builder: ``module:function`` taking (source path, output path, :class:`BuildSettings`, precision);
            ``None`` = the source is used as it is (the PyTorch reference).
    """

    name: str
    format: str
    precision: str
    source: str | None = None
    builder: str | None = None

    @property
    def suffix(self) -> str:
        """File suffix of the built artifact."""
        return get_format(self.format).suffixes[0]


_HERE = "featherface_deploy.harness.artifacts"
SPECS: tuple[ArtifactSpec, ...] = (
    ArtifactSpec("torch", "torch", "fp32"),
    ArtifactSpec("onnx", "onnx", "fp32", builder=f"{_HERE}:build_onnx"),
    ArtifactSpec("onnx-int8", "onnx", "int8", source="onnx", builder=f"{_HERE}:build_onnx_int8"),
    ArtifactSpec("tflite", "tflite", "fp32", builder=f"{_HERE}:build_tflite"),
    ArtifactSpec("tflite-fp16", "tflite", "fp16", builder=f"{_HERE}:build_tflite"),
    ArtifactSpec("tflite-int8", "tflite", "int8", builder=f"{_HERE}:build_tflite"),
)
REFERENCE = "torch"


def spec_names() -> list[str]:
    """Names of all artifact specs, in table order."""
    return [spec.name for spec in SPECS]


def available_spec_names() -> list[str]:
    """Names of the specs whose format is in the format table (what ``compare`` runs by default)."""
    names = {fmt.name for fmt in FORMATS}
    return [spec.name for spec in SPECS if spec.format in names]


def get_spec(name: str) -> ArtifactSpec:
    """Looks a spec up by name.

    Raises:
        ExportError: Unknown name; the message lists the known ones.
    """
    for spec in SPECS:
        if spec.name == name:
            return spec
    raise ExportError(f"unknown artifact '{name}'; choose from: {', '.join(spec_names())}")


@dataclass(frozen=True)
class BuiltArtifact:
    """A file ready to run.

    Attributes:
        spec: What it is.
        path: The file.
        build_seconds: Time spent building it now (0 when cached or not built).
        cached: Found in the cache.
    """

    spec: ArtifactSpec
    path: Path
    build_seconds: float
    cached: bool

    def open(self, threads: int | None) -> Runtime:
        """Opens the file with its format's runtime, set up for interleaved timing."""
        return open_for_timing(resolve(get_format(self.spec.format).runtime), self.path, threads)


def build_all(checkpoint: str | Path, names: Sequence[str], cache_dir: str | Path,
              settings: BuildSettings) -> tuple[dict[str, BuiltArtifact], dict[str, str]]:
    """Builds (or finds in ``cache_dir``) every requested artifact and the sources they need.

    A failed build (a missing backend, a broken conversion, an exporter's own parity
    check) does not stop the others.

    Returns:
        Spec name → artifact for those built, and spec name → error message for those that failed.
    """
    checkpoint = Path(checkpoint)
    digest = _file_digest(checkpoint)
    built: dict[str, BuiltArtifact] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            _build(get_spec(name), checkpoint, digest, Path(cache_dir), settings, built)
        except FeatherFaceError as error:
            failed[name] = f"{type(error).__name__}: {error}"
            settings.log(f"{name}: build failed: {failed[name]}")
    return {name: built[name] for name in names if name in built}, failed


def _build(spec: ArtifactSpec, checkpoint: Path, digest: str, folder: Path, settings: BuildSettings,
           built: dict[str, BuiltArtifact]) -> BuiltArtifact:
    if spec.name in built:
        return built[spec.name]
    if spec.builder is None:
        built[spec.name] = BuiltArtifact(spec, checkpoint, 0.0, False)
        return built[spec.name]
    source = checkpoint if spec.source is None else _build(
        get_spec(spec.source), checkpoint, digest, folder, settings, built).path
    key = hashlib.sha256(json.dumps({"checkpoint": digest, "spec": spec.name, **settings.cache_key()},
                                    sort_keys=True).encode()).hexdigest()[:12]
    path = folder / f"{checkpoint.stem}-{spec.name}-{key}{spec.suffix}"
    if path.is_file() and sidecar_path(path).is_file():
        settings.log(f"{spec.name}: cached {path}")
        built[spec.name] = BuiltArtifact(spec, path, 0.0, True)
        return built[spec.name]
    settings.log(f"{spec.name}: building {path.name} from {Path(source).name}")
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    resolve(spec.builder)(Path(source), path, settings, spec.precision)
    built[spec.name] = BuiltArtifact(spec, path, time.perf_counter() - start, False)
    return built[spec.name]


def build_onnx(source: Path, out: Path, settings: BuildSettings, precision: str) -> None:
    """FP32 ONNX through the format table's ONNX exporter (with its parity check)."""
    exporter = resolve(get_format("onnx").exporter)
    exporter(source, out, imgsz=settings.imgsz, parity_images=list(settings.parity_images), log=settings.log)


def build_onnx_int8(source: Path, out: Path, settings: BuildSettings, precision: str) -> None:
    """Static INT8 (QDQ) ONNX from the FP32 ONNX, calibrated on ``settings.calibration_dir``.

    Raises:
        ExportError: No calibration folder was given.
    """
    if settings.calibration_dir is None:
        raise ExportError("onnx-int8 needs calibration photos: pass --calib-dir (e.g. ../shared/data/calibration)")
    from featherface_deploy.calibration import CalibrationConfig, build_calibration_set
    from featherface_deploy.exporters.onnx2int8 import quantize_onnx, read_contract

    contract = read_contract(source)
    calibration = build_calibration_set(settings.calibration_dir, contract,
                                        CalibrationConfig(input_size=settings.imgsz))
    quantize_onnx(source, out, calibration, contract=contract)


def build_tflite(source: Path, out: Path, settings: BuildSettings, precision: str) -> None:
    """TFLite at any precision through the format table's exporter; one FP32 conversion serves all three.

    Raises:
        ExportError: INT8 without a calibration folder.
    """
    if precision == "int8" and settings.calibration_dir is None:
        raise ExportError("tflite-int8 needs calibration photos: pass --calib-dir (e.g. ../shared/data/calibration)")
    exporter = resolve(get_format("tflite").exporter)
    key = ("tflite-fp32-conversion", str(source), settings.imgsz)
    if key not in settings.scratch:
        from featherface_deploy.exporters.torch2tflite import convert_fp32
        from featherface_deploy.models import load_model

        loaded = load_model(source)
        settings.scratch[key] = convert_fp32(loaded.model, settings.imgsz, "NHWC", loaded.architecture)
    exporter(source, out, imgsz=settings.imgsz, half=precision == "fp16", int8=precision == "int8",
             calib_dir=settings.calibration_dir, parity_images=list(settings.parity_images),
             converted=settings.scratch[key], log=settings.log)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
