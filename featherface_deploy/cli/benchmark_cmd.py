"""``featherface-deploy benchmark``: latency of one model file, split into pre / inference / post."""

from __future__ import annotations

import json
import sys

import click

from featherface_deploy.cli.options import COMPUTE_UNITS, ModelPath, exist_ok_option, friendly_errors, parse_size
from featherface_deploy.cli.remote_options import adb_options, device_line, open_remote, remote_options
from featherface_deploy.outputs import claim_output, write_output
from featherface_deploy.harness.report import Column, facts_line, machine_facts, markdown_table

COLUMNS = [Column("runtime", "Runtime"), Column("threads", "Threads"), Column("batch", "Batch"), Column("p50_ms", "p50 ms", 2),
           Column("p90_ms", "p90 ms", 2), Column("p99_ms", "p99 ms", 2), Column("mean_ms", "mean ms", 2),
           Column("std_ms", "std ms", 2), Column("throughput", "img/s", 1), Column("pre_ms", "pre ms", 2),
           Column("infer_ms", "infer ms", 2), Column("post_ms", "post ms", 2),
           Column("peak_rss_mb", "peak RSS MB", 0), Column("file_mb", "Size MB", 2), Column("skipped", "note")]
from featherface_deploy.errors import BackendNotInstalledError
from featherface_deploy.formats import FORMATS, Format, format_for_path
from featherface_deploy.remote.runs import BenchmarkSettings

DEVICES = ("cpu", "cuda")


def _int_list(value: str) -> list[int]:
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not numbers or min(numbers) < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return numbers


@click.command("benchmark")
@click.argument("model", type=ModelPath(exists=True))
@click.option("--imgsz", default="640", show_default=True, help="Image box N or HxW (fixed-size models: their own).")
@click.option("--batch", default="1", show_default=True, help="Batch sizes, comma-separated (e.g. 1,4).")
@click.option("--threads", default="1", show_default=True,
              help="Thread counts, comma-separated (e.g. 1,2); capped at the usable cores, rows say what ran.")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(0), help="Untimed steps.")
@click.option("--iters", default=100, show_default=True, type=click.IntRange(1), help="Timed steps.")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of images to cycle through (default: 4 synthetic noise images).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the rows and machine facts to this JSON file (atomically).")
@exist_ok_option
@click.option("--device", default="cpu", show_default=True, type=click.Choice(DEVICES),
              help="cuda: run a checkpoint on an NVIDIA GPU (the torch-cuda row).")
@click.option("--half", is_flag=True, help="With --device cuda: FP16 autocast (the torch-cuda-fp16 row).")
@click.option("--compute-units", default=None, type=click.Choice(COMPUTE_UNITS),
              help=".mlpackage only: the processors Core ML may use (on a Mac, also with --remote ssh://mac); "
                   "where Core ML cannot run, the reference interpreter runs and the rows say so.")
@remote_options
@adb_options
@friendly_errors
def benchmark(model, imgsz, batch, threads, warmup, iters, images, json_path, exist_ok, device, half,
              compute_units, **remote):
    """Time MODEL (.pth, .onnx, .tflite…): p50/p90/p99, mean, std, throughput, pre/infer/post, memory, size.

    With --remote, MODEL (.onnx, .tflite, .mlpackage, .engine; adb: .tflite) runs on the device in a bundle
    (copied once, cached by content hash) and the device's rows and facts are printed and recorded like a local
    run's.
    """
    size = parse_size(imgsz)
    inputs = [model] + ([images] if images else [])
    if json_path is not None:
        claim_output(json_path, inputs, exist_ok)  # the rules are checked now, before the timing
    if compute_units is not None and format_for_path(model).family != "coreml":
        raise click.UsageError(f"--compute-units applies to Core ML packages (.mlpackage) only, not {model}")
    if remote["remote"] is not None:
        if device != "cpu" or half:
            raise click.UsageError("--device/--half choose a local row; with --remote the device runs the file")
        settings = BenchmarkSettings(size, tuple(_int_list(batch)), tuple(_int_list(threads)), warmup, iters,
                                     compute_units)
        return _remote_benchmark(model, settings, images, json_path, remote, exist_ok)
    from featherface_deploy.harness.latency import benchmark_model

    row = device_row(format_for_path(model), device, half)
    rows = benchmark_model(model, _load_images(images, size), size, _int_list(batch), _int_list(threads),
                           warmup, iters, _bar, row=row,
                           runtime_options=None if compute_units is None else {"compute_units": compute_units})
    columns = list(COLUMNS)
    if any(result["threads"] != result["threads_requested"] for result in rows):
        columns.insert(2, Column("threads_requested", "asked"))  # capped at the usable cores
    facts = machine_facts(model=str(model), imgsz=list(size), format=row.name, runtime=rows[0]["runtime"],
                          runtime_note=rows[0]["runtime_note"], postprocess=rows[0]["postprocess"],
                          untrained_seed=rows[0]["untrained_seed"])
    click.echo(markdown_table(rows, columns))
    click.echo(facts_line(facts))
    if facts["runtime_note"]:
        click.echo(f"_{facts['runtime']}: {facts['runtime_note']}._")
    if facts["postprocess"] != "numpy":
        click.echo(f"_post-processing: {facts['postprocess']}: decoding and NMS ran inside the model; "
                   "its whole step is in the infer column (pre and post are 0)._")
    if facts["untrained_seed"] is not None:
        click.echo(f"_UNTRAINED: random weights (seed {facts['untrained_seed']}); the latency is the "
                   "architecture's, the detections mean nothing._")
    if json_path is not None:
        write_output(json_path, json.dumps({"facts": facts, "rows": rows}, indent=2), inputs, exist_ok)


