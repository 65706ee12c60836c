"""Where LiteRT spends a run: what the XNNPACK delegate took, and the time of the rest (numpy + ai-edge-litert).

LiteRT's Python interpreter has no per-op profiler, so :func:`profile_tflite` reports what it can measure:

- **delegation**: the interpreter with XNNPACK lists the model's ops followed by one ``DELEGATE`` node per
  partition; walking back from each partition's outputs to its inputs gives the ops it owns. Every other op
  runs on LiteRT's built-in kernels, between partitions.
- **time of the rest**: the ops outside XNNPACK are cut out into a model of their own (same tensors,
  same order, the partitions' results become its inputs), fed the real tensors they receive in a full run
  and timed with the built-in kernels. The partitions' time is estimated as the full XNNPACK invoke minus
  that. It is an estimate: alone, the cut-out ops find their inputs in cache and pay no partition handovers.
- **whole invokes** with and without XNNPACK, timed interleaved with the cut-out model (one of each per
  round, median over rounds), on one seeded input.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featherface_deploy.errors import BackendError, FeatherFaceError, first_line
from featherface_deploy.harness.onnx_scopes import group_of, layer_of
from featherface_deploy.runtimes.base import usable_threads
from featherface_deploy.runtimes.tflite_runtime import _litert

DELEGATE_OP = "DELEGATE"
_MODULE = re.compile(r"^(_?[A-Za-z0-9]+)_(.+)$")  # "MobileNetV1_body" → ("MobileNetV1", "body")


@dataclass(frozen=True)
class LitertProfile:
    """What XNNPACK took and how long the rest runs (milliseconds, medians).

    Attributes:
        ops: One dict per model op: ``index``, ``op``, ``group``, ``layer``, ``partition`` (``None``: outside).
        partitions: XNNPACK partitions (``DELEGATE`` nodes).
        xnnpack_ms: Whole invoke with XNNPACK.
        builtin_ms: Whole invoke without any delegate.
        rest_ms: The ops outside XNNPACK, cut out and timed alone (0 when XNNPACK took everything).
        runs: Timed rounds.
        threads: Interpreter threads.
        input_shape: The input fed.
        outside_types: Op type → how many ops of that type run outside XNNPACK.
    """

    ops: list[dict]
    partitions: int
    xnnpack_ms: float
    builtin_ms: float
    rest_ms: float
    runs: int
    threads: int | None
    input_shape: tuple[int, ...]
    outside_types: Counter = field(default_factory=Counter)

    @property
    def partitions_ms(self) -> float:
        """Estimated time inside the XNNPACK partitions: the XNNPACK invoke minus the time of the rest."""
        return max(self.xnnpack_ms - self.rest_ms, 0.0)


def profile_tflite(path: str | Path, threads: int | None, warmup: int, runs: int) -> LitertProfile:
    """Profiles a ``.tflite`` file with LiteRT on the CPU.

    Args:
        path: The model file (its primary subgraph's first input is fed).
        threads: Interpreter threads (``None``: LiteRT's default), capped at the usable cores.
        warmup: Untimed rounds.
        runs: Timed rounds (each times the XNNPACK, built-in and cut-out-rest invokes once).

    Raises:
        FeatherFaceError: Not a file.
        BackendError: LiteRT cannot load or run it.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatherFaceError(f"TFLite model not found (or not a regular file): {path}")
    data = path.read_bytes()
    threads = usable_threads(threads)
    try:
        xnnpack = _interpreter(data, threads, delegate=True)
        ops, partitions = delegation(xnnpack)
        builtin = _interpreter(data, threads, delegate=False)
        feed = _input_tensor(xnnpack.get_input_details()[0])
        outside = [op["index"] for op in ops if op["partition"] is None]
        timed = {"xnnpack": _runner(xnnpack, {xnnpack.get_input_details()[0]["index"]: feed}),
                 "builtin": _runner(builtin, {builtin.get_input_details()[0]["index"]: feed})}
        if outside:
            rest, rest_feed = _rest_model(data, threads, outside, feed)
            timed["rest"] = _runner(rest, rest_feed)
        medians = _time_interleaved(timed, warmup, runs)
    except (ValueError, RuntimeError) as error:
        raise BackendError(f"LiteRT cannot profile {path}: {first_line(error)}") from error
    names = _module_paths([_output_name(xnnpack, op) for op in ops])
    for op, module in zip(ops, names):
        op.update(group=group_of(module), layer=layer_of(module))
    return LitertProfile(ops, partitions, medians["xnnpack"], medians["builtin"], medians.get("rest", 0.0), runs,
                         threads, tuple(int(v) for v in feed.shape),
                         Counter(op["op"] for op in ops if op["partition"] is None))


def delegation(interpreter) -> tuple[list[dict], int]:
    """The model's ops and the XNNPACK partition that owns each (``None``: run by the built-in kernels).

    Args:
        interpreter: An allocated LiteRT ``Interpreter`` (with or without a delegate).

    Returns:
        (one ``{"index", "op", "partition"}`` per model op, the number of ``DELEGATE`` partitions).
    """
    details = interpreter._get_ops_details()  # noqa: SLF001 - LiteRT's only listing of the execution nodes
    delegates = [node for node in details if node["op_name"] == DELEGATE_OP]
    model_ops = [node for node in details if node["op_name"] != DELEGATE_OP]
    producer = {int(tensor): node["index"] for node in model_ops for tensor in node["outputs"] if tensor >= 0}
    owner: dict[int, int] = {}
    for number, delegate in enumerate(delegates):
        boundary = {int(tensor) for tensor in delegate["inputs"]}
        stack = [int(tensor) for tensor in delegate["outputs"]]
        while stack:
            tensor = stack.pop()
            op = producer.get(tensor)
            if tensor in boundary or op is None or op in owner:
                continue
            owner[op] = number
            stack.extend(int(t) for t in details[op]["inputs"] if t >= 0)
    ops = [{"index": node["index"], "op": node["op_name"], "partition": owner.get(node["index"])}
           for node in model_ops]
    return ops, len(delegates)


def _interpreter(data: bytes, threads: int | None, delegate: bool, preserve: bool = False):
    options = {"num_threads": threads, "experimental_preserve_all_tensors": preserve}
    if not delegate:
        options["experimental_op_resolver_type"] = _litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = _litert.Interpreter(model_content=data, **options)
    interpreter.allocate_tensors()
    return interpreter


def _rest_model(data: bytes, threads: int | None, outside: list[int], feed: np.ndarray):
    """The ops outside XNNPACK as a model of their own, and the real tensors it receives in a full run."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    graph = model.subgraphs[0]
    rest = [graph.operators[index] for index in outside]
    produced = {int(t) for op in rest for t in op.outputs}
    inputs = list(dict.fromkeys(int(t) for op in rest for t in op.inputs
                                if t >= 0 and t not in produced and not _is_constant(model, graph, t)))
    cut = set(outside)
    taken = {int(t) for index, op in enumerate(graph.operators) if index not in cut for t in op.inputs}
    graph_outputs = {int(t) for t in graph.outputs}
    graph.operators, graph.inputs = rest, inputs
    graph.outputs = sorted(t for t in produced if t in taken or t in graph_outputs)
    model.signatureDefs = []
    rest_interpreter = _interpreter(bytes(flatbuffer_utils.convert_object_to_bytearray(model)), threads,
                                    delegate=False)
    reference = _interpreter(data, threads, delegate=False, preserve=True)
    reference.set_tensor(reference.get_input_details()[0]["index"], feed)
    reference.invoke()
    return rest_interpreter, {tensor: reference.get_tensor(tensor) for tensor in inputs}


def _is_constant(model, graph, tensor: int) -> bool:
    buffer = model.buffers[graph.tensors[tensor].buffer]
    return bool(buffer.data is not None and len(buffer.data)) or bool(getattr(buffer, "size", 0))


def _runner(interpreter, feed: dict[int, np.ndarray]):
    def run() -> None:
        for index, value in feed.items():
            interpreter.set_tensor(index, value)
        interpreter.invoke()
    return run


def _time_interleaved(runners: dict, warmup: int, runs: int) -> dict[str, float]:
    for _ in range(warmup):
        for run in runners.values():
            run()
    samples = {name: [] for name in runners}
    for _ in range(runs):
        for name, run in runners.items():
            start = time.perf_counter_ns()
            run()
            samples[name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: float(np.median(values)) for name, values in samples.items()}


def _input_tensor(detail: dict) -> np.ndarray:
    """A seeded input: a mean-subtracted noise image (float), or random values of an integer input's type."""
    rng = np.random.default_rng(0)
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(v) for v in detail["shape"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    return rng.uniform(-128.0, 128.0, shape).astype(dtype)


def _output_name(interpreter, op: dict) -> str:
    outputs = interpreter._get_op_details(op["index"])["outputs"]  # noqa: SLF001 - see delegation()
    return interpreter._get_tensor_details(int(outputs[0]), 0)["name"] if len(outputs) else ""  # noqa: SLF001


def _module_paths(names: list[str]) -> list[tuple[str, ...]]:
    """litert-torch tensor names (``…/MobileNetV1_body/Sequential_stage1/…;…``) → module paths.

    Each ``/`` segment is ``module.Class_attribute``; the attributes form the path (a ModuleList item,
    ``BiFPNCell_0``, gives class and index). The leading attributes every op shares (the export wrapper's
    ``model``) are dropped.
    """
    paths = []
    for name in names:
        segments = name.split(";")[0].split("/")
        path = []
        for segment in segments:
            match = _MODULE.match(segment.rsplit(".", 1)[-1]) if "." in segment else None
            if match:  # a ModuleList's items appear as Class_index: the class names the list
                path.extend(match.groups() if match.group(2).isdigit() else match.groups()[1:])
        paths.append(tuple(path))
    scoped = [path for path in paths if path]
    common = 0
    while scoped and all(len(path) > common and path[common] == scoped[0][common] for path in scoped):
        common += 1
    return [path[common:] for path in paths]
