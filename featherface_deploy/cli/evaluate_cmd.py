"""``featherface-deploy evaluate``: WIDER FACE Easy / Medium / Hard AP."""

from __future__ import annotations

import json
import sys
import time

import click

from featherface_deploy.cli.options import (
    build_detector,
    exist_ok_option,
    friendly_errors,
    model_options,
    parse_size,
    postprocess_line,
    runtime_line,
)
from featherface_deploy.cli.remote_options import device_line, open_remote, remote_options
from featherface_deploy.evaluation import evaluate_widerface, list_images, load_ground_truth, write_predictions
from featherface_deploy.formats import format_for_path
from featherface_deploy.outputs import claim_output


@click.command()
@model_options
@click.option("--widerface", required=True, type=click.Path(exists=True, file_okay=False),
              help="WIDER FACE folder in the official layout (WIDER_val/, eval_tools/ground_truth/).")
@click.option("--pred-dir", type=click.Path(), default=None,
              help="Write predictions here in the official submission layout (<event>/<image>.txt), as a "
                   "whole (an existing folder only with --exist-ok, then replaced whole).")
@exist_ok_option
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate only the first N images.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@remote_options
@friendly_errors
def evaluate(model, coreml_engine, compute_units, runtime_choice, conf_threshold, nms_iou, imgsz, threads, max_pixels, widerface,
             pred_dir, exist_ok, limit, as_json, **remote):
    """Run a model on WIDER FACE val and print Easy / Medium / Hard AP (official protocol, IoU 0.5).

    The report names the runtime that ran (``runtime`` in the JSON). With --remote, the model runs on the
    device (images pushed once) and AP is computed here.
    """
    start = time.perf_counter()
    inputs = [model, widerface]
    if pred_dir is not None:
        claim_output(pred_dir, inputs, exist_ok, folder=True)  # the rules are checked now, before the run
    runtime_name, runtime_note = f"remote {remote['remote']}", "ran on the device"
    untrained_seed, postprocess = None, "numpy"
    if remote["remote"] is not None:
        from featherface_deploy.remote.remote_evaluate import evaluate_on_device

        if coreml_engine != "auto":
            raise click.UsageError("--coreml-engine: with --remote the device chooses (Core ML on macOS, else the "
                                   "reference interpreter; the output names it)")
        if compute_units != "all" and format_for_path(model).family != "coreml":
            raise click.UsageError("--compute-units applies to Core ML packages (.mlpackage) only")
        device = open_remote(**remote)
        result, ran = evaluate_on_device(device, model, widerface, limit, conf_threshold, nms_iou,
                                         parse_size(imgsz), threads, None if compute_units == "all" else compute_units)
        click.echo(device_line(ran["facts"], device.name), err=as_json)
        if ran.get("runtime"):
            runtime_name = ran["runtime"]["name"]
            runtime_note = f"ran on {device.name}" + (f"; {ran['runtime']['note']}" if ran["runtime"]["note"] else "")
    else:
        detector = build_detector(model, conf_threshold, nms_iou, imgsz, threads, max_pixels, coreml_engine,
                                  compute_units, runtime_choice)
        runtime_name, runtime_note = detector.runtime.name, detector.runtime.note
        postprocess = postprocess_line(detector.runtime)
        untrained_seed = detector.runtime.contract.untrained_seed
        ground_truth = load_ground_truth(widerface)  # read once: the progress bar and the evaluation share it
        total = len(list_images(widerface, ground_truth)[:limit])
        with click.progressbar(length=total, label="evaluating", file=sys.stderr) as bar:
            result = evaluate_widerface(detector, widerface, limit, on_image=lambda: bar.update(1),
                                        ground_truth=ground_truth)
    elapsed = time.perf_counter() - start
    if pred_dir is not None:
        write_predictions(result.predictions, pred_dir, exist_ok, inputs)
    if as_json:
        click.echo(json.dumps({"model": model, "runtime": runtime_name, "runtime_note": runtime_note,
                               "postprocess": postprocess, "untrained_seed": untrained_seed, "images": result.images, **result.ap.percentages, "seconds": round(elapsed, 1)},
                              indent=2))
    else:
        click.echo(f"{model}: {result.images} images in {elapsed:.1f} s")
        click.echo(runtime_line(detector.runtime) if remote["remote"] is None
                   else f"runtime: {runtime_name} ({runtime_note})")
        click.echo(f"AP  {result.ap.format()}" + ("  (random weights: this AP measures nothing but the pipeline)"
                                                  if untrained_seed is not None else ""))
