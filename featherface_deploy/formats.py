"""The one table of model formats: every format and precision is one row.

A row says what the file is (suffix, precision), what it is built from (the
checkpoint, or another row: ``onnx-int8`` from ``onnx``), which exporter writes
it and which options that exporter takes, which runtime opens it, the pip
extras it needs, and whether it can be built and run on this machine. The
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

CHECKPOINT = "checkpoint"

END2END_OPTIONS = ("end2end", "max_det", "conf", "nms_iou", "pre_nms_top_k")
_ONNX_OPTIONS = ("imgsz", "dynamic", "opset", "simplify", "simplifier", "dcn", *END2END_OPTIONS)
_ONNX_INT8_OPTIONS = ("imgsz", "calib_dir", "calib_images", "calib_method", "keep_float", "quantize_depthwise", "search",
                      "search_budget", "reduce_range")
_TFLITE_OPTIONS = ("imgsz", "input_layout", "dcn")
_TFLITE_INT8_OPTIONS = (*_TFLITE_OPTIONS, "calib_dir", "calib_images", "keep_float", "float_io", "search",
                        "search_budget")
_COREML_OPTIONS = ("imgsz", "target", "image_input", "flexible", "sizes", *END2END_OPTIONS)
_ENGINE_OPTIONS = ("workspace", "dla")
_RECIPE_OPTIONS = ("imgsz", "trt_version", "workspace", "dla")


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
        options_class: ``module:Class`` of the exporter's options (a frozen dataclass with ``validate(row)``).
        options: The option names this row accepts (fields of ``options_class``); any other is an error.
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
    """

    name: str
    family: str
    precision: str
    source: str | None
    exporter: str | None
    options_class: str | None
    options: tuple[str, ...]
    runtime: str
    suffixes: tuple[str, ...]
    extra: str
    export_extra: str | None
    run_probe: Probe
    export_probe: Probe = Probe()
    directory: bool = False
    verify_entry: str | None = None
    source_overrides: tuple[tuple[str, object], ...] = ()
    runtime_options: tuple[tuple[str, object], ...] = ()
    description: str = ""

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
_EXPORT_ONNX = Probe(("torch", "onnx", "onnxscript", "onnxruntime"))
_RUN_ONNX = Probe(("onnxruntime",))
_RUN_TFLITE = Probe(("ai_edge_litert",)) if platform.machine() != "armv7l" else Probe(("tflite_runtime",))
_EXPORT_TFLITE = Probe(("torch", "litert_torch", "ai_edge_quantizer", "ai_edge_litert"))
_RUN_COREML = Probe(("coremltools",), note="" if platform.system() == "Darwin" else
                    "numpy reference interpreter; Core ML itself runs only on macOS")
_EXPORT_COREML = Probe(("torch", "coremltools"))
_RUN_TRT = Probe(("tensorrt",), ("Linux", "Windows"), note="needs an NVIDIA GPU")
_RUN_TORCH_CUDA = Probe(("torch",), cuda=True)


def _torch_row(name, precision, runtime_options, probe, description):
    return Format(name, "torch", precision, None, None, None, (), _TORCH, (".pth", ".pt"), "torch", None, probe,
                  runtime_options=runtime_options, description=description)


def _onnx_row(name, precision, source, exporter, options_class, options, description):
    return Format(name, "onnx", precision, source, exporter, options_class, options, _ORT, (".onnx",), "onnx",
                  "export", _RUN_ONNX, _EXPORT_ONNX, description=description)


def _tflite_row(name, precision, options, description):
    return Format(name, "tflite", precision, CHECKPOINT, "featherface_deploy.exporters.torch2tflite:export",
                  "featherface_deploy.exporters.torch2tflite:TfliteOptions", options, _TFLITE, (".tflite",),
                  "tflite", "tflite-export", _RUN_TFLITE, _EXPORT_TFLITE, description=description)


