"""``featherface-deploy export``: checkpoint → any row of the format table, verified before it is written.

``--format`` with ``--half`` / ``--int8`` picks a row of :data:`~featherface_deploy.formats.FORMATS`
(``--format onnx --int8`` is ``onnx-int8``; full row names are accepted too). Only the options
given on the command line are passed on; one the row does not take is an error naming the rows
that do (:func:`~featherface_deploy.pipeline.options.split_options`).

The output is checked before any work: never the checkpoint (symlinks and hard links included), a
writable folder, and an existing output is refused unless ``--exist-ok``, which replaces it only after
the new file passed parity (a failed export leaves it as it was).
"""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.core import ParameterSource

from featherface_deploy.cli.options import PROBABILITY, friendly_errors, parse_size, random_init_options, untrained_seed
from featherface_deploy.errors import ExportError
from featherface_deploy.formats import FORMATS, Format, family_names, get_format, row_for

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_PARITY_IMAGES = 8
INT8_MODES = ("default", "weights", "activations")
_MIB_PER_UNIT = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_mebibytes(text: str) -> int:
    """Reads a memory size as whole MiB: ``2G`` → 2048, ``512M`` → 512, ``1536`` (plain MiB) → 1536.

    ``G``/``GB``/``GiB`` and ``M``/``MB``/``MiB`` are all binary units (TensorRT's pools are in MiB).

    Raises:
        click.BadParameter: Not a size, an unknown unit, or not a positive whole number of MiB.
    """
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if unit not in _MIB_PER_UNIT:
        raise click.BadParameter(f"expected a size like 2G, 512M or 2048 (MiB), got {text!r}",
                                 param_hint="'--workspace'")
    mib = float(match.group(1)) * _MIB_PER_UNIT[unit]
    if mib < 1 or not mib.is_integer():
        raise click.BadParameter(f"{text!r} is {mib:g} MiB; give a whole number of MiB, at least 1",
                                 param_hint="'--workspace'")
    return int(mib)

# Command-line parameters that are format options (passed on only when given), and how to read them.
_OPTION_PARSERS = {
    "imgsz": parse_size, "dynamic": bool, "opset": int, "simplify": bool, "simplifier": str, "dcn": str,
    "calib_dir": str, "calib_images": int, "calib_method": str, "keep_float": tuple, "quantize_depthwise": bool,
    "reduce_range": bool,
    "search": bool, "search_budget": float, "float_io": bool, "input_layout": str, "target": str,
    "image_input": bool, "flexible": str, "sizes": lambda text: tuple(parse_size(s) for s in text.split(",")),
    "io_dtype": str, "trt_version": str, "workspace": parse_mebibytes, "dla": int,
}


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--format", "format_name", default="onnx", show_default=True,
              type=click.Choice(family_names() + [row.name for row in FORMATS if row.exporter and
                                                  row.name not in family_names()]),
              help="Output format (see `featherface-deploy formats`).")
@click.option("-o", "--output", default=None, type=click.Path(),
              help="Output file or folder (default: the checkpoint's name, variant and the format's suffix).")
@click.option("--exist-ok", is_flag=True,
              help="Replace an existing output (only after the new one passes parity; never the checkpoint).")
@click.option("--half", is_flag=True, help="FP16 row of the format (tflite-fp16, coreml-fp16, engine-fp16…).")
@click.option("--int8", "int8", is_flag=False, flag_value="default", default=None, type=click.Choice(INT8_MODES),
              help="INT8 row of the format (needs --calib-dir for calibrated rows); Core ML: --int8 weights.")
@click.option("--imgsz", default=None, help="Input size N or HxW, multiples of 32 [640].")
@click.option("--dynamic", is_flag=True, default=None, help="onnx: dynamic batch, height and width.")
@click.option("--opset", default=None, type=int, help="onnx: opset [18; 19 with --dcn native].")
@click.option("--simplify/--no-simplify", default=None, help="onnx: simplify the graph [on].")
@click.option("--simplifier", default=None, type=click.Choice(["onnxsim", "onnxslim"]), help="onnx [onnxsim].")
@click.option("--dcn", default=None, type=click.Choice(["auto", "gather", "gather_float", "native", "portable"]),
              help="onnx, tflite: deformable conv lowering: plain ops (gather = portable, gather_float) or ONNX "
                   "DeformConv (onnx) [auto: the one measured fastest for the format's runtime].")
