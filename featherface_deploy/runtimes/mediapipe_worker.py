"""Runs MediaPipe's ObjectDetector task for a parent process (``python PATH/mediapipe_worker.py``).

Started by :class:`~featherface_deploy.runtimes.mediapipe_runtime.MediapipeRuntime`
with the MediaPipe environment's Python, as a script (the environment does not
hold featherface-deploy): it imports numpy, mediapipe and its sibling
``mediapipe_protocol`` only.
Requests (:mod:`~featherface_deploy.runtimes.mediapipe_protocol`):

- ``{"op": "open", "model": PATH, "score_threshold": T, "max_results": M, "threads": N}``
  → ``{"ok": true, "mediapipe": VERSION}``
- ``{"op": "detect", "height": H, "width": W}`` + H·W·3 RGB uint8 bytes →
  ``{"ok": true, "ms": task detect() time, "detections": [[x, y, w, h, score, kx0, ky0, …], …]}``: the
  task's integer pixel box, its best category score, its keypoints normalised to the frame.

Any failure is answered ``{"ok": false, "error": "…"}``. The protocol uses the
original standard output; everything else printed (MediaPipe's logs) goes to
standard error.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    """Serves requests until the parent closes the pipe."""
    channel_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # MediaPipe logs must not corrupt the protocol
    sys.stdout = sys.stderr
    from mediapipe_protocol import receive, send  # the sibling file: this runs as a script

    channel_in = sys.stdin.buffer
    detector = None
    while True:
        message = receive(channel_in)
        if message is None or message[0].get("op") == "close":
            break
        header, payload = message
        try:
            if header["op"] == "open":
                detector, version = _open(header)
                send(channel_out, {"ok": True, "mediapipe": version})
            elif header["op"] == "detect":
                if detector is None:
                    raise RuntimeError("detect before open")
                send(channel_out, {"ok": True, **_detect(detector, header, payload)})
            else:
                raise ValueError(f"unknown op {header['op']!r}")
        except Exception as error:  # noqa: BLE001 - every failure goes back to the parent as one line
            send(channel_out, {"ok": False, "error": f"{type(error).__name__}: {error}".splitlines()[0]})


def _open(header: dict):
    import mediapipe
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=header["model"]),
        running_mode=vision.RunningMode.IMAGE,
        score_threshold=float(header["score_threshold"]),
        max_results=int(header.get("max_results", -1)))
    return vision.ObjectDetector.create_from_options(options), mediapipe.__version__


def _detect(detector, header: dict, payload: bytes) -> dict:
    import mediapipe
    import numpy as np

    pixels = np.frombuffer(payload, dtype=np.uint8).reshape(int(header["height"]), int(header["width"]), 3)
    image = mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))
    started = time.perf_counter()
    result = detector.detect(image)
    elapsed = (time.perf_counter() - started) * 1000
    rows = []
    for detection in result.detections:
        box = detection.bounding_box
        row = [box.origin_x, box.origin_y, box.width, box.height, max(c.score for c in detection.categories)]
        for point in detection.keypoints or []:
            row += [point.x, point.y]
        rows.append(row)
    return {"ms": elapsed, "detections": rows}


if __name__ == "__main__":
    main()
