"""``featherface-deploy info``: architecture, parameters and shapes of a model file or a registered architecture."""

from __future__ import annotations

import click

from featherface_deploy.cli.options import ModelPath, friendly_errors, parse_size
from featherface_deploy.formats import format_for_path
from featherface_deploy.postprocess import generate_priors


def _checkpoint_info(path: str, size: tuple[int, int]) -> None:
    from featherface_deploy.models import load_model

    loaded = load_model(path)
    click.echo(f"architecture: {loaded.architecture}")
    _parameters(loaded.model, loaded.architecture)
    _shapes(_base_contract(loaded.architecture), size)


def _architecture_info(name: str, size: tuple[int, int]) -> None:
    from featherface_deploy.models import create_model

    model = create_model(name)
    click.echo(f"architecture: {name} (no checkpoint: counted on a freshly initialised model)")
    _parameters(model, name)
    _shapes(_base_contract(name), size)


def _base_contract(name: str):
    from featherface_deploy.models.registry import base_contract

    return base_contract(name)


def _parameters(model, architecture: str) -> None:
    """Parameters per top-level module, with the design documents' claims for each module beside them."""
    from featherface_deploy.models.design_claims import TOTAL, module_claims

    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    total = sum(p.numel() for p in model.parameters())
    claims = module_claims(architecture)
    groups = [(name,) for name, count in counts.items() if count]
    groups += list(dict.fromkeys(c.modules for c in claims if c.modules not in groups and c.modules != (TOTAL,)))
    groups.append((TOTAL,))
    width = max(len("+".join(modules)) for modules in groups)
    click.echo(f"parameters: {total:,}")
    click.echo(f"  {'module':<{width}} {'parameters':>10}  {'claimed':>9}  claim (design documents)")
    for modules in groups:
        count = total if modules == (TOTAL,) else sum(counts.get(name, 0) for name in modules)
        label = "+".join(modules)
        mine = [claim for claim in claims if claim.modules == modules]
        if not mine:
            click.echo(f"  {label:<{width}} {count:>10,}")
        for index, claim in enumerate(mine):
            lead = f"  {label:<{width}} {count:>10,}" if index == 0 else " " * (width + 13)
            click.echo(f"{lead}  {claim.label():>9}  {claim.citation()}")
    if not claims:
        click.echo("  (the design documents give no parameter counts for this architecture)")


def _shapes(contract, size: tuple[int, int]) -> None:
    if contract.in_graph:
        _end2end_shapes(contract)
        return
    height, width = contract.input_size or size
    anchors = len(generate_priors(contract.priors, height, width))
    click.echo(f"input:  {contract.input_name} (B, 3, {height}, {width}) float32, {contract.channel_order} − "
               f"mean {tuple(contract.mean_bgr)}" + ("" if contract.input_size else " (any size; example)"))
    for role, values in zip(contract.output_names, (4, 2, 10)):
        click.echo(f"output: {role} (B, {anchors}, {values})")


def _end2end_shapes(contract) -> None:
    """An end-to-end file's input and outputs, and the settings baked into it."""
    spec, (height, width) = contract.end2end, contract.input_size
    shape = f"(1, 3, {height}, {width})" if contract.input_layout == "NCHW" else f"(1, {height}, {width}, 3)"
    click.echo(f"input:  {contract.input_name} {shape} float32, {spec.input_color} {spec.input_scale} "
               f"(the mean is subtracted in the graph; pad with RGB {tuple(spec.pad_rgb)})")
    click.echo(f"output: {spec.outputs[0]} (1, {spec.max_det}, 15) float32: {spec.output_layout}, input pixels")
    click.echo(f"output: {spec.outputs[1]} (1,) int32")
    click.echo(f"post-processing: in-graph (conf ≥ {spec.conf:g}, NMS IoU {spec.nms_iou:g}, pre-NMS top-k "
               f"{spec.pre_nms_top_k}, max {spec.max_det} faces)")


@click.command()
@click.argument("model", type=ModelPath(exists=True), required=False)
@click.option("--architecture", default=None,
              help="A registered architecture instead of MODEL: its parameters per module beside the design "
                   "documents' claims (see `featherface-deploy formats` for what runs it).")
@click.option("--imgsz", default="640", show_default=True, help="Example input size for the shapes (N or HxW).")
@friendly_errors
def info(model, architecture, imgsz):
    """Print the architecture, parameter counts and input/output shapes of MODEL (or of --architecture NAME)."""
    size = parse_size(imgsz)
    if (model is None) == (architecture is None):
        raise click.UsageError("give a MODEL file or --architecture NAME (one of the two)")
    if architecture is not None:
        _architecture_info(architecture, size)
        return
    row = format_for_path(model)
    if row.name == "torch":
        _checkpoint_info(model, size)
        return
    from featherface_deploy.metadata import read_model_contract

    contract = read_model_contract(model)
    click.echo(f"architecture: {contract.model_name}  format: {contract.source_format}  "
               f"precision: {contract.precision}")
    if contract.schema_version < 2:
        click.echo("contract: schema 1, written before contracts carried a digest: edits cannot be detected; "
                   "re-export to protect it")
    if contract.untrained:
        click.echo(contract.weights_note())
    _shapes(contract, size)
    if "dcn" in contract.extra:
        selected = contract.extra.get("dcn_selected")
        click.echo(f"dcn: {contract.extra['dcn']}" + (f" ({selected})" if selected else ""))
    if "int8" in contract.extra:
        _int8_kernels(contract.extra["int8"])
    runs, why = row.runs_here()
    click.echo(f"runs here: {'yes' if runs else 'no'}" + (f", {why}" if why else ""))


def _int8_kernels(facts: dict) -> None:
    """The INT8 file's MAC shares as its export measured them (integer kernels, layers kept float)."""
    parts = []
    if "integer_mac_fraction" in facts:
        parts.append(f"{100 * facts['integer_mac_fraction']:.1f}% of MACs in integer kernels"
                     + (f" ({facts['integer_kernels_on']})" if facts.get("integer_kernels_on") else ""))
    if "float_mac_fraction" in facts:
        parts.append(f"{100 * facts['float_mac_fraction']:.1f}% kept float")
    if parts:
        click.echo("int8: " + ", ".join(parts))
