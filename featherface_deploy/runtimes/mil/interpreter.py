"""A numpy reference interpreter for the ML Program inside a written ``.mlpackage``.

Core ML itself only runs on Apple platforms. To check a converted program on
Linux, this module reads the program back from the file with coremltools' own
MIL reader (``milproto.load``: ops, their attributes, the weights in
``weight.bin``) and evaluates it op by op in numpy, following the MIL op
definitions. It never calls coremltools' own value inference.

Numerics: every kernel computes in float32 (or the integer/bool type it is
given) and each result is then rounded to the dtype the program declares for
it. A program converted with FP16 compute therefore carries FP16 tensors from
op to op, as Core ML stores them; how a particular Apple device accumulates
inside one op (float32 on the CPU, float16 on the Neural Engine) is not
modelled. An op the interpreter does not implement is an error that names it,
raised when the program is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featherface_deploy.errors import BackendError, FeatherFaceError, InterpreterError, first_line, missing_backend
from featherface_deploy.runtimes.mil.constexpr_ops import constexpr_ops
from featherface_deploy.runtimes.mil.detection_ops import detection_ops
from featherface_deploy.runtimes.mil.elementwise import elementwise_ops
from featherface_deploy.runtimes.mil.nn_ops import nn_ops
from featherface_deploy.runtimes.mil.tensor_ops import tensor_ops

KERNELS: dict[str, Callable[..., np.ndarray]] = {**elementwise_ops(), **tensor_ops(), **nn_ops(), **constexpr_ops(),
                                                 **detection_ops()}


@dataclass(frozen=True)
class _Ref:
    """An op input read from the environment (a value computed by an earlier op, or a function input)."""

    name: str


@dataclass(frozen=True)
class _Step:
    op_type: str
    name: str
    inputs: tuple[tuple[str, object], ...]  # (argument, _Ref | constant | tuple of them)
    outputs: tuple[tuple[str, np.dtype], ...]
    release: tuple[str, ...]  # values no later step reads


@dataclass(frozen=True)
class TensorSpec:
    """A function input or output: name, numpy dtype, shape (``None`` for a flexible dimension)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


