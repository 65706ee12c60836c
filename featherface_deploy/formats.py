"""The one table of model formats: every format and precision is one row.

A row says what the file is (suffix, precision), what it is built from (the
checkpoint, or another row: ``onnx-int8`` from ``onnx``), which exporter writes
it and which options that exporter takes, which runtime opens it, the pip
extras it needs, and whether it can be built and run on this machine. The options a row takes
are the declared fields of its options class (:mod:`featherface_deploy.export_options`). The
CLI's ``--format`` choices, ``compare``'s rows, suffix detection, option checks
and "missing backend" messages are all derived from :data:`FORMATS`: adding a
backend means one row here, one exporter module, one runtime module and their
tests. ``featherface-deploy formats`` prints the table.

No backend is imported here; probes look packages up with ``importlib.util.find_spec``
(a GPU row's probe imports torch when it is checked, never at import).
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
from dataclasses import dataclass
from pathlib import Path

from featherface_deploy.errors import ExportError, FeatherFaceError
from featherface_deploy.option_fields import option_fields

CHECKPOINT = "checkpoint"

@dataclass(frozen=True)
class Probe:
    """What a row needs on this machine.

    Attributes:
        modules: Python modules that must be importable.
        systems: ``platform.system()`` values it works on (empty: any).
        note: Said when it runs here only in part (e.g. Core ML through the reference interpreter).
        cuda: Needs an NVIDIA GPU that torch sees (checked by importing torch, only when probed).
    """

    modules: tuple[str, ...] = ()
    systems: tuple[str, ...] = ()
    note: str = ""
    cuda: bool = False

    def check(self, extra: str) -> tuple[bool, str]:
        """(ok, why): ``why`` names the missing module and the extra that installs it, or the platform."""
        if self.systems and platform.system() not in self.systems:
            return False, f"needs {' or '.join(self.systems)} (this is {platform.system()})"
        missing = [m for m in self.modules if not _importable(m)]
        if missing:
            return False, f"{', '.join(missing)} not installed: pip install 'featherface-deploy[{extra}]'"
        if self.cuda and not _cuda_available():
            return False, "needs an NVIDIA GPU (torch.cuda.is_available() is False)"
        return True, self.note


@dataclass(frozen=True)
class Format:
    """One format at one precision.

    Attributes:
        name: The CLI name (``onnx-int8``), used by ``export --format`` (with ``--half``/``--int8``) and ``compare``.
        family: The file format (``onnx``, ``tflite``, ``coreml``, ``engine``, ``trt-recipe``, ``torch``).
        precision: ``fp32``, ``fp16`` or ``int8``.
        source: :data:`CHECKPOINT`, or the row whose file the exporter reads; ``None`` for the reference.
        exporter: ``module:function`` with the signature ``(source, out_path, row, options, context) -> ExportResult``
            (``source``: the model for checkpoint rows, else the source row's file).
        options_class: ``module:Class`` of the exporter's options (a frozen dataclass with ``validate(row)``,
            in :mod:`featherface_deploy.export_options`), whose declared fields are the options the row takes.
        runtime: ``module:Class`` of the runtime that opens the file (and verifies the export).
        suffixes: File suffixes; the first is what exports write (``""``: a folder without suffix).
        extra: The pip extra that installs the runtime.
        export_extra: The pip extra that installs the exporter.
        run_probe: Whether the runtime can run here.
        export_probe: Whether the exporter can run here.
        directory: The artifact is a folder (``.mlpackage``, a recipe).
        verify_entry: For folders the runtime does not open itself: the file inside that is verified.
        source_overrides: Options forced on the source row (``engine-int8`` wants TensorRT-style Q/DQ).
        runtime_options: Keywords for the runtime's constructor wherever the row is opened
            (``torch-cuda``: ``device="cuda"``).
        description: One line for help texts.
        raw_runtime: ``module:Class`` of the runtime that returns the file's raw outputs, when ``runtime``
            returns finished detections (the MediaPipe task): the pipeline checks parity with it, and
            ``--runtime litert`` opens the file with it.
    """

    name: str
    family: str
    precision: str
    runtime: str
    suffixes: tuple[str, ...]
    extra: str
    run_probe: Probe
    source: str | None = None
    exporter: str | None = None
    options_class: str | None = None
    export_extra: str | None = None
    export_probe: Probe = Probe()
    directory: bool = False
    verify_entry: str | None = None
    source_overrides: tuple[tuple[str, object], ...] = ()
    runtime_options: tuple[tuple[str, object], ...] = ()
    description: str = ""
    raw_runtime: str | None = None

    @property
    def options(self) -> tuple[str, ...]:
        """The option names this row accepts (:func:`~featherface_deploy.option_fields.option_fields` of its
        ``options_class`` that rows of its precision take); any other is an error."""
        if self.options_class is None:
            return ()
        return tuple(item.name for item in option_fields(resolve(self.options_class)) if item.taken_at(self.precision))

    @property
    def suffix(self) -> str:
        """The suffix exports write."""
        return self.suffixes[0]

    def runs_here(self) -> tuple[bool, str]:
        """(ok, why) for opening this row's files on this machine."""
        return self.run_probe.check(self.extra)

    def exports_here(self) -> tuple[bool, str]:
        """(ok, why) for building this row on this machine."""
        if self.exporter is None:
            return False, "the reference: nothing to export"
        return self.export_probe.check(self.export_extra or self.extra)


