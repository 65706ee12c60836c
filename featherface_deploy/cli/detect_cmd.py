"""``featherface-deploy detect``: faces in images, printed and drawn.

Every image is processed even when some fail: each failure is one
``Error: FILE: reason`` line on stderr, the results of the others are still
printed (or written as JSON), and the exit status is 1 at the end if any
failed. Annotated PNGs get the names of
:func:`~featherface_deploy.file_writing.unique_output_names`, so no input is
ever written over and two inputs never share an output.
"""

from __future__ import annotations

import json

import click

from featherface_deploy.cli.options import build_detector, friendly_errors, model_options, runtime_line
from featherface_deploy.errors import FeatherFaceError
from featherface_deploy.file_writing import unique_output_names
from featherface_deploy.postprocess import load_image
from featherface_deploy.visualize import draw_detections, save_png


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@model_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write an annotated PNG per image here (x.jpg → x.png; x-2.png, … when names repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print the faces as JSON.")
@click.option("--vis-threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Only faces at least this probable are printed and drawn.")
@friendly_errors
def detect(images, model, coreml_engine, compute_units, runtime_choice, conf_threshold, nms_iou, imgsz, threads, max_pixels, out_dir,
           as_json, vis_threshold):
    """Detect faces in IMAGES and print box, score and five landmarks for each.

    The first line says which runtime ran (on stderr with --json, so stdout stays JSON).
    """
    detector = build_detector(model, conf_threshold, nms_iou, imgsz, threads, max_pixels, coreml_engine,
                              compute_units, runtime_choice)
    click.echo(runtime_line(detector.runtime), err=as_json)
    targets = unique_output_names(images, out_dir, ".png") if out_dir is not None else [None] * len(images)
    report, failed = {}, []
    for path, target in zip(images, targets):
        try:
            image = load_image(path)
            faces = detector(image)
            shown = faces.scores >= vis_threshold
            faces = type(faces)(faces.boxes[shown], faces.scores[shown], faces.landmarks[shown])
            if target is not None:
                save_png(draw_detections(image, faces), target)
        except FeatherFaceError as error:
            failed.append(path)
            message = str(error)
            click.echo(f"Error: {message if path in message else f'{path}: {message}'}", err=True)
            continue
        report[path] = faces.to_list()
        if not as_json:
            click.echo(f"{path}: {len(faces)} face(s)" + (f" → {target}" if target is not None else ""))
            for face in report[path]:
                points = " ".join(f"({x:.0f},{y:.0f})" for x, y in face["landmarks"])
                click.echo(f"  box={face['box']} score={face['score']:.4f} landmarks={points}")
    if as_json:
        click.echo(json.dumps(report, indent=2))
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(images)} image(s) failed: {', '.join(failed)}")
