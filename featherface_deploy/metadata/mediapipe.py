"""MediaPipe's model metadata for a FeatherFace ``.tflite``: what its stock ObjectDetector task reads.

MediaPipe Tasks read a TFLite model's ``TFLITE_METADATA`` entry, a
``ModelMetadata`` flatbuffer (``mediapipe/tasks/metadata/metadata_schema.fbs``,
file identifier ``M001``), and the files zipped after the flatbuffer (the
label file). For a detector without NMS in the graph (two outputs named
``location`` and ``score``) the task takes its decoding configuration from a
``CustomMetadata`` entry named ``DETECTOR_METADATA`` on the subgraph, an
``ObjectDetectorOptions`` flatbuffer
(``object_detector_metadata_schema.fbs``, identifier ``V001``): the fixed
anchors and the ``TensorsDecodingOptions``. It then always decodes boxes as
YXHW and keypoints as (y, x) (``detection_postprocessing_graph.cc``,
``tensors_to_detections_calculator.cc``).

The tables are built here with ``flatbuffers.Builder`` alone (field slots
from the schemas, listed beside each table), because the metadata writers of
the ``mediapipe`` wheel do not import (``_pywrap_metadata_version`` is
missing in 1.2.2) and the exporter's environment must not hold ``mediapipe``.
The tests read the result back with the wheel's generated classes and load it
in the real task.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

from featherface_deploy.errors import ExportError

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
DETECTOR_IDENTIFIER = b"V001"
DETECTOR_METADATA_NAME = "DETECTOR_METADATA"
LOCATION, SCORE = "location", "score"
LABEL_FILE = "labels.txt"
LABELS = ("face",)
# metadata_schema.fbs enums
_RGB = 1
_BOUNDARIES, _RATIO = 1, 0
_IMAGE_PROPERTIES, _BOUNDING_BOX_PROPERTIES, _FEATURE_PROPERTIES = 2, 3, 1
_NORMALIZATION_OPTIONS = 1
_TENSOR_AXIS_LABELS = 2
# The metadata parser version whose fields this file uses (CustomMetadata needs 1.2.0).
MIN_PARSER_VERSION = "1.2.0"


@dataclass(frozen=True)
class DecodingOptions:
    """The task's ``TensorsDecodingOptions`` for a FeatherFace file.

    Attributes:
        num_boxes: Anchors (the model's N).
        num_keypoints: 5 landmarks, plus 2 when the box corners ride along as keypoints.
        x_scale, y_scale, w_scale, h_scale: 1 / the variances (10, 10, 5, 5 for 0.1 / 0.2).
    """

    num_boxes: int
    num_keypoints: int
    x_scale: float
    y_scale: float
    w_scale: float
    h_scale: float

    @property
    def num_coords(self) -> int:
        """Values per anchor in ``location``: 4 box values then (y, x) per keypoint."""
        return 4 + 2 * self.num_keypoints


def decoding_options(variance: tuple[float, float], num_boxes: int, num_keypoints: int) -> DecodingOptions:
    """The decoding options that reproduce RetinaFace decoding with ``variance`` (centre, size).

    Raises:
        ExportError: A variance the task cannot express (not positive).
    """
    centre, size = variance
    if centre <= 0 or size <= 0:
        raise ExportError(f"variances {list(variance)} must be positive for MediaPipe's x/y/w/h scales")
    return DecodingOptions(num_boxes, num_keypoints, 1.0 / centre, 1.0 / centre, 1.0 / size, 1.0 / size)


class _Builder:
    """A thin layer over ``flatbuffers.Builder``: tables from (slot, kind, value) triples."""

    def __init__(self) -> None:
        import flatbuffers

        self.fb = flatbuffers.Builder(1 << 16)

    def string(self, text: str) -> int:
        return self.fb.CreateString(text)

    def offsets(self, items: list[int]) -> int:
        self.fb.StartVector(4, len(items), 4)
        for item in reversed(items):
            self.fb.PrependUOffsetTRelative(item)
        return self.fb.EndVector()

    def floats(self, values) -> int:
        return self.fb.CreateNumpyVector(np.asarray(values, dtype="<f4"))

    def ints(self, values) -> int:
        return self.fb.CreateNumpyVector(np.asarray(values, dtype="<i4"))

    def ubytes(self, data: bytes) -> int:
        return self.fb.CreateByteVector(data)

    def table(self, slots: int, fields: list[tuple[int, str, object]]) -> int:
        """A table of ``slots`` fields; each field is (slot, kind, value) with kind offset/int8/uint8/int32/float/bool."""
        self.fb.StartObject(slots)
        for slot, kind, value in fields:
            if kind == "offset":
                self.fb.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "int8":
                self.fb.PrependInt8Slot(slot, value, 0)
            elif kind == "uint8":
                self.fb.PrependUint8Slot(slot, value, 0)
            elif kind == "int32":
                self.fb.PrependInt32Slot(slot, value, 0)
            elif kind == "float":
                self.fb.PrependFloat32Slot(slot, value, 0.0)
            elif kind == "bool":
                self.fb.PrependBoolSlot(slot, value, False)
        return self.fb.EndObject()

    def finish(self, root: int, identifier: bytes) -> bytes:
        self.fb.Finish(root, file_identifier=identifier)
        return bytes(self.fb.Output())


def detector_options(anchors: np.ndarray, options: DecodingOptions) -> bytes:
    """The ``ObjectDetectorOptions`` flatbuffer (``V001``): fixed anchors (cx, cy, w, h normalised) and decoding.

    Slots: FixedAnchor{x_center 0, y_center 1, width 2, height 3}; FixedAnchorsSchema{anchors 0};
    SsdAnchorsOptions{fixed_anchors_schema 0}; TensorsDecodingOptions{num_classes 0, num_boxes 1, num_coords 2,
    keypoint_coord_offset 3, num_keypoints 4, num_values_per_keypoint 5, x_scale 6, y_scale 7, w_scale 8,
    h_scale 9, apply_exponential_on_box_size 10, sigmoid_score 11}; ObjectDetectorOptions{min_parser_version 0,
    ssd_anchors_options 1, tensors_decoding_options 2}.
    """
    b = _Builder()
    anchor_tables = [b.table(4, [(0, "float", float(cx)), (1, "float", float(cy)), (2, "float", float(w)),
                                 (3, "float", float(h))]) for cx, cy, w, h in np.asarray(anchors, np.float32)]
    fixed = b.table(1, [(0, "offset", b.offsets(anchor_tables))])
    ssd = b.table(1, [(0, "offset", fixed)])
    decoding = b.table(12, [
        (0, "int32", 1), (1, "int32", options.num_boxes), (2, "int32", options.num_coords), (3, "int32", 4),
        (4, "int32", options.num_keypoints), (5, "int32", 2), (6, "float", options.x_scale),
        (7, "float", options.y_scale), (8, "float", options.w_scale), (9, "float", options.h_scale),
        (10, "bool", True), (11, "bool", False)])
    version = b.string(MIN_PARSER_VERSION)
    root = b.table(3, [(0, "offset", version), (1, "offset", ssd), (2, "offset", decoding)])
    return b.finish(root, DETECTOR_IDENTIFIER)


def model_metadata(model_name: str, description: str, detector: bytes, input_size: tuple[int, int]) -> bytes:
    """The ``ModelMetadata`` flatbuffer (``M001``) of a FeatherFace detector for MediaPipe's ObjectDetector.

    Input: an RGB image, ``NormalizationOptions`` mean 0 / std 1 (the task feeds 0–255; the graph does the
    rest), stats 0–255. Outputs, in this order: ``location`` (``BoundingBoxProperties`` BOUNDARIES/RATIO) and
    ``score`` (the label file, ``TENSOR_AXIS_LABELS``). ``DETECTOR_METADATA`` as the subgraph's custom metadata.

    Slots: ModelMetadata{name 0, description 1, version 2, subgraph_metadata 3, author 4, license 5,
    associated_files 6, min_parser_version 7}; SubGraphMetadata{name 0, description 1, input_tensor_metadata 2,
    output_tensor_metadata 3, …, custom_metadata 9}; TensorMetadata{name 0, description 1, dimension_names 2,
    content 3, process_units 4, stats 5, associated_files 6}; Content{content_properties_type 0,
    content_properties 1, range 2}; ImageProperties{color_space 0, default_size 1}; BoundingBoxProperties{index 0,
    type 1, coordinate_type 2}; ProcessUnit{options_type 0, options 1}; NormalizationOptions{mean 0, std 1};
    Stats{max 0, min 1}; AssociatedFile{name 0, description 1, type 2, locale 3, version 4};
    CustomMetadata{name 0, data 1}.
    """
    b = _Builder()
    image = b.table(2, [(0, "int8", _RGB)])
    image_content = b.table(3, [(0, "uint8", _IMAGE_PROPERTIES), (1, "offset", image)])
    normalization = b.table(2, [(0, "offset", b.floats([0.0])), (1, "offset", b.floats([1.0]))])
    unit = b.table(2, [(0, "uint8", _NORMALIZATION_OPTIONS), (1, "offset", normalization)])
    stats = b.table(2, [(0, "offset", b.floats([255.0])), (1, "offset", b.floats([0.0]))])
    input_name, input_text = b.string("image"), b.string(
        f"RGB image, {input_size[0]}x{input_size[1]}, float32 0-255 (BGR order and the mean are applied in the graph)")
    input_tensor = b.table(7, [(0, "offset", input_name), (1, "offset", input_text), (3, "offset", image_content),
                               (4, "offset", b.offsets([unit])), (5, "offset", stats)])
    box = b.table(3, [(0, "offset", b.ints([0, 1, 2, 3])), (1, "int8", _BOUNDARIES), (2, "int8", _RATIO)])
    box_content = b.table(3, [(0, "uint8", _BOUNDING_BOX_PROPERTIES), (1, "offset", box)])
    location_name, location_text = b.string(LOCATION), b.string(
        "per anchor: box deltas (y, x, h, w), then (y, x) deltas of each keypoint; decoded with the fixed anchors")
    location = b.table(7, [(0, "offset", location_name), (1, "offset", location_text), (3, "offset", box_content)])
    feature = b.table(1, [])
    score_content = b.table(3, [(0, "uint8", _FEATURE_PROPERTIES), (1, "offset", feature)])
    labels = b.table(5, [(0, "offset", b.string(LABEL_FILE)), (1, "offset", b.string("the class names")),
                         (2, "int8", _TENSOR_AXIS_LABELS)])
    score_name, score_text = b.string(SCORE), b.string("face probability per anchor (no sigmoid needed)")
    score = b.table(7, [(0, "offset", score_name), (1, "offset", score_text), (3, "offset", score_content),
                        (6, "offset", b.offsets([labels]))])
    custom = b.table(2, [(0, "offset", b.string(DETECTOR_METADATA_NAME)), (1, "offset", b.ubytes(detector))])
    subgraph = b.table(10, [(2, "offset", b.offsets([input_tensor])), (3, "offset", b.offsets([location, score])),
                            (9, "offset", b.offsets([custom]))])
    name, text = b.string(model_name), b.string(description)
    author, licence = b.string("featherface-deploy"), b.string("MIT")
    version = b.string(MIN_PARSER_VERSION)
    root = b.table(8, [(0, "offset", name), (1, "offset", text), (3, "offset", b.offsets([subgraph])),
                       (4, "offset", author), (5, "offset", licence), (7, "offset", version)])
    return b.finish(root, METADATA_IDENTIFIER)


def attach_task_metadata(data: bytes, metadata: bytes) -> bytes:
    """Returns the model with ``TFLITE_METADATA`` set and the label file zipped after the flatbuffer.

    The zip is appended the way MediaPipe's populator does it (``zipfile`` in append mode on the model, stored
    uncompressed, offsets counted from the start of the file). Must be the last step of an export: re-packing
    the flatbuffer afterwards would drop it.
    """
    from featherface_deploy.metadata.tflite import add_metadata

    stream = io.BytesIO(add_metadata(data, {METADATA_NAME: metadata}))
    with zipfile.ZipFile(stream, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABEL_FILE, "\n".join(LABELS) + "\n")
    return stream.getvalue()
