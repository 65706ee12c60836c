"""``featherface-deploy benchmark``: latency of one model file, split into pre / inference / post."""

from __future__ import annotations

import json
import sys

import click

from featherface_deploy.cli.options import ModelPath, friendly_errors, parse_size


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
@click.option("--threads", default="1", show_default=True, help="Thread counts, comma-separated (e.g. 1,2).")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(0), help="Untimed steps.")
@click.option("--iters", default=100, show_default=True, type=click.IntRange(1), help="Timed steps.")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of images to cycle through (default: 4 synthetic noise images).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the rows and machine facts to this JSON file.")
@friendly_errors
def benchmark(model, imgsz, batch, threads, warmup, iters, images, json_path):
    """Time MODEL (.pth, .onnx, .tflite, .mlpackage…): p50/p90/p99, mean, std, throughput, pre/infer/post, memory, size.

    The table's runtime column and the facts line name the runtime that ran.
    """
    from featherface_deploy.harness.report import Column, facts_line, machine_facts, markdown_table
    from featherface_deploy.harness.latency import benchmark_model

    size = parse_size(imgsz)
    rows = benchmark_model(model, _load_images(images, size), size, _int_list(batch), _int_list(threads),
                           warmup, iters, _bar)
    columns = [Column("runtime", "Runtime"), Column("threads", "Threads"), Column("batch", "Batch"), Column("p50_ms", "p50 ms", 2),
               Column("p90_ms", "p90 ms", 2), Column("p99_ms", "p99 ms", 2), Column("mean_ms", "mean ms", 2),
               Column("std_ms", "std ms", 2), Column("throughput", "img/s", 1), Column("pre_ms", "pre ms", 2),
               Column("infer_ms", "infer ms", 2), Column("post_ms", "post ms", 2),
               Column("peak_rss_mb", "peak RSS MB", 0), Column("file_mb", "Size MB", 2), Column("skipped", "note")]
    facts = machine_facts(model=str(model), imgsz=list(size), runtime=rows[0]["runtime"],
                          runtime_note=rows[0]["runtime_note"])
    click.echo(markdown_table(rows, columns))
    click.echo(facts_line(facts))
    if facts["runtime_note"]:
        click.echo(f"_{facts['runtime']}: {facts['runtime_note']}._")
    if json_path is not None:
        with open(json_path, "w") as stream:
            json.dump({"facts": facts, "rows": rows}, stream, indent=2)


def _bar(label: str, total: int):
    return click.progressbar(length=total, label=label, file=sys.stderr)


def _load_images(folder: str | None, size: tuple[int, int]) -> list:
    from featherface_deploy.harness.latency import synthetic_images
    from featherface_deploy.calibration import list_image_files
    from featherface_deploy.postprocess import load_image

    if folder is None:
        return synthetic_images(size)
    return [load_image(path) for path in list_image_files(folder)[:16]]
