"""TensorRT's legacy INT8 calibration cache, written and read without TensorRT.

The text format ``IInt8EntropyCalibrator2`` writes and ``trtexec --calib=FILE``
(and ONNX Runtime's TensorRT provider) read back::

    TRT-8601-EntropyCalibration2
    input: 3c010a14
    conv1_out: 3d8e3c5a

First line: ``TRT-<NV_TENSORRT_VERSION>-EntropyCalibration2``; then one
``tensor_name: <8 hex digits>`` line per tensor, the big-endian IEEE float32
*scale*; the tensor's dynamic range is ``scale × 127``. A tensor missing from
the cache gets no INT8 implementation (TensorRT falls back to a float kernel),
which is how the project keeps the DCN sampling in float on TensorRT 8.x.

Sources: the cache is what ``IInt8Calibrator.write_calibration_cache`` receives and
``read_calibration_cache`` returns (NVIDIA/TensorRT ``samples/common/EntropyCalibrator.h``); it is
plain text with the per-tensor scales (NVIDIA/TensorRT#1058), tied to the TensorRT version in its
header (NVIDIA/retinanet-examples#261), and ``trtexec --calib=<file>`` loads it (NVIDIA/TensorRT#4044).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from pathlib import Path

from featherface_deploy.contract import atomic_write_bytes
from featherface_deploy.errors import FeatherFaceError
from featherface_deploy.trt.versions import TrtVersion

CALIBRATOR = "EntropyCalibration2"
INT8_MAX = 127.0
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
_LINE = re.compile(r"^(.+): ([0-9a-fA-F]{8})$")


def version_code(version: TrtVersion) -> int:
    """``NV_TENSORRT_VERSION`` of a release line: major·1000 + minor·100 for 8.x, major·10000 + minor·100 after."""
    return version.major * (1000 if version.major < 10 else 10000) + version.minor * 100


def scale_to_hex(scale: float) -> str:
    """The 8 hex digits of a float32 scale, big-endian (``1.0`` → ``3f800000``)."""
    return struct.pack(">f", scale).hex()


def hex_to_scale(digits: str) -> float:
    """The float32 scale of 8 big-endian hex digits."""
    return struct.unpack(">f", bytes.fromhex(digits))[0]


def format_cache(scales: Mapping[str, float], code: int, calibrator: str = CALIBRATOR) -> str:
    """The cache text for per-tensor scales (``amax / 127``), tensors in the given order.

    Raises:
        FeatherFaceError: A scale that is not a positive finite number, or a name with a newline.
    """
    lines = [f"TRT-{code}-{calibrator}"]
    for name, scale in scales.items():
        if not (scale > 0 and scale != float("inf")) or "\n" in name:
            raise FeatherFaceError(f"calibration cache: tensor {name!r} has scale {scale}; scales must be > 0")
        lines.append(f"{name}: {scale_to_hex(scale)}")
    return "\n".join(lines) + "\n"


def write_cache(path: str | Path, scales: Mapping[str, float], version: TrtVersion) -> Path:
    """Writes the cache atomically for a TensorRT version; returns its path."""
    path = Path(path)
    atomic_write_bytes(path, format_cache(scales, version_code(version)).encode("ascii"))
    return path


def parse_cache(text: str, source: str = "calibration cache") -> tuple[int, str, dict[str, float]]:
    """Parses cache text into (version code, calibrator name, {tensor: scale}).

    Raises:
        FeatherFaceError: A bad header or line (names the line).
    """
    lines = text.splitlines()
    header = _HEADER.match(lines[0].strip()) if lines else None
    if header is None:
        raise FeatherFaceError(f"{source}: first line must be TRT-<version>-<calibrator>, got "
                               f"{lines[0] if lines else 'nothing'!r}")
    scales = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        match = _LINE.match(line.strip())
        if match is None:
            raise FeatherFaceError(f"{source}: line {number} is not 'tensor: 8-hex-digit scale': {line!r}")
        scales[match.group(1)] = hex_to_scale(match.group(2))
    return int(header.group(1)), header.group(2), scales


def read_cache(path: str | Path) -> tuple[int, str, dict[str, float]]:
    """Reads a cache file; see :func:`parse_cache`."""
    return parse_cache(Path(path).read_text(encoding="ascii"), source=str(path))


def scales_from_ranges(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Symmetric per-tensor scales ``max(|min|, |max|) / 127`` from calibration ranges; all-zero tensors dropped."""
    scales = {}
    for name, (low, high) in ranges.items():
        amax = max(abs(float(low)), abs(float(high)))
        if amax > 0:
            scales[name] = amax / INT8_MAX
    return scales