def _remote_benchmark(model, settings, images, json_path, remote, exist_ok: bool) -> None:
    """``benchmark --remote``: the device's rows, printed and written like a local run's, errors included."""
    device = open_remote(**remote)
    packed = _pack_folder(model, images, settings.imgsz) if images is not None else None
    report = device.benchmark(model, settings, packed)
    columns = list(COLUMNS)
    if any(row.get("compute_units") for row in report.rows):  # Core ML ran (a Mac): on which processors
        columns.insert(1, Column("compute_units", "Compute units"))
    click.echo(markdown_table(report.rows, columns))
    click.echo(device_line(report.facts, report.device, report.facts_after))
    for runtime, note in dict((row["runtime"], row.get("runtime_note")) for row in report.rows
                              if row.get("runtime")).items():
        if note:  # a stand-in (Core ML's reference interpreter off macOS) is never passed off as the real one
            click.echo(f"_{runtime}: {note}._")
    for note in report.notes:
        click.echo(f"Note: {note}")
    if json_path is not None:
        facts = machine_facts(model=str(model), imgsz=list(settings.imgsz), remote=remote["remote"],
                              compute_units=settings.compute_units)
        write_output(json_path, json.dumps({"facts": facts, "device": report.to_dict(), "rows": report.rows},
                                           indent=2), [model] + ([images] if images else []), exist_ok)
    if report.errors:
        raise click.ClickException(f"{len(report.errors)} of {len(report.rows)} configurations failed on "
                                   f"{report.device}; the first: {report.errors[0]}")


def _pack_folder(model, folder: str, size: tuple[int, int]) -> list:
    """The images of a folder (the first 16, as locally), fitted for the model and packed for the device."""
    from featherface_deploy.calibration import list_image_files
    from featherface_deploy.remote.packing import model_contract, pack_images

    paths = list_image_files(folder)[:16]
    return pack_images([([path.name], path) for path in paths], model_contract(model), size)


def device_row(row: Format, device: str, half: bool) -> Format:
    """The row of ``row``'s file format that runs on ``device`` (``--half``: its FP16 variant), if it can run here.

    Raises:
        click.UsageError: ``--half`` without ``--device cuda``, or no row runs that file format on that device
            (``--device cuda`` for a ``.tflite``).
        BackendNotInstalledError: The row cannot run here (``torch-cuda`` without a GPU: the table's probe says why).
    """
    if device == "cpu":
        if half:
            raise click.UsageError("--half is FP16 autocast on an NVIDIA GPU: add --device cuda")
        return row
    wanted = (device, "fp16" if half else "fp32")
    flags = f"--device {device}{' --half' if half else ''}"
    for candidate in FORMATS:
        options = dict(candidate.runtime_options)
        if candidate.family == row.family and (options.get("device"), candidate.precision) == wanted:
            ok, why = candidate.runs_here()
            if not ok:
                raise BackendNotInstalledError(f"{flags} is the {candidate.name} row, which cannot run here: {why}")
            return candidate
    raise click.UsageError(f"{flags} has no row for {row.family} files: it applies to PyTorch checkpoints "
                           "(.pth, .pt); TensorRT engines run on the GPU without it")


def _bar(label: str, total: int):
    return click.progressbar(length=total, label=label, file=sys.stderr)


def _load_images(folder: str | None, size: tuple[int, int]) -> list:
    from featherface_deploy.harness.latency import synthetic_images
    from featherface_deploy.calibration import list_image_files
    from featherface_deploy.postprocess import load_image

    if folder is None:
        return synthetic_images(size)
    return [load_image(path) for path in list_image_files(folder)[:16]]
