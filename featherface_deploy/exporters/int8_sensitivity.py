"""Which layers break INT8: a per-layer sensitivity report and a greedy keep-float search.

The report runs the FP32 and the QDQ model on calibration images with every
Conv input/output saved (ONNX Runtime's ``qdq_loss_debug`` helpers; the runs go through
the pipeline's ``ExportContext.onnx_activations``), and
gives each quantized layer its SQNR against float: of its output
(``sqnr_db``, accumulated error) and the dB it *loses itself*
(``loss_db`` = SQNR of its input − SQNR of its output). Ranking by
``loss_db`` points at the layer that causes the damage, not at the ones
downstream that merely inherit it.

:func:`search_keep_float` then keeps the worst layers in float, a few at a
time, until the decoded detections of the INT8 model on the calibration
images agree with the float model's within a budget (:func:`onnx_file_agreement`,
through the runtime the pipeline supplies). Its round 0 is the plain quantization:
the default ``onnx-int8`` export uses it as a check and searches only when that
round falls below a threshold. The driver is
:mod:`~featherface_deploy.exporters.keep_float_search`; :class:`OnnxLayers` is the ONNX strategy.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featherface_deploy.calibration.dataset import CalibrationSet
from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import missing_backend
from featherface_deploy.export_options import ONNX_AGREEMENT_THRESHOLD, ONNX_SEARCH_BUDGET
from featherface_deploy.exporters.keep_float_search import SearchOutcome, SearchStep, Trial, search_facts
from featherface_deploy.exporters.keep_float_search import search_keep_float as run_search
from featherface_deploy.exporters.onnx_quantize import (
    MAC_OP_TYPES,
    Int8Options,
    Int8Result,
    prepare_for_quantization,
    quantize_onnx,
    with_facts,
)
from featherface_deploy.metadata.onnx import read_contract
from featherface_deploy.verify.agreement import detection_agreement

try:
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("onnxruntime", "onnx") from error

Log = Callable[[str], None]
# (ONNX file, decode contract) → something with ``infer``: the pipeline passes an ONNX Runtime runtime.
OpenOnnx = Callable[[Path, DecodeContract], Any]
# (ONNX file, calibration set, input name) → {tensor: [array per input]}: the pipeline's ``onnx_activations``.
OnnxActivations = Callable[[Path, CalibrationSet, str], dict[str, list[np.ndarray]]]


@dataclass(frozen=True)
class LayerError:
    """Quantization error of one quantized layer.

    Attributes:
        node: Node name.
        op_type: Its op type.
        sqnr_db: SQNR of its output, INT8 model vs float (accumulated).
        input_sqnr_db: SQNR of its activation input, INT8 model vs float.
        loss_db: ``input_sqnr_db − sqnr_db``: what this layer adds.
    """

    node: str
    op_type: str
    sqnr_db: float
    input_sqnr_db: float
    loss_db: float


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when equal)."""
    noise = float(np.linalg.norm((reference - test).ravel()))
    signal = float(np.linalg.norm(reference.ravel()))
    if noise == 0.0:
        return math.inf
    return 20.0 * math.log10(max(signal, 1e-12) / noise)


