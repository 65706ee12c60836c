"""Which layers break INT8: a per-layer sensitivity report and a greedy keep-float search.

The report runs the FP32 and the QDQ model on calibration images with every
Conv input/output saved (ONNX Runtime's ``qdq_loss_debug`` helpers), and
gives each quantized layer its SQNR against float: of its output
(``sqnr_db``, accumulated error) and the dB it *loses itself*
(``loss_db`` = SQNR of its input − SQNR of its output). Ranking by
``loss_db`` points at the layer that causes the damage, not at the ones
downstream that merely inherit it.

:func:`search_keep_float` then keeps the worst layers in float, a few at a
time, until the decoded detections of the INT8 model on the calibration
images agree with the float model's within a budget (:func:`detection_agreement`).
Its round 0 is the plain quantization: the default ``onnx-int8`` export uses it
as a check and searches only when that round falls below a threshold.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from featherface_deploy.calibration.dataset import CalibrationSet
from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import missing_backend
from featherface_deploy.exporters.keep_float_rounds import SearchStep, kept_round
from featherface_deploy.exporters.onnx2int8 import MAC_OP_TYPES, Int8Options, Int8Result, quantize_onnx, with_facts
from featherface_deploy.verify.agreement import detection_agreement as agreement_of

try:
    import onnx
    import onnxruntime
    from onnxruntime.quantization.qdq_loss_debug import collect_activations, modify_model_output_intermediate_tensors
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("onnxruntime", "onnx") from error

from featherface_deploy.calibration.ort_reader import OrtCalibrationReader

Log = Callable[[str], None]


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
                       images: int = 4, input_name: str = "input") -> list[LayerError]:
    """Ranks the INT8 model's quantized layers by the error they add (worst first).

    Args:
        fp32_path: The float model the INT8 one was made from (same node names:
            pre-processed by :func:`~featherface_deploy.exporters.onnx2int8.prepare_for_quantization`).
        int8_path: The QDQ model.
        calib_set: Images to run (the first ``images`` are used).
        images: How many.
        input_name: The model input.

    Returns:
        One :class:`LayerError` per quantized MAC layer, largest ``loss_db`` first.
    """
    subset = CalibrationSet(calib_set.inputs[:images], calib_set.files[:images], calib_set.digest, calib_set.params)
    with tempfile.TemporaryDirectory(prefix="featherface-sens-") as scratch:
        activations = []
        for tag, path in (("float", fp32_path), ("int8", int8_path)):
            augmented = str(Path(scratch) / f"{tag}.onnx")
            # QuantizeLinear: in the INT8 model a layer's float input reaches it only through a Q/DQ pair.
            modify_model_output_intermediate_tensors(str(path), augmented,
                                                     op_types_for_saving=[*MAC_OP_TYPES, "QuantizeLinear"])
            activations.append(collect_activations(augmented, OrtCalibrationReader(subset, input_name)))
    float_acts, int8_acts = activations
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


def detection_agreement(fp32_path: str | Path, int8_path: str | Path, calib_set: CalibrationSet,
                        contract: DecodeContract, reference_score: float = 0.1, iou: float = 0.5) -> float:
    """:func:`~featherface_deploy.verify.agreement.detection_agreement` of two ONNX files on the calibration inputs."""
    reference, candidate = (_infer(_session(path), contract) for path in (fp32_path, int8_path))
    return agreement_of(reference, candidate, calib_set.batches(1), contract, reference_score, iou)


def _infer(session: "onnxruntime.InferenceSession", contract: DecodeContract):
    def infer(batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = session.run(list(contract.output_names), {contract.input_name: batch})
        return dict(zip(("loc", "conf", "landmarks"), outputs))
    return infer


def _session(path: str | Path) -> "onnxruntime.InferenceSession":
    options = onnxruntime.SessionOptions()
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def search_keep_float(fp32_path: str | Path, out_path: str | Path, calib_set: CalibrationSet,
                      options: Int8Options = Int8Options(), budget: float = 0.98, per_round: int = 2,
                      max_rounds: int = 12, contract: DecodeContract | None = None,
                      log: Log | None = None, forced: bool = True, threshold: float | None = None,
                      ) -> tuple[Int8Result, list[SearchStep], list[LayerError]]:
    """Greedy: quantize, rank layers, keep the worst ``per_round`` in float, until agreement ≥ ``budget``.

    Round 0 is the plain quantization with ``options``. Unless the search is ``forced``, a round 0
    that agrees at least ``threshold`` is the result (the cost over a plain
    :func:`~featherface_deploy.exporters.onnx2int8.quantize_onnx` is one agreement measurement);
    below it, the search runs until ``budget``. A forced search always searches to ``budget``, and
    ranks the layers even of a round 0 that already meets it (recorded, nothing added).

    Args:
        fp32_path: The FP32 model.
        out_path: Where the final INT8 model is written.
        calib_set: Calibration images (also used to measure the agreement).
        options: Quantization options; the search adds to ``keep_float_nodes``.
        budget: Required :func:`detection_agreement` once searching (1.0 = identical detections).
        per_round: Layers moved to float per round.
        max_rounds: Upper bound on rounds.
        contract: The FP32 contract if the file carries none.
        log: Progress callback.
        forced: Asked for (``--search``) rather than run because round 0 fell short.
        threshold: Agreement of round 0 below which an unforced search runs (``None`` or above
            ``budget``: ``budget``).

    Returns:
        The kept :class:`Int8Result` (``extra["int8"]`` records ``agreement`` and ``search``), the
        search history, and the last sensitivity report (empty when none was needed). The kept
        round is :func:`~featherface_deploy.exporters.keep_float_rounds.kept_round`.
    """
    from featherface_deploy.exporters.onnx2int8 import prepare_for_quantization, read_contract

    log = log or (lambda message: None)
    contract = contract or read_contract(Path(fp32_path))
    threshold = budget if threshold is None else min(threshold, budget)
    kept = list(options.keep_float_nodes)
    history: list[SearchStep] = []
    report: list[LayerError] = []
    with tempfile.TemporaryDirectory(prefix="featherface-search-") as scratch:
        prepared = prepare_for_quantization(Path(fp32_path), Path(scratch) / "prepared.onnx")
        trials: list[Int8Result] = []
        for round_index in range(max_rounds + 1):
            trial = Path(scratch) / f"trial-{round_index}.onnx"
            result = quantize_onnx(fp32_path, trial, calib_set, options=_with_kept(options, kept), contract=contract)
            agreement = detection_agreement(prepared, trial, calib_set, contract)
            trials.append(result)
            history.append(SearchStep(tuple(kept), round(agreement, 4), round(result.float_fraction, 4)))
            log(f"  {len(kept):2d} layers float beyond the defaults "
                f"({100 * result.float_fraction:.1f}% of MACs float): detection agreement {agreement:.4f}")
            met = agreement >= budget
            if round_index == 0:
                ran = forced or agreement < threshold
                if not forced:
                    log(f"  {'below' if ran else 'meets'} the threshold {threshold}: "
                        + (f"keep-float search to {budget}" if ran else "no search"))
                if not ran:
                    break
            elif met:
                break
            if round_index == max_rounds:
                break
            report = sensitivity_report(prepared, trial, calib_set, input_name=contract.input_name)
            if met or not report:
                break
            kept += [row.node for row in report[:per_round]]
        chosen = kept_round(history, budget) if ran else 0
        met = history[chosen].agreement >= budget
        if ran and not met:
            step = history[chosen]
            log(f"  warning: the budget {budget} was not reached in {len(history) - 1} rounds; keeping round "
                f"{chosen}, the best ({step.agreement:.4f}, {100 * step.float_fraction:.1f}% of MACs float)")
        facts = {"agreement": {"threshold": threshold, "budget": budget, "default": history[0].agreement,
                               "final": history[chosen].agreement, "met": met if ran else True,
                               "images": len(calib_set), "measured_on": "calibration"},
                 "search": {"mode": "forced" if forced else "auto", "ran": ran, "budget": budget,
                            "chosen_round": chosen, "history": [step.record() for step in history],
                            "report_top": [asdict(row) for row in report[:10]]}}
        final = with_facts(trials[chosen], out_path, facts)
    return final, history, report


def _with_kept(options: Int8Options, kept: Sequence[str]) -> Int8Options:
    values = asdict(options)
    values["keep_float_nodes"] = tuple(kept)
    return Int8Options(**values)
