"""The runner inside a device bundle: ``python run.py benchmark|evaluate|detect|facts [options]``.

It runs on the device with Python ≥ 3.8, numpy and the model's own runtime only. Every number comes from
the package's own modules, copied into the bundle: :func:`~featherface_deploy.harness.latency.benchmark_model`
for latency, :class:`~featherface_deploy.FaceDetector` and the shared ``to_tensor`` / ``decode_image``
for detections, so a device run and a host run differ only in where the kernels execute.

Each command prints one JSON document (or writes it atomically with ``--output``)::

    {"schema": "featherface-deploy/device-result/1", "command": "benchmark", "model": {...},
     "facts": {...}, "facts_after": {"temperatures_c": {...}}, "seconds": 12.3, ...}

plus, per command: ``rows`` (benchmark: the rows of the local ``benchmark``), ``predictions`` (evaluate:
``[{"key": [event, image], "boxes": [[x1, y1, x2, y2, score], ...]}]``), ``detections`` (detect:
``[{"key": [...], "faces": [{"box", "score", "landmarks"}]}]``), and ``runtime`` (evaluate, detect:
``{"name", "note"}``; benchmark: each row's ``runtime`` and ``runtime_note``): the runtime that ran, e.g.
``coreml`` (Core ML, macOS, with ``compute_units``) or ``coreml-reference-interpreter`` (numpy, elsewhere).
``--compute-units all|cpu|cpu-and-ne|cpu-and-gpu`` applies to Core ML packages only. Without ``--images``,
benchmark times seeded noise of the model's own input size (a fixed-size model; else ``--imgsz``), so
nothing is resized and the device needs no Pillow. Errors exit with status 2 and one line ``error: ...`` on
stderr (a missing runtime: what to install on the device); nothing is written to ``--output`` then.
``--time-limit S`` ends a run that takes longer than S seconds (exit status 128 + SIGALRM), so a run whose
host has gone away still stops.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from featherface_deploy import __version__
from featherface_deploy.harness.latency import benchmark_model, synthetic_images
from featherface_deploy.contract import atomic_write_bytes
from featherface_deploy.detector import FaceDetector
from featherface_deploy.errors import BackendNotInstalledError, FeatherFaceError
from featherface_deploy.formats import format_for_path
from featherface_deploy.postprocess import decode_image, load_image, to_tensor
from featherface_deploy.remote.device_facts import device_facts, temperatures
from featherface_deploy.remote.device_requirements import missing_runtime_message
from featherface_deploy.remote.image_pack import read_pack
from featherface_deploy.remote.packing import model_contract

RESULT_SCHEMA = "featherface-deploy/device-result/1"
EXIT_ERROR = 2


def main(argv=None, default_model=None) -> int:
    """Parses the command line and runs one command.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
        default_model: The bundled model, used when ``--model`` is not given.

    Returns:
        The exit status (0, or :data:`EXIT_ERROR` after a one-line error on stderr).
    """
    args = _parser(default_model).parse_args(argv)
    if args.time_limit and hasattr(signal, "alarm"):  # POSIX devices; Windows has no SIGALRM
        # The default SIGALRM action ends the process: a run that hangs on the device stops by itself even
        # when the host that started it is gone (the host reads exit status 128 + SIGALRM).
        signal.alarm(args.time_limit)
    try:
        if args.model is None:
            raise FeatherFaceError("no model: pass --model PATH")
        result = _COMMANDS[args.command](args)
    except BackendNotInstalledError as error:  # the host's `pip install featherface-deploy[...]` is wrong here
        name = Path(args.model).name
        print(f"error: {missing_runtime_message(name, format_for_path(name).family, error)}", file=sys.stderr)
        return EXIT_ERROR
    except FeatherFaceError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
        return EXIT_ERROR
    text = json.dumps(result)
    if args.output:
        atomic_write_bytes(args.output, text.encode("utf-8"))
    else:
        print(text)
    return 0


def _parser(default_model) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS:
        sub = commands.add_parser(name)
        sub.add_argument("--model", default=default_model, help="Model file (default: the bundled one).")
        sub.add_argument("--output", default=None, help="Write the JSON here (atomically) instead of stdout.")
        sub.add_argument("--threads", default="1", help="Threads, comma-separated for benchmark (e.g. 1,2).")
        sub.add_argument("--images", default=None, help="Image pack (.npz) made by the host.")
        sub.add_argument("--time-limit", type=int, default=0, help="End the run after this many seconds (0: none).")
        sub.add_argument("--compute-units", default=None,
                         help="Core ML packages only: all, cpu, cpu-and-ne or cpu-and-gpu (Core ML on macOS).")
        if name == "benchmark":
            sub.add_argument("--imgsz", default="640", help="Image box N or HxW (fixed-size models: their own).")
            sub.add_argument("--batch", default="1", help="Batch sizes, comma-separated.")
            sub.add_argument("--warmup", type=int, default=10)
            sub.add_argument("--iters", type=int, default=100)
        if name in ("evaluate", "detect"):
            # Left out: the runtime's defaults (ours, or the thresholds baked into an end-to-end file)
            sub.add_argument("--conf-threshold", type=float, default=None)
            sub.add_argument("--nms-iou", type=float, default=None)
        if name == "detect":
            sub.add_argument("files", nargs="*", help="Image files (need Pillow) or .npy BGR uint8 arrays.")
    return parser


def _header(args, command: str) -> dict:
    return {"schema": RESULT_SCHEMA, "command": command, "featherface_deploy": __version__,
            "model": model_facts(Path(args.model)), "facts": device_facts()}


def model_facts(path: Path) -> dict:
    """``file``, ``bytes`` and ``sha256`` of a model file, or of a package folder's files (paths and contents).

    Raises:
        FeatherFaceError: The model is missing.
    """
    if path.is_dir():
        files = sorted(item for item in path.rglob("*") if item.is_file())
        digest = hashlib.sha256()
        for item in files:
            digest.update(item.relative_to(path).as_posix().encode("utf-8") + b"\0")
            digest.update(hashlib.sha256(item.read_bytes()).digest())
        return {"file": path.name, "bytes": sum(item.stat().st_size for item in files), "sha256": digest.hexdigest()}
    if not path.is_file():
        raise FeatherFaceError(f"model not found: {path}")
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _runtime_options(args) -> dict:
    """Keywords for the model's runtime: ``compute_units`` for a Core ML package, when asked for."""
    if args.compute_units is None:
        return {}
    if format_for_path(args.model).family != "coreml":
        raise FeatherFaceError(f"--compute-units applies to Core ML packages (.mlpackage), not {Path(args.model).name}")
    return {"compute_units": args.compute_units}