@click.option("--calib-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="INT8: folder of calibration photos (never evaluation images).")
@click.option("--calib-images", default=None, type=click.IntRange(1), help="INT8: photos sampled [100].")
@click.option("--calib-method", default=None, type=click.Choice(["minmax", "percentile", "entropy"]),
              help="onnx-int8: calibration method [minmax].")
@click.option("--keep-float", multiple=True, default=None,
              help="INT8: layer to keep in float (repeatable): onnx node name or op type; tflite scope regex.")
@click.option("--quantize-depthwise", is_flag=True, default=None,
              help="onnx-int8: quantize the depthwise convolutions too (costs ~9 AP points on V1).")
@click.option("--reduce-range", is_flag=True, default=None,
              help="onnx-int8: 7-bit weights, for x86 CPUs without VNNI (AVX2, AVX-512), whose 8-bit dot "
                   "products can saturate.")
@click.option("--search", is_flag=True, default=None,
              help="onnx-int8, tflite-int8: always run the keep-float search (by default it runs only when "
                   "the plain quantization's detection agreement with FP32 is below 0.975 for ONNX, 0.98 for "
                   "TFLite).")
@click.option("--no-search", is_flag=True, default=None,
              help="onnx-int8, tflite-int8: plain quantization, no agreement check and no search.")
@click.option("--search-budget", default=None, type=PROBABILITY,
              help="onnx-int8, tflite-int8: detection agreement with FP32 on the calibration photos the search "
                   "aims at [ONNX 0.99, TFLite 0.985].")
@click.option("--float-io", is_flag=True, default=None, help="tflite-int8: float32 input and outputs.")
@click.option("--input-layout", default=None, type=click.Choice(["NHWC", "NCHW"]), help="tflite [NHWC].")
@click.option("--target", default=None, help="coreml: minimum deployment target (iOS16, iOS17, macOS13…) [iOS16].")
@click.option("--image-input", is_flag=True, default=None, help="coreml: an image input instead of a tensor.")
@click.option("--flexible", default=None, help="coreml: any height and width in LO-HI, e.g. 320-1280.")
@click.option("--sizes", default=None, help="coreml: only these sizes, e.g. 480x640,640x640.")
@click.option("--io-dtype", default=None, type=click.Choice(["fp32", "fp16"]), help="coreml-fp16: tensor I/O dtype.")
@click.option("--trt-version", default=None, help="trt-recipe: the device's TensorRT (8.2, 8.5, 8.6, 10.3…) [10.3].")
@click.option("--workspace", default=None,
              help="engine, trt-recipe: builder workspace: 2G, 512M or plain MiB [2048].")
@click.option("--dla", default=None, type=click.IntRange(0), help="engine, trt-recipe: Jetson DLA core.")
@click.option("--parity-images", default=None, type=click.Path(exists=True, file_okay=False),
              help=f"Folder of photos with faces for the parity checks (the first {MAX_PARITY_IMAGES}); "
                   "default: the photo shipped with the package.")
@random_init_options
@click.pass_context
@friendly_errors
def export(ctx: click.Context, checkpoint: str | None, format_name: str, output: str | None, exist_ok: bool,
           half: bool, int8: str | None, parity_images: str | None, architecture: str | None, random_init: bool,
           seed: int | None, **given) -> None:
    """Exports CHECKPOINT (.pth), or --architecture NAME --random-init, and checks it against PyTorch.

    Nothing is written if a check fails.
    """
    from featherface_deploy.pipeline import export_model
    from featherface_deploy.pipeline.options import default_output

    seed = untrained_seed(checkpoint, architecture, random_init, seed)
    source = checkpoint
    if seed is not None:
        from featherface_deploy.models.registry import create_untrained_model

        source = create_untrained_model(architecture, seed)
    row = _chosen_row(format_name, half, int8)
    no_search = given.pop("no_search")
    options = {name: _OPTION_PARSERS[name](value) for name, value in given.items()
               if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}
    if no_search:
        if options.get("search"):
            raise ExportError("--search forces the keep-float search and --no-search forbids it: drop one")
        options["search"] = False
    if row.family == "coreml" and int8 is not None:
        options["int8_mode"] = "weights" if int8 == "default" else int8
    named = checkpoint if seed is None else f"{architecture}-untrained-seed{seed}.pth"
    out = Path(output) if output else default_output(row, named)
    if seed is not None:
        click.echo(f"{architecture}: random weights (seed {seed}), UNTRAINED; the contract says so")
    outcome = export_model(source, out, row, options, parity_images=_images(parity_images),
                           architecture=architecture, log=click.echo, exist_ok=exist_ok, untrained_seed=seed)
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in outcome.timings.items())
    click.echo(f"done: {outcome.path} [{row.name}] ({steps})")


def _chosen_row(format_name: str, half: bool, int8: str | None) -> Format:
    """The row ``--format`` with ``--half`` / ``--int8`` names."""
    if half and int8 is not None:
        raise ExportError("choose one of --half and --int8")
    if format_name not in family_names():
        row = get_format(format_name)
        wanted = "fp16" if half else "int8" if int8 is not None else row.precision
        if wanted != row.precision:
            raise ExportError(f"--format {row.name} is {row.precision}; drop --half/--int8 or use --format {row.family}")
        return row
    if int8 is not None and int8 != "default" and format_name != "coreml":
        raise ExportError(f"--int8 {int8} applies to --format coreml; for {format_name} write --int8 alone")
    return row_for(format_name, "fp16" if half else "int8" if int8 is not None else "fp32")


def _images(folder: str | None) -> list[Path]:
    if folder is None:
        return []
    images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:MAX_PARITY_IMAGES]
    if not images:
        raise ExportError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}; pass a folder of photos "
                          "or leave --parity-images out to use the shipped photo")
    return images
