"""``benchmark --remote`` overhead: the same model timed through loopback ssh and locally, alternated round by round.

A real OpenSSH server is started on 127.0.0.1 (``tests/support/loopback_sshd.py``: fresh keys, ephemeral port,
stopped by its pid), the device's Python is a venv with only numpy and onnxruntime (the tests' device Python), and each round
runs ``featherface-deploy benchmark MODEL`` once with ``--remote ssh://…`` and once without, in alternating order
(remote first in even rounds). The remote bundle is copied before the first round (an untimed run), so the rounds
measure runs of a cached bundle, as a user's second and later runs are. Reported: each round's two p50s and their
ratio, the median of the ratios, the median p50 of each side, and the wall time of each command (ssh connection
and process start, outside the timed loop). Target: the remote median within 5% of the local one.

    python -m benchmarks.bench_remote_overhead [--model V1.onnx] [--rounds 25] [--iters 30]

Without ``--model`` FeatherFace V1 (``$FEATHERFACE_SHARED/weights/featherface-v1.pth``) is exported to a 416×416
ONNX file in a temporary folder first. Needs ``sshd``, ``ssh`` and ``ssh-keygen`` (Debian: openssh-server). Result:
``benchmarks/results/remote_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import default_shared, write_result
from tests.support.loopback_sshd import make_device_python, start_sshd

REPO = Path(__file__).resolve().parent.parent

TARGET = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="An .onnx file (default: V1 exported at 416).")
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--imgsz", type=int, default=416)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="remote-overhead-") as folder:
        folder = Path(folder)
        model = args.model or _export_v1(args.shared, folder / "v1.onnx", args.imgsz)
        server = start_sshd(folder / "sshd")
        try:
            python = make_device_python(folder / "device-venv")
            remote = [*server.ssh_options(), "--python", str(python)]
            common = ["benchmark", str(model), "--imgsz", str(args.imgsz), "--warmup", str(args.warmup),
                      "--iters", str(args.iters), "--threads", str(args.threads)]
            first_copy_s = _run(common, remote, folder / "first.json")[1]
            rounds = [_round(index, common, remote, folder) for index in range(args.rounds)]
        finally:
            server.stop()

    ratios = [entry["ratio"] for entry in rounds]
    summary = {
        "median_ratio": round(statistics.median(ratios), 4),
        "median_remote_p50_ms": round(statistics.median(entry["remote_p50_ms"] for entry in rounds), 3),
        "median_local_p50_ms": round(statistics.median(entry["local_p50_ms"] for entry in rounds), 3),
        "median_remote_wall_s": round(statistics.median(entry["remote_wall_s"] for entry in rounds), 2),
        "median_local_wall_s": round(statistics.median(entry["local_wall_s"] for entry in rounds), 2),
        "first_remote_run_wall_s": round(first_copy_s, 2),
        "target": f"median remote/local p50 ratio within {TARGET:.0%} of 1",
    }
    summary["within_target"] = abs(summary["median_ratio"] - 1) <= TARGET
    command = ("python -m benchmarks.bench_remote_overhead" + (f" --model {args.model}" if args.model else "")
               + f" --rounds {args.rounds} --warmup {args.warmup} --iters {args.iters} --threads {args.threads}"
               + f" --imgsz {args.imgsz}")
    out = write_result("remote_overhead", {"command": command, "model": str(args.model or "featherface-v1 416 onnx"),
                                           "summary": summary, "rounds": rounds})
    print("| round | order | remote p50 ms | local p50 ms | remote/local | remote wall s | local wall s |")
    print("|---|---|---|---|---|---|---|")
    for entry in rounds:
        print(f"| {entry['round']} | {entry['order']} | {entry['remote_p50_ms']:.2f} | {entry['local_p50_ms']:.2f} | "
              f"{entry['ratio']:.3f} | {entry['remote_wall_s']:.1f} | {entry['local_wall_s']:.1f} |")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")


def _export_v1(shared: Path, out: Path, size: int) -> Path:
    from featherface_deploy.pipeline import export_model

    return Path(export_model(shared / "weights" / "featherface-v1.pth", out, "onnx", {"imgsz": (size, size)}).path)


def _round(index: int, common: list, remote: list, folder: Path) -> dict:
    """One remote and one local run, remote first in even rounds."""
    order = ("remote", "local") if index % 2 == 0 else ("local", "remote")
    results = {side: _run(common, remote if side == "remote" else [], folder / f"{side}.json") for side in order}
    (remote_p50, remote_wall), (local_p50, local_wall) = results["remote"], results["local"]
    return {"round": index + 1, "order": "-".join(order), "remote_p50_ms": remote_p50, "local_p50_ms": local_p50,
            "ratio": round(remote_p50 / local_p50, 4), "remote_wall_s": round(remote_wall, 2),
            "local_wall_s": round(local_wall, 2)}


def _run(common: list, extra: list, report: Path) -> tuple[float, float]:
    """Runs the CLI once; returns (its one row's p50 in ms, the command's wall seconds)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "featherface_deploy.cli.main", *common, *extra, "--json",
                           str(report)], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          timeout=900)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"benchmark failed ({'remote' if extra else 'local'}): {done.stderr.strip()[-2000:]}")
    (row,) = json.loads(report.read_text())["rows"]
    return row["p50_ms"], wall


if __name__ == "__main__":
    main()
