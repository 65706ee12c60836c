"""``featherface-deploy bundle``: a self-contained device bundle (model, sidecar, runner) as a folder or ``.zip``."""

from __future__ import annotations

import click

from featherface_deploy.cli.options import friendly_errors


@click.command("bundle")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(),
              help="Output folder, or a file ending in .zip. An existing bundle there is replaced.")
@friendly_errors
def bundle(model, out):
    """Write MODEL (.onnx, .tflite), its sidecar and a runner that needs only Python >= 3.8, numpy and the runtime.

    On the device: `python OUT/run.py benchmark|evaluate|detect|facts -h` (unzip a .zip first:
    `python -m zipfile -e OUT.zip OUT`).
    """
    from featherface_deploy.formats import format_for_path
    from featherface_deploy.remote.bundle import DEVICE_PACKAGES, build_bundle

    built = build_bundle(model, out)
    packages = DEVICE_PACKAGES[format_for_path(model).name]
    click.echo(f"wrote {built.path}: bundle {built.digest} ({len(built.files)} files)")
    click.echo(f"needs Python >= 3.8 and {' and '.join(packages)}")