def _coreml_row(name, precision, options, description):
    return Format(name, "coreml", precision, CHECKPOINT, "featherface_deploy.exporters.torch2coreml:export",
                  "featherface_deploy.exporters.torch2coreml:CoremlOptions", options, _COREML, (".mlpackage",),
                  "coreml", "coreml", _RUN_COREML, _EXPORT_COREML, directory=True, description=description)


def _engine_row(name, precision, source, overrides=()):
    return Format(name, "engine", precision, source, "featherface_deploy.exporters.onnx2trt:export",
                  "featherface_deploy.exporters.onnx2trt:EngineOptions", _ENGINE_OPTIONS, _TRT, (".engine",),
                  "tensorrt", "tensorrt", _RUN_TRT, Probe(("tensorrt", "onnx"), ("Linux", "Windows")),
                  source_overrides=overrides,
                  description=f"TensorRT engine, {precision} (built on the NVIDIA GPU / Jetson that runs it)")


def _recipe_row(name, precision, options):
    return Format(name, "trt-recipe", precision, CHECKPOINT, "featherface_deploy.exporters.torch2trt_recipe:export",
                  "featherface_deploy.exporters.torch2trt_recipe:RecipeExportOptions", options, _ORT, ("",),
                  "onnx", "export", _RUN_ONNX, _EXPORT_ONNX, directory=True, verify_entry="model.onnx",
                  description=f"folder to build a {precision} TensorRT engine on the device (no TensorRT here)")


_ONNX_INT8 = "featherface_deploy.exporters.onnx2int8_export"
FORMATS: tuple[Format, ...] = (
    _torch_row("torch", "fp32", (), Probe(("torch",)), "PyTorch checkpoint (the reference)"),
    _torch_row("torch-cuda", "fp32", (("device", "cuda"),), _RUN_TORCH_CUDA, "PyTorch on an NVIDIA GPU (the GPU row)"),
    _torch_row("torch-cuda-fp16", "fp16", (("device", "cuda"), ("half", True)), _RUN_TORCH_CUDA,
               "PyTorch on an NVIDIA GPU under FP16 autocast"),
    _onnx_row("onnx", "fp32", CHECKPOINT, "featherface_deploy.exporters.torch2onnx:export",
              "featherface_deploy.exporters.torch2onnx:OnnxOptions", _ONNX_OPTIONS, "ONNX (ONNX Runtime)"),
    _onnx_row("onnx-int8", "int8", "onnx", f"{_ONNX_INT8}:export", f"{_ONNX_INT8}:OnnxInt8Options",
              _ONNX_INT8_OPTIONS, "ONNX Q/DQ INT8, calibrated (ONNX Runtime; TensorRT's explicit quantization)"),
    _tflite_row("tflite", "fp32", (*_TFLITE_OPTIONS, *END2END_OPTIONS), "TFLite (LiteRT; Android, ARM CPUs)"),
    _tflite_row("tflite-fp16", "fp16", (*_TFLITE_OPTIONS, *END2END_OPTIONS), "TFLite with float16 weights"),
    _tflite_row("tflite-int8", "int8", _TFLITE_INT8_OPTIONS, "TFLite full-integer INT8, calibrated"),
    _coreml_row("coreml", "fp32", _COREML_OPTIONS, "Core ML ML Program (iOS, macOS)"),
    _coreml_row("coreml-fp16", "fp16", (*_COREML_OPTIONS, "io_dtype"), "Core ML, FP16 compute"),
    _coreml_row("coreml-int8w", "int8", (*_COREML_OPTIONS, "int8_mode"), "Core ML, 8-bit weights"),
    _engine_row("engine", "fp32", "onnx"),
    _engine_row("engine-fp16", "fp16", "onnx"),
    _engine_row("engine-int8", "int8", "onnx-int8", (("quantize_bias", False),)),
    _recipe_row("trt-recipe", "fp32", _RECIPE_OPTIONS),
    _recipe_row("trt-recipe-fp16", "fp16", _RECIPE_OPTIONS),
    _recipe_row("trt-recipe-int8", "int8", (*_RECIPE_OPTIONS, "calib_dir", "calib_images")),
)
REFERENCE = "torch"


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
