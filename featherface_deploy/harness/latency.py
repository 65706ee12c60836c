"""Latency of runtimes on the same inputs: warm-up, pre / inference / post split, percentiles, memory.

Works for any :class:`~featherface_deploy.runtimes.base.Runtime` with numpy
only. One timed *step* is what a user of :class:`FaceDetector` pays per batch
of already decoded images:

- **pre**: resize + mean subtraction + padding + stacking (the shared
  :func:`~featherface_deploy.postprocess.preprocess`); JPEG decoding is
  excluded, so file-system and codec noise stay out of the numbers;
- **infer**: ``runtime.infer`` (input validation + the backend);
- **post**: the shared decode + top-k + NMS + rescale, per image.

Timings come from ``time.perf_counter_ns`` (monotonic). Several runtimes are
timed *interleaved* (one step of each per round), so machine noise on a shared
host hits them alike; warm-up steps are never recorded.

Runtimes the harness times are opened with :func:`open_for_timing`, which turns
ONNX Runtime's thread spinning off: by default its intra-op threads busy-wait
after each run, so an idle session of an interleaved round steals the cores
from the one being timed (measured: RetinaFace 33–42 ms instead of 16.5 ms).
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from featherface_deploy.postprocess import PostprocessConfig, decode_image, preprocess
from featherface_deploy.runtimes.base import DetectingRuntime, Runtime, usable_threads

STAGES = ("pre", "infer", "post")
SYNTHETIC_IMAGES = 4
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class LatencyConfig:
    """How to time.

    Attributes:
        imgsz: (height, width) box images are fitted into (fixed-size models use their own size).
        batch: Images per step.
        warmup: Untimed steps per runtime before recording.
        iters: Timed steps per runtime.
    """

    imgsz: tuple[int, int] = (640, 640)
    batch: int = 1
    warmup: int = 10
    iters: int = 100


@dataclass(frozen=True)
class LatencyStats:
    """Summary of the timed steps of one runtime (milliseconds per batch).

    Attributes:
        batch: Images per step.
        iterations: Timed steps.
        p50_ms: Median end-to-end (pre + infer + post) time.
        p90_ms: 90th percentile.
        p99_ms: 99th percentile.
        mean_ms: Mean.
        std_ms: Standard deviation.
        throughput: Images per second at the mean.
        pre_ms: Median preprocessing time.
        infer_ms: Median inference time.
        post_ms: Median post-processing time.
    """

    batch: int
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    throughput: float
    pre_ms: float
    infer_ms: float
    post_ms: float

    @classmethod
    def from_samples(cls, samples: np.ndarray, batch: int) -> "LatencyStats":
        """Summarises an (iterations, 3) array of pre / infer / post seconds."""
        total = samples.sum(axis=1) * 1000.0
        stage = np.median(samples, axis=0) * 1000.0
        p50, p90, p99 = np.percentile(total, [50, 90, 99])
        mean = float(total.mean())
        return cls(batch, len(total), float(p50), float(p90), float(p99), mean, float(total.std()),
                   1000.0 * batch / mean, float(stage[0]), float(stage[1]), float(stage[2]))

    def to_dict(self) -> dict:
        """JSON-ready values, rounded to 0.01 ms."""
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


# Runtime name → keyword arguments that keep an idle runtime off the cores while another is timed.
TIMING_OPTIONS: dict[str, dict] = {"onnxruntime": {"allow_spinning": False}}


def open_for_timing(runtime_class: type[Runtime], path: str | Path, threads: int | None,
                    options: Mapping[str, object] | None = None) -> Runtime:
    """Opens a model file for timing next to other runtimes (ONNX Runtime: thread spinning off).

    Args:
        runtime_class: The format's runtime class.
        path: The model file.
        threads: Inference threads (``None`` = the backend's default).
        options: The row's ``runtime_options`` (``torch-cuda``: ``device="cuda"``).

    Returns:
        The opened runtime.
    """
    return runtime_class.open(path, threads=threads, **TIMING_OPTIONS.get(runtime_class.name, {}), **(options or {}))


class Pipeline:
    """One runtime with the shared pre- and post-processing, stepping through a list of images.

    A :class:`DetectingRuntime` (an end-to-end file, post-processing in its graph) is timed through its
    ``detect``, one image at a time: its whole step is reported as ``infer`` (letterbox and the mapping
    back included), ``pre`` and ``post`` are 0, and its own default thresholds apply.

    Args:
        runtime: Any runtime.
        images: Decoded BGR uint8 images (cycled through, ``batch`` per step).
        config: Image size and batch.
        postprocess: Detection thresholds (the same for every runtime compared).
    """

    def __init__(self, runtime: Runtime | DetectingRuntime, images: Sequence[np.ndarray], config: LatencyConfig,
                 postprocess: PostprocessConfig = PostprocessConfig()) -> None:
        if not images:
            raise ValueError("at least one image is needed to time a runtime")
        self.runtime = runtime
        self.images = list(images)
        self.config = config
        self.postprocess = postprocess
        self._next = 0

    def step(self) -> tuple[float, float, float]:
        """Runs one batch; returns (pre, infer, post) seconds."""
        chosen = [self.images[(self._next + i) % len(self.images)] for i in range(self.config.batch)]
        self._next += self.config.batch
        if isinstance(self.runtime, DetectingRuntime):
            start = time.perf_counter_ns()
            for image in chosen:
                self.runtime.detect(image)
            return 0.0, (time.perf_counter_ns() - start) * 1e-9, 0.0
        contract = self.runtime.contract
        size = None if contract.input_size else self.config.imgsz
        start = time.perf_counter_ns()
        prepared = [preprocess(image, contract, size) for image in chosen]
        # One image needs no copy into a batch: a view with a leading axis is the batch.
        batch = prepared[0][0][None] if len(prepared) == 1 else np.stack([tensor for tensor, _ in prepared])
        inferred = time.perf_counter_ns()
        raw = self.runtime.infer(batch)
        decoded = time.perf_counter_ns()
        for row, (_, transform) in enumerate(prepared):
            decode_image(raw["loc"][row], raw["conf"][row], raw["landmarks"][row], batch.shape[2:],
                         contract, transform, self.postprocess)
        end = time.perf_counter_ns()
        return (inferred - start) * 1e-9, (decoded - inferred) * 1e-9, (end - decoded) * 1e-9


def measure_interleaved(pipelines: Mapping[str, Pipeline], warmup: int, iters: int,
                        on_round: Callable[[], None] | None = None) -> dict[str, LatencyStats]:
    """Times several pipelines round-robin, one step of each per round.

    Args:
        pipelines: Name → pipeline.
        warmup: Untimed rounds first.
        iters: Timed rounds.
        on_round: Called after each timed round (progress).

    Returns:
        Name → statistics.
    """
    for _ in range(warmup):
        for pipeline in pipelines.values():
            pipeline.step()
    samples = {name: np.empty((iters, len(STAGES))) for name in pipelines}
    for i in range(iters):
        for name, pipeline in pipelines.items():
            samples[name][i] = pipeline.step()
        if on_round is not None:
            on_round()
    return {name: LatencyStats.from_samples(samples[name], pipelines[name].config.batch) for name in pipelines}


def measure_peak_memory(pipeline: Pipeline, steps: int = 3) -> dict:
    """Peak resident memory of the process while a pipeline runs a few steps.

    On Linux the kernel's peak-RSS mark is reset first (``/proc/self/clear_refs``),
    so the peak belongs to this pipeline (plus what the process already holds);
    elsewhere it falls back to ``ru_maxrss``, the peak over the process's life.

    Returns:
        ``peak_rss_mb``, ``rss_increase_mb`` (peak minus the RSS before the steps) and ``method``.
    """
    reset = _reset_peak_rss()
    before = current_rss_mb()
    for _ in range(steps):
        pipeline.step()
    peak, method = (_status_mb("VmHWM"), "VmHWM after clear_refs") if reset else (_ru_maxrss_mb(), "ru_maxrss")
    increase = None if before is None or peak is None else max(peak - before, 0.0)
    return {"peak_rss_mb": _round(peak), "rss_increase_mb": _round(increase), "method": method}


def benchmark_model(path: str | Path, images: Sequence[np.ndarray], imgsz: tuple[int, int],
                    batches: Sequence[int], threads: Sequence[int], warmup: int, iters: int,
                    bar: Callable[[str, int], object] | None = None, row=None,
                    runtime_options: Mapping[str, object] | None = None) -> list[dict]:
    """Times one model file for every (threads, batch) pair, one configuration after another.

    Configurations run sequentially, not interleaved: some backends set their thread count
    process-wide (PyTorch), so two thread counts cannot be alive at once.

    Args:
        path: Any model file of the format table.
        images: Decoded BGR images to cycle through.
        imgsz: Box images are fitted into (any-size models).
        batches: Batch sizes.
        threads: Thread counts asked for; each is capped at the usable cores (with a warning).
        warmup: Untimed steps.
        iters: Timed steps.
        bar: ``bar(label, total)`` → progress context with ``update(n)`` (e.g. ``click.progressbar``).
        row: The format row to open it as (``torch-cuda``); default: the row its suffix names.
        runtime_options: More keywords for the runtime (a Core ML package: ``compute_units``).

    Returns:
        One row per configuration: ``threads`` (the count that ran), ``threads_requested``, batch,
        :class:`LatencyStats` fields, memory and file size; a configuration the model cannot run
        (batch above its maximum) gets a ``skipped`` reason.
    """
    from featherface_deploy.formats import format_for_path, resolve

    fmt = row or format_for_path(path)
    runtime_class = resolve(fmt.runtime)
    rows = []
    for count in threads:
        used = usable_threads(count)  # a row is labelled with what ran: `--threads 4` on 2 cores runs 2
        options = {**dict(fmt.runtime_options), **(runtime_options or {})}
        runtime = open_for_timing(runtime_class, path, used, options)
        for batch in batches:
            row = {"runtime": runtime.name, "runtime_note": runtime.note, "postprocess": runtime.postprocess,
                   "untrained_seed": runtime.contract.untrained_seed, "threads": used,
                   "threads_requested": count, "batch": batch, "file_mb": file_size_mb(path)}
            if runtime.max_batch is not None and batch > runtime.max_batch:
                rows.append({**row, "skipped": f"model takes batches of at most {runtime.max_batch}"})
                continue
            pipeline = Pipeline(runtime, images, LatencyConfig(imgsz, batch, warmup, iters))
            row.update(measure_peak_memory(pipeline))
            with (bar or null_bar)(f"threads {used} batch {batch}", iters) as handle:
                stats = measure_interleaved({"model": pipeline}, warmup, iters,
                                            on_round=lambda: handle.update(1))["model"]
            rows.append({**row, **stats.to_dict()})
    return rows


def synthetic_images(size: tuple[int, int], count: int = SYNTHETIC_IMAGES) -> list[np.ndarray]:
    """Seeded noise images (BGR uint8), the same on every machine: the default benchmark input.

    Args:
        size: (height, width).
        count: How many.
    """
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


class NullBar:
    """A progress bar that shows nothing."""

    def update(self, steps: int) -> None:
        """Ignores progress."""


def null_bar(label: str, total: int) -> nullcontext:
    """A progress context that shows nothing (same shape as ``click.progressbar``)."""
    return nullcontext(NullBar())


def file_size_mb(path: str | Path | None) -> float | None:
    """Size of a model file in MB (10⁶ bytes; a folder such as an ``.mlpackage``: its files), or ``None`` for an
    in-memory model."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        return round(sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) / 1e6, 3)
    return round(os.path.getsize(path) / 1e6, 3)


def _reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_mb("VmHWM") is not None


def _status_mb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_mb() -> float | None:
    """Resident memory of the process now, in MB (Linux), else ``None``."""
    return _status_mb("VmRSS")


def _ru_maxrss_mb() -> float:
    import resource  # POSIX only; imported here so the module loads everywhere

    # ru_maxrss is in kB on Linux and bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if os.uname().sysname == "Darwin" else peak / 1024.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