def _runtime(runtime) -> dict:
    """The runtime that ran, as results name it (Core ML: with its compute units)."""
    named = {"name": runtime.name, "note": runtime.note}
    if runtime.name == "coreml":
        named["compute_units"] = runtime.compute_units
    return named


def _finish(result: dict, start: float) -> dict:
    result["facts_after"] = {"temperatures_c": temperatures()}
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def _benchmark(args) -> dict:
    start = time.perf_counter()
    result = _header(args, "benchmark")
    size = _size(args.imgsz)
    if args.images:
        images = [entry.image for entry in read_pack(args.images)]
    else:  # a fixed-size model gets noise of its own size: nothing to resize, so the device needs no Pillow
        size = model_contract(args.model).input_size or size
        images = synthetic_images(size)
    options = _runtime_options(args)
    result["settings"] = {"imgsz": list(size), "warmup": args.warmup, "iters": args.iters,
                          "images": "pack" if args.images else "synthetic", **options}
    result["rows"] = benchmark_model(args.model, images, size, _ints(args.batch), _ints(args.threads),
                                     args.warmup, args.iters, runtime_options=options)
    for row in result["rows"]:
        if row["runtime"] == "coreml":  # Core ML ran: say on which processors it was allowed to
            row["compute_units"] = options.get("compute_units", "all")
    return _finish(result, start)


def _detector(args) -> FaceDetector:
    detector = FaceDetector.load(args.model, threads=_ints(args.threads)[0], **_runtime_options(args))
    given = {name: value for name, value in (("conf_threshold", args.conf_threshold), ("nms_iou", args.nms_iou))
             if value is not None}
    if given:
        detector.config = dataclasses.replace(detector.config, **given)
    return detector


def _evaluate(args) -> dict:
    start = time.perf_counter()
    result = _header(args, "evaluate")
    if not args.images:
        raise FeatherFaceError("evaluate needs --images PACK (the host makes it)")
    detector = _detector(args)
    predictions = []
    for entry in read_pack(args.images):
        faces = detect_fitted(detector, entry.image, entry.transform)
        boxes = np.concatenate([faces.boxes, faces.scores[:, None]], axis=1)
        predictions.append({"key": entry.key, "boxes": boxes.astype(float).tolist()})
    result["predictions"] = predictions
    result["runtime"] = _runtime(detector.runtime)
    return _finish(result, start)


def detect_fitted(detector: FaceDetector, fitted: np.ndarray, transform):
    """Detects faces in an image the host already fitted, as ``detector(original)`` would.

    Args:
        detector: The model and thresholds.
        fitted: The image after :func:`~featherface_deploy.postprocess.fit_image`.
        transform: Its transform from original pixels.

    Returns:
        Detections in original pixels.
    """
    tensor = to_tensor(fitted, detector.runtime.contract)
    raw = detector.runtime.infer(tensor[None])
    return decode_image(raw["loc"][0], raw["conf"][0], raw["landmarks"][0], tensor.shape[1:],
                        detector.runtime.contract, transform, detector.config)


def _detect(args) -> dict:
    start = time.perf_counter()
    result = _header(args, "detect")
    detector = _detector(args)
    found = []
    if args.images:
        for entry in read_pack(args.images):
            found.append({"key": entry.key, "faces": detect_fitted(detector, entry.image, entry.transform).to_list()})
    for name in args.files:
        image = np.load(name, allow_pickle=False) if name.endswith(".npy") else load_image(name)
        found.append({"key": [Path(name).name], "faces": detector(image).to_list()})
    result["detections"] = found
    result["runtime"] = _runtime(detector.runtime)
    return _finish(result, start)


def _facts(args) -> dict:
    start = time.perf_counter()
    return _finish(_header(args, "facts"), start)


def _ints(text: str) -> list:
    try:
        values = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise FeatherFaceError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise FeatherFaceError(f"expected positive integers, got {text!r}")
    return values


def _size(text: str) -> tuple:
    parts = _ints(str(text).lower().replace("x", ","))
    if len(parts) not in (1, 2):
        raise FeatherFaceError(f"expected N or HxW, got {text!r}")
    return (parts[0], parts[-1])


_COMMANDS = {"benchmark": _benchmark, "evaluate": _evaluate, "detect": _detect, "facts": _facts}
