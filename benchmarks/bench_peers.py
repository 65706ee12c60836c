"""FeatherFace V1 / V2 next to the detectors a user might pick instead, on the same images and evaluator.

Detectors (all on the 200-image WIDER FACE val subset, scored by
``featherface_deploy.evaluation``):

- FeatherFace V1, FeatherFace V2-CA, RetinaFace-MobileNet0.25: exported to ONNX
  at 416×416 (the subset's image size, so no resize) and run with ONNX Runtime
  through ``FaceDetector`` (shared preprocessing, decode and NMS);
- YuNet 2023mar: ``cv2.FaceDetectorYN`` at 416×416 (its own decode and NMS);
- Ultra-Light RFB-640 (640×480) and RFB-320 (320×240): ONNX Runtime, released
  preprocessing, shared threshold and NMS.

Every detector keeps faces scoring ≥ 0.02 with NMS IoU 0.4 (the evaluation
protocol). Latency: end to end from a decoded image (pre + infer + post), one
thread, all detectors interleaved round-robin over the same 8 images, medians
(the host is shared). The design documents' claims are measured from the same
run and written as a second report.

Usage::

    python benchmarks/bench_peers.py [--iters 30] [--shared ../shared] [--cache DIR]

Writes ``benchmarks/results/peers.{md,csv,json,png}`` and ``claims.{md,csv,json}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
from claims import COLUMNS as CLAIM_COLUMNS
from claims import claims_rows
from common import RESULTS_DIR, default_shared, time_interleaved

from featherface_deploy.harness.artifacts import BuildSettings, build_all
from featherface_deploy.harness.peers import UltralightDetector, YuNetDetector, onnx_parameter_count
from featherface_deploy.harness.report import Column, machine_facts, render_markdown, write_report
from featherface_deploy.detector import FaceDetector
from featherface_deploy.evaluation import evaluate_widerface, list_images
from featherface_deploy.postprocess import PostprocessConfig, load_image

SIZE = (416, 416)
THREADS = 1
LATENCY_THRESHOLD = 0.5  # a deployment threshold: at 0.02 the greedy NMS of crowded outputs dominates
COLUMNS = (Column("label", "Detector"), Column("runtime", "Runtime"), Column("input", "Input"),
           Column("params", "Params (PyTorch)"), Column("onnx_weights", "ONNX weights"),
           Column("file_mb", "ONNX MB", 2), Column("p50_ms", "p50 ms", 1), Column("p90_ms", "p90 ms", 1),
           Column("ap_easy", "Easy AP", 2), Column("ap_medium", "Medium AP", 2), Column("ap_hard", "Hard AP", 2))
TORCH_MODELS = {"FeatherFace V1": "weights/featherface-v1.pth", "FeatherFace V2-CA": "weights/featherface-v2-ca.pth",
                "RetinaFace-MNet0.25": "peers/retinaface-mnet025/mobilenet0.25_Final.pth"}


def main() -> None:
    """Runs every detector, writes the peers and claims reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "featherface_deploy" / "bench")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--limit", type=int, default=None, help="first N images only (quick check)")
    args = parser.parse_args()
    widerface = args.shared / "data" / "widerface-val-416"

    detectors, rows, torch_facts = _detectors(args.shared, args.cache, PostprocessConfig())
    for label, detector in detectors.items():
        print(f"WIDER FACE: {label}", file=sys.stderr)
        ap = evaluate_widerface(detector, widerface, args.limit).ap.percentages
        rows[label].update({f"ap_{k}": round(v, 2) for k, v in ap.items()})
    images = [load_image(path) for _, _, path in list_images(widerface)[:8]]
    deployed, _, _ = _detectors(args.shared, args.cache, PostprocessConfig(conf_threshold=LATENCY_THRESHOLD))
    calls = {label: _cycler(detector, images) for label, detector in deployed.items()}
    print(f"latency: {len(calls)} detectors interleaved, {args.iters} rounds", file=sys.stderr)
    for label, samples in time_interleaved(calls, args.iters, warmup=5).items():
        rows[label].update({"p50_ms": round(1000 * statistics.median(samples), 2),
                            "p90_ms": round(1000 * float(np.percentile(samples, 90)), 2)})

    facts = machine_facts(threads=THREADS, iterations=args.iters, images=args.limit or 200)
    notes = [
        "Same 200 WIDER FACE val images (416×416) and the same evaluator for every detector; faces kept at "
        "score ≥ 0.02, NMS IoU 0.4. FeatherFace and RetinaFace: ONNX (416×416 static export) through FaceDetector; "
        "YuNet: cv2.FaceDetectorYN at 416×416; Ultra-Light: its fixed input, image resized without keeping aspect.",
        f"Latency: end to end from a decoded image (pre + infer + post) at the deployment threshold "
        f"score ≥ {LATENCY_THRESHOLD} (AP uses 0.02), {THREADS} thread, detectors interleaved "
        "round-robin over the same 8 images, median and p90; shared 2-core host, so absolute values are noisy.",
        "Params (PyTorch): trainable parameters of the model; ONNX weights: elements of the float initializers "
        "(BatchNorm folded by the simplifier, so lower).",
    ]
    ordered = list(rows.values())
    write_report(RESULTS_DIR, "peers", ordered, COLUMNS, facts, notes, exist_ok=True)
    claim_rows = claims_rows(_measured(rows, torch_facts), {
        "params": "PyTorch model built from the checkpoint", "pth_mb": "checkpoint file size",
        "speed": "ONNX Runtime CPU, 1 thread, 416×416, interleaved median (this table)",
        "time": "ONNX Runtime CPU, 1 thread, 416×416, interleaved median (this table)",
        "ap_delta": "WIDER FACE 200-image subset, same evaluator (not comparable with published AP)"})
    claim_notes = ["Claims are quoted from ../shared/seeds as claims; the measured column comes from "
                   "benchmarks/bench_peers.py on this machine and subset (the peers table)."]
    write_report(RESULTS_DIR, "claims", claim_rows, CLAIM_COLUMNS, facts, claim_notes, plot=False, exist_ok=True)
    print(render_markdown({"columns": [c.to_dict() for c in COLUMNS], "rows": ordered, "notes": notes,
                           "facts": facts}))
    print(render_markdown({"columns": [c.to_dict() for c in CLAIM_COLUMNS], "rows": claim_rows,
                           "notes": claim_notes, "facts": facts}))


