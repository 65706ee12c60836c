"""What each TensorRT version's ONNX parser and builder accept: the one table of version rules.

Everything here is data from NVIDIA's documentation, usable without TensorRT
installed (``check-trt``, the build recipe and the engine builder all read it):

- the ONNX operators each parser release supports and the newest opset it
  documents: onnx-tensorrt ``docs/operators.md`` at each release branch
  (``parser_ops.json``, generated from it; the commit of each is recorded there);
- ``DeformConv`` parses from TensorRT 10.1 (onnx-tensorrt changelog "TensorRT
  10.1 GA … Added support for DeformConv"; ``operators.md`` of 10.1: FP32/FP16,
  1-D or 2-D, equal begin and end pads);
- INT8: TensorRT 8.x builds INT8 from a calibrator or its cache (implicit
  quantization); from 10.0 implicit quantization is deprecated and the project
  uses explicit Q/DQ; TensorRT 11 removes ``BuilderFlag.FP16``/``INT8`` and the
  calibrator API, networks are always strongly typed ("Migrating from TensorRT
  10.x to 11.x": "TensorRT 11.x removes all precision-enabling builder flags
  such as BuilderFlag.FP16 and BuilderFlag.INT8");
- JetPack ↔ TensorRT: JetPack 6.x ships 10.3, JetPack 5.x 8.5, JetPack 4.6
  (Jetson Nano) 8.2.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from featherface_deploy.errors import FeatherFaceError

PARSER_OPS_FILE = "parser_ops.json"


@dataclass(frozen=True)
class TrtVersion:
    """One TensorRT release line as the exporters and checks see it.

    Attributes:
        name: What ``--trt-version`` accepts (``8.6``, ``10.3``, ``10.x``, ``11.x``).
        major: 8, 10 or 11.
        minor: Minor version (the lowest of the line for ``10.x``/``11.x``).
        parser: Key of the ``operators.md`` snapshot in ``parser_ops.json`` describing its parser
            (the newest documented snapshot not newer than this version).
        max_opset: Newest ONNX opset its parser documents.
        int8: ``calibration-cache`` (legacy implicit INT8 from a cache) or ``qdq`` (explicit Q/DQ).
        precision_flags: The builder has ``BuilderFlag.FP16``/``INT8`` (gone in 11).
        jetpack: The JetPack release that ships it, if any.
    """

    name: str
    major: int
    minor: int
    parser: str
    max_opset: int
    int8: str
    precision_flags: bool
    jetpack: str = ""

    @property
    def native_deform_conv(self) -> bool:
        """ONNX ``DeformConv`` parses (TensorRT ≥ 10.1)."""
        return (self.major, self.minor) >= (10, 1)

    @property
    def strongly_typed(self) -> bool:
        """Networks are always strongly typed (11.x): precision comes from the ONNX types and Q/DQ."""
        return self.major >= 11

    @property
    def dcn(self) -> str:
        """The project's DCN lowering for this version: ``native`` (DeformConv) when it parses, else ``portable``."""
        return "native" if self.native_deform_conv else "portable"

    @property
    def onnx_opset(self) -> int:
        """The opset the recipe's ONNX is written in: 19 for the native DCN, else at most ``max_opset``."""
        return 19 if self.native_deform_conv else min(18, self.max_opset)

    def supported_ops(self) -> frozenset[str]:
        """ONNX operators (default domain) its parser documents as supported."""
        return frozenset(parser_tables()[self.parser]["supported"])


# 10.x/11.x: the newest operators.md snapshot stored (10.1); later releases only add operators.
# 11.x documents opset 9 to 24 (operators.md of 10.15/11.x); 10.3 documents 9 to 20 like 10.0.
VERSIONS: tuple[TrtVersion, ...] = (
    TrtVersion("8.2", 8, 2, "8.2", 13, "calibration-cache", True, "JetPack 4.6 (Jetson Nano)"),
    TrtVersion("8.5", 8, 5, "8.5", 17, "calibration-cache", True, "JetPack 5.x"),
    TrtVersion("8.6", 8, 6, "8.6", 17, "calibration-cache", True),
    TrtVersion("10.0", 10, 0, "10.0", 20, "qdq", True),
    TrtVersion("10.3", 10, 3, "10.1", 20, "qdq", True, "JetPack 6.x"),
    TrtVersion("10.x", 10, 1, "10.1", 20, "qdq", True),
    TrtVersion("11.x", 11, 0, "10.1", 24, "qdq", False),
)


def version_names() -> list[str]:
    """Returns what ``--trt-version`` accepts."""
    return [version.name for version in VERSIONS]


def get_version(name: str) -> TrtVersion:
    """Looks a TensorRT version up by ``--trt-version`` name.

    Raises:
        FeatherFaceError: Unknown name; the message lists the known ones.
    """
    for version in VERSIONS:
        if version.name == name:
            return version
    raise FeatherFaceError(f"unknown TensorRT version '{name}'; choose one of: {', '.join(version_names())}")


def version_for_installed(version_string: str) -> TrtVersion:
    """Maps an installed ``tensorrt.__version__`` (``"10.3.0.30"``) to its rules.

    Raises:
        FeatherFaceError: A TensorRT older than 8.2 (not supported).
    """
    parts = version_string.split(".")
    major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    if major >= 11:
        return get_version("11.x")
    if major == 10:
        exact = f"10.{minor}"
        return get_version(exact) if exact in version_names() else get_version("10.x")
    if major == 8 and minor >= 2:
        return get_version("8.6" if minor >= 6 else "8.5" if minor >= 5 else "8.2")
    raise FeatherFaceError(f"TensorRT {version_string} is older than 8.2, the oldest this project supports")


@functools.lru_cache(maxsize=1)
def parser_tables() -> dict:
    """The ``operators.md`` snapshots: ``{parser: {"ref", "commit", "max_opset", "supported"}}``."""
    text = resources.files(__package__).joinpath(PARSER_OPS_FILE).read_text(encoding="utf-8")
    return json.loads(text)["parsers"]