_TORCH = "featherface_deploy.runtimes.torch_runtime:TorchRuntime"
_ORT = "featherface_deploy.runtimes.ort_runtime:OrtRuntime"
_TFLITE = "featherface_deploy.runtimes.tflite_runtime:TfliteRuntime"
_COREML = "featherface_deploy.runtimes.coreml_runtime:CoremlRuntime"
_TRT = "featherface_deploy.runtimes.trt_runtime:TrtRuntime"
_MEDIAPIPE = "featherface_deploy.runtimes.mediapipe_runtime:MediapipeRuntime"
_EXPORT_ONNX = Probe(("torch", "onnx", "onnxscript", "onnxruntime"))
_RUN_ONNX = Probe(("onnxruntime",))
_RUN_TFLITE = Probe(("ai_edge_litert",)) if platform.machine() != "armv7l" else Probe(("tflite_runtime",))
_EXPORT_TFLITE = Probe(("torch", "litert_torch", "ai_edge_quantizer", "ai_edge_litert"))
_RUN_COREML = Probe(("coremltools",), note="" if platform.system() == "Darwin" else
                    "numpy reference interpreter; Core ML itself runs only on macOS")
_EXPORT_COREML = Probe(("torch", "coremltools"))
_RUN_TRT = Probe(("tensorrt",), ("Linux", "Windows"), note="needs an NVIDIA GPU")
_RUN_TORCH_CUDA = Probe(("torch",), cuda=True)


_OPTIONS = "featherface_deploy.export_options"


def _torch_row(name, precision, runtime_options, probe, description):
    return Format(name=name, family="torch", precision=precision, runtime=_TORCH, suffixes=(".pth", ".pt"),
                  extra="torch", run_probe=probe, runtime_options=runtime_options, description=description)


def _onnx_row(name, precision, source, exporter, options_class, description, overrides=()):
    return Format(name=name, family="onnx", precision=precision, runtime=_ORT, suffixes=(".onnx",), extra="onnx",
                  run_probe=_RUN_ONNX, source=source, exporter=exporter, options_class=f"{_OPTIONS}:{options_class}",
                  export_extra="export", export_probe=_EXPORT_ONNX, source_overrides=overrides,
                  description=description)


def _tflite_row(name, precision, description):
    return Format(name=name, family="tflite", precision=precision, runtime=_TFLITE, suffixes=(".tflite",),
                  extra="tflite", run_probe=_RUN_TFLITE, source=CHECKPOINT,
                  exporter="featherface_deploy.exporters.torch2tflite:export",
                  options_class=f"{_OPTIONS}:TfliteOptions", export_extra="tflite-export", export_probe=_EXPORT_TFLITE,
                  description=description)


