"""``featherface-deploy check-trt``: does an ONNX file fit a TensorRT version's parser (no TensorRT needed)?"""

from __future__ import annotations

import click

from featherface_deploy.cli.options import friendly_errors
from featherface_deploy.trt.versions import get_version, version_names


@click.command("check-trt")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--trt-version", default="10.3", show_default=True, type=click.Choice(version_names()),
              help="TensorRT release (JetPack 6.x = 10.3, JetPack 5 = 8.5, Jetson Nano = 8.2).")
@click.option("--small-jetson", is_flag=True,
              help="The device is a Jetson Nano or TX2 (SM 5.3 / 6.2): TensorRT's NMS layer takes 2000 boxes, "
                   "not 5000.")
@friendly_errors
def check_trt(model: str, trt_version: str, small_jetson: bool) -> None:
    """Checks MODEL (.onnx) against TensorRT's ONNX parser rules: one line per problem, exit 1 if any."""
    from featherface_deploy.trt.graph_check import check_onnx_file

    version = get_version(trt_version)
    problems = check_onnx_file(model, version, small_jetson)
    for problem in problems:
        click.echo(problem.format())
    if problems:
        raise click.exceptions.Exit(1)
    click.echo(f"{model} fits TensorRT {version.name}'s ONNX parser")
