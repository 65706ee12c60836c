"""Where ONNX Runtime spends a run: its session profiler, read back per node (numpy + onnxruntime only).

:func:`profile_onnx` opens the model with ``SessionOptions.enable_profiling`` (and ONNX Runtime's default
graph optimizations, the ones users get), runs it ``warmup + runs`` times on one seeded input, ends the
profile and parses the JSON trace: every ``Node`` event (``<node>_kernel_time``, ``dur`` in µs,
``args.op_name``) is assigned to the ``model_run`` event it falls in, the warm-up runs are dropped and each
node keeps the median of its times over the counted runs. Node names are those of the *optimized* graph
(fused ``Conv`` + activation, NCHWc reorders), which is saved next to the trace so that the caller can map
them back to the exported graph's layers (:mod:`featherface_deploy.harness.onnx_scopes`).

Intra-op threads do not spin between runs (``allow_spinning`` off), like every timing in the harness.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featherface_deploy.errors import BackendError, FeatherFaceError, first_line
from featherface_deploy.runtimes.base import usable_threads
from featherface_deploy.runtimes.ort_runtime import _ORT_ERRORS, SPINNING_KEYS, onnxruntime

KERNEL_SUFFIX = "_kernel_time"
OPTIMIZED_NAME = "optimized.onnx"


@dataclass(frozen=True)
class OrtProfile:
    """ONNX Runtime's profile of one model, medians over the counted runs (milliseconds).

    Attributes:
        node_ms: Optimized-graph node name → median time of its kernel per run.
        node_op: Optimized-graph node name → its op type (``FusedConv``, ``Gather``, ``ReorderOutput``…).
        run_ms: Median of the whole ``model_run`` (kernels plus the executor's own time).
        runs: Counted runs.
        threads: Intra-op threads used.
        input_shape: The input fed, (batch, channels, height, width).
        optimized_model: The optimized graph ONNX Runtime ran (ONNX file; node names as in ``node_ms``).
    """

    node_ms: dict[str, float]
    node_op: dict[str, str]
    run_ms: float
    runs: int
    threads: int | None
    input_shape: tuple[int, ...]
    optimized_model: Path

    @property
    def kernels_ms(self) -> float:
        """Sum of the nodes' median times (what the per-node tables split)."""
        return float(sum(self.node_ms.values()))


def profile_onnx(path: str | Path, size: tuple[int, int], threads: int | None, warmup: int, runs: int,
                 workdir: str | Path) -> OrtProfile:
    """Profiles an ONNX model with ONNX Runtime's CPU provider.

    Args:
        path: The ``.onnx`` file (its first input is fed; any-size inputs get batch 1 and ``size``).
        size: (height, width) for any-size inputs; a fixed-size model runs at its own size.
        threads: Intra-op threads (``None``: ONNX Runtime's default), capped at the usable cores.
        warmup: Untimed runs first (their events are dropped).
        runs: Counted runs (median per node).
        workdir: Folder for the trace and the optimized graph (e.g. a temporary folder).

    Returns:
        The :class:`OrtProfile`.

    Raises:
        FeatherFaceError: Not a file, or an input that is not a float image tensor.
        BackendError: ONNX Runtime cannot load or run it, or the trace has fewer runs than asked for.
    """
    path, workdir = Path(path), Path(workdir)
    if not path.is_file():
        raise FeatherFaceError(f"ONNX model not found (or not a regular file): {path}")
    threads = usable_threads(threads)
    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / "ort-profile")
    options.optimized_model_filepath = str(workdir / OPTIMIZED_NAME)
    options.log_severity_level = 3  # saving an NCHWc graph warns that it is hardware-specific: it stays here
    for key in SPINNING_KEYS:
        options.add_session_config_entry(key, "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: _input_tensor(session.get_inputs()[0], size, path)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        trace = Path(session.end_profiling())
    except _ORT_ERRORS as error:
        raise BackendError(f"ONNX Runtime cannot profile {path}: {first_line(error)}") from error
    node_times, node_op, run_times = parse_trace(json.loads(trace.read_text()), warmup)
    if len(run_times) < runs:
        raise BackendError(f"the ONNX Runtime trace of {path} holds {len(run_times) + warmup} runs, expected "
                           f"{warmup + runs}")
    return OrtProfile({name: float(np.median(times)) for name, times in node_times.items()}, node_op,
                      float(np.median(run_times)), len(run_times), threads,
                      tuple(next(iter(feed.values())).shape), workdir / OPTIMIZED_NAME)


def parse_trace(events: list[dict], warmup: int) -> tuple[dict[str, list[float]], dict[str, str], list[float]]:
    """Splits an ONNX Runtime profiler trace into per-run node times.

    Args:
        events: The trace's JSON events.
        warmup: Leading ``model_run`` events to drop (with the node events inside them).

    Returns:
        (node name → its time in ms in each counted run, node name → op type, each counted run's ms). A node
        that ran more than once in a run (a loop body) has the sum of its times in that run.
    """
    runs = sorted((event["ts"], event["ts"] + event["dur"]) for event in events
                  if event.get("cat") == "Session" and event.get("name") == "model_run")
    counted = runs[warmup:]
    times: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    starts = np.array([start for start, _ in counted])
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith(KERNEL_SUFFIX) or not counted:
            continue
        run = int(np.searchsorted(starts, event["ts"], side="right")) - 1
        if run < 0 or event["ts"] > counted[run][1]:
            continue  # a warm-up run's node
        name = event["name"][: -len(KERNEL_SUFFIX)]
        ops[name] = event.get("args", {}).get("op_name", "?")
        per_run = times.setdefault(name, [0.0] * len(counted))
        per_run[run] += event["dur"] / 1000.0
    return times, ops, [(end - start) / 1000.0 for start, end in counted]


def _input_tensor(node_arg, size: tuple[int, int], path: Path) -> np.ndarray:
    """A seeded input for the model's first input: a mean-subtracted noise image at the model's or ``size``."""
    if node_arg.type != "tensor(float)" or len(node_arg.shape) != 4:
        raise FeatherFaceError(f"{path}: input '{node_arg.name}' is {node_arg.type} {node_arg.shape}; profile "
                               "feeds a float (batch, channels, height, width) image")
    fixed = [dim if isinstance(dim, int) else None for dim in node_arg.shape]
    shape = (fixed[0] or 1, fixed[1] or 3, fixed[2] or size[0], fixed[3] or size[1])
    return np.random.default_rng(0).uniform(-128.0, 128.0, shape).astype(np.float32)
