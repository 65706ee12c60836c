"""The artifacts ``compare`` builds: rows of the format table, built through the export pipeline and cached.

Nothing here is a second table: an artifact is a row of
:data:`featherface_deploy.formats.FORMATS`, built by
:func:`featherface_deploy.pipeline.export_model` (so ``compare``'s INT8 passes
the same parity gate as ``export``), and opened with the row's runtime.

Built files are cached in a folder (``compare``: ``<out>/artifacts/``) by the
checkpoint's content hash, the row and the build settings, so a second
``compare`` re-exports nothing; a row built from another (``onnx-int8`` from
``onnx``) reuses the cached source. Exporters (and torch) are imported only
when something has to be built.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from featherface_deploy.contract import End2EndSpec, read_sidecar, sidecar_path
from featherface_deploy.errors import BackendNotInstalledError, FeatherFaceError
from featherface_deploy.formats import CHECKPOINT, END2END_ROWS, FORMATS, REFERENCE, Format, get_format, resolve
from featherface_deploy.harness.latency import open_for_timing
from featherface_deploy.runtimes.base import Runtime

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildSettings:
    """What every build may need.

    Attributes:
        imgsz: Export input (height, width).
        calibration_dir: Folder of calibration photos (INT8 rows), or ``None``.
        parity_images: Photos for the pipeline's parity gate (none: the shipped photo).
        log: Progress lines.
        scratch: Intermediate results shared within one run (e.g. the TFLite FP32 conversion
            that FP16 and INT8 reuse).
        untrained_seed: The checkpoint holds random weights drawn from this seed (``compare --random-init``):
            every artifact is flagged untrained and its parity gate needs no face; ``None`` for trained weights.
        end2end: The end-to-end settings (``compare --end2end``) every row of
            :data:`~featherface_deploy.formats.END2END_ROWS` is built with, or ``None``: raw-output files.
    """

    imgsz: tuple[int, int] = (640, 640)
    calibration_dir: Path | None = None
    parity_images: Sequence[Path] = ()
    log: Log = field(default=lambda message: None, compare=False)
    scratch: dict = field(default_factory=dict, compare=False)
    untrained_seed: int | None = None
    end2end: End2EndSpec | None = None

    def options_for(self, row: Format) -> dict[str, object]:
        """The export options these settings mean for ``row`` (only those it takes)."""
        from featherface_deploy.pipeline.options import accepted_options

        accepted = accepted_options(row)
        options: dict[str, object] = {"imgsz": tuple(self.imgsz)} if "imgsz" in accepted else {}
        if self.calibration_dir is not None and "calib_dir" in accepted:
            options["calib_dir"] = str(self.calibration_dir)
        if self.end2end is not None and row.name in END2END_ROWS:
            spec = self.end2end
            options.update(end2end=True, max_det=spec.max_det, conf=spec.conf, nms_iou=spec.nms_iou,
                           pre_nms_top_k=spec.pre_nms_top_k)
        return options

    def cache_key(self) -> dict:
        """The settings that change the built file (hashed into its name)."""
        key = {"imgsz": list(self.imgsz), "calibration": str(self.calibration_dir) if self.calibration_dir else None}
        if self.end2end is not None:
            key["end2end"] = asdict(self.end2end)
        return key if self.untrained_seed is None else {**key, "untrained_seed": self.untrained_seed}


def default_rows() -> list[str]:
    """What ``compare`` runs by default: the reference and every row that builds and runs natively here.

    Rows that run only through a stand-in (Core ML's reference interpreter off macOS) and
    folders that are not run themselves (TensorRT recipes) are left to ``--formats``.
    """
    names = [REFERENCE]
    for row in FORMATS:
        if row.exporter is None or row.verify_entry:
            continue
        (export_ok, _), (run_ok, note) = row.exports_here(), row.runs_here()
        if export_ok and run_ok and not note:
            names.append(row.name)
    return names


@dataclass(frozen=True)
class BuiltArtifact:
    """A file ready to run.

    Attributes:
        row: Its format row.
        path: The file.
        build_seconds: Time spent building it now (0 when cached or not built).
        cached: Found in the cache.
    """

    row: Format
    path: Path
    build_seconds: float
    cached: bool

    def open(self, threads: int | None) -> Runtime:
        """Opens the file with its row's runtime, set up for interleaved timing."""
        return open_for_timing(resolve(self.row.runtime), self.path, threads, dict(self.row.runtime_options))


def build_all(checkpoint: str | Path, names: Sequence[str], cache_dir: str | Path,
              settings: BuildSettings) -> tuple[dict[str, BuiltArtifact], dict[str, str]]:
    """Builds (or finds in ``cache_dir``) every requested row and the rows they are built from.

    A failed build (a missing backend, a broken conversion, a failed parity gate) does not stop the others;
    nor does a row that cannot run here (``torch-cuda`` without a GPU: the table's probe says why).

    Returns:
        Row name → artifact for those built, and row name → error message for those that failed.
    """
    checkpoint = Path(checkpoint)
    digest = _file_digest(checkpoint)
    built: dict[str, BuiltArtifact] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            _build(get_format(name), checkpoint, digest, Path(cache_dir), settings, built)
        except FeatherFaceError as error:
            failed[name] = f"{type(error).__name__}: {error}"
            settings.log(f"{name}: build failed: {failed[name]}")
    return {name: built[name] for name in names if name in built}, failed


def _build(row: Format, checkpoint: Path, digest: str, folder: Path, settings: BuildSettings,
           built: dict[str, BuiltArtifact]) -> BuiltArtifact:
    if row.name in built:
        return built[row.name]
    ok, why = row.runs_here()
    if not ok:
        raise BackendNotInstalledError(f"{row.name} cannot run here: {why}")
    if row.exporter is None:
        built[row.name] = BuiltArtifact(row, checkpoint, 0.0, False)
        return built[row.name]
    reuse = {}
    if row.source != CHECKPOINT:
        source = _build(get_format(row.source), checkpoint, digest, folder, settings, built).path
        accepts = getattr(resolve(row.options_class), "accepts_source", None)
        if accepts is None or accepts(read_sidecar(source)):  # else export_model builds a source that fits
            reuse[row.source] = source
    key = hashlib.sha256(json.dumps({"checkpoint": digest, "row": row.name, **settings.cache_key()},
                                    sort_keys=True).encode()).hexdigest()[:12]
    path = folder / f"{checkpoint.stem}-{row.name}-{key}{row.suffix}"
    if path.exists() and sidecar_path(path).is_file():
        settings.log(f"{row.name}: cached {path}")
        built[row.name] = BuiltArtifact(row, path, 0.0, True)
        return built[row.name]
    from featherface_deploy.pipeline import export_model

    start = time.perf_counter()
    source = checkpoint
    if settings.untrained_seed is not None:  # the pipeline flags an in-memory model, never a file's claim
        from featherface_deploy.models import load_model

        source = load_model(checkpoint).model
    export_model(source, path, row, settings.options_for(row), parity_images=list(settings.parity_images),
                 log=settings.log, reuse=reuse, scratch=settings.scratch, exist_ok=True,
                 untrained_seed=settings.untrained_seed)
    built[row.name] = BuiltArtifact(row, path, time.perf_counter() - start, False)
    return built[row.name]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