def sensitivity_report(fp32_path: str | Path, int8_path: str | Path, calib_set: CalibrationSet,
                       activations: OnnxActivations, images: int = 4, input_name: str = "input") -> list[LayerError]:
    """Ranks the INT8 model's quantized layers by the error they add (worst first).

    Args:
        fp32_path: The float model the INT8 one was made from (same node names:
            pre-processed by :func:`~featherface_deploy.exporters.onnx_quantize.prepare_for_quantization`).
        int8_path: The QDQ model.
        calib_set: Images to run (the first ``images`` are used).
        activations: Runs a file and returns its outputs (the pipeline's ``ExportContext.onnx_activations``).
        images: How many.
        input_name: The model input.

    Returns:
        One :class:`LayerError` per quantized MAC layer, largest ``loss_db`` first.
    """
    subset = CalibrationSet(calib_set.inputs[:images], calib_set.files[:images], calib_set.digest, calib_set.params)
    with tempfile.TemporaryDirectory(prefix="featherface-sens-") as scratch:
        measured = []
        for tag, path in (("float", fp32_path), ("int8", int8_path)):
            augmented = Path(scratch) / f"{tag}.onnx"
            # QuantizeLinear: in the INT8 model a layer's float input reaches it only through a Q/DQ pair.
            modify_model_output_intermediate_tensors(str(path), str(augmented),
                                                     op_types_for_saving=[*MAC_OP_TYPES, "QuantizeLinear"])
            measured.append(activations(augmented, subset, input_name))
    float_acts, int8_acts = measured
    int8_model = onnx.load(str(int8_path), load_external_data=False)
    producers = {out: node for node in int8_model.graph.node for out in node.output}
    rows = []
    for node in int8_model.graph.node:
        if node.op_type not in MAC_OP_TYPES or not _is_quantized(node, producers):
            continue
        source = _dequantized_source(node.input[0], producers)
        if node.output[0] not in float_acts or source not in float_acts or source not in int8_acts:
            continue
        out_sqnr = sqnr_db(np.concatenate(float_acts[node.output[0]]), np.concatenate(int8_acts[node.output[0]]))
        in_sqnr = sqnr_db(np.concatenate(float_acts[source]), np.concatenate(int8_acts[source]))
        loss = (in_sqnr - out_sqnr) if math.isfinite(in_sqnr) else (60.0 - out_sqnr)
        rows.append(LayerError(node.name, node.op_type, round(out_sqnr, 2), round(in_sqnr, 2), round(loss, 2)))
    return sorted(rows, key=lambda row: -row.loss_db)


def _is_quantized(node, producers: dict) -> bool:
    parent = producers.get(node.input[0])
    return parent is not None and parent.op_type == "DequantizeLinear"


def _dequantized_source(name: str, producers: dict) -> str:
    """The float tensor behind ``x → QuantizeLinear → DequantizeLinear → name``."""
    dq = producers.get(name)
    q = producers.get(dq.input[0]) if dq is not None else None
    return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else name


def onnx_file_agreement(fp32_path: str | Path, int8_path: str | Path, calib_set: CalibrationSet,
                        contract: DecodeContract, open_onnx: OpenOnnx, reference_score: float = 0.1,
                        iou: float = 0.5) -> float:
    """:func:`~featherface_deploy.verify.agreement.detection_agreement` of two ONNX files on the calibration inputs.

    ``open_onnx`` opens a file as a runtime (the pipeline's ``ExportContext.open_onnx``): exporters run no model
    themselves.
    """
    reference, candidate = (open_onnx(Path(path), contract).infer for path in (fp32_path, int8_path))
    return detection_agreement(reference, candidate, calib_set.batches(1), contract, reference_score, iou)


