"""``featherface-deploy detect``: faces in images, printed and drawn.

Every image is processed even when some fail (a folder, a missing or
unreadable file): each failure is one ``Error: FILE: reason`` line on stderr,
the results of the others are still printed (or written as JSON), and the exit
status is 1 at the end if any failed. Annotated PNGs get the names of
:func:`~featherface_deploy.file_writing.unique_output_names`, so no input is
ever written over and two inputs never share an output; every one is checked
under the output rules (:func:`~featherface_deploy.outputs.claim_output`:
writable folder, an existing PNG only with ``--exist-ok``) before the first
image runs.
"""

from __future__ import annotations

import json

import click

from featherface_deploy.cli.options import PROBABILITY, build_detector, exist_ok_option, friendly_errors, model_options, runtime_line
from featherface_deploy.errors import FeatherFaceError
from featherface_deploy.file_writing import unique_output_names
from featherface_deploy.postprocess import load_image
from featherface_deploy.outputs import claim_output, write_output
from featherface_deploy.visualize import draw_detections, png_bytes


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@model_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write an annotated PNG per image here (x.jpg → x.png; x-2.png, … when names repeat; "
                   "an existing PNG only with --exist-ok).")
@exist_ok_option
@click.option("--json", "as_json", is_flag=True, help="Print the faces as JSON.")
@click.option("--vis-threshold", default=0.5, show_default=True, type=PROBABILITY,
              help="Only faces at least this probable are printed and drawn.")
@friendly_errors
def detect(images, model, coreml_engine, compute_units, runtime_choice, conf_threshold, nms_iou, imgsz, threads, max_pixels, out_dir,
           exist_ok, as_json, vis_threshold):
    """Detect faces in IMAGES and print box, score and five landmarks for each.

    The first line says which runtime ran (on stderr with --json, so stdout stays JSON).
    """
    targets = unique_output_names(images, out_dir, ".png") if out_dir is not None else [None] * len(images)
    inputs = [model, *images]
    for target in targets:
        if target is not None:
            claim_output(target, inputs, exist_ok)  # every output checked before the first image runs
    detector = build_detector(model, conf_threshold, nms_iou, imgsz, threads, max_pixels, coreml_engine,
                              compute_units, runtime_choice)
    click.echo(runtime_line(detector.runtime), err=as_json)
    report, failed = {}, []
    for path, target in zip(images, targets):
        try:
            image = load_image(path)
            faces = detector(image)
            shown = faces.scores >= vis_threshold
            faces = type(faces)(faces.boxes[shown], faces.scores[shown], faces.landmarks[shown])
            if target is not None:
                write_output(target, png_bytes(draw_detections(image, faces)), inputs, exist_ok)
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
