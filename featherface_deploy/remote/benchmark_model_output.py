"""Reads the text TFLite's ``benchmark_model`` prints into the numbers of a benchmark row, delegate fallbacks included.

The lines read (as ``tensorflow/lite/tools/benchmark/benchmark_model.cc`` prints them; recorded real outputs are in
``tests/data/benchmark_model/``)::

    count=50 first=58154 curr=53809 min=53077 max=60727 avg=55043.2 std=1562 [p5=… median=… p95=…]
    Inference timings in us: Init: 18777, First inference: 64791, Warmup (avg): 57758.2, Inference (avg): 55043.2
    Peak memory footprint (MB): init=4.92969 overall=138.809                        (older releases)
    Memory footprint delta from the start of the tool (MB): init=8.97656 overall=18.7227
    Overall peak memory footprint (MB) via periodic monitoring: 93.2383            (newer releases, extra line)

The statistics line used is the last ``count=`` line before the timings (the first is the warm-up's); the
op-profiling tables' ``Timings (microseconds): count=…`` lines are not read. Android logcat prefixes
(``05-30 15:16:44.857  3380  3380 I tflite  :``) and ``INFO:`` / ``VERBOSE:`` tags are ignored. What the tool says
about delegation is kept: a delegate that runs only part of the graph, none of it, or fails, is a *fallback* the
report shows, never hidden.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from featherface_deploy.errors import DeviceError

_LOGCAT = re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*?\s*:\s?")
_TAG = re.compile(r"^(INFO|VERBOSE|WARNING|ERROR): ")
_NUMBER = r"([-+0-9.eE]+)"
_STATS = re.compile(rf"^count=(\d+) first={_NUMBER} curr={_NUMBER} min={_NUMBER} max={_NUMBER} avg={_NUMBER} "
                    rf"std={_NUMBER}(?: p5={_NUMBER} median={_NUMBER} p95={_NUMBER})?")
_TIMINGS = re.compile(rf"^Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
                      rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}")
_MEMORY = (re.compile(rf"^Peak memory footprint \(MB\): init={_NUMBER} overall={_NUMBER}"),
           re.compile(rf"^Memory footprint delta from the start of the tool \(MB\): init={_NUMBER} overall={_NUMBER}"))
_PEAK = re.compile(rf"^Overall peak memory footprint \(MB\) via periodic monitoring: {_NUMBER}")
_CREATED = re.compile(r"^Created TensorFlow Lite (?:\S+ )?delegate for \S+")
_FULL = re.compile(r"^Explicitly applied (\S+) delegate, and the model graph will be completely executed")
_PARTIAL = re.compile(r"^Explicitly applied (\S+) delegate, and the model graph will be partially executed"
                      r" by the delegate w/ (\d+) delegate kernels")
_NONE = re.compile(r"^Though (\S+) delegate is explicitly applied, the model graph will not be executed")
_REPLACING = re.compile(r"^Replacing (\d+) out of (\d+) node\(s\) with delegate \((\S+)\) node, yielding (\d+) partitions")
_FAILED = re.compile(r"^Failed to apply (\S+) delegate")
_UNSUPPORTED = re.compile(r"^Following operations are not supported by (\S+) delegate")


@dataclass(frozen=True)
class BenchmarkModelOutput:
    """What one ``benchmark_model`` run printed.

    Attributes:
        count: Timed runs.
        avg_us, std_us, min_us, max_us: Statistics of the timed runs (µs).
        median_us: Their median when the tool prints percentiles (newer releases), else ``None``.
        init_us: Initialisation (model load, delegate preparation).
        first_inference_us: The first (warm-up) run.
        warmup_avg_us: Mean of the warm-up runs.
        inference_avg_us: Mean of the timed runs.
        memory_init_mb, memory_overall_mb: The memory line's ``init`` and ``overall`` (``None`` when absent).
        memory_line: Which spelling it had: ``"peak"`` (older) or ``"delta"``.
        peak_memory_mb: The periodic-monitoring peak (newer releases), else ``None``.
        delegation: What the tool said about delegates (one line each).
        fallbacks: Delegation that did not cover the whole graph (one line each).
    """

    count: int
    avg_us: float
    std_us: float
    min_us: float
    max_us: float
    median_us: float | None
    init_us: float
    first_inference_us: float
    warmup_avg_us: float
    inference_avg_us: float
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_line: str | None = None
    peak_memory_mb: float | None = None
    delegation: tuple[str, ...] = field(default_factory=tuple)
    fallbacks: tuple[str, ...] = field(default_factory=tuple)

    def to_row(self) -> dict:
        """The numbers under the local benchmark's row keys (milliseconds, MB), plus the tool's own."""
        row = {"iterations": self.count, "mean_ms": _ms(self.avg_us), "std_ms": _ms(self.std_us),
               "min_ms": _ms(self.min_us), "max_ms": _ms(self.max_us), "p50_ms": _ms(self.median_us),
               "throughput": round(1e6 / self.avg_us, 2) if self.avg_us > 0 else None,
               "init_ms": _ms(self.init_us), "first_inference_ms": _ms(self.first_inference_us),
               "warmup_avg_ms": _ms(self.warmup_avg_us), "infer_ms": _ms(self.inference_avg_us),
               "peak_rss_mb": self.peak_memory_mb if self.peak_memory_mb is not None else self.memory_overall_mb,
               "memory_init_mb": self.memory_init_mb, "memory_line": self.memory_line,
               "delegation": list(self.delegation), "fallbacks": list(self.fallbacks)}
        return {key: value for key, value in row.items() if value is not None}


def clean_lines(text: str) -> list[str]:
    """The output's lines without logcat prefixes and ``INFO:``/``VERBOSE:`` tags (``ERROR:`` is kept)."""
    lines = []
    for raw in text.replace("\r", "").splitlines():
        line = _LOGCAT.sub("", raw.strip())
        tag = _TAG.match(line)
        if tag and tag.group(1) != "ERROR":
            line = line[tag.end():]
        lines.append(line.strip())
    return lines


