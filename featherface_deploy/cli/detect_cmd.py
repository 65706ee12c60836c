"""``featherface-deploy detect``: faces in images, printed and drawn."""

from __future__ import annotations

import json
from pathlib import Path

import click

from featherface_deploy.cli.options import build_detector, friendly_errors, model_options
from featherface_deploy.postprocess import load_image
from featherface_deploy.visualize import draw_detections, save_png


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@model_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write an annotated PNG per image here.")
@click.option("--json", "as_json", is_flag=True, help="Print the faces as JSON.")
@click.option("--vis-threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Only faces at least this probable are printed and drawn.")
@friendly_errors
def detect(images, model, conf_threshold, nms_iou, imgsz, threads, out_dir, as_json, vis_threshold):
    """Detect faces in IMAGES and print box, score and five landmarks for each."""
    detector = build_detector(model, conf_threshold, nms_iou, imgsz, threads)
    report = {}
    for path in images:
        image = load_image(path)
        faces = detector(image)
        shown = faces.scores >= vis_threshold
        faces = type(faces)(faces.boxes[shown], faces.scores[shown], faces.landmarks[shown])
        report[path] = faces.to_list()
        if out_dir is not None:
            target = Path(out_dir) / f"{Path(path).stem}.png"
            save_png(draw_detections(image, faces), target)
        if not as_json:
            click.echo(f"{path}: {len(faces)} face(s)")
            for face in report[path]:
                points = " ".join(f"({x:.0f},{y:.0f})" for x, y in face["landmarks"])
                click.echo(f"  box={face['box']} score={face['score']:.4f} landmarks={points}")
    if as_json:
        click.echo(json.dumps(report, indent=2))
