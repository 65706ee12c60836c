"""``featherface-deploy export``: checkpoint → any row of the format table, verified before it is written.

``--format`` with ``--half`` / ``--int8`` picks a row of :data:`~featherface_deploy.formats.FORMATS`
(``--format onnx --int8`` is ``onnx-int8``; full row names are accepted too). Only the options
given on the command line are passed on; one the row does not take is an error naming the rows
that do (:func:`~featherface_deploy.pipeline.options.split_options`). The format options themselves
(``--imgsz``, ``--calib-dir``…) are derived from their declarations
(:mod:`featherface_deploy.cli.option_flags`).

The output is checked before any work: never the checkpoint (symlinks and hard links included), a
writable folder, and an existing output is refused unless ``--exist-ok``, which replaces it only after
the new file passed parity (a failed export leaves it as it was).
"""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from featherface_deploy.cli.option_flags import format_options
from featherface_deploy.cli.options import friendly_errors, random_init_options, untrained_seed
from featherface_deploy.errors import ExportError
from featherface_deploy.formats import FORMATS, Format, family_names, get_format, row_for

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_PARITY_IMAGES = 8
INT8_MODES = ("default", "weights", "activations")


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
@click.option("--no-search", is_flag=True, default=None,
              help="onnx-int8, tflite-int8: plain quantization, no agreement check and no search.")
@click.option("--parity-images", default=None, type=click.Path(exists=True, file_okay=False),
              help=f"Folder of photos with faces for the parity checks (the first {MAX_PARITY_IMAGES}); "
                   "default: the photo shipped with the package.")
@format_options
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
    options = {name: value for name, value in given.items()
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
