"""The design documents' numeric claims, quoted, next to what this toolkit measures.

Every number in ``shared/seeds`` is a *claim* (see its README). :data:`CLAIMS`
quotes the ones the toolkit can check on the trained checkpoints — parameter
counts, file size, V2-vs-V1 speed and AP change — with the file each comes
from. :func:`claims_rows` puts the measured value beside each; the values come
from the peers benchmark (``benchmarks/bench_peers.py``), never from here. Research material: it
lives next to the benchmarks, not in the installable library.

Measured quantities (keys of the ``measured`` mapping):

- ``params_v1``, ``params_v2``, ``params_ca``: parameters of the V1 and V2
  checkpoints' models and their difference;
- ``params_backbone``, ``params_ssh``, ``params_bifpn``, ``params_heads``,
  ``params_dcn``: V1 parameters per part;
- ``pth_mb_v1``, ``pth_mb_v2``: checkpoint file sizes (MB, 10⁶ bytes);
- ``speed_v2_over_v1``: V1 median latency / V2 median latency (> 1: V2 faster);
- ``time_v2_vs_v1_pct``: V2 latency change in percent;
- ``ap_delta_easy`` / ``_medium`` / ``_hard``: V2 − V1 AP in points on the subset.

:data:`LIGHT_CLAIMS` quotes the claims about the two untrained designs, V2-Optimized and
V2-Ultra; their values come from ``benchmarks/bench_v2_light.py`` (random weights, so no AP):

- ``params_v2opt``, ``params_v2ultra``: parameters of the models built from the registry;
- ``speed_<model>_over_v1_<backend>``: V1 median inference time / the model's, on ONNX Runtime
  (``onnxruntime``) or LiteRT (``litert``) FP32, all interleaved in one run;
- ``file_mb_<model>_<format>``: size of the FP32 ``onnx`` / ``tflite`` file (MB, 10⁶ bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from featherface_deploy.harness.report import Column

CA_DOC = "v2-coordinate-attention-performance.md"
MODULES_DOC = "v2-optimized-modules.md"
ARCH_DOC = "v2-optimized-architecture.md"
ULTRA_DOC = "v2-ultra-architecture.md"


@dataclass(frozen=True)
class Claim:
    """One quoted claim.

    Attributes:
        source: File in ``shared/seeds``.
        quote: The claim as written (shortened, not reworded).
        quantity: Key of the measured value it is compared with.
        claimed: The claimed number, in the unit of the measured value.
    """

    source: str
    quote: str
    quantity: str
    claimed: float


CLAIMS: tuple[Claim, ...] = (
    Claim(CA_DOC, "Parameters | 489,178 (V1)", "params_v1", 489_178),
    Claim(ULTRA_DOC, "V1's 487K parameters", "params_v1", 487_000),
    Claim(MODULES_DOC, "the FeatherFace baseline model has 0.592M parameters", "params_v1", 592_000),
    Claim(CA_DOC, "Parameters | … | 493,422 (V2)", "params_v2", 493_422),
    Claim(CA_DOC, "+4,244 (+0.8%) parameters for Coordinate Attention", "params_ca", 4_244),
    Claim(MODULES_DOC, "Backbone: 36.0% (213,072 params)", "params_backbone", 213_072),
    Claim(MODULES_DOC, "SSH modules: 41.7% (246,885 params)", "params_ssh", 246_885),
    Claim(MODULES_DOC, "BiFPN: 19.0% (112,606 params)", "params_bifpn", 112_606),
    Claim(MODULES_DOC, "Detection Heads: 1.1% (6,240 params)", "params_heads", 6_240),
    Claim(ARCH_DOC, "Coût: 148,296 paramètres (30.4% du modèle total) [DCN]", "params_dcn", 148_296),
    Claim(CA_DOC, "Model Size | 1.9MB (V1)", "pth_mb_v1", 1.9),
    Claim(CA_DOC, "Model Size | 1.9MB (V2) — No change", "pth_mb_v2", 1.9),
    Claim(CA_DOC, "Inference Time | 15.2ms | 7.6ms | 2x faster", "speed_v2_over_v1", 2.0),
    Claim(CA_DOC, "'cpu_time': 156.7, # ms (+2.9%) [V2 vs V1 152.3]", "time_v2_vs_v1_pct", 2.9),
    Claim(CA_DOC, "Easy | 87.0% | 90.0% | +3.0%", "ap_delta_easy", 3.0),
    Claim(CA_DOC, "Medium | 82.5% | 88.0% | +5.5%", "ap_delta_medium", 5.5),
    Claim(CA_DOC, "Hard | 77.2% | 88.0% | +10.8%", "ap_delta_hard", 10.8),
)

LIGHT_BACKENDS = ("litert", "onnxruntime")
LIGHT_FORMATS = ("onnx", "tflite")
DIAGRAM_DOC = "v2-ultra-architecture-diagram.md"
_OPT_SPEED = "Inference Speed | ~30 FPS | ~45 FPS | +50% faster"
_ULTRA_SPEED = "Inference Time | 25ms | 16ms | 1.6x faster"

LIGHT_CLAIMS: tuple[Claim, ...] = (
    Claim(ARCH_DOC, "Total Parameters : 256,148 (47.2% réduction vs V1)", "params_v2opt", 256_148),
    Claim(ULTRA_DOC, "Total | 487,103 | 244,483 | 49.8%", "params_v2ultra", 244_483),
    Claim(ARCH_DOC, "Paramètres | 256,148 | 248,136 (49.1% réduction) [V2 Ultra]", "params_v2ultra", 248_136),
    *(Claim(ARCH_DOC, _OPT_SPEED, f"speed_v2opt_over_v1_{b}", 1.5) for b in LIGHT_BACKENDS),
    *(Claim(ULTRA_DOC, _ULTRA_SPEED, f"speed_v2ultra_over_v1_{b}", 1.6) for b in LIGHT_BACKENDS),
    *(Claim(DIAGRAM_DOC, "Inference Speed: 60% faster than V1", f"speed_v2ultra_over_v1_{b}", 1.6)
      for b in LIGHT_BACKENDS),
    *(Claim(ARCH_DOC, "Model Size : 1.0 MB (47% reduction vs V1)", f"file_mb_v2opt_{f}", 1.0) for f in LIGHT_FORMATS),
    *(Claim(ULTRA_DOC, "'model_size': '1.2MB'", f"file_mb_v2ultra_{f}", 1.2) for f in LIGHT_FORMATS),
    *(Claim(DIAGRAM_DOC, "Model Size: 50% smaller (0.95 MB vs 1.9 MB)", f"file_mb_v2ultra_{f}", 0.95)
      for f in LIGHT_FORMATS),
)

UNITS = {"pth_mb": "MB", "file_mb": "MB", "speed": "×", "time": "%", "ap_delta": "AP points", "params": "parameters"}
COLUMNS = (Column("source", "Source (claim)"), Column("quote", "Claim, quoted"), Column("claimed", "Claimed"),
           Column("measured", "Measured"), Column("unit", "Unit"), Column("how", "Measured how"))


def claims_rows(measured: Mapping[str, float], how: Mapping[str, str],
                claims: tuple[Claim, ...] = CLAIMS) -> list[dict]:
    """One row per claim with the measured value beside it.

    Args:
        measured: Quantity → measured value (see the module docstring); missing → ``None``.
        how: Quantity (or its prefix: ``params``, ``pth_mb``, ``file_mb``, ``speed``, ``time``, ``ap_delta``) → how
            it was measured; a whole quantity name wins over its prefix.
        claims: The claims to report (:data:`CLAIMS` or :data:`LIGHT_CLAIMS`).

    Returns:
        JSON-ready rows (``claimed`` and ``measured`` formatted as text, ``claimed_value`` and
        ``measured_value`` as numbers).
    """
    rows = []
    for claim in claims:
        prefix = next(p for p in UNITS if claim.quantity.startswith(p))
        value = measured.get(claim.quantity)
        rows.append({"source": claim.source, "quote": claim.quote, "quantity": claim.quantity,
                     "claimed_value": claim.claimed, "measured_value": value,
                     "claimed": _format(claim.claimed, prefix), "measured": _format(value, prefix),
                     "unit": UNITS[prefix], "how": how.get(claim.quantity, how.get(prefix, ""))})
    return rows


def _format(value: float | None, prefix: str) -> str | None:
    if value is None:
        return None
    if prefix == "params":
        return f"{int(round(value)):,}"
    if prefix in ("time", "ap_delta"):
        return f"{value:+.2f}"
    return f"{value:.2f}"
