"""``featherface-deploy export``: checkpoint → deployable file, checked for parity before it is written."""

from __future__ import annotations

from pathlib import Path

import click

from featherface_deploy.cli.options import friendly_errors, parse_size
from featherface_deploy.errors import ExportError
from featherface_deploy.formats import FORMATS, get_format, resolve

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_PARITY_IMAGES = 8


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "format_name", default="onnx", show_default=True,
              type=click.Choice([f.name for f in FORMATS if f.exporter]), help="Output format.")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Output file (default: the checkpoint's name with the format's suffix).")
@click.option("--imgsz", default="640", show_default=True, help="Input size N or HxW (multiples of 32).")
@click.option("--dynamic", is_flag=True, help="Dynamic batch, height and width (multiples of 32).")
@click.option("--opset", default=None, type=int, help="ONNX opset (default 18; 19 with --dcn native).")
@click.option("--simplify/--no-simplify", default=True, show_default=True, help="Simplify the graph.")
@click.option("--simplifier", default="onnxsim", show_default=True, type=click.Choice(["onnxsim", "onnxslim"]))
@click.option("--dcn", default="portable", show_default=True, type=click.Choice(["portable", "native"]),
              help="Deformable conv lowering: plain ops (any converter) or ONNX DeformConv (opset ≥ 19).")
@click.option("--parity-images", default=None, type=click.Path(exists=True, file_okay=False),
              help=f"Folder of images for the parity check (the first {MAX_PARITY_IMAGES}); default: synthetic.")
@click.option("--architecture", default=None, help="Architecture name (detected from the keys if omitted).")
@click.option("--half", is_flag=True, help="TFLite: float16 weights.")
@click.option("--int8", is_flag=True, help="INT8 with calibration (needs --calib-dir): ONNX QDQ, or TFLite "
              "full-integer (int8 input and outputs).")
@click.option("--calib-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="--int8: folder of calibration photos (never evaluation images).")
@click.option("--calib-images", default=100, show_default=True, type=click.IntRange(1),
              help="ONNX --int8: photos sampled from --calib-dir.")
@click.option("--calib-method", default="minmax", show_default=True,
              type=click.Choice(["minmax", "percentile", "entropy"]), help="ONNX --int8: calibration method.")
@click.option("--keep-float", multiple=True, help="ONNX --int8: node name or op type to keep in float "
              "(repeatable), besides the depthwise convolutions.")
@click.option("--quantize-depthwise", is_flag=True,
              help="ONNX --int8: quantize the depthwise convolutions too (costs ~9 AP points on V1).")
@click.option("--search", is_flag=True,
              help="ONNX --int8: also find layers to keep in float by a greedy sensitivity search (minutes).")
@click.option("--search-budget", default=0.97, show_default=True, type=click.FloatRange(0, 1),
              help="ONNX --int8 --search: detection agreement with FP32 (calibration photos) to reach.")
@click.option("--float-io", is_flag=True, help="TFLite --int8: keep float32 input and outputs.")
@friendly_errors
def export(checkpoint: str, format_name: str, output: str | None, imgsz: str, dynamic: bool, opset: int | None,
           simplify: bool, simplifier: str, dcn: str, parity_images: str | None, architecture: str | None,
           half: bool, int8: bool, calib_dir: str | None, calib_images: int, calib_method: str,
           keep_float: tuple[str, ...], quantize_depthwise: bool, search: bool, search_budget: float,
           float_io: bool) -> None:
    """Exports CHECKPOINT (.pth) and checks it against PyTorch; nothing is written if parity fails."""
    fmt = get_format(format_name)
    size = parse_size(imgsz)
    out = Path(output) if output else Path(checkpoint).with_suffix(fmt.suffixes[0])
    images = _images(parity_images)
    exporter = resolve(fmt.exporter)
    if fmt.name == "tflite":
        if dynamic or opset is not None or dcn != "portable":
            raise ExportError("--dynamic, --opset and --dcn apply to ONNX; TFLite files are static with the "
                              "portable DCN")
        result = exporter(checkpoint, out, imgsz=size, half=half, int8=int8, calib_dir=calib_dir,
                          float_io=float_io, parity_images=images, architecture=architecture, log=click.echo)
    elif half or float_io:
        raise ExportError("--half and --float-io apply to --format tflite")
    elif int8:
        if calib_dir is None:
            raise ExportError("--int8 needs --calib-dir: a folder of photos like the deployment's (never the "
                              "evaluation images)")
        if dcn != "portable" or (opset is not None and opset != 18):
            raise ExportError("ONNX --int8 uses the portable DCN at opset 18 (DeformConv has no INT8 kernel)")
        from featherface_deploy.exporters.torch2onnx_int8 import Int8ExportConfig, export_onnx_int8

        config = Int8ExportConfig(Path(calib_dir), calib_images, calib_method, tuple(keep_float), search,
                                  search_budget, keep_float_depthwise=not quantize_depthwise)
        result = export_onnx_int8(checkpoint, out, config, imgsz=size, dynamic=dynamic, parity_images=images,
                                  architecture=architecture, log=click.echo)
    else:
        result = exporter(
            checkpoint, out, imgsz=size, dynamic=dynamic, opset=opset or (19 if dcn == "native" else 18),
            simplify=simplify, dcn=dcn, simplifier=simplifier, parity_images=images, architecture=architecture,
            log=click.echo,
        )
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.timings.items())
    click.echo(f"done: {result.path} ({steps})")


def _images(folder: str | None) -> list[Path]:
    if folder is None:
        return []
    images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:MAX_PARITY_IMAGES]
    if not images:
        raise ExportError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}; pass a folder of photos "
                          "or leave --parity-images out to use a synthetic image")
    return images
