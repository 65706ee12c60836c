"""Helpers shared by the benchmark scripts: timing, machine facts, result files."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from featherface_deploy.harness.report import machine_facts

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def default_shared() -> Path:
    """The shared data folder: ``$FEATHERFACE_SHARED`` or ``../shared`` beside the repository."""
    env = os.environ.get("FEATHERFACE_SHARED")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared"


def time_interleaved(functions: dict[str, Callable[[], object]], iterations: int, warmup: int = 3,
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Times several functions round-robin (so machine noise hits all alike); returns seconds per call.

    ``clock`` is wall time by default; ``time.process_time`` (CPU seconds of the process) is steadier on a
    host where other jobs take the cores.
    """
    for _ in range(warmup):
        for function in functions.values():
            function()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(iterations):
        for name, function in functions.items():
            start = clock()
            function()
            samples[name].append(clock() - start)
    return samples


def median_ms(samples: list[float]) -> float:
    """Median of samples in seconds, as milliseconds."""
    return 1000.0 * statistics.median(samples)


def write_result(name: str, payload: dict) -> Path:
    """Writes ``results/<name>.json`` with the machine facts added; returns the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({**machine_facts(), **payload}, indent=2) + "\n")
    return path

