"""``export_model``: build a row (and the rows it is built from), verify each file, then move it into place.

For every link of the chain (``onnx-int8`` ← ``onnx`` ← checkpoint) the
exporter writes its file into a staging folder next to the output; the file is
then opened with its row's runtime, its embedded contract is read back, and it
is checked against PyTorch on real photos (:func:`~featherface_deploy.verify.parity.check_parity`,
the tolerance tier of its precision). Only a file that passed is moved into
place (a rename), followed by its sidecar; a failure at any step leaves the
output path as it was. Exporters only write files; they never import a runtime.

The output is claimed before any work (:func:`~featherface_deploy.outputs.claim_output`, the
rules of every command that writes): it may not be the checkpoint or another input (symlinks and
hard links included), its folder must be writable, an existing output (or sidecar) is refused
unless ``exist_ok`` (CLI ``--exist-ok``), a second export to the same output fails at once, and
the model and its sidecar are published together (all or none) only after parity passed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from featherface_deploy.contract import DecodeContract, sidecar_path, write_sidecar
from featherface_deploy.errors import BackendNotInstalledError, ExportError
from featherface_deploy.exporters.common import ExportContext, load_source
from featherface_deploy.outputs import claim_output
from featherface_deploy.formats import CHECKPOINT, Format, get_format, resolve
from featherface_deploy.harness.int8_kernels import ort_integer_share
from featherface_deploy.pipeline.options import build_chain, check_suffix, split_options
from featherface_deploy.pipeline.raw_views import raw_view
from featherface_deploy.verify.in_graph import InGraphReport, check_in_graph_parity, default_in_graph_images
from featherface_deploy.verify.parity import ANY_SIZE_BOX, ParityReport, check_parity
from featherface_deploy.verify.tolerances import Tolerances

Log = Callable[[str], None]


@dataclass(frozen=True)
class ExportOutcome:
    """A verified artifact.

    Attributes:
        row: Its format row.
        path: The file or folder.
        contract: The decode contract embedded in it.
        parity: Its check against PyTorch.
        timings: Seconds per step (the exporter's, ``verify`` and ``total``).
        facts: Format-specific facts from the exporter (node counts, layers kept float…).
        sources: Outcomes of the rows it was built from, by row name (empty when reused).
        in_graph: For an end-to-end file: its in-graph detections against numpy on the same raw outputs.
    """

    row: Format
    path: Path
    contract: DecodeContract
    parity: ParityReport
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    sources: dict[str, "ExportOutcome"] = field(default_factory=dict)
    in_graph: InGraphReport | None = None


def export_model(source, out: str | Path, fmt: str | Format, options: Mapping[str, object] | None = None, *,
                 parity_images: Sequence[str | Path] = (), tolerances: Tolerances | None = None,
                 architecture: str | None = None, log: Log | None = None, reuse: Mapping[str, Path] | None = None,
                 scratch: dict | None = None, require_faces: bool = True, exist_ok: bool = False,
                 untrained_seed: int | None = None) -> ExportOutcome:
    """Exports a checkpoint (or an in-memory model) to one format row, verified before it is written.

    Args:
        source: A ``.pth`` checkpoint, or an ``nn.Module`` (its ``config.name`` names it).
        out: The file (or folder) to write; its suffix must be the row's.
        fmt: A row name of :data:`~featherface_deploy.formats.FORMATS` (``onnx``, ``tflite-int8``…) or the row.
        options: Option name → value; only names the row (or its sources) accepts.
        parity_images: Photos for the parity checks; none → the shipped photo of a face.
        tolerances: Parity limits of the final row (default: its precision's tier).
        architecture: Registered name when loading a checkpoint (detected if omitted).
        log: Called with one line per step (e.g. ``click.echo``).
        reuse: Row name → an already verified file to build from instead of rebuilding it.
        scratch: Intermediate results shared between calls (e.g. the TFLite FP32 conversion).
        require_faces: Fail when the reference finds no face ≥ 0.5 on the photos, and judge the detections'
            match rate; off only for untrained models (:meth:`~featherface_deploy.verify.tolerances.Tolerances.for_untrained`).
        exist_ok: Replace an existing output (atomically, after parity); otherwise an existing output is refused.
        untrained_seed: ``source`` is an in-memory model with random weights drawn from this seed
            (:func:`~featherface_deploy.models.registry.create_untrained_model`): the contract is flagged
            untrained with the seed, and parity judges the raw outputs only (the detections ≥ 0.5 that random
            weights give are compared and reported, not judged: ``Tolerances.for_untrained``).

    Returns:
        The :class:`ExportOutcome` of the final row.

    Raises:
        ExportError: An unknown row or option, a wrong suffix, a failed step.
        ParityError: An artifact differs from PyTorch beyond tolerance; nothing is written.
        BackendNotInstalledError: An exporter or runtime of the chain cannot run here (the message says why).
        OutputError: ``out`` is an input, exists without ``exist_ok``, or cannot be written (checked first).
    """
    row = get_format(fmt) if isinstance(fmt, str) else fmt
    if untrained_seed is not None and isinstance(source, (str, os.PathLike)):
        raise ExportError(f"{source} is a checkpoint: an untrained seed applies only to a randomly initialised model")
    if row.exporter is None:
        raise ExportError(f"{row.name} is the reference format: there is nothing to export")
    inputs = [path for path in (source, *parity_images, *(reuse or {}).values())
              if isinstance(path, (str, os.PathLike))]
    claim = claim_output(out, inputs, exist_ok, companions=[] if row.verify_entry else [sidecar_path(out)],
                         folder=row.directory)
    out = check_suffix(row, out)
    prepared = prepare_options(row, split_options(row, options or {}), set(reuse or {}))
    started = time.perf_counter()
    model, model_name = load_source(source, architecture)
    context = ExportContext(model_name, log or _quiet, {} if scratch is None else scratch, untrained_seed,
                            open_tflite=_open_tflite, open_onnx=open_onnx, onnx_activations=onnx_activations,
                            run_onnx=run_onnx, onnx_integer_share=ort_integer_share)
    build = _Build(model, _reference(model), context, list(parity_images), prepared, dict(reuse or {}),
                   require_faces and untrained_seed is None)
    with claim:
        outcome = build.link(row, claim.staged(), tolerances)
        if not row.verify_entry:
            write_sidecar(outcome.contract, claim.staged())
        claim.publish()
    timings = {**outcome.timings, "total": time.perf_counter() - started}
    build.context.log(f"  wrote {out}" + ("" if row.verify_entry else f" and {sidecar_path(out).name}")
                      + f" in {timings['total']:.1f} s")
    return ExportOutcome(row, out, outcome.contract, outcome.parity, timings, outcome.facts, outcome.sources,
                         outcome.in_graph)


@dataclass
class _Build:
    """One export run: the model, its PyTorch reference, and what every link needs."""

    model: object
    reference: object
    context: ExportContext
    images: list
    options: dict[str, object]
    reuse: dict[str, Path]
    require_faces: bool

    def link(self, row: Format, staged: Path, tolerances: Tolerances | None) -> ExportOutcome:
        """Builds ``row`` at ``staged`` (its sources first, next to it) and verifies it."""
        sources: dict[str, ExportOutcome] = {}
        if row.source == CHECKPOINT:
            source = self.model
        elif row.source in self.reuse:
            source = self.reuse[row.source]
        else:
            source_row = get_format(row.source)
            sources[row.source] = self.link(source_row, staged.with_name(f"source-{source_row.name}"
                                                                          f"{source_row.suffix}"), None)
            source = sources[row.source].path
        options = self.options[row.name]
        self.context.log(f"{row.name}: building {staged.name} from "
                         f"{'the model' if row.source == CHECKPOINT else Path(source).name}")
        result = resolve(row.exporter)(source, staged, row, options, self.context)
        step = time.perf_counter()
        parity, in_graph = self.verify(row, staged, result.contract, tolerances, result.parity_sizes)
        timings = {**result.timings, "verify": time.perf_counter() - step}
        return ExportOutcome(row, staged, result.contract, parity, timings, result.facts, sources, in_graph)

    def verify(self, row: Format, path: Path, contract: DecodeContract, tolerances: Tolerances | None,
               sizes: Sequence[tuple[int, int]] = ()) -> tuple[ParityReport, InGraphReport | None]:
        """Opens the file with its runtime, reads its contract back, and checks it against PyTorch.

        ``sizes``: boxes to fit the photos into (each checked; the first one's report is returned), for
        models that take only some sizes; empty: the parity default box. An end-to-end file is checked
        through its raw view (:mod:`~featherface_deploy.pipeline.raw_views`) against PyTorch, then its
        in-graph detections against numpy on the same raw outputs (the second report; ``None`` otherwise).
        """
        target = path / row.verify_entry if row.verify_entry else path
        # A row whose runtime returns finished detections (the MediaPipe task) is checked through its raw one.
        opened = resolve(row.raw_runtime)(target) if row.raw_runtime else resolve(row.runtime).open(target)
        if opened.contract.to_json() != contract.to_json():
            raise ExportError(f"{row.name}: the contract read back from {target.name} differs from the one written")
        runtime = raw_view(row.family, target, contract) if contract.in_graph else opened
        tolerances = tolerances or Tolerances.for_precision(row.precision)
        if not self.require_faces:
            tolerances = tolerances.for_untrained()
        self.context.log(f"  parity {runtime.name} vs PyTorch on {len(self.images) or 'the shipped'} photo(s)…")
        reports = [check_parity(runtime, self.reference, self.images, tolerances, size=size)
                   for size in (sizes or (ANY_SIZE_BOX,))]
        for report in reports:
            self.context.log(report.format())
        if not contract.in_graph:
            return reports[0], None
        in_graph = check_in_graph_parity(opened, runtime, [*self.images, *default_in_graph_images()])
        self.context.log(in_graph.format())
        return reports[0], in_graph


def prepare_options(row: Format, split: dict[str, dict[str, object]], reused: set[str]) -> dict[str, object]:
    """Builds and validates every link's options before anything is built (a bad option fails in seconds).

    Also checks that each link can be exported and run here, and lets a link's options fix or veto
    its source's (``source_options``: e.g. INT8 ONNX refuses a native-DCN source).

    Raises:
        ExportError: An invalid option or combination.
        BackendNotInstalledError: A link cannot be built or verified here (the message says why).
    """
    prepared: dict[str, object] = {}
    for link in build_chain(row):
        if link.name in reused:
            break
        for probe in (link.exports_here, link.runs_here):
            ok, why = probe()
            if not ok:
                raise BackendNotInstalledError(f"--format {link.name}: {why}")
        options = resolve(link.options_class)(**split.get(link.name, {}))
        options.validate(link)
        if getattr(options, "calib_dir", None) is not None:  # an empty folder fails now, not after the FP32 build
            from featherface_deploy.calibration.dataset import check_calibration_dir

            check_calibration_dir(options.calib_dir)
        prepared[link.name] = options
    for link in build_chain(row):
        if link.source in prepared and hasattr(prepared.get(link.name), "source_options"):
            prepared[link.source] = prepared[link.name].source_options(prepared[link.source])
    return prepared


def _reference(model):
    from featherface_deploy.runtimes.torch_runtime import TorchRuntime

    return TorchRuntime(model)


def _quiet(message: str) -> None:
    """Discards a log line."""


def open_onnx(path: Path, contract: DecodeContract):
    """An ONNX Runtime runtime over a file (what exporters measure their ONNX INT8 files with)."""
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime

    return OrtRuntime(path, contract=contract)


def run_onnx(path: Path, feed: dict) -> dict:
    """Every output of an ONNX file on one feed (``{input: array}``), by ONNX Runtime's CPU provider."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip((output.name for output in session.get_outputs()), session.run(None, feed)))


def onnx_activations(path: Path, calib_set, input_name: str) -> dict:
    """Each output of an ONNX file on each calibration input, by ONNX Runtime: ``{tensor: [array per input]}``.

    What the ONNX INT8 sensitivity report compares, on files augmented to output their intermediate tensors.
    """
    from onnxruntime.quantization.qdq_loss_debug import collect_activations

    from featherface_deploy.calibration.ort_reader import OrtCalibrationReader

    return collect_activations(str(path), OrtCalibrationReader(calib_set, input_name))


def _open_tflite(data: bytes, contract: DecodeContract):
    """A LiteRT runtime over a flatbuffer in memory (what exporters measure their INT8 files with)."""
    from featherface_deploy.runtimes.tflite_runtime import TfliteRuntime

    return TfliteRuntime(data, contract=contract)
