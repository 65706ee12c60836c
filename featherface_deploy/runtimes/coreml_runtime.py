"""Core ML backend: runs an exported ``.mlpackage`` (numpy + coremltools only, never torch directly).

Two engines sit behind one :class:`CoremlRuntime`, and every report names which one ran:

- ``coreml``: ``MLModel.predict`` with the chosen compute units — Apple's
  framework, on macOS only (the Linux coremltools wheel has no Core ML).
- ``coreml-reference-interpreter``: the numpy evaluation of the ML Program read
  from the package (:mod:`featherface_deploy.runtimes.mil`). It checks the
  converted file on Linux; it is **not** Core ML and says so in its name.

``engine="auto"`` takes Core ML where it exists and the interpreter elsewhere;
``engine="coreml"`` refuses to run without Core ML. (coremltools itself imports
torch when it is installed; this module does not.)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from featherface_deploy.contract import OUTPUT_ROLES, DecodeContract
from featherface_deploy.metadata.coreml import read_contract
from featherface_deploy.errors import BackendError, BackendNotInstalledError, ContractError, FeatherFaceError, InputError, \
    first_line, missing_backend
from featherface_deploy.runtimes.base import Runtime, check_output_shapes
from featherface_deploy.runtimes.in_graph import InGraphRuntime

try:
    import coremltools
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("coremltools", "coreml") from error

ENGINES = ("auto", "coreml", "interpreter")
INTERPRETER_NAME = "coreml-reference-interpreter"
INTERPRETER_NOTE = ("the numpy reference interpreter of the ML Program, not Core ML (Core ML runs only on macOS); "
                    "its speed says nothing about Core ML's")
COMPUTE_UNITS = {"all": "ALL", "cpu": "CPU_ONLY", "cpu-and-ne": "CPU_AND_NE", "cpu-and-gpu": "CPU_AND_GPU"}


def coreml_available() -> bool:
    """Whether Apple's Core ML framework can run predictions here (macOS with coremltools' native module)."""
    if sys.platform != "darwin":
        return False
    try:
        from coremltools import libcoremlpython  # noqa: F401
    except ImportError:
        return False
    return True


class CoremlRuntime(Runtime):
    """Runs a Core ML ML Program with Core ML (macOS) or the numpy reference interpreter.

    Args:
        path_or_model: A ``.mlpackage`` path, or a loaded ``coremltools.models.MLModel`` (injected; Core ML).
        threads: Accepted for the common runtime signature; neither Core ML nor the interpreter
            takes a thread count (Core ML schedules its own; the interpreter uses numpy's BLAS pool).
        compute_units: ``all``, ``cpu``, ``cpu-and-ne`` or ``cpu-and-gpu`` (Core ML only).
        engine: ``auto``, ``coreml`` or ``interpreter`` (see the module docstring).
        contract: A contract for an injected model without metadata.

    Attributes:
        engine: The engine that runs: ``coreml`` or ``interpreter``.

    Raises:
        BackendNotInstalledError: ``engine="coreml"`` where Core ML cannot run.
        ContractError: No contract in the metadata or a sidecar, or inputs/outputs that do not match it.
        FeatherFaceError: Unknown engine or compute units, or an unreadable package.
        InterpreterError: The interpreter does not implement an op of the program.
    """

    def __init__(self, path_or_model, threads: int | None = None, compute_units: str = "all",
                 engine: str = "auto", contract: DecodeContract | None = None) -> None:
        engine, path, spec_model = _choose_engine(path_or_model, engine, compute_units)
        self.engine = engine
        self.compute_units = compute_units
        self.name = "coreml" if engine == "coreml" else INTERPRETER_NAME
        self.note = "" if engine == "coreml" else INTERPRETER_NOTE
        contract = contract or read_contract(spec_model, path)
        if contract.in_graph:
            raise ContractError(f"{path or 'injected model'} is an end-to-end model (post-processing in the graph): "
                                "open it with CoremlRuntime.open or FaceDetector.load, which return its detecting "
                                "runtime")
        super().__init__(contract)
        self._image_input = bool(self.contract.extra.get("image_input"))
        self._model, self._interpreter = _open_engine(path_or_model, path, engine, compute_units)
        self._check_io(spec_model.get_spec(), str(path or "injected model"))

    @classmethod
    def open(cls, path_or_model, threads: int | None = None, compute_units: str = "all", engine: str = "auto",
             contract: DecodeContract | None = None) -> "CoremlRuntime | CoremlEnd2EndRuntime":
        """Opens any Core ML package: raw outputs → :class:`CoremlRuntime`; end-to-end → :class:`CoremlEnd2EndRuntime`."""
        _, path, spec_model = _choose_engine(path_or_model, engine, compute_units)
        contract = contract or read_contract(spec_model, path)
        runtime = CoremlEnd2EndRuntime if contract.in_graph else cls
        return runtime(path_or_model, threads=threads, compute_units=compute_units, engine=engine, contract=contract)

    def _check_io(self, spec, source: str) -> None:
        inputs = [i.name for i in spec.description.input]
        outputs = {o.name for o in spec.description.output}
        if inputs != [self.contract.input_name] or not set(self.contract.output_names) <= outputs:
            raise ContractError(f"{source}: model inputs {inputs} / outputs {sorted(outputs)} do not match the "
                                f"contract ({self.contract.input_name} → {list(self.contract.output_names)})")
        if self.contract.input_size is None or self.contract.extra.get("sizes") or self.contract.extra.get("flexible"):
            return  # flexible shapes: the spec lists one default size; outputs are checked after each inference
        declared = {o.name: tuple(o.type.multiArrayType.shape) for o in spec.description.output}
        roles = dict(zip(OUTPUT_ROLES, self.contract.output_names))
        check_output_shapes(self.contract, {role: declared[name] for role, name in roles.items() if declared[name]},
                            (1, 3, *self.contract.input_size), source)

    def _infer(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        # Exported with batch 1: a larger batch runs image by image.
        self._check_size(batch.shape[2:])
        results = [self._infer_one(image[None]) for image in batch]
        names = dict(zip(OUTPUT_ROLES, self.contract.output_names))
        return {role: np.concatenate([r[name] for r in results]).astype(np.float32) for role, name in names.items()}

    def _infer_one(self, image: np.ndarray) -> dict[str, np.ndarray]:
        name = self.contract.input_name
        if self._image_input:
            # The model subtracts the mean itself; it takes the 0–255 BGR image.
            pixels = np.clip(np.rint(image[0] + np.asarray(self.contract.mean_bgr, np.float32)[:, None, None]),
                             0, 255)
            if self._interpreter is not None:
                return self._interpreter.run({name: pixels[None].astype(np.float32)})
            from PIL import Image

            rgb = pixels[::-1].transpose(1, 2, 0).astype(np.uint8)
            return self._model.predict({name: Image.fromarray(rgb)})
        if self._interpreter is not None:
            return self._interpreter.run({name: image})
        return self._model.predict({name: image})

    def _check_size(self, size_hw: tuple[int, int]) -> None:
        sizes = self.contract.extra.get("sizes") or []
        if sizes and list(size_hw) not in [list(s) for s in sizes]:
            raise InputError(f"this model takes the sizes {', '.join(f'{h}×{w}' for h, w in sizes)}; "
                             f"got {size_hw[0]}×{size_hw[1]}")
        flexible = self.contract.extra.get("flexible")
        if flexible:
            low, high = (int(v) for v in flexible.split("-"))
            if not all(low <= side <= high for side in size_hw):
                raise InputError(f"this model takes sides from {low} to {high}; got {size_hw[0]}×{size_hw[1]}")


class CoremlEnd2EndRuntime(InGraphRuntime):
    """Runs an end-to-end Core ML package (decoding and NMS in the program) and returns detections in image pixels.

    Same arguments and engines as :class:`CoremlRuntime` (Core ML on macOS, the reference interpreter elsewhere).

    Raises:
        ContractError: No contract, a contract that is not end-to-end, or inputs/outputs that do not match it.
    """

    def __init__(self, path_or_model, threads: int | None = None, compute_units: str = "all",
                 engine: str = "auto", contract: DecodeContract | None = None) -> None:
        engine, path, spec_model = _choose_engine(path_or_model, engine, compute_units)
        source = str(path or "injected model")
        contract = contract or read_contract(spec_model, path)
        self.check_contract(contract, source)
        super().__init__(contract)
        self.engine = engine
        self.name = "coreml" if engine == "coreml" else INTERPRETER_NAME
        self.note = "" if engine == "coreml" else INTERPRETER_NOTE
        self._model, self._interpreter = _open_engine(path_or_model, path, engine, compute_units)
        proto = spec_model.get_spec()
        inputs = [i.name for i in proto.description.input]
        outputs = [o.name for o in proto.description.output]
        if inputs != [contract.input_name] or outputs != list(contract.end2end.outputs):
            raise ContractError(f"{source}: model inputs {inputs} / outputs {outputs} do not match its end-to-end "
                                f"contract ({contract.input_name} → {list(contract.end2end.outputs)})")

    def _run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feeds = {self.contract.input_name: tensor}
        out = self._interpreter.run(feeds) if self._interpreter is not None else self._model.predict(feeds)
        return tuple(np.asarray(out[name]) for name in self.contract.end2end.outputs)


def _choose_engine(path_or_model, engine: str, compute_units: str):
    """(the engine that runs, the package path or ``None`` when injected, a model to read the spec from).

    Raises:
        FeatherFaceError: Unknown engine or compute units, a missing package, or an injected model for the interpreter.
        BackendNotInstalledError: ``engine="coreml"`` where Core ML cannot run.
    """
    if engine not in ENGINES:
        raise FeatherFaceError(f"unknown Core ML engine '{engine}'; choose one of: {', '.join(ENGINES)}")
    if compute_units not in COMPUTE_UNITS:
        raise FeatherFaceError(f"unknown compute units '{compute_units}'; choose one of: "
                               f"{', '.join(COMPUTE_UNITS)}")
    injected = isinstance(path_or_model, coremltools.models.MLModel)
    path = None if injected else Path(path_or_model)
    if path is not None and not path.exists():
        raise FeatherFaceError(f"Core ML model not found: {path}")
    if engine == "auto":
        engine = "coreml" if injected or coreml_available() else "interpreter"
    if engine == "coreml" and not coreml_available():
        raise BackendNotInstalledError(
            "Core ML predictions need macOS (the Linux coremltools wheel has no Core ML framework); "
            "on Linux run the numpy reference interpreter with engine='interpreter' (CLI: --coreml-engine "
            "interpreter)")
    if injected and engine == "interpreter":
        raise FeatherFaceError("the reference interpreter reads a .mlpackage path, not a loaded MLModel")
    return engine, path, path_or_model if injected else _read_model(path)


def _open_engine(path_or_model, path: Path | None, engine: str, compute_units: str):
    """(Core ML model, None) or (None, reference interpreter) for the chosen engine."""
    if engine == "coreml":
        model = path_or_model if path is None else coremltools.models.MLModel(
            str(path), compute_units=getattr(coremltools.ComputeUnit, COMPUTE_UNITS[compute_units]))
        return model, None
    from featherface_deploy.runtimes.mil import MilInterpreter

    return None, MilInterpreter(path)


def _read_model(path: Path):
    try:
        return coremltools.models.MLModel(str(path), skip_model_load=True)
    except Exception as error:  # coremltools raises bare Exceptions for unreadable packages
        raise BackendError(f"coremltools cannot read {path}: {first_line(error)}") from error
