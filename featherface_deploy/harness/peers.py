"""Other face detectors a user might pick instead, behind the same call and the same :class:`Detections`.

Each peer is a callable ``peer(image) -> Detections`` (an image path or a BGR
uint8 array, like :class:`~featherface_deploy.detector.FaceDetector`), so the
project's WIDER FACE runner and evaluator score them unchanged. RetinaFace
MobileNet-0.25 needs no adapter: it is a registered architecture and runs
through ``FaceDetector`` like FeatherFace.

- :class:`YuNetDetector`: OpenCV's ``cv2.FaceDetectorYN`` (its own decode and
  NMS, as shipped), at the image's own size.
- :class:`UltralightDetector`: Ultra-Light-Fast-Generic-Face-Detector-1MB
  ONNX (boxes decoded inside the graph) at its fixed 320×240 or 640×480 input;
  score threshold and NMS are the project's shared ones. It predicts no
  landmarks: its ``landmarks`` are NaN.

OpenCV and ONNX Runtime are imported when a peer is created.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featherface_deploy.errors import FeatherFaceError, missing_backend
from featherface_deploy.postprocess import Detections, PostprocessConfig, load_image, nms

ULTRALIGHT_MEAN = 127.0
ULTRALIGHT_SCALE = 1.0 / 128.0


class YuNetDetector:
    """YuNet through ``cv2.FaceDetectorYN``.

    Args:
        path: The YuNet ``.onnx`` file.
        config: Score threshold, NMS IoU and top-k (passed to OpenCV).
        threads: OpenCV threads (``cv2.setNumThreads``, process-wide).

    Raises:
        BackendNotInstalledError: OpenCV is missing.
    """

    name = "YuNet"

    def __init__(self, path: str | Path, config: PostprocessConfig = PostprocessConfig(),
                 threads: int | None = None) -> None:
        cv2 = _import_cv2()
        if threads is not None:
            cv2.setNumThreads(threads)
        self.detector = cv2.FaceDetectorYN.create(str(path), "", (320, 320), config.conf_threshold,
                                                  config.nms_iou, config.top_k)
        self._size: tuple[int, int] | None = None

    def __call__(self, image: str | Path | np.ndarray) -> Detections:
        """Detects faces; landmarks in YuNet's order (image-left eye, image-right eye, nose, mouth corners)."""
        image = load_image(image)
        size = (image.shape[1], image.shape[0])
        if size != self._size:
            self.detector.setInputSize(size)
            self._size = size
        _, faces = self.detector.detect(image)
        if faces is None or len(faces) == 0:
            return Detections.empty()
        faces = faces[np.argsort(-faces[:, 14], kind="stable")]
        boxes = np.concatenate([faces[:, :2], faces[:, :2] + faces[:, 2:4]], axis=1)
        return Detections(boxes.astype(np.float32), faces[:, 14].astype(np.float32),
                          faces[:, 4:14].reshape(-1, 5, 2).astype(np.float32))


class UltralightDetector:
    """Ultra-Light-Fast-Generic-Face-Detector-1MB (``version-RFB-320/640.onnx``).

    Preprocessing as released: RGB, resized (aspect ratio *not* kept) to the fixed
    input, (x − 127) / 128, NCHW. The graph outputs ``scores`` (1, N, 2) and
    normalised corner ``boxes`` (1, N, 4).

    Args:
        path: The ``.onnx`` file.
        config: Score threshold, NMS IoU, top-k and keep-top-k (shared with FeatherFace).
        threads: ONNX Runtime intra-op threads.

    Raises:
        BackendNotInstalledError: ONNX Runtime is missing.
        FeatherFaceError: The graph has no fixed input size.
    """

    name = "Ultra-Light"

    def __init__(self, path: str | Path, config: PostprocessConfig = PostprocessConfig(),
                 threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise missing_backend("onnxruntime", "onnx") from error
        from featherface_deploy.runtimes.ort_runtime import SPINNING_KEYS

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # the released graphs list initializers as inputs: one warning each
        for key in SPINNING_KEYS:  # timed interleaved with other detectors: idle threads must not spin
            options.add_session_config_entry(key, "0")
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        height, width = self.session.get_inputs()[0].shape[2:]
        if not isinstance(height, int) or not isinstance(width, int):
            raise FeatherFaceError(f"{path}: expected a fixed input size, got {height}×{width}")
        self.input_size = (height, width)
        self.config = config

    def __call__(self, image: str | Path | np.ndarray) -> Detections:
        """Detects faces (no landmarks: NaN)."""
        from featherface_deploy.postprocess.preprocess import resize_bgr

        image = load_image(image)
        height, width = image.shape[:2]
        resized = resize_bgr(image, *self.input_size)[:, :, ::-1]
        tensor = ((resized.astype(np.float32) - ULTRALIGHT_MEAN) * ULTRALIGHT_SCALE).transpose(2, 0, 1)[None]
        scores, boxes = self.session.run(["scores", "boxes"], {self.input_name: np.ascontiguousarray(tensor)})
        scores, boxes = scores[0, :, 1], boxes[0]
        candidates = np.nonzero(scores >= self.config.conf_threshold)[0]
        if candidates.size == 0:
            return Detections.empty()
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")[: self.config.top_k]]
        pixels = boxes[candidates] * np.array([width, height, width, height], dtype=np.float32)
        keep = nms(pixels, scores[candidates], self.config.nms_iou)[: self.config.keep_top_k]
        return Detections(pixels[keep].astype(np.float32), scores[candidates][keep].astype(np.float32),
                          np.full((len(keep), 5, 2), np.nan, dtype=np.float32))


def onnx_parameter_count(path: str | Path) -> int:
    """Number of weights in an ONNX file (elements of its float initializers)."""
    import onnx

    model = onnx.load(str(path))
    floating = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in model.graph.initializer if t.data_type in floating))


def _import_cv2():
    try:
        import cv2
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise missing_backend("cv2 (OpenCV, for the YuNet peer)", "peers") from error
    return cv2
