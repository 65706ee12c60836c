"""``featherface-deploy evaluate``: WIDER FACE Easy / Medium / Hard AP."""

from __future__ import annotations

import json
import sys
import time

import click

from featherface_deploy.cli.options import build_detector, friendly_errors, model_options, runtime_line
from featherface_deploy.evaluation import evaluate_widerface, list_images, write_predictions


@click.command()
@model_options
@click.option("--widerface", required=True, type=click.Path(exists=True, file_okay=False),
              help="WIDER FACE folder in the official layout (WIDER_val/, eval_tools/ground_truth/).")
@click.option("--pred-dir", type=click.Path(file_okay=False), default=None,
              help="Write predictions here in the official submission layout (<event>/<image>.txt).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate only the first N images.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def evaluate(model, coreml_engine, compute_units, conf_threshold, nms_iou, imgsz, threads, max_pixels, widerface,
             pred_dir, limit, as_json):
    """Run a model on WIDER FACE val and print Easy / Medium / Hard AP (official protocol, IoU 0.5).

    The report names the runtime that ran (``runtime`` in the JSON).
    """
    detector = build_detector(model, conf_threshold, nms_iou, imgsz, threads, max_pixels, coreml_engine,
                              compute_units)
    total = len(list_images(widerface)[:limit])
    start = time.perf_counter()
    with click.progressbar(length=total, label="evaluating", file=sys.stderr) as bar:
        result = evaluate_widerface(detector, widerface, limit, on_image=lambda: bar.update(1))
    elapsed = time.perf_counter() - start
    if pred_dir is not None:
        write_predictions(result.predictions, pred_dir)
    if as_json:
        runtime = detector.runtime
        click.echo(json.dumps({"model": model, "runtime": runtime.name, "runtime_note": runtime.note,
                               "images": result.images, **result.ap.percentages, "seconds": round(elapsed, 1)},
                              indent=2))
    else:
        click.echo(f"{model}: {result.images} images in {elapsed:.1f} s")
        click.echo(runtime_line(detector.runtime))
        click.echo(f"AP  {result.ap.format()}")
