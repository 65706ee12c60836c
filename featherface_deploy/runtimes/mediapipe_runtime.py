"""MediaPipe's stock ObjectDetector task as a runtime: a ``--format mediapipe`` file run the way apps run it.

The task does its own preprocessing (it stretches the frame to the model's
size, no letterbox; its CPU resize has no antialiasing when shrinking), its own
decoding from the file's metadata and its own NMS (IoU fixed at 0.3), and
returns boxes as integer pixels. This runtime hands it the image and reports
what it returns, so ``detect``, ``evaluate`` and ``benchmark`` measure the
task itself; every report names it (``mediapipe-task``). With
``pad_to_square`` the image is first padded at the bottom and right with the
mean colour to the model's aspect ratio (the recipe the docs give apps), so
the task's stretch becomes a letterbox.

The task runs in a worker process with the MediaPipe environment's Python
(:mod:`~featherface_deploy.runtimes.mediapipe_env` says why and makes it);
images cross the pipe as raw bytes. Files exported with ``box_corners`` carry
the exact float box corners as keypoints 6 and 7: the boxes are read from
them instead of the task's integer pixels.
"""

from __future__ import annotations

import atexit
import subprocess
import warnings
from pathlib import Path

import numpy as np

from featherface_deploy.errors import BackendError, BackendNotInstalledError, ContractError, FeatherFaceError
from featherface_deploy.metadata.tflite import read_contract
from featherface_deploy.postprocess import Detections, PostprocessConfig
from featherface_deploy.postprocess.mediapipe_layout import CONTRACT_KEY, LANDMARKS, is_task_file
from featherface_deploy.runtimes import mediapipe_protocol as protocol
from featherface_deploy.runtimes.base import DetectingRuntime, engine_call
from featherface_deploy.runtimes.mediapipe_env import INSTALL_HINT, task_python

WORKER = Path(__file__).with_name("mediapipe_worker.py")