class MilInterpreter:
    """Evaluates the ``main`` function of an ML Program with numpy.

    Args:
        path: A ``.mlpackage`` directory (or ``.mlmodel`` file) holding an ML Program.

    Attributes:
        inputs: The function's inputs.
        outputs: The function's outputs.
        op_counts: How many ops of each type the program has (``const`` included).

    Raises:
        BackendNotInstalledError: coremltools is missing (it reads the file).
        InterpreterError: The file is not an ML Program, or uses ops this interpreter does not implement.
    """

    def __init__(self, path: str | Path) -> None:
        function = _load_main_function(Path(path))
        self._types = _mil_types()
        unknown = sorted({op.op_type for op in function.operations if op.op_type != "const"} - set(KERNELS))
        if unknown:
            raise InterpreterError(f"{path}: the reference interpreter does not implement the MIL op(s) "
                                   f"{', '.join(unknown)}")
        self.inputs = tuple(self._spec(var) for var in function.inputs.values())
        self.outputs = tuple(self._spec(var) for var in function.outputs)
        self.op_counts: dict[str, int] = {}
        for op in function.operations:
            self.op_counts[op.op_type] = self.op_counts.get(op.op_type, 0) + 1
        self._steps = self._compile(function)

    def run(self, feeds: Mapping[str, np.ndarray], keep: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Runs the program.

        Args:
            feeds: One array per function input, by name (cast to the input's declared dtype).
            keep: Names of intermediate values to return as well (to inspect a subgraph, e.g. the DCN's
                sample positions); see :meth:`values_of`.

        Returns:
            The function's outputs and the kept values by name, in their declared dtypes.

        Raises:
            InterpreterError: A missing input, a wrong rank, or an op that fails on the given values.
        """
        env: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            if spec.name not in feeds:
                raise InterpreterError(f"missing input '{spec.name}' (the program takes {[s.name for s in self.inputs]})")
            value = np.asarray(feeds[spec.name])
            if value.ndim != len(spec.shape) or any(d is not None and d != v for d, v in zip(spec.shape, value.shape)):
                raise InterpreterError(f"input '{spec.name}' must be shaped {spec.shape}, got {value.shape}")
            env[spec.name] = value.astype(spec.dtype, copy=False)
        for step in self._steps:
            arguments = {name: _resolve(binding, env) for name, binding in step.inputs}
            try:
                result = KERNELS[step.op_type](**arguments)
            except (ValueError, IndexError, TypeError, KeyError) as error:
                raise InterpreterError(f"MIL op {step.op_type} '{step.name}' failed: {error}") from error
            results = result if isinstance(result, tuple) else (result,)
            for (name, dtype), value in zip(step.outputs, results):
                env[name] = np.asarray(value).astype(dtype, copy=False)
            for name in step.release:
                if name not in keep:
                    env.pop(name, None)
        return {name: env[name] for name in (*(spec.name for spec in self.outputs), *keep)}

    def values_of(self, op_type: str, argument: str | None = None) -> list[TensorSpec]:
        """The values ops of ``op_type`` compute (or read as ``argument``), in program order (name, dtype, shape).

        Raises:
            InterpreterError: ``argument`` is not a computed input of those ops.
        """
        values = []
        for step in self._steps:
            if step.op_type != op_type:
                continue
            if argument is None:
                values += [self._values[name] for name, _ in step.outputs]
                continue
            binding = dict(step.inputs).get(argument)
            if not isinstance(binding, _Ref):
                raise InterpreterError(f"MIL op {op_type} '{step.name}' has no computed input '{argument}'")
            values.append(self._values[binding.name])
        return values

    def _spec(self, var) -> TensorSpec:
        shape = tuple(int(d) if isinstance(d, (int, np.integer)) else None for d in var.shape)
        return TensorSpec(var.name, self._numpy_dtype(var), shape)

    def _numpy_dtype(self, var) -> np.dtype:
        return np.dtype(self._types.nptype_from_builtin(var.dtype))

    def _compile(self, function) -> tuple[_Step, ...]:
        """Turns the MIL ops into steps; constants are read once, here."""
        produced = set(function.inputs)
        ops = [op for op in function.operations if op.op_type != "const"]
        for op in ops:
            if op.blocks:
                raise InterpreterError(f"MIL op {op.op_type} '{op.name}' has nested blocks (control flow), "
                                       "which the reference interpreter does not run")
        bindings = []
        for op in ops:
            bindings.append(tuple((name, self._binding(var, produced, op)) for name, var in op.inputs.items()))
            produced.update(out.name for out in op.outputs)
        self._values = {var.name: self._spec(var) for var in function.inputs.values()}
        self._values.update((out.name, self._spec(out)) for op in ops for out in op.outputs)
        last_use = _last_uses(bindings)
        keep = {spec.name for spec in self.outputs}
        steps = []
        for index, (op, inputs) in enumerate(zip(ops, bindings)):
            release = tuple(name for name, last in last_use.items() if last == index and name not in keep)
            outputs = tuple((out.name, self._numpy_dtype(out)) for out in op.outputs)
            steps.append(_Step(op.op_type, op.name, inputs, outputs, release))
        return tuple(steps)

    def _binding(self, var, produced: set[str], op):
        if isinstance(var, (tuple, list)):
            return tuple(self._binding(v, produced, op) for v in var)
        if var.name in produced:
            return _Ref(var.name)
        if var.op is None or var.op.op_type == "const":
            value = var.val
            return value if isinstance(value, str) else np.asarray(value, dtype=self._numpy_dtype(var))
        raise InterpreterError(f"MIL op {op.op_type} '{op.name}' reads '{var.name}' before it is computed")


def _resolve(binding, env: dict[str, np.ndarray]):
    if isinstance(binding, _Ref):
        value = env[binding.name]
        return value.astype(np.float32) if value.dtype == np.float16 else value
    if isinstance(binding, tuple):
        return [_resolve(b, env) for b in binding]
    if isinstance(binding, np.ndarray) and binding.dtype == np.float16:
        return binding.astype(np.float32)
    return binding


def _last_uses(bindings) -> dict[str, int]:
    last: dict[str, int] = {}

    def visit(binding, index):
        if isinstance(binding, _Ref):
            last[binding.name] = index
        elif isinstance(binding, tuple):
            for b in binding:
                visit(b, index)

    for index, inputs in enumerate(bindings):
        for _, binding in inputs:
            visit(binding, index)
    return last


def _mil_types():
    from coremltools.converters.mil.mil import types

    return types


def _load_main_function(path: Path):
    """Reads the ``main`` function of the ML Program in ``path`` with coremltools' MIL reader."""
    try:
        import coremltools
        from coremltools.converters.mil.frontend.milproto.load import load
    except ImportError as error:
        raise missing_backend("coremltools", "coreml") from error
    if not path.exists():
        raise FeatherFaceError(f"Core ML model not found: {path}")
    try:
        model = coremltools.models.MLModel(str(path), skip_model_load=True)
    except Exception as error:  # coremltools raises bare Exceptions for unreadable packages
        raise BackendError(f"coremltools cannot read {path}: {first_line(error)}") from error
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise InterpreterError(f"{path} is a Core ML '{spec.WhichOneof('Type')}' model, not an ML Program; "
                               "the reference interpreter runs ML Programs only (export with --format coreml)")
    try:
        program = load(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir)
    except Exception as error:  # noqa: BLE001 - a damaged weight.bin raises ValueError, RuntimeError, IndexError…
        raise BackendError(f"coremltools cannot read the program or weights of {path}: {first_line(error)}") \
            from error
    return program.functions["main"]
