"""``featherface-deploy bundle``: a self-contained device bundle (model, sidecar, runner) as a folder or ``.zip``."""

from __future__ import annotations

import click

from featherface_deploy.cli.options import ModelPath, exist_ok_option, friendly_errors


@click.command("bundle")
@click.argument("model", type=ModelPath(exists=True))
@click.option("-o", "--out", required=True, type=click.Path(),
              help="Output folder, or a file ending in .zip (an existing one only with --exist-ok).")
@exist_ok_option
@friendly_errors
def bundle(model, out, exist_ok):
    """Write MODEL (.onnx, .tflite, .mlpackage, .engine), its sidecar and a runner that needs only Python >= 3.8,
    numpy and the runtime.

    On the device: `python OUT/run.py benchmark|evaluate|detect|facts -h` (unzip a .zip first:
    `python -m zipfile -e OUT.zip OUT`). A Core ML package runs with Core ML on macOS (`--compute-units`) and
    with the numpy reference interpreter elsewhere; every result names the runtime that ran.
    """
    from featherface_deploy.formats import format_for_path
    from featherface_deploy.remote.bundle import build_bundle
    from featherface_deploy.remote.device_requirements import DEVICE_PACKAGES, INSTALL_HINTS

    built = build_bundle(model, out, exist_ok)
    family = format_for_path(model).family
    click.echo(f"wrote {built.path}: bundle {built.digest} ({len(built.files)} files)")
    click.echo(f"needs Python >= 3.8 and {' and '.join(DEVICE_PACKAGES[family])} ({INSTALL_HINTS[family]})")
