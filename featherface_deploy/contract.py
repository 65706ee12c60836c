"""The decode contract: everything a runtime needs to turn raw outputs into faces.

It travels with every exported model (in the format's metadata slot and in a
sidecar ``<model>.json``), so a runtime needs nothing but the model file. It
is stored as JSON and read with ``json`` only, never ``eval``.

Protection: since schema version 2 the JSON carries ``digest``, the SHA-256 of
its canonical JSON (every other key, whatever fields exist, sorted, compact),
written at export and checked at every load: an edited ``steps``,
``min_sizes``, ``variance``, ``mean_bgr``, ``conf_is_probability``… is an
error, not wrong boxes. Schema-1 contracts (written before the digest) are
still read, unprotected (``info`` says so); re-export to protect them.

One rule for every reader (:func:`reconcile`): the contract embedded in the
file and the sidecar are the same source of truth; either alone is used, both
must agree, neither is an error.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from featherface_deploy.errors import ContractError
from featherface_deploy.file_writing import atomic_write_bytes

SCHEMA_VERSION = 2
# Versions this code reads: 1 (before the digest; accepted unprotected) and 2.
READABLE_SCHEMA_VERSIONS = (1, 2)
DIGEST_KEY = "digest"
METADATA_KEY = "featherface_deploy.contract"
OUTPUT_ROLES = ("loc", "conf", "landmarks")
POSTPROCESS_PLACES = ("numpy", "in-graph")
END2END_OUTPUTS = ("detections", "num_detections")
DETECTION_WIDTH = 15  # x1, y1, x2, y2, score, then five (x, y) landmarks


@dataclass(frozen=True)
class PriorConfig:
    """RetinaFace anchor (prior) layout and box-coding variances.

    Attributes:
        min_sizes: Anchor sizes in pixels, one tuple per pyramid level.
        steps: Stride of each level.
        variance: Centre and size variances of the box coding.
        clip: Whether priors are clipped to [0, 1] (not for FeatherFace).
    """

    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variance: tuple[float, float] = (0.1, 0.2)
    clip: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> "PriorConfig":
        """Builds the config from its JSON form."""
        return cls(
            min_sizes=tuple(tuple(int(v) for v in level) for level in data["min_sizes"]),
            steps=tuple(int(v) for v in data["steps"]),
            variance=(float(data["variance"][0]), float(data["variance"][1])),
            clip=bool(data["clip"]),
        )

    def count(self, height: int, width: int) -> int:
        """Number of priors (the model's N outputs) for an input of ``height`` × ``width``."""
        return sum(-(-height // step) * -(-width // step) * len(sizes)
                   for step, sizes in zip(self.steps, self.min_sizes))

    def problems(self) -> list[str]:
        """What makes this layout unusable (empty when it is sound)."""
        found = []
        if not self.steps or len(self.steps) != len(self.min_sizes):
            found.append(f"steps {list(self.steps)} and min_sizes {[list(m) for m in self.min_sizes]} differ in length")
        if any(step <= 0 for step in self.steps) or any(size <= 0 for level in self.min_sizes for size in level):
            found.append("steps and min_sizes must be positive")
        if any(not level for level in self.min_sizes):
            found.append("every level needs at least one min size")
        if not all(math.isfinite(v) and v > 0 for v in self.variance):
            found.append(f"variance {list(self.variance)} must be positive and finite")
        return found


@dataclass(frozen=True)
class End2EndSpec:
    """What an end-to-end file (decoding and NMS inside the graph) takes and returns.

    Attributes:
        max_det: Rows of ``detections`` (the most faces one image can return).
        conf: Face probability a candidate needs (``score >= conf``).
        nms_iou: Greedy NMS suppresses a box whose IoU with a kept one is strictly above this.
        pre_nms_top_k: Candidates (best scores) that enter the NMS.
        input_color: Channel order of the input (``RGB``); the flip to the network's BGR is in the graph.
        input_scale: Value range of the input (``0-255``); the mean is subtracted in the graph.
        pad_rgb: The colour apps pad the letterbox with (the mean: it becomes 0 inside the graph,
            exactly what the numpy preprocessing pads with).
        outputs: Names of the ``detections`` (1, max_det, 15) and ``num_detections`` (1,) int32 outputs.
        output_layout: Columns of a ``detections`` row, in input-tensor pixels; rows past
            ``num_detections`` are zero.
        raw_tensors: Names inside the graph of the raw ``loc``, ``conf``, ``landmarks`` tensors (what
            verification exposes to compare the in-graph detections with the numpy post-processing).
    """

    max_det: int = 300
    conf: float = 0.5
    nms_iou: float = 0.4
    pre_nms_top_k: int = 1000
    input_color: str = "RGB"
    input_scale: str = "0-255"
    pad_rgb: tuple[float, float, float] = (123.0, 117.0, 104.0)
    outputs: tuple[str, str] = END2END_OUTPUTS
    output_layout: str = "x1,y1,x2,y2,score,lm0x,lm0y,lm1x,lm1y,lm2x,lm2y,lm3x,lm3y,lm4x,lm4y"
    raw_tensors: tuple[str, str, str] = OUTPUT_ROLES

    @classmethod
    def from_dict(cls, data: dict) -> "End2EndSpec":
        """Builds the spec from its JSON form."""
        return cls(
            max_det=int(data["max_det"]), conf=float(data["conf"]), nms_iou=float(data["nms_iou"]),
            pre_nms_top_k=int(data["pre_nms_top_k"]), input_color=str(data["input_color"]),
            input_scale=str(data["input_scale"]), pad_rgb=tuple(float(v) for v in data["pad_rgb"]),
            outputs=tuple(str(v) for v in data["outputs"]), output_layout=str(data["output_layout"]),
            raw_tensors=tuple(str(v) for v in data["raw_tensors"]),
        )

    def problems(self) -> list[str]:
        """What makes these settings unusable (empty when they are sound)."""
        return [*end2end_setting_problems(self.max_det, self.conf, self.nms_iou, self.pre_nms_top_k),
                *([] if len(self.outputs) == 2 and all(self.outputs) else
                  [f"end2end outputs {list(self.outputs)} must be two names (detections, num_detections)"]),
                *([] if len(self.raw_tensors) == 3 and all(self.raw_tensors) else
                  [f"end2end raw_tensors {list(self.raw_tensors)} must name loc, conf and landmarks"])]


def end2end_setting_problems(max_det, conf, nms_iou, pre_nms_top_k) -> list[str]:
    """What is wrong with end-to-end settings (``--max-det``, ``--conf``, ``--nms-iou``, ``--pre-nms-top-k``)."""
    found = []
    for flag, value in (("--max-det", max_det), ("--pre-nms-top-k", pre_nms_top_k)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            found.append(f"{flag} must be a positive integer, got {value!r}")
    for flag, value in (("--conf", conf), ("--nms-iou", nms_iou)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
            found.append(f"{flag} must be strictly between 0 and 1, got {value!r}")
    return found


@dataclass(frozen=True)
class DecodeContract:
    """What a model expects and produces, and how to decode it.

    Attributes:
        model_name: Registered architecture name (e.g. ``featherface-v1``).
        input_name: Name of the single input tensor.
        output_names: Tensor names for the roles ``loc``, ``conf``, ``landmarks``, in that order.
        input_size: Fixed (height, width), or ``None`` when the model takes any size.
        size_divisor: Height and width must be multiples of this (1 = any size).
        input_layout: ``NCHW`` or ``NHWC`` of the model's own input tensor.
        mean_bgr: Per-channel mean subtracted from the BGR image (no scaling).
        channel_order: ``BGR``.
        conf_is_probability: ``conf`` is already softmax-ed (True for FeatherFace).
        priors: Anchor layout.
        precision: ``fp32``, ``fp16`` or ``int8``.
        source_format: Format of the file the contract belongs to.
        versions: Package versions that produced the file.
        extra: Format-specific facts (e.g. the DCN lowering, float-kept nodes).
        schema_version: Version of this schema.
        untrained_seed: Set when the weights are not trained but a random initialisation
            (``export --random-init``), seeded with this value: the file runs, its detections mean
            nothing. ``None`` (trained weights) in every file written before the field existed.
        postprocess: Where decoding and NMS run: ``numpy`` (raw outputs, our post-processing; every file
            written before the field existed) or ``in-graph`` (an end-to-end file, see ``end2end``).
        end2end: The end-to-end settings and I/O of an ``in-graph`` file; ``None`` otherwise.
    """

    model_name: str
    input_name: str = "input"
    output_names: tuple[str, str, str] = OUTPUT_ROLES
    input_size: tuple[int, int] | None = None
    size_divisor: int = 1
    input_layout: str = "NCHW"
    mean_bgr: tuple[float, float, float] = (104.0, 117.0, 123.0)
    channel_order: str = "BGR"
    conf_is_probability: bool = True
    priors: PriorConfig = field(default_factory=PriorConfig)
    precision: str = "fp32"
    source_format: str = "torch"
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    untrained_seed: int | None = None
    postprocess: str = "numpy"
    end2end: End2EndSpec | None = None

    @property
    def in_graph(self) -> bool:
        """Whether decoding and NMS run inside the file (an end-to-end export)."""
        return self.postprocess == "in-graph"

    @property
    def untrained(self) -> bool:
        """Whether the weights are a random initialisation (see ``untrained_seed``)."""
        return self.untrained_seed is not None

    def weights_note(self) -> str:
        """``""`` for trained weights, else the line every report shows (``UNTRAINED: random weights, seed 0 …``)."""
        if not self.untrained:
            return ""
        return (f"UNTRAINED: random weights (seed {self.untrained_seed}), no checkpoint; "
                "its detections mean nothing")

    def to_json(self) -> str:
        """Serialises the contract to a JSON string, with its :func:`digest`."""
        return json.dumps(signed(asdict(self)), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model metadata") -> "DecodeContract":
        """Parses and validates a contract.

        Args:
            text: The JSON text.
            source: Where it came from, for error messages.

        Raises:
            ContractError: Not JSON, an unknown schema version, a digest that does not match (an edited
                contract), or missing fields.
        """
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ContractError(f"{source}: the decode contract is not valid JSON ({error})") from error
        if not isinstance(data, dict):
            raise ContractError(f"{source}: the decode contract is not a JSON object")
        version = data.get("schema_version")
        if isinstance(version, bool) or version not in READABLE_SCHEMA_VERSIONS:
            raise ContractError(
                f"{source}: unknown decode-contract schema version {version!r} (this featherface-deploy "
                f"reads versions {', '.join(map(str, READABLE_SCHEMA_VERSIONS))}); re-export the model with "
                "this version"
            )
        if (version >= 2 or DIGEST_KEY in data) and data.get(DIGEST_KEY) != digest(data):
            raise ContractError(f"{source}: the decode contract was edited after export (its digest does not "
                                "match its contents), so its boxes could not be trusted; re-export the model")
        known = {f.name for f in fields(cls)}
        try:
            values = {k: v for k, v in data.items() if k in known}
            values["priors"] = PriorConfig.from_dict(data["priors"])
            values["output_names"] = tuple(data["output_names"])
            values["mean_bgr"] = tuple(float(v) for v in data["mean_bgr"])
            if data.get("end2end") is not None:
                values["end2end"] = End2EndSpec.from_dict(data["end2end"])
            if data.get("input_size") is not None:
                values["input_size"] = (int(data["input_size"][0]), int(data["input_size"][1]))
            contract = cls(**values)
        except (KeyError, TypeError, ValueError, IndexError, OverflowError, AttributeError) as error:
            raise ContractError(f"{source}: the decode contract is incomplete ({error!r})") from error
        problems = contract.problems()
        if problems:
            raise ContractError(f"{source}: the decode contract is invalid: {'; '.join(problems)}")
        return contract

    def problems(self) -> list[str]:
        """What makes this contract unusable (empty when it is sound); :meth:`from_json` refuses any."""
        found = self.priors.problems()
        names = (self.model_name, self.input_name, *self.output_names)
        if not all(isinstance(name, str) and name for name in names):
            found.append("model, input and output names must be non-empty strings")
        if len(self.output_names) != len(OUTPUT_ROLES):
            found.append(f"output_names must list {len(OUTPUT_ROLES)} names ({', '.join(OUTPUT_ROLES)})")
        if self.input_layout not in ("NCHW", "NHWC"):
            found.append(f"input_layout {self.input_layout!r} is neither NCHW nor NHWC")
        if self.input_size is not None and min(self.input_size) <= 0:
            found.append(f"input_size {list(self.input_size)} must be positive")
        if not isinstance(self.size_divisor, int) or isinstance(self.size_divisor, bool) or self.size_divisor < 1:
            found.append(f"size_divisor {self.size_divisor!r} must be an integer ≥ 1")
        if not all(math.isfinite(v) for v in self.mean_bgr) or len(self.mean_bgr) != 3:
            found.append(f"mean_bgr {list(self.mean_bgr)} must be three finite numbers")
        if not isinstance(self.versions, dict) or not isinstance(self.extra, dict):
            found.append("versions and extra must be JSON objects")
        if self.postprocess not in POSTPROCESS_PLACES:
            found.append(f"postprocess {self.postprocess!r} is not one of {', '.join(POSTPROCESS_PLACES)}")
        elif (self.postprocess == "in-graph") != (self.end2end is not None):
            found.append("an in-graph contract needs its end2end settings, and only it has them")
        if self.end2end is not None:
            found.extend(self.end2end.problems())
        seed = self.untrained_seed
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            found.append(f"untrained_seed {seed!r} must be null or an integer ≥ 0")
        return found

    def replace(self, **changes) -> "DecodeContract":
        """Returns a copy with some fields changed."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return DecodeContract(**values)


def digest(document: Mapping) -> str:
    """``sha256:<hex>`` of a contract document's canonical JSON: every key but ``digest``, sorted, compact."""
    body = {key: value for key, value in document.items() if key != DIGEST_KEY}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def signed(document: Mapping) -> dict:
    """The document with its :func:`digest` under ``digest``."""
    return {**document, DIGEST_KEY: digest(document)}


def reconcile(embedded: DecodeContract | None, model_path: str | Path | None, source: str,
              missing: str | None = None) -> DecodeContract:
    """The one rule every reader of a model's contract follows: embedded copy and sidecar are one truth.

    Args:
        embedded: The contract read from the file's own metadata, or ``None`` when it has none.
        model_path: The model file (its sidecar is looked for next to it), or ``None`` (in memory).
        source: The model, for messages.
        missing: The message when there is no contract at all (default: how to export one).

    Returns:
        The embedded contract or the sidecar's, whichever exists; when both do they must be equal.

    Raises:
        ContractError: Neither exists, either is invalid or edited, or the two disagree.
    """
    sidecar = sidecar_path(model_path) if model_path is not None else None
    if sidecar is not None and sidecar.is_file():
        beside = DecodeContract.from_json(sidecar.read_bytes(), source=str(sidecar))
        changed = sorted(key for key, value in asdict(beside).items()
                         if embedded is not None and key != "schema_version" and asdict(embedded)[key] != value)
        if changed:
            raise ContractError(f"{source}: the contract embedded in the file and its sidecar {sidecar.name} "
                                f"disagree ({', '.join(changed)}); delete the sidecar (the file's own copy is "
                                "used) or re-export the model")
        return beside
    if embedded is not None:
        return embedded
    if model_path is None or missing is not None:
        raise ContractError(missing or f"{source}: no decode contract in the model; pass contract=…")
    raise ContractError(f"{model_path} has no decode contract: neither metadata in the file nor a sidecar "
                        f"{sidecar.name}; export it with `featherface-deploy export`")


def sidecar_path(model_path: str | Path) -> Path:
    """Returns the sidecar JSON path of a model file (``model.onnx`` → ``model.onnx.json``)."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def write_sidecar(contract: DecodeContract, model_path: str | Path) -> Path:
    """Writes the contract next to the model, atomically.

    Returns:
        The sidecar's path.
    """
    path = sidecar_path(model_path)
    atomic_write_bytes(path, contract.to_json().encode("utf-8"))
    return path


def read_sidecar(model_path: str | Path) -> DecodeContract:
    """Reads the sidecar contract of a model file whose format embeds none (a TensorRT engine).

    Raises:
        ContractError: The sidecar is missing, invalid or edited.
    """
    return reconcile(None, model_path, str(model_path))
