"""``featherface-deploy info``: architecture, parameters and shapes of a model file."""

from __future__ import annotations

import click

from featherface_deploy.cli.options import ModelPath, friendly_errors, parse_size
from featherface_deploy.contract import read_sidecar
from featherface_deploy.formats import format_for_path
from featherface_deploy.postprocess import generate_priors


def _checkpoint_info(path: str, size: tuple[int, int]) -> None:
    from featherface_deploy.models import load_model
    from featherface_deploy.models.registry import base_contract

    loaded = load_model(path)
    model = loaded.model
    click.echo(f"architecture: {loaded.architecture}")
    total = sum(p.numel() for p in model.parameters())
    click.echo(f"parameters: {total:,}")
    for name, child in model.named_children():
        count = sum(p.numel() for p in child.parameters())
        if count:
            click.echo(f"  {name:<14} {count:>9,}")
    _shapes(base_contract(loaded.architecture), size)


def _shapes(contract, size: tuple[int, int]) -> None:
    height, width = contract.input_size or size
    anchors = len(generate_priors(contract.priors, height, width))
    click.echo(f"input:  {contract.input_name} (B, 3, {height}, {width}) float32, {contract.channel_order} − "
               f"mean {tuple(contract.mean_bgr)}" + ("" if contract.input_size else " (any size; example)"))
    for role, values in zip(contract.output_names, (4, 2, 10)):
        click.echo(f"output: {role} (B, {anchors}, {values})")


@click.command()
@click.argument("model", type=ModelPath(exists=True))
@click.option("--imgsz", default="640", show_default=True, help="Example input size for the shapes (N or HxW).")
@friendly_errors
def info(model, imgsz):
    """Print the architecture, parameter counts and input/output shapes of MODEL, and what runs it here."""
    size = parse_size(imgsz)
    row = format_for_path(model)
    if row.name == "torch":
        _checkpoint_info(model, size)
        return
    contract = read_sidecar(model)
    click.echo(f"architecture: {contract.model_name}  format: {contract.source_format}  "
               f"precision: {contract.precision}")
    _shapes(contract, size)
    if "dcn" in contract.extra:
        selected = contract.extra.get("dcn_selected")
        click.echo(f"dcn: {contract.extra['dcn']}" + (f" ({selected})" if selected else ""))
    runs, why = row.runs_here()
    click.echo(f"runs here: {'yes' if runs else 'no'}" + (f", {why}" if why else ""))
