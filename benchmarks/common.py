"""Helpers shared by the benchmark scripts: timing, machine facts, result files."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from featherface_deploy.harness.report import machine_facts

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


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


def print_table(table: str) -> None:
    """Prints a results table (a ``docs_tools.results_tables`` renderer's: the docs' own) under a line naming this
    machine's CPU and instruction-set flags."""
    facts = machine_facts()
    print(f"{facts.get('cpu', '?')} ({', '.join(facts.get('isa_flags') or []) or 'no ISA flags recorded'})\n\n{table}")


def median_ms(samples: list[float]) -> float:
    """Median of samples in seconds, as milliseconds."""
    return 1000.0 * statistics.median(samples)


def write_result(name: str, payload: dict) -> Path:
    """Writes ``results/<name>.json`` with the machine facts added; returns the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({**machine_facts(), **payload}, indent=2) + "\n")
    return path



def evaluate_json(model: Path, widerface: Path, limit: int, out: Path, where: str, prefix: list[str] = (),
                  suffix: list[str] = (), env: dict | None = None) -> dict:
    """``featherface-deploy evaluate --json`` of ``model`` on the first ``limit`` images, kept in ``out``.

    A result already in ``out`` is returned without running again (long emulated runs resume). ``prefix`` goes
    before the Python command (an emulator), ``suffix`` after the CLI arguments (``--remote …``), ``env`` adds
    variables; ``where`` names the run in the error raised when it fails.
    """
    if out.exists():
        return json.loads(out.read_text())
    variables = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                     **(env or {}))
    done = subprocess.run([*prefix, sys.executable, "-m", "featherface_deploy.cli.main", "evaluate", "--model",
                           str(model), "--widerface", str(widerface), "--limit", str(limit), "--json", *suffix],
                          capture_output=True, text=True, env=variables, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"evaluate {model.name} {where} failed: {done.stderr[-2000:]}")
    partial = out.with_suffix(".partial")
    partial.write_text(done.stdout)
    os.replace(partial, out)
    return json.loads(done.stdout)
