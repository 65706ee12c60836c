"""``featherface-deploy trt-recipe``: a folder to build a TensorRT engine on the device (no TensorRT needed here)."""

from __future__ import annotations

import click

from featherface_deploy.cli.options import friendly_errors, parse_size
from featherface_deploy.trt.versions import get_version, version_names


@click.command("trt-recipe")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Recipe folder to write.")
@click.option("--trt-version", default="10.3", show_default=True, type=click.Choice(version_names()),
              help="The device's TensorRT (JetPack 6.x = 10.3, JetPack 5 = 8.5, Jetson Nano = 8.2).")
@click.option("--half", is_flag=True, help="FP16 engine (TensorRT ≤ 10).")
@click.option("--int8", is_flag=True, help="INT8 engine (needs --calib-dir): Q/DQ on ≥ 10, calibration cache on 8.x.")
@click.option("--calib-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="--int8: folder of calibration photos (never evaluation images).")
@click.option("--calib-images", default=100, show_default=True, type=click.IntRange(1))
@click.option("--imgsz", default="640", show_default=True, help="Input size N or HxW (multiples of 32).")
@click.option("--workspace", default=2048, show_default=True, type=click.IntRange(1), help="Workspace, MiB.")
@click.option("--dla", default=None, type=click.IntRange(0), help="Jetson DLA core (GPU fallback allowed).")
@click.option("--parity-images", default=None, type=click.Path(exists=True, file_okay=False),
              help="Folder of images for the parity check against PyTorch (default: synthetic).")
@click.option("--architecture", default=None, help="Architecture name (detected from the keys if omitted).")
@friendly_errors
def trt_recipe(checkpoint: str, output: str, trt_version: str, half: bool, int8: bool, calib_dir: str | None,
               calib_images: int, imgsz: str, workspace: int, dla: int | None, parity_images: str | None,
               architecture: str | None) -> None:
    """Writes the ONNX for that TensorRT, its contract, the INT8 cache if needed, build.sh and a README."""
    from featherface_deploy.cli.export_cmd import _images
    from featherface_deploy.errors import ExportError
    from featherface_deploy.exporters.onnx2trt_recipe import RecipeOptions
    from featherface_deploy.exporters.torch2trt_recipe import export_trt_recipe

    if half and int8:
        raise ExportError("choose one of --half and --int8")
    precision = "int8" if int8 else "fp16" if half else "fp32"
    options = RecipeOptions(get_version(trt_version), precision, workspace, dla)
    folder = export_trt_recipe(checkpoint, output, options, imgsz=parse_size(imgsz), calib_dir=calib_dir,
                               calib_images=calib_images, parity_images=_images(parity_images),
                               architecture=architecture, log=click.echo)
    click.echo(f"done: {folder} (on the device: bash {folder}/build.sh)")