class MediapipeRuntime(DetectingRuntime):
    """Runs a MediaPipe-task ``.tflite`` through the real ObjectDetector task, in a worker process.

    Args:
        path: The ``.tflite`` written by ``export --format mediapipe``.
        threads: Accepted for the common interface; the task's Python API has no thread setting (the note says so).
        pad_to_square: Pad each image (bottom/right, mean colour) to the model's aspect ratio before the task
            stretches it; ``False`` (default) is what an app gets when it passes its frames as they are.
        python: The interpreter with ``mediapipe`` (default: :func:`~featherface_deploy.runtimes.mediapipe_env.task_python`).

    Raises:
        FeatherFaceError: The file is missing.
        ContractError: The file is not a MediaPipe-task file.
        BackendNotInstalledError: No MediaPipe environment (the message names the command that makes one).
        BackendError: The task refused the file.
    """

    name = "mediapipe-task"
    postprocess = "mediapipe-task"

    def __init__(self, path: str | Path, threads: int | None = None, pad_to_square: bool = False,
                 python: str | Path | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise FeatherFaceError(f"MediaPipe model not found (or not a regular file): {path}")
        contract = read_contract(path.read_bytes(), str(path))
        if contract is None or not is_task_file(contract):
            raise ContractError(f"{path} is not a MediaPipe ObjectDetector file: export it with "
                                "`featherface-deploy export CKPT --format mediapipe`")
        super().__init__(contract)
        interpreter = Path(python) if python is not None else task_python()
        if interpreter is None:
            raise BackendNotInstalledError(INSTALL_HINT)
        self.path, self.pad_to_square = path, pad_to_square
        self.layout = contract.extra[CONTRACT_KEY]
        self._worker = _Worker(interpreter)
        self._threshold: float | None = None
        self.version = ""
        self.last_task_ms = float("nan")
        self._warned_iou = False
        self.note = (f"MediaPipe ObjectDetector task in {interpreter}; frame "
                     f"{'padded to the model aspect, then ' if pad_to_square else ''}stretched to "
                     f"{contract.input_size[0]}x{contract.input_size[1]}; NMS IoU fixed at {self.layout['nms_iou']}"
                     + ("; threads: the task's own (no setting in its API)" if threads is not None else ""))

    def default_config(self) -> PostprocessConfig:
        """Our default thresholds with the task's fixed NMS IoU (0.3)."""
        return PostprocessConfig(nms_iou=self.layout["nms_iou"])

    def detect(self, image: np.ndarray, config: PostprocessConfig | None = None) -> Detections:
        """Faces in one H×W×3 uint8 BGR image, in its pixels, best first (the task's boxes, scores, keypoints).

        The task's score threshold is ``config.conf_threshold`` (always set: the task's default 0 sends every
        anchor to NMS); its NMS IoU is fixed at 0.3 (a different ``config.nms_iou`` is warned about once).
        """
        # one worker process answers one request at a time: calls from several threads take turns
        return engine_call(self, self._detect, image, config or self.default_config())

    def _detect(self, image: np.ndarray, config: PostprocessConfig) -> Detections:
        self._open(config.conf_threshold)
        if config.nms_iou != self.layout["nms_iou"] and not self._warned_iou:
            warnings.warn(f"the MediaPipe task's NMS IoU is fixed at {self.layout['nms_iou']}; "
                          f"--nms-iou {config.nms_iou} does not apply", RuntimeWarning, stacklevel=2)
            self._warned_iou = True
        frame = self._frame(image)
        header = self._worker.call({"op": "detect", "height": frame.shape[0], "width": frame.shape[1]},
                                   frame.tobytes())
        self.last_task_ms = float(header["ms"])
        return self._detections(np.asarray(header["detections"], dtype=np.float64), frame.shape[:2], config)

    def close(self) -> None:
        """Stops the worker process."""
        self._worker.close()

    def _open(self, threshold: float) -> None:
        if self._threshold == threshold:
            return
        reply = self._worker.call({"op": "open", "model": str(self.path.resolve()), "score_threshold": threshold,
                                   "max_results": -1})
        self._threshold, self.version = threshold, reply["mediapipe"]

    def _frame(self, image: np.ndarray) -> np.ndarray:
        """The RGB frame handed to the task: the image, or the image padded to the model's aspect ratio."""
        rgb = np.ascontiguousarray(image[..., ::-1])
        if not self.pad_to_square:
            return rgb
        height, width = rgb.shape[:2]
        model_h, model_w = self.contract.input_size
        # The smallest canvas with the model's aspect ratio that holds the image (bottom/right padding).
        canvas_w = max(width, int(np.ceil(height * model_w / model_h)))
        canvas_h = max(height, int(np.ceil(canvas_w * model_h / model_w)))
        canvas = np.empty((canvas_h, canvas_w, 3), dtype=np.uint8)
        canvas[...] = np.round(np.asarray(self.contract.mean_bgr[::-1])).astype(np.uint8)
        canvas[:height, :width] = rgb
        return canvas

    def _detections(self, rows: np.ndarray, frame_size: tuple[int, int], config: PostprocessConfig) -> Detections:
        keypoints = int(self.layout["keypoints"])
        if rows.size and rows.shape[1] != 5 + 2 * keypoints:
            raise BackendError(f"the MediaPipe task returned {(rows.shape[1] - 5) // 2} keypoints, the file "
                               f"declares {keypoints}: re-export it")
        found = detections_from_task(rows, frame_size, keypoints, bool(self.layout.get("box_corners")))
        return Detections(found.boxes[:config.keep_top_k], found.scores[:config.keep_top_k],
                          found.landmarks[:config.keep_top_k])


def detections_from_task(rows, frame_size: tuple[int, int], keypoints: int, box_corners: bool) -> Detections:
    """The task's detections as rows [x, y, w, h, score, kx0, ky0, …] (the worker's and the web page's form)
    → :class:`Detections` in frame pixels, best first.

    Boxes are the task's integer pixels, or the exact corners (keypoints 6 and 7) for a ``box_corners`` file;
    landmarks are the first five keypoints (normalised by the task) times the frame size.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 5 + 2 * keypoints)
    if not len(rows):
        return Detections.empty()
    height, width = frame_size
    points = rows[:, 5:].reshape(len(rows), keypoints, 2) * np.array([width, height])
    if box_corners:
        boxes = points[:, LANDMARKS:LANDMARKS + 2].reshape(len(rows), 4)
    else:
        boxes = np.concatenate([rows[:, 0:2], rows[:, 0:2] + rows[:, 2:4]], axis=1)
    order = np.argsort(-rows[:, 4], kind="stable")
    return Detections(boxes[order].astype(np.float32), rows[order, 4].astype(np.float32),
                      points[order, :LANDMARKS].astype(np.float32))


class _Worker:
    """The worker process and its pipe."""

    def __init__(self, interpreter: Path) -> None:
        try:
            self.process = subprocess.Popen([str(interpreter), str(WORKER)], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError as error:
            raise BackendNotInstalledError(f"cannot start {interpreter}: {error}; {INSTALL_HINT}") from error
        atexit.register(self.close)

    def call(self, header: dict, payload: bytes = b"") -> dict:
        """Sends a request, returns the reply's header.

        Raises:
            BackendNotInstalledError: The worker died before answering the first request (no mediapipe there).
            BackendError: The task failed; its message, one line.
        """
        try:
            protocol.send(self.process.stdin, header, payload)
            reply = protocol.receive(self.process.stdout)
        except (BrokenPipeError, OSError):
            reply = None
        if reply is None:
            code = self.process.poll()
            raise BackendNotInstalledError(f"the MediaPipe worker exited (status {code}) before answering; "
                                           f"{INSTALL_HINT}")
        if not reply[0].get("ok"):
            raise BackendError(f"MediaPipe's ObjectDetector: {reply[0].get('error')}")
        return reply[0]

    def close(self) -> None:
        """Asks the worker to stop, then waits for it."""
        if self.process.poll() is None:
            try:
                protocol.send(self.process.stdin, {"op": "close"})
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
