"""``compare``: every artifact of one checkpoint on identical cached inputs — latency, accuracy, parity.

The orchestration, Polygraphy-comparator style:

1. build (or find cached) every requested artifact (:mod:`.artifacts`);
2. decode every image once and preprocess it once per distinct preprocessing
   (all FeatherFace contracts share one), so every artifact sees the same tensors;
3. WIDER FACE Easy / Medium / Hard AP with the project's evaluator, through the
   one shared decode + NMS;
4. parity against the PyTorch reference with :func:`~featherface_deploy.verify.parity.check_parity`
   (raw-output error and IoU-matched detections: match rate, score and landmark
   error), the reference's outputs computed once and memoised;
5. peak memory per artifact, then latency of all artifacts interleaved.

With ``end2end`` (``compare --end2end``) the rows of :data:`~featherface_deploy.formats.END2END_ROWS` are
built end to end with the comparison's thresholds: their detections come from the graph
(:class:`~featherface_deploy.runtimes.base.DetectingRuntime`'s ``detect``, for AP and timing), their raw
parity through the file's raw view, plus the in-graph-vs-numpy check of
:mod:`featherface_deploy.verify.in_graph`; the other rows (the reference apart) are reported as skipped.

No torch import here: the exporters (and torch) are loaded only when an
artifact has to be built or the PyTorch runtime is opened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featherface_deploy.formats import END2END_ROWS, REFERENCE, get_format
from featherface_deploy.harness.artifacts import BuildSettings, BuiltArtifact, build_all, default_rows
from featherface_deploy.harness.latency import (
    LatencyConfig,
    Pipeline,
    current_rss_mb,
    file_size_mb,
    measure_interleaved,
    measure_peak_memory,
    null_bar,
)
from featherface_deploy.harness.report import Column, machine_facts
from featherface_deploy.contract import DecodeContract, End2EndSpec
from featherface_deploy.evaluation import SETTINGS, evaluate, list_images, load_ground_truth, subset_ground_truth
from featherface_deploy.errors import DatasetError, FeatherFaceError, OptionError
from featherface_deploy.verify.parity import check_parity
from featherface_deploy.verify.tolerances import Tolerances
from featherface_deploy.postprocess import PostprocessConfig, decode_image, load_image, preprocess
from featherface_deploy.runtimes.base import DetectingRuntime, Runtime
from featherface_deploy.trt.graph_check import TOPK_MAX_K

COLUMNS = (
    Column("label", "Artifact"), Column("precision", "Precision"), Column("runtime", "Runtime"),
    Column("file_mb", "Size MB", 2), Column("p50_ms", "p50 ms", 1), Column("p90_ms", "p90 ms", 1),
    Column("p99_ms", "p99 ms", 1), Column("pre_ms", "pre ms", 2), Column("infer_ms", "infer ms", 1),
    Column("post_ms", "post ms", 2), Column("model_rss_mb", "load RSS MB", 1),
    Column("ap_easy", "Easy AP", 2), Column("ap_medium", "Medium AP", 2), Column("ap_hard", "Hard AP", 2),
    Column("max_abs_conf", "max Δconf", 5), Column("match_rate", "match rate", 3),
    Column("max_score_diff", "max Δscore", 4), Column("max_landmark_px", "max Δlmk px", 2),
    Column("parity_pass", "parity ok"), Column("error", "note"),
)


class Progress:
    """Progress reporting hooks (no-ops); the CLI passes one backed by click's progress bar.

    ``bar(label, total)`` returns a context manager whose value has ``update(n)``.
    """

    def log(self, message: str) -> None:
        """A line of text."""

    def bar(self, label: str, total: int):
        """A progress bar context."""
        return null_bar(label, total)


@dataclass(frozen=True)
class CompareConfig:
    """What to compare and how.

    Attributes:
        formats: Row names of :data:`~featherface_deploy.formats.FORMATS` (default: :func:`~featherface_deploy.harness.artifacts.default_rows`).
        imgsz: Export size and the box every image is fitted into, for every artifact.
        threads: Inference threads of every runtime.
        warmup: Untimed latency rounds.
        iters: Timed latency rounds.
        widerface: WIDER FACE folder (accuracy and images), or ``None``.
        images: Image folder for latency and parity when there is no WIDER FACE folder.
        limit: Use only the first N images.
        parity_images: Images used for parity (the first N).
        latency_images: Distinct images cycled through while timing.
        calibration_dir: Calibration photos for INT8 builds.
        postprocess: The detection thresholds shared by all artifacts.
        end2end: Build the rows that can take it end to end (decoding and NMS in the file) and skip the others.
        untrained_seed: The checkpoint holds random weights from this seed (``compare --random-init``): rows,
            facts and notes say so, no AP is computed, parity needs no face. ``None``: trained weights.
    """

    formats: tuple[str, ...] = field(default_factory=lambda: tuple(default_rows()))
    imgsz: tuple[int, int] = (640, 640)
    threads: int = 1
    warmup: int = 5
    iters: int = 50
    widerface: Path | None = None
    images: Path | None = None
    limit: int | None = None
    parity_images: int = 32
    latency_images: int = 8
    calibration_dir: Path | None = None
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    untrained_seed: int | None = None
    end2end: bool = False

    def end2end_spec(self) -> End2EndSpec | None:
        """The end-to-end settings of ``end2end`` runs: the shared thresholds (``pre_nms_top_k`` capped at
        TensorRT's TopK limit, so the recipe rows build), or ``None``."""
        if not self.end2end:
            return None
        return End2EndSpec(max_det=self.postprocess.keep_top_k, conf=self.postprocess.conf_threshold,
                           nms_iou=self.postprocess.nms_iou,
                           pre_nms_top_k=min(self.postprocess.top_k, TOPK_MAX_K))


@dataclass(frozen=True)
class CompareResult:
    """Rows (one per artifact, reference first), machine facts and how-it-was-measured notes."""

    rows: list[dict]
    facts: dict
    notes: list[str]


@dataclass(frozen=True)
class _Inputs:
    """Decoded images (BGR), their WIDER keys (if any), and preprocessed tensors per preprocessing."""

    images: list[np.ndarray]
    keys: list[tuple[str, str]] | None
    paths: list[Path]
    ground_truth: object | None = None
    tensors: dict[tuple, list] = field(default_factory=dict)

    def prepared(self, contract: DecodeContract, imgsz: tuple[int, int]) -> list:
        """(tensor (1, 3, H, W), transform) per image, computed once per distinct preprocessing."""
        key = (contract.input_size, contract.size_divisor, contract.mean_bgr, None if contract.input_size else imgsz)
        if key not in self.tensors:
            size = None if contract.input_size else imgsz
            self.tensors[key] = [(tensor[None], transform)
                                 for tensor, transform in (preprocess(image, contract, size) for image in self.images)]
        return self.tensors[key]


def run_compare(checkpoint: str | Path, cache_dir: str | Path, config: CompareConfig,
                progress: Progress = Progress()) -> CompareResult:
    """Builds, runs and measures every requested artifact of a checkpoint.

    Args:
        checkpoint: The ``.pth`` checkpoint.
        cache_dir: Where built artifacts are cached.
        config: What and how.
        progress: Progress hooks.

    Returns:
        The rows, facts and notes (the caller writes the report).

    Raises:
        FeatherFaceError: A build failed, a backend is missing, or the data folders are bad.
    """
    inputs = _load_inputs(config)
    names = list(dict.fromkeys([REFERENCE, *config.formats]))
    skipped = end2end_skipped(names) if config.end2end else {}
    settings = BuildSettings(config.imgsz, config.calibration_dir, inputs.paths[:min(config.parity_images, 8)],
                             progress.log, untrained_seed=config.untrained_seed, end2end=config.end2end_spec())
    built, failed = build_all(checkpoint, [name for name in names if name not in skipped], cache_dir, settings)
    if REFERENCE not in built:
        raise failed_reference(failed[REFERENCE])
    runtimes, rows = {}, {}
    for name, artifact in built.items():
        before = current_rss_mb()
        runtimes[name] = artifact.open(config.threads)
        Pipeline(runtimes[name], inputs.images[:1], LatencyConfig(config.imgsz)).step()
        rows[name] = _artifact_row(artifact, runtimes[name], config)
        rows[name]["postprocess"] = getattr(runtimes[name], "postprocess", "numpy")
        rows[name]["model_rss_mb"] = None if before is None else round(current_rss_mb() - before, 1)
    rows.update({name: {"label": name, "precision": get_format(name).precision, "error": error.splitlines()[0][:160],
                        "error_detail": error}
                 for name, error in failed.items()})
    rows.update({name: {"label": name, "precision": get_format(name).precision, "error": reason, "skipped": True}
                 for name, reason in skipped.items()})
    if inputs.keys is not None and config.untrained_seed is None:  # random weights: an AP would mean nothing
        _add_accuracy(rows, runtimes, inputs, config, progress)
    _add_parity(rows, runtimes, inputs, config, progress)
    _add_latency(rows, runtimes, inputs, config, progress)
    ordered = [rows[name] for name in names if name in rows and (name in config.formats or name == REFERENCE)]
    facts = machine_facts(threads=config.threads, imgsz=list(config.imgsz), checkpoint=str(checkpoint),
                          images=len(inputs.images), untrained_seed=config.untrained_seed)
    return CompareResult(ordered, facts, _notes(ordered, config, len(inputs.images)))


def _load_inputs(config: CompareConfig) -> _Inputs:
    """The images (and, with ``--widerface``, their keys and the ground truth, read once)."""
    if config.widerface is not None:
        ground_truth = load_ground_truth(config.widerface)
        listed = list_images(config.widerface, ground_truth)[:config.limit]
        return _Inputs([load_image(path) for _, _, path in listed], [(event, name) for event, name, _ in listed],
                       [path for _, _, path in listed], ground_truth)
    if config.images is None:
        raise DatasetError("compare needs images: a WIDER FACE folder or an image folder")
    from featherface_deploy.calibration import list_image_files

    paths = list_image_files(config.images)[:config.limit]
    return _Inputs([load_image(path) for path in paths], None, paths)


def _artifact_row(artifact: BuiltArtifact, runtime: Runtime, config: CompareConfig) -> dict:
    return {"label": artifact.row.name, "format": artifact.row.family, "precision": artifact.row.precision,
            "runtime": runtime.name, "runtime_note": runtime.note, "path": str(artifact.path), "file_mb": file_size_mb(artifact.path),
            "threads": config.threads, "build_s": round(artifact.build_seconds, 1), "cached": artifact.cached,
            "untrained_seed": config.untrained_seed}


def _add_accuracy(rows: dict, runtimes: Mapping[str, Runtime], inputs: _Inputs, config: CompareConfig,
                  progress: Progress) -> None:
    ground_truth = inputs.ground_truth
    if config.limit is not None:
        ground_truth = subset_ground_truth(ground_truth, set(inputs.keys))
    for name, runtime in runtimes.items():
        predictions = {}
        with progress.bar(f"WIDER FACE {name:12s}", len(inputs.images)) as bar:
            for key, faces in zip(inputs.keys, _detections(runtime, inputs, config)):
                predictions[key] = np.concatenate([faces.boxes, faces.scores[:, None]], axis=1)
                bar.update(1)
        ap = evaluate(predictions, ground_truth).percentages
        rows[name].update({f"ap_{setting}": round(ap[setting], 2) for setting in SETTINGS})
    reference = rows[REFERENCE]
    for row in (rows[name] for name in runtimes):
        row["ap_drop"] = round(max(reference[f"ap_{s}"] - row[f"ap_{s}"] for s in SETTINGS), 2)


def _detections(runtime: Runtime | DetectingRuntime, inputs: _Inputs, config: CompareConfig):
    """Each image's detections: from the graph (an end-to-end file's ``detect``, with the thresholds baked in from
    :meth:`CompareConfig.end2end_spec`), else raw outputs + our decode."""
    if isinstance(runtime, DetectingRuntime):
        for image in inputs.images:
            yield runtime.detect(image, runtime.default_config())
        return
    for tensor, transform in inputs.prepared(runtime.contract, config.imgsz):
        raw = runtime.infer(tensor)
        yield decode_image(raw["loc"][0], raw["conf"][0], raw["landmarks"][0], tensor.shape[2:], runtime.contract,
                           transform, config.postprocess)


def _add_parity(rows: dict, runtimes: Mapping[str, Runtime], inputs: _Inputs, config: CompareConfig,
                progress: Progress) -> None:
    images = inputs.images[:config.parity_images]
    reference = MemoRuntime(runtimes[REFERENCE])
    for name, runtime in runtimes.items():
        if name == REFERENCE:
            continue
        progress.log(f"parity {name} vs {REFERENCE} on {len(images)} image(s)")
        tolerances = Tolerances.for_precision(rows[name]["precision"])
        if config.untrained_seed is not None:  # random weights: raw outputs judged, detections only reported
            tolerances = tolerances.for_untrained()
        if isinstance(runtime, DetectingRuntime):  # an end-to-end file: its raw view, then its own in-graph check
            runtime = _in_graph_parity(rows[name], runtime, images)
        report = check_parity(runtime, reference, images, tolerances, raise_on_failure=False, size=config.imgsz)
        rows[name].update({
            "parity_images": report.images, "max_abs_conf": report.max_abs["conf"],
            "max_abs_loc": report.max_abs["loc"], "max_abs_landmarks": report.max_abs["landmarks"],
            "reference_detections": report.reference_detections, "candidate_detections": report.candidate_detections,
            "matched": report.matched, "match_rate": report.match_rate, "min_matched_iou": report.min_matched_iou,
            "max_score_diff": report.max_score_diff, "max_landmark_px": report.max_landmark_diff,
            "parity_pass": report.passed, "parity_failures": list(report.failures),
        })


def _in_graph_parity(row: dict, runtime: DetectingRuntime, images: Sequence[np.ndarray]) -> Runtime:
    """Records the in-graph-vs-numpy check of an end-to-end file in ``row``; returns its raw view for parity."""
    from featherface_deploy.pipeline.raw_views import raw_view
    from featherface_deploy.verify.in_graph import check_in_graph_parity

    form = get_format(row["label"])
    path = Path(row["path"]) / form.verify_entry if form.verify_entry else Path(row["path"])  # a recipe's model
    raw = raw_view(form.family, path, runtime.contract)
    report = check_in_graph_parity(runtime, raw, images, raise_on_failure=False)
    row.update({"in_graph_match_rate": report.match_rate, "in_graph_min_iou": report.min_iou,
                "in_graph_max_score_diff": report.max_score_diff, "in_graph_pass": report.passed})
    return raw


def end2end_skipped(names: Sequence[str]) -> dict[str, str]:
    """``compare --end2end``: the rows (the reference apart) that cannot be built end to end → why."""
    reason = f"skipped: --end2end is not available for this row (it applies to: {', '.join(END2END_ROWS)})"
    return {name: reason for name in names if name != REFERENCE and name not in END2END_ROWS}


def _add_latency(rows: dict, runtimes: Mapping[str, Runtime], inputs: _Inputs, config: CompareConfig,
                 progress: Progress) -> None:
    latency_config = LatencyConfig(config.imgsz, 1, config.warmup, config.iters)
    images = inputs.images[:config.latency_images]
    pipelines = {name: Pipeline(runtime, images, latency_config, config.postprocess)
                 for name, runtime in runtimes.items()}
    for name, pipeline in pipelines.items():
        rows[name].update(measure_peak_memory(pipeline))
    with progress.bar("latency (interleaved)", config.iters) as bar:
        stats = measure_interleaved(pipelines, config.warmup, config.iters, on_round=lambda: bar.update(1))
    for name, value in stats.items():
        rows[name].update(value.to_dict())


def _notes(rows: Sequence[dict], config: CompareConfig, images: int) -> list[str]:
    notes = [
        f"{images} image(s), each fitted into {config.imgsz[0]}×{config.imgsz[1]} by the shared preprocessing; "
        f"every artifact gets the same cached tensors and the same decode + NMS "
        f"(conf ≥ {config.postprocess.conf_threshold}, NMS IoU {config.postprocess.nms_iou}).",
        f"Latency: {config.threads} inference thread(s), batch 1, {config.warmup} warm-up + {config.iters} timed "
        f"rounds, all artifacts interleaved round-robin (one step each per round) so host noise hits all alike; "
        "time.perf_counter_ns; per frame = pre (resize, mean, pad; JPEG decoding excluded) + infer + post "
        "(decode, top-k, NMS, rescale).",
        f"Parity against {REFERENCE} on the first {min(config.parity_images, images)} image(s): raw max |Δ| of the "
        "outputs, and detections ≥ 0.5 matched one-to-one by IoU (verify.parity.check_parity; tolerances tiered "
        "by precision: FP32 tight, FP16 looser, INT8 judged after decode only).",
        "Landmarks: the WIDER FACE subset has box annotations only, so landmark quality is reported as agreement "
        f"with {REFERENCE}: the largest landmark difference, in pixels, over matched detections.",
        "Load RSS: resident memory the process grew by while opening the artifact and running its first frame "
        "(the JSON also has the process's peak RSS while it runs: that includes the cached inputs and every "
        "other runtime, as all are loaded together).",
    ]
    if config.untrained_seed is not None:
        notes.insert(0, f"UNTRAINED: random weights (seed {config.untrained_seed}), no checkpoint: latency, sizes "
                        "and parity are the architecture's; no AP is reported, because random weights detect "
                        "nothing meaningful.")
    in_graph = [row["label"] for row in rows if row.get("postprocess") == "in-graph"]
    if in_graph:
        spec = config.end2end_spec()
        notes.append(f"End to end ({', '.join(in_graph)}): post-processing ran in the graph (decode, top-k "
                     f"{spec.pre_nms_top_k}, NMS, at most {spec.max_det} faces); their whole frame (letterbox, graph, "
                     "mapping back) is their infer ms, pre and post 0; their parity is that of the file's raw "
                     "outputs (its raw view), and in_graph_* in the JSON "
                     "compares their detections with our numpy post-processing of the same raw outputs.")
    stand_ins = {row["runtime"]: row["runtime_note"] for row in rows if row.get("runtime_note")}
    notes += [f"Runtime {name}: {note}." for name, note in stand_ins.items()]
    onnx = next((row for row in rows if row["label"] == "onnx" and "infer_ms" in row
                 and row.get("postprocess") != "in-graph"), None)
    if onnx is not None:
        overhead = onnx["pre_ms"] + onnx["post_ms"]
        notes.append(f"Harness overhead: pre + post = {overhead:.2f} ms per frame = "
                     f"{100 * overhead / onnx['infer_ms']:.1f}% of ONNX Runtime FP32 inference ({onnx['infer_ms']:.1f} ms).")
    return notes


def failed_reference(error: str) -> FeatherFaceError:
    """The error raised when the reference itself cannot be opened."""
    return FeatherFaceError(f"the reference ({REFERENCE}) could not be loaded: {error}")


class MemoRuntime(Runtime):
    """Wraps a runtime and remembers its outputs per input, so the reference runs each image once."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime.contract)
        self.runtime = runtime
        self.name = runtime.name
        self._outputs: dict[str, dict] = {}

    def _infer(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        key = hashlib.blake2b(batch.tobytes(), digest_size=16).hexdigest() + str(batch.shape)
        if key not in self._outputs:
            self._outputs[key] = self.runtime.infer(batch)
        return self._outputs[key]


@dataclass(frozen=True)
class Budgets:
    """Limits that make ``compare`` exit non-zero (``None`` = not checked).

    Attributes:
        min_match_rate: Lowest detection match rate against the reference.
        max_ap_drop: Largest AP drop against the reference, in points, on any setting.
        parity: Require every artifact to pass its precision's parity tolerances.
    """

    min_match_rate: float | None = None
    max_ap_drop: float | None = None
    parity: bool = False

    def __post_init__(self) -> None:
        """Refuses limits out of range, and NaN, which compares false with everything and so would never break.

        Raises:
            OptionError: ``min_match_rate`` is not in [0, 1] or ``max_ap_drop`` is not >= 0.
        """
        rate, drop = self.min_match_rate, self.max_ap_drop
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise OptionError(f"budget min_match_rate (--min-match-rate) must be a number in [0, 1], got {rate}")
        if drop is not None and not drop >= 0.0:
            raise OptionError(f"budget max_ap_drop (--max-ap-drop) must be a number of AP points >= 0, got {drop}")

    def broken(self, rows: Sequence[dict]) -> list[str]:
        """Lines naming each broken budget and each artifact that could not be built (empty when all hold)."""
        broken = [f"{row['label']}: {row['error']}" for row in rows if row.get("error") and not row.get("skipped")]
        for row in rows:
            label, rate, drop = row["label"], row.get("match_rate"), row.get("ap_drop")
            if self.min_match_rate is not None and rate is not None and rate < self.min_match_rate:
                broken.append(f"{label}: detection match rate {rate:.3f} < {self.min_match_rate}")
            if self.max_ap_drop is not None and drop is not None and drop > self.max_ap_drop:
                broken.append(f"{label}: AP drop {drop:.2f} points > {self.max_ap_drop}")
            if self.parity and row.get("in_graph_pass") is False:
                broken.append(f"{label}: in-graph detections differ from numpy post-processing of its raw outputs")
            if self.parity and row.get("parity_pass") is False:
                broken.append(f"{label}: parity failed ({'; '.join(row['parity_failures'])})")
        return broken
