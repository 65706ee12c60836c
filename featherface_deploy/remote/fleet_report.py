"""The fleet part of ``compare --devices``: a table with a device column and a latency-by-device plot.

Written beside the local report as ``<name>-devices.{md,csv,json,png}`` by the harness's own report writer.
"""

from __future__ import annotations

from pathlib import Path

from featherface_deploy.harness.report import Column, write_report
from featherface_deploy.outputs import claim_output
from featherface_deploy.remote.fleet import FleetDevice, run_fleet
from featherface_deploy.remote.runs import BenchmarkSettings

COLUMNS = [Column("device", "Device"), Column("artifact", "Artifact"), Column("threads", "Threads"),
           Column("batch", "Batch"), Column("p50_ms", "p50 ms", 2), Column("mean_ms", "mean ms", 2),
           Column("std_ms", "std ms", 2), Column("infer_ms", "infer ms", 2), Column("throughput", "img/s", 1),
           Column("peak_rss_mb", "peak RSS MB", 0), Column("skipped", "note")]


def fleet_report(artifacts: dict[str, Path], devices: list[FleetDevice], settings: BenchmarkSettings,
                 out_dir: str | Path, name: str, facts: dict, exist_ok: bool = False,
                 inputs: tuple = ()) -> tuple[list[dict], dict[str, Path]]:
    """Runs the artifacts on the fleet and writes ``<name>-devices.*`` (the PNG when matplotlib is installed).

    Returns:
        The rows and the written paths.
    """
    rows, notes = run_fleet(artifacts, devices, settings)
    notes = [*notes, "adb devices run benchmark_model (interpreter only, random inputs); ssh devices run the "
             "bundle (pre + infer + post, as locally)."]
    paths = write_report(out_dir, f"{name}-devices", rows, COLUMNS, facts, notes,
                         extra={"devices": [device.name for device in devices]}, plot=False, exist_ok=exist_ok,
                         inputs=inputs)
    if any(row.get("p50_ms") or row.get("mean_ms") for row in rows):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return rows, paths
        paths["png"] = Path(out_dir) / f"{name}-devices.png"
        with claim_output(paths["png"], inputs, exist_ok) as claim:
            plot_latency_by_device(rows, claim.staged(), title=f"{name}: latency by device")
            claim.publish()
    return rows, paths


def plot_latency_by_device(rows: list[dict], path: str | Path, title: str = "") -> None:
    """Grouped bars: one group per device, one bar per artifact (median latency, or mean where no median)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [row for row in rows if row.get("p50_ms") or row.get("mean_ms")]
    devices = list(dict.fromkeys(row["device"] for row in measured))
    labels = list(dict.fromkeys(f"{row['artifact']} ×{row.get('threads', 1)}" for row in measured))
    width = 0.8 / max(1, len(labels))
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(devices) + 3), 4.2), dpi=120)
    for index, label in enumerate(labels):
        values = []
        for device in devices:
            match = [row for row in measured if row["device"] == device
                     and f"{row['artifact']} ×{row.get('threads', 1)}" == label]
            values.append((match[0].get("p50_ms") or match[0].get("mean_ms")) if match else 0.0)
        axis.bar([d + index * width for d in range(len(devices))], values, width, label=label)
    axis.set_xticks([d + 0.4 - width / 2 for d in range(len(devices))], devices)
    axis.set_ylabel("latency per frame, ms (median; adb: benchmark_model mean)")
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=7, title="artifact × threads", title_fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