def _mediapipe_row(name, precision, description):
    return Format(name=name, family="mediapipe", precision=precision, runtime=_MEDIAPIPE, suffixes=(".tflite",),
                  extra="tflite", run_probe=_RUN_TFLITE, source=CHECKPOINT,
                  exporter="featherface_deploy.exporters.torch2mediapipe:export",
                  options_class=f"{_OPTIONS}:MediapipeOptions", export_extra="tflite-export",
                  export_probe=_EXPORT_TFLITE, raw_runtime=_TFLITE, description=description)


def _coreml_row(name, precision, description):
    return Format(name=name, family="coreml", precision=precision, runtime=_COREML, suffixes=(".mlpackage",),
                  extra="coreml", run_probe=_RUN_COREML, source=CHECKPOINT,
                  exporter="featherface_deploy.exporters.torch2coreml:export",
                  options_class=f"{_OPTIONS}:CoremlOptions", export_extra="coreml", export_probe=_EXPORT_COREML,
                  directory=True, description=description)


def _engine_row(name, precision, source, overrides=()):
    return Format(name=name, family="engine", precision=precision, runtime=_TRT, suffixes=(".engine",),
                  extra="tensorrt", run_probe=_RUN_TRT, source=source,
                  exporter="featherface_deploy.exporters.onnx2trt:export", options_class=f"{_OPTIONS}:EngineOptions",
                  export_extra="tensorrt", export_probe=Probe(("tensorrt", "onnx"), ("Linux", "Windows")),
                  source_overrides=overrides,
                  description=f"TensorRT engine, {precision} (built on the NVIDIA GPU / Jetson that runs it)")


def _recipe_row(name, precision):
    return Format(name=name, family="trt-recipe", precision=precision, runtime=_ORT, suffixes=("",), extra="onnx",
                  run_probe=_RUN_ONNX, source=CHECKPOINT, exporter="featherface_deploy.exporters.torch2trt_recipe:export",
                  options_class=f"{_OPTIONS}:RecipeExportOptions", export_extra="export", export_probe=_EXPORT_ONNX,
                  directory=True, verify_entry="model.onnx",
                  description=f"folder to build a {precision} TensorRT engine on the device (no TensorRT here)")


FORMATS: tuple[Format, ...] = (
    _torch_row("torch", "fp32", (), Probe(("torch",)), "PyTorch checkpoint (the reference)"),
    _torch_row("torch-cuda", "fp32", (("device", "cuda"),), _RUN_TORCH_CUDA, "PyTorch on an NVIDIA GPU (the GPU row)"),
    _torch_row("torch-cuda-fp16", "fp16", (("device", "cuda"), ("half", True)), _RUN_TORCH_CUDA,
               "PyTorch on an NVIDIA GPU under FP16 autocast"),
    _onnx_row("onnx", "fp32", CHECKPOINT, "featherface_deploy.exporters.torch2onnx:export", "OnnxOptions",
              "ONNX (ONNX Runtime)"),
    _onnx_row("onnx-int8", "int8", "onnx", "featherface_deploy.exporters.onnx2int8:export", "OnnxInt8Options",
              "ONNX Q/DQ INT8, calibrated (ONNX Runtime; TensorRT's explicit quantization)",
              (("end2end", False),)),  # --end2end: the raw network is quantized, the float tail composed after
    _tflite_row("tflite", "fp32", "TFLite (LiteRT; Android, ARM CPUs)"),
    _tflite_row("tflite-fp16", "fp16", "TFLite with float16 weights"),
    _tflite_row("tflite-int8", "int8", "TFLite full-integer INT8, calibrated"),
    _mediapipe_row("mediapipe", "fp32",
                   "TFLite for MediaPipe's ObjectDetector task (Android, iOS, web, Python): anchors in the metadata"),
    _mediapipe_row("mediapipe-fp16", "fp16", "MediaPipe ObjectDetector file, float16 weights"),
    _mediapipe_row("mediapipe-int8", "int8", "MediaPipe ObjectDetector file, INT8 calibrated (float input and outputs)"),
    _coreml_row("coreml", "fp32", "Core ML ML Program (iOS, macOS)"),
    _coreml_row("coreml-fp16", "fp16", "Core ML, FP16 compute"),
    _coreml_row("coreml-int8w", "int8", "Core ML, 8-bit weights"),
    _engine_row("engine", "fp32", "onnx"),
    _engine_row("engine-fp16", "fp16", "onnx"),
    _engine_row("engine-int8", "int8", "onnx-int8", (("quantize_bias", False), ("placement", "inputs"))),
    _recipe_row("trt-recipe", "fp32"),
    _recipe_row("trt-recipe-fp16", "fp16"),
    _recipe_row("trt-recipe-int8", "int8"),
)
REFERENCE = "torch"
# The rows whose files can carry decoding and NMS in the graph (``--end2end``; checked once, in
# pipeline.options.split_options, whatever a row's chain accepts). onnx-int8 quantizes the raw network and composes
# the float adapter and tail around it; the FP16/INT8 recipes pin the tail's layers to FP32 (INT8: TensorRT 10.x+
# only, refused by RecipeExportOptions before). Not yet: tflite-int8 (ai-edge-quantizer still quantizes part of the
# float-scoped head: every score comes out 0), the engines.
END2END_ROWS = ("onnx", "onnx-int8", "tflite", "tflite-fp16", "coreml", "coreml-fp16", "coreml-int8w", "trt-recipe",
                "trt-recipe-fp16", "trt-recipe-int8")