def delegation_notes(lines: list[str]) -> tuple[list[str], list[str]]:
    """What the output says about delegates: (every delegation line, the fallbacks among them)."""
    delegation, fallbacks = [], []
    for index, line in enumerate(lines):
        if _FULL.match(line) or _CREATED.match(line):
            delegation.append(line)
        elif _PARTIAL.match(line) or _NONE.match(line) or _FAILED.match(line):
            delegation.append(line)
            fallbacks.append(line)
        elif _REPLACING.match(line):
            delegation.append(line)
            done, total = (int(v) for v in _REPLACING.match(line).groups()[:2])
            if done < total:
                fallbacks.append(f"{line} ({total - done} node(s) left on the CPU)")
        elif _UNSUPPORTED.match(line):
            detail = " ".join(part for part in lines[index + 1:index + 4] if part and not part.startswith("INFO"))
            fallbacks.append(f"{line} {detail}".strip())
            delegation.append(fallbacks[-1])
    return delegation, fallbacks


def parse_benchmark_model_output(text: str) -> BenchmarkModelOutput:
    """Reads one run's output.

    Raises:
        DeviceError: The output has no timings (the tool failed); the message quotes its errors and any
            delegate failure.
    """
    lines = clean_lines(text)
    stats = timings = None
    memory: tuple | None = None
    peak = None
    for line in lines:
        if timings is None and _STATS.match(line):
            stats = _STATS.match(line)
        elif timings is None and _TIMINGS.match(line):
            timings = _TIMINGS.match(line)
        elif _PEAK.match(line):
            peak = float(_PEAK.match(line).group(1))
        else:
            for spelling, pattern in zip(("peak", "delta"), _MEMORY):
                if pattern.match(line):
                    memory = (spelling, *(float(v) for v in pattern.match(line).groups()))
    delegation, fallbacks = delegation_notes(lines)
    if timings is None or stats is None:
        reasons = [line for line in lines if line.startswith("ERROR") or "failed" in line.lower()]
        raise DeviceError("benchmark_model printed no timings"
                          + (": " + " | ".join(dict.fromkeys(reasons)) if reasons else " (is this its output?)"))
    count, _first, _curr, low, high, avg, std, _p5, median, _p95 = stats.groups()
    init, first, warmup, inference = (float(v) for v in timings.groups())
    return BenchmarkModelOutput(
        count=int(count), avg_us=float(avg), std_us=float(std), min_us=float(low), max_us=float(high),
        median_us=float(median) if median is not None else None, init_us=init, first_inference_us=first,
        warmup_avg_us=warmup, inference_avg_us=inference,
        memory_init_mb=memory[1] if memory else None, memory_overall_mb=memory[2] if memory else None,
        memory_line=memory[0] if memory else None, peak_memory_mb=peak,
        delegation=tuple(delegation), fallbacks=tuple(fallbacks))


def _ms(microseconds: float | None) -> float | None:
    return None if microseconds is None else round(microseconds / 1000.0, 3)
