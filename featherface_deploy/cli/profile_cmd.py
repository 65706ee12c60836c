"""``featherface-deploy profile``: where a model's time goes, per layer group and op type, next to its floor."""

from __future__ import annotations

import json

import click

from featherface_deploy.cli.options import ModelPath, exist_ok_option, friendly_errors, parse_size
from featherface_deploy.outputs import claim_output, write_output
from featherface_deploy.harness.report import facts_line, machine_facts


@click.command("profile")
@click.argument("model", type=ModelPath(exists=True))
@click.option("--imgsz", default="640", show_default=True, help="Input N or HxW (fixed-size models: their own).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
              help="Inference threads (capped at the usable cores).")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(0), help="Untimed runs.")
@click.option("--runs", default=20, show_default=True, type=click.IntRange(1), help="Timed runs (medians).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the report and machine facts to this JSON file (atomically).")
@exist_ok_option
@friendly_errors
def profile(model, imgsz, threads, warmup, runs, json_path, exist_ok):
    """Profile MODEL (.onnx, .tflite): time per layer group (backbone, BiFPN, each SSH/DCN block, heads),
    DCN layer and op type, beside each group's MACs and DCN sampling bytes (ONNX: ONNX Runtime's session
    profiler), or what LiteRT's XNNPACK delegate took and the time of the ops outside it (TFLite).
    """
    from featherface_deploy.harness.profile import profile_model, report_tables

    if json_path is not None:
        claim_output(json_path, [model], exist_ok)  # the rules are checked now, before the profiling

    report = profile_model(model, parse_size(imgsz), threads, warmup, runs)
    facts = machine_facts(model=str(model), input_shape=report["summary"]["input_shape"], runtime=report["runtime"],
                          threads=report["summary"]["threads"])
    click.echo(report_tables(report))
    click.echo(facts_line(facts))
    if json_path is not None:
        write_output(json_path, json.dumps({"facts": facts, **report}, indent=2), [model], exist_ok)
