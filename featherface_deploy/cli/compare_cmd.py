"""``featherface-deploy compare``: every backend and precision of one checkpoint, side by side."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from featherface_deploy.cli.options import (PROBABILITY, Number, exist_ok_option, friendly_errors, parse_size, random_init_options,
                                            untrained_seed)

BUDGET_EXIT_CODE = 3


class ClickProgress:
    """Progress on stderr: log lines and click progress bars (stdout keeps only the table)."""

    def log(self, message: str) -> None:
        """Echoes a line to stderr."""
        click.echo(message, err=True)

    def bar(self, label: str, total: int):
        """A click progress bar on stderr."""
        return click.progressbar(length=total, label=label, file=sys.stderr)


@click.command("compare")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--formats", default=None,
              help="Comma-separated artifacts to build and compare, e.g. torch,onnx,onnx-int8,tflite,tflite-fp16,"
                   "tflite-int8 (default: every one whose backend this installation has; torch is the reference).")
@click.option("--widerface", type=click.Path(exists=True, file_okay=False), default=None,
              help="WIDER FACE folder (official layout): accuracy, and the images for everything else.")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Image folder for latency and parity when no --widerface is given.")
@click.option("--calib-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Calibration photos for INT8 artifacts (never the evaluation images).")
@click.option("--out", default="report", show_default=True, type=click.Path(file_okay=False),
              help="Report folder.")
@click.option("--cache", default=None, type=click.Path(file_okay=False),
              help="Where built artifacts are cached (default: OUT/artifacts).")
@click.option("--name", default="compare", show_default=True, help="Report file stem (NAME.md/.csv/.json/.png).")
@click.option("--imgsz", default="640", show_default=True, help="Export size and image box, N or HxW.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1), help="Inference threads.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(0), help="Untimed rounds.")
@click.option("--iters", default=50, show_default=True, type=click.IntRange(1), help="Timed rounds.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Use only the first N images.")
@click.option("--parity-images", default=32, show_default=True, type=click.IntRange(1),
              help="Images compared with the reference.")
@click.option("--min-match-rate", default=None, type=PROBABILITY,
              help=f"Budget: exit {BUDGET_EXIT_CODE} if any artifact's detection match rate is lower.")
@click.option("--max-ap-drop", default=None, type=Number(0.0),
              help=f"Budget: exit {BUDGET_EXIT_CODE} if any AP (points) drops more than this vs the reference.")
@click.option("--strict-parity", is_flag=True,
              help=f"Budget: exit {BUDGET_EXIT_CODE} if any artifact fails its precision's parity tolerances.")
@click.option("--devices", "devices_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="devices.toml: also time the built artifacts on each listed device (ssh:// or adb), in parallel "
                   "across devices; writes OUT/NAME-devices.{md,csv,json,png}.")
@click.option("--end2end", is_flag=True, default=False,
              help="Build the rows that can take it end to end (decoding and NMS in the file, with the shared "
                   "thresholds) and run them through their own detect; other rows are reported as skipped.")
@exist_ok_option
@random_init_options
@friendly_errors
def compare(checkpoint, formats, widerface, images, calib_dir, out, cache, name, imgsz, threads, warmup, iters, limit,
            parity_images, min_match_rate, max_ap_drop, strict_parity, devices_file, end2end, exist_ok, architecture,
            random_init, seed):
    """Export CHECKPOINT (or --architecture NAME --random-init) to every format asked for, run all on the same
    inputs, and report side by side.

    Writes OUT/NAME.{md,csv,json,png} and prints the Markdown table. Exits with status 3 when a
    budget (--min-match-rate, --max-ap-drop, --strict-parity) is broken.
    """
    from featherface_deploy.formats import get_format
    from featherface_deploy.harness.artifacts import default_rows
    from featherface_deploy.harness.compare import COLUMNS, Budgets, CompareConfig, run_compare
    from featherface_deploy.harness.report import render_markdown, report_paths, write_report
    from featherface_deploy.outputs import claim_output

    if widerface is None and images is None:
        raise click.UsageError("give --widerface DIR (accuracy + images) or --images DIR")
    seed = untrained_seed(checkpoint, architecture, random_init, seed)
    if architecture is not None and seed is None:
        raise click.UsageError("compare reads the architecture from CHECKPOINT; --architecture is for --random-init")
    if seed is not None:
        if max_ap_drop is not None:
            raise click.UsageError("--max-ap-drop: an untrained model has no AP to drop")
        from featherface_deploy.models.checkpoint import write_untrained_checkpoint

        checkpoint = write_untrained_checkpoint(architecture, seed, Path(cache or Path(out) / "artifacts"))
        click.echo(f"{architecture}: random weights (seed {seed}), UNTRAINED; no AP will be reported", err=True)
    inputs = tuple(path for path in (checkpoint, widerface, images, calib_dir, devices_file) if path is not None)
    for path in [*report_paths(out, name).values(), *(report_paths(out, f"{name}-devices").values()
                                                      if devices_file else ())]:
        claim_output(path, inputs, exist_ok)  # the report's files are checked before the long run
    budgets = Budgets(min_match_rate, max_ap_drop, strict_parity)  # checked before the long run
    requested = formats.split(",") if formats else default_rows()
    fleet = _read_fleet(devices_file)  # a bad devices.toml fails now, not after the builds
    names = tuple(dict.fromkeys(part.strip() for part in requested if part.strip()))
    for row_name in names:
        get_format(row_name)
    config = CompareConfig(formats=names, imgsz=parse_size(imgsz), threads=threads, warmup=warmup, iters=iters,
                           widerface=_path(widerface), images=_path(images), limit=limit,
                           parity_images=parity_images, calibration_dir=_path(calib_dir), untrained_seed=seed,
                           end2end=end2end)
    result = run_compare(checkpoint, cache or Path(out) / "artifacts", config, ClickProgress())
    paths = write_report(out, name, result.rows, COLUMNS, result.facts, result.notes, exist_ok=exist_ok,
                         inputs=inputs)
    click.echo(render_markdown({"columns": [c.to_dict() for c in COLUMNS], "rows": result.rows,
                                "notes": result.notes, "facts": result.facts}))
    click.echo(f"report: {', '.join(str(p) for p in paths.values())}", err=True)
    if fleet:
        _compare_on_devices(fleet, result, out, name, parse_size(imgsz), threads, warmup, iters, exist_ok, inputs)
    broken = budgets.broken(result.rows)
    for line in broken:
        click.echo(f"budget broken: {line}", err=True)
    if broken:
        sys.exit(BUDGET_EXIT_CODE)


def _read_fleet(devices_file: str | None) -> list:
    if devices_file is None:
        return []
    from featherface_deploy.remote.fleet import read_devices

    return read_devices(devices_file)


def _compare_on_devices(fleet: list, result, out, name, size, threads, warmup, iters, exist_ok: bool,
                        inputs: tuple) -> None:
    """``--devices``: the built artifacts (those a device can run) timed on every device of the fleet."""
    from featherface_deploy.remote.fleet_report import COLUMNS, fleet_report
    from featherface_deploy.remote.runs import BenchmarkSettings
    from featherface_deploy.harness.report import markdown_table

    artifacts = {row["label"]: Path(row["path"]) for row in result.rows
                 if row.get("path") and Path(row["path"]).suffix in (".onnx", ".tflite")}
    rows, paths = fleet_report(artifacts, fleet, BenchmarkSettings(size, (1,), (threads,),
                               warmup, iters), out, name, result.facts, exist_ok, inputs)
    click.echo(markdown_table(rows, COLUMNS))
    click.echo(f"device report: {', '.join(str(p) for p in paths.values())}", err=True)


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)
