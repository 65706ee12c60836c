"""``evaluate --remote``: WIDER FACE predictions made on the device, AP computed here with the same evaluator.

The images are decoded and fitted on the host (:mod:`.packing`), pushed once as a pack (cached on the device
by content hash), run by the bundle's ``evaluate`` command, and the fetched boxes are scored by
:func:`featherface_deploy.evaluation.evaluate`, exactly as a local ``evaluate`` scores its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featherface_deploy.evaluation import evaluate, list_images, load_ground_truth
from featherface_deploy.evaluation.runner import WiderFaceResult, subset_ground_truth
from featherface_deploy.errors import DeviceError
from featherface_deploy.remote.packing import model_contract, pack_images


def evaluate_on_device(device, model: str | Path, widerface_root: str | Path, limit: int | None = None,
                       conf_threshold: float | None = None,
                       nms_iou: float | None = None, size: tuple[int, int] | None = None,
                       threads: int | None = None, compute_units: str | None = None) -> tuple[WiderFaceResult, dict]:
    """Runs ``model`` on the device over WIDER FACE val images and computes Easy / Medium / Hard AP here.

    Args:
        device: An :class:`~featherface_deploy.remote.ssh_device.SshDevice`.
        model: ``.onnx``, ``.tflite`` or ``.engine`` file, or a ``.mlpackage``.
        widerface_root: The official layout (ground truth stays on the host).
        limit: Only the first ``limit`` images (AP over those).
        conf_threshold: Minimum face probability (``None``: the runtime's default on the device: ours, or
            the one baked into an end-to-end file).
        nms_iou: NMS IoU threshold (``None``: likewise).
        size: Resize box for any-size models (``None``: native resolution).
        threads: Inference threads on the device.
        compute_units: Core ML compute units for a ``.mlpackage`` (``None``: the runtime's default).

    Returns:
        The result (predictions, AP, image count) and the device's own result (``facts``, and ``runtime``:
        the runtime that ran there).

    Raises:
        DeviceError: A step on the device failed, or its predictions do not match the images sent.
    """
    if device.runner != "ssh":
        raise DeviceError(f"{device.name}: evaluate runs over ssh only (adb runs benchmark_model, which cannot "
                          "decode detections)")
    ground_truth = load_ground_truth(widerface_root)
    listed = list_images(widerface_root, ground_truth)[:limit]
    entries = pack_images([([event, name], path) for event, name, path in listed], model_contract(model), size)
    arguments = [item for flag, value in (("--conf-threshold", conf_threshold), ("--nms-iou", nms_iou))
                 if value is not None for item in (flag, str(value))]
    if threads is not None:
        arguments += ["--threads", str(threads)]
    if compute_units is not None:
        arguments += ["--compute-units", compute_units]
    result = device.predict(model, entries, arguments)
    predictions = {}
    for item in result.get("predictions", []):
        predictions[tuple(item["key"])] = np.asarray(item["boxes"], dtype=np.float64).reshape(-1, 5)
    expected = {(event, name) for event, name, _ in listed}
    if set(predictions) != expected:
        raise DeviceError(f"{device.name}: evaluate: the device returned predictions for {len(predictions)} "
                          f"images, {len(expected)} were sent")
    if limit is not None:
        ground_truth = subset_ground_truth(ground_truth, expected)
    return WiderFaceResult(predictions, evaluate(predictions, ground_truth), len(predictions)), result