def format_names() -> list[str]:
    """Returns the names of all rows, in table order."""
    return [row.name for row in FORMATS]


def get_format(name: str) -> Format:
    """Looks a row up by name.

    Raises:
        ExportError: Unknown name; the message lists the known ones.
    """
    for row in FORMATS:
        if row.name == name:
            return row
    raise ExportError(f"unknown format '{name}'; choose one of: {', '.join(format_names())}")


def family_names() -> list[str]:
    """The distinct file formats with an exporter (``export --format`` choices), in table order."""
    return list(dict.fromkeys(row.family for row in FORMATS if row.exporter))


def row_for(family: str, precision: str) -> Format:
    """The row of ``family`` at ``precision`` (what ``export --format F [--half | --int8]`` asks for).

    Raises:
        ExportError: That format has no such precision; the message lists the ones it has.
    """
    rows = [row for row in FORMATS if row.family == family and row.exporter]
    for row in rows:
        if row.precision == precision:
            return row
    if not rows:
        raise ExportError(f"unknown format '{family}'; choose one of: {', '.join(family_names())}")
    raise ExportError(f"{family} has no {precision} row; it has: {', '.join(r.precision for r in rows)}")


def format_for_path(path: str | Path) -> Format:
    """Identifies a model file's format from its suffix (the family's first row: one runtime opens them all).

    Raises:
        FeatherFaceError: The suffix belongs to no known format.
    """
    suffix = Path(path).suffix.lower()
    for row in FORMATS:
        if suffix and suffix in row.suffixes:
            return row
    known = ", ".join(dict.fromkeys(s for row in FORMATS for s in row.suffixes if s))
    raise FeatherFaceError(f"cannot tell the format of {path}: unknown suffix '{suffix}' (known: {known})")


def format_for_file(path: str | Path) -> Format:
    """Like :func:`format_for_path`, but a ``.tflite`` made for MediaPipe's task (its contract says so) is the
    ``mediapipe`` row of its precision.

    Raises:
        FeatherFaceError: The suffix belongs to no known format.
    """
    row = format_for_path(path)
    if row.family != "tflite" or not Path(path).is_file():
        return row
    from featherface_deploy.metadata.tflite import read_contract  # standard library + numpy only

    try:
        contract = read_contract(Path(path).read_bytes(), str(path))
    except FeatherFaceError:
        return row  # the runtime reports a bad file with its own message
    if contract is None or contract.source_format != "mediapipe":
        return row
    return next((r for r in FORMATS if r.family == "mediapipe" and r.precision == contract.precision), row)


def resolve(reference: str):
    """Imports ``module:attribute`` and returns the attribute."""
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def _cuda_available() -> bool:
    import torch  # only a GPU row's probe pays for this import, when it is checked

    return torch.cuda.is_available()


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