@dataclass
class OnnxLayers:
    """The ONNX keep-float strategy: rank the last round's quantized layers by the error they add
    (:func:`sensitivity_report`), keep the worst ``per_round`` float in the next."""

    fp32_path: Path
    prepared: Path
    scratch: Path
    calib_set: CalibrationSet
    options: Int8Options
    contract: DecodeContract
    open_onnx: OpenOnnx
    activations: OnnxActivations
    per_round: int
    report: list[LayerError] = field(default_factory=list, init=False)
    trials: int = field(default=0, init=False)

    def trial(self, kept: tuple[str, ...]) -> Trial:
        """Quantizes with ``kept`` float besides ``options.keep_float_nodes`` and measures the agreement."""
        path = self.scratch / f"trial-{self.trials}.onnx"
        self.trials += 1
        every = (*self.options.keep_float_nodes, *kept)
        result = quantize_onnx(self.fp32_path, path, self.calib_set, dataclasses.replace(
            self.options, keep_float_nodes=every), contract=self.contract)
        agreement = onnx_file_agreement(self.prepared, path, self.calib_set, self.contract, self.open_onnx)
        return Trial(SearchStep(every, round(agreement, 4), round(result.float_fraction, 4)), result)

    def next_kept(self, trials, trial) -> tuple[str, ...] | None:
        """The last round's kept layers plus its worst ``per_round`` (``None`` when nothing is left to rank)."""
        self.report = sensitivity_report(self.prepared, trials[-1].artifact.path, self.calib_set, self.activations,
                                         input_name=self.contract.input_name)
        if not self.report:
            return None
        already = trials[-1].step.kept_float[len(self.options.keep_float_nodes):]
        return (*already, *(row.node for row in self.report[:self.per_round]))

    def describe(self, kept: tuple[str, ...]) -> str:
        """How many layers beyond the defaults."""
        return f"{len(kept)} layers beyond the defaults"

    def search_facts(self, outcome: SearchOutcome) -> dict:
        """The top of the last sensitivity ranking."""
        return {"report_top": [asdict(row) for row in self.report[:10]]}


def search_keep_float(fp32_path: str | Path, out_path: str | Path, calib_set: CalibrationSet,
                      open_onnx: OpenOnnx, activations: OnnxActivations, options: Int8Options = Int8Options(),
                      budget: float = ONNX_SEARCH_BUDGET,
                      per_round: int = 3, max_rounds: int = 12, contract: DecodeContract | None = None,
                      log: Log | None = None, forced: bool = False, threshold: float = ONNX_AGREEMENT_THRESHOLD,
                      ) -> tuple[Int8Result, list[SearchStep], list[LayerError]]:
    """Quantizes, and keeps the worst layers float, ``per_round`` at a time, until agreement ≥ ``budget``.

    The driver is :func:`~featherface_deploy.exporters.keep_float_search.search_keep_float` with
    :class:`OnnxLayers`: round 0 is the plain quantization with ``options``; unless ``forced``, a round 0
    that agrees at least ``threshold`` is the result (one agreement measurement over a plain
    :func:`~featherface_deploy.exporters.onnx_quantize.quantize_onnx`). A forced search ranks the layers
    even of a round 0 that already meets the budget (recorded, nothing added).

    Args:
        fp32_path: The FP32 model.
        out_path: Where the final INT8 model is written.
        calib_set: Calibration images (also used to measure the agreement).
        open_onnx: Opens an ONNX file as a runtime (``ExportContext.open_onnx``).
        activations: Runs an ONNX file on calibration inputs (``ExportContext.onnx_activations``).
        options: Quantization options; the search adds to ``keep_float_nodes``.
        budget: Required :func:`onnx_file_agreement` once searching (1.0 = identical detections).
        per_round: Layers moved to float per round.
        max_rounds: Upper bound on rounds.
        contract: The FP32 contract if the file carries none.
        log: Progress callback.
        forced: Asked for (``--search``) rather than run because round 0 fell short.
        threshold: Agreement of round 0 below which an unforced search runs (capped at ``budget``).

    Returns:
        The kept :class:`Int8Result` (``extra["int8"]`` records ``agreement`` and ``search``), the
        search history, and the last sensitivity report (empty when none was needed).
    """
    contract = contract or read_contract(Path(fp32_path))
    with tempfile.TemporaryDirectory(prefix="featherface-search-") as scratch:
        prepared = prepare_for_quantization(Path(fp32_path), Path(scratch) / "prepared.onnx")
        strategy = OnnxLayers(Path(fp32_path), prepared, Path(scratch), calib_set, options, contract, open_onnx,
                              activations, per_round)
        outcome = run_search(strategy, budget=budget, threshold=threshold, forced=forced, max_rounds=max_rounds,
                             log=log)
        final = with_facts(outcome.kept.artifact, out_path, search_facts(outcome, strategy, len(calib_set)))
    return final, outcome.history, strategy.report