def _detectors(shared: Path, cache: Path, config: PostprocessConfig) -> tuple[dict, dict, dict]:
    detectors, rows, torch_facts = {}, {}, {}
    for label, relative in TORCH_MODELS.items():
        checkpoint = shared / relative
        built, failed = build_all(checkpoint, ["onnx"], cache, BuildSettings(SIZE, log=_log))
        if failed:
            raise SystemExit(f"{label}: {failed['onnx']}")
        onnx_path = built["onnx"].path
        detectors[label] = FaceDetector.load(onnx_path, config, threads=THREADS, allow_spinning=False)
        torch_facts[label] = _torch_facts(checkpoint)
        rows[label] = _row(label, "onnxruntime", f"{SIZE[0]}×{SIZE[1]}", onnx_path, torch_facts[label]["params"])
    yunet = shared / "peers" / "yunet" / "face_detection_yunet_2023mar.onnx"
    detectors["YuNet"] = YuNetDetector(yunet, config, threads=THREADS)
    rows["YuNet"] = _row("YuNet", "OpenCV DNN", f"{SIZE[0]}×{SIZE[1]}", yunet, None)
    for version in ("640", "320"):
        path = shared / "peers" / "ultralight" / f"version-RFB-{version}.onnx"
        detector = UltralightDetector(path, config, threads=THREADS)
        label = f"Ultra-Light RFB-{version}"
        detectors[label] = detector
        rows[label] = _row(label, "onnxruntime", f"{detector.input_size[1]}×{detector.input_size[0]}", path, None)
    return detectors, rows, torch_facts


def _row(label: str, runtime: str, size: str, onnx_path: Path, params: int | None) -> dict:
    return {"label": label, "runtime": runtime, "input": size, "params": params,
            "onnx_weights": onnx_parameter_count(onnx_path), "file_mb": round(onnx_path.stat().st_size / 1e6, 3),
            "threads": THREADS}


def _torch_facts(checkpoint: Path) -> dict:
    from featherface_deploy.models import load_model
    from featherface_deploy.models.deform_conv import ModulatedDeformConv2d

    model = load_model(checkpoint).model
    parts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    dcn = sum(p.numel() for m in model.modules() if isinstance(m, ModulatedDeformConv2d) for p in m.parameters())
    return {"params": sum(p.numel() for p in model.parameters()), "parts": parts, "dcn": dcn,
            "pth_mb": checkpoint.stat().st_size / 1e6}


def _measured(rows: dict, torch_facts: dict) -> dict:
    v1, v2 = rows["FeatherFace V1"], rows["FeatherFace V2-CA"]
    facts1, facts2 = torch_facts["FeatherFace V1"], torch_facts["FeatherFace V2-CA"]
    parts = facts1["parts"]
    measured = {
        "params_v1": facts1["params"], "params_v2": facts2["params"], "params_ca": facts2["params"] - facts1["params"],
        "params_backbone": parts.get("body"), "params_bifpn": parts.get("bifpn"),
        "params_ssh": sum(v for k, v in parts.items() if k.startswith("ssh")),
        "params_heads": sum(v for k, v in parts.items() if k.endswith("Head")), "params_dcn": facts1["dcn"],
        "pth_mb_v1": facts1["pth_mb"], "pth_mb_v2": facts2["pth_mb"],
        "speed_v2_over_v1": v1["p50_ms"] / v2["p50_ms"], "time_v2_vs_v1_pct": 100 * (v2["p50_ms"] / v1["p50_ms"] - 1),
    }
    measured.update({f"ap_delta_{s}": v2[f"ap_{s}"] - v1[f"ap_{s}"] for s in ("easy", "medium", "hard")})
    return measured


def _cycler(detector, images):
    state = {"next": 0}

    def call():
        state["next"] = (state["next"] + 1) % len(images)
        return detector(images[state["next"]])

    return call


def _log(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    main()
