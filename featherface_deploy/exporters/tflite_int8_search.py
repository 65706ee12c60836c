"""TFLite INT8 that checks itself: detection agreement with the FP32 flatbuffer, and a keep-float search.

After the default quantization (:func:`~featherface_deploy.exporters.tflite_quantize.quantize_int8`),
:func:`quantize_checked` runs the FP32 and the INT8 flatbuffers with LiteRT on the
calibration photos and measures their detection agreement
(:func:`~featherface_deploy.verify.agreement.detection_agreement`). When it falls short of
the threshold, it searches which module groups to keep in float:

1. **screen**: each group of :func:`module_groups` (a backbone stage, a BiFPN cell, an SSH
   module, an attention block, a head level, the DCN offset/mask convolutions) is kept float
   alone, and the agreement measured;
2. **accumulate**: the groups that helped are added one at a time, best first, until the
   agreement reaches the budget.

The driver is :func:`~featherface_deploy.exporters.keep_float_search.search_keep_float`, with
:class:`TfliteGroups` as its strategy. ai-edge-quantizer has no per-layer error report like ONNX
Runtime's, hence groups of modules rather than single layers.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from featherface_deploy.calibration import CalibrationSet
from featherface_deploy.contract import DecodeContract
from featherface_deploy.export_options import TFLITE_AGREEMENT_THRESHOLD, TFLITE_SEARCH_BUDGET
from featherface_deploy.exporters.keep_float_search import (
    SearchOutcome,
    SearchStep,
    Trial,
    search_facts,
    search_keep_float,
)
from featherface_deploy.exporters.tflite_graph import integer_mac_fraction, tensor_names, tflite_float_mac_fraction
from featherface_deploy.exporters.tflite_quantize import quantize_int8
from featherface_deploy.verify.agreement import detection_agreement

Log = Callable[[str], None]
# (flatbuffer, decode contract) → something with ``infer``: the pipeline passes a LiteRT runtime.
OpenTflite = Callable[[bytes, DecodeContract], Any]
# The DCN offset/mask convolutions are int8 by default (their sampling arithmetic is always float).
DCN_CONVOLUTIONS = ("DCN convolutions", "ModulatedDeformConv2d")
# A backbone is split into its stages; every other child of the model is one group.
_BACKBONE_SUFFIX = "_body"


def module_groups(fp32: bytes, already_float: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(label, scope regex) of the model's module groups, in graph order, from the flatbuffer's tensor names.

    litert-torch names each tensor after the torch module path that made it
    (``<signature>/<model>/<child>/<grandchild>…``, each component ``<class path>_<attribute>``).
    Groups are the model's children, the backbone's stages instead of the backbone, and the DCN
    convolutions. Groups that a regex of ``already_float`` covers are left out.
    """
    scopes: list[str] = []
    for name in tensor_names(fp32):
        parts = name.split(";")[0].split("/")
        if len(parts) < 4:  # a constant, a signature tensor, or an op of the model itself
            continue
        depth = 4 if parts[2].endswith(_BACKBONE_SUFFIX) and len(parts) > 4 else 3
        scope = "/".join(parts[2:depth]) + "/"
        if scope not in scopes:
            scopes.append(scope)
    groups = []
    for scope in scopes:
        if any(re.search(pattern, scope) for pattern in already_float):
            continue
        label = "/".join(part.rsplit(".", 1)[-1] for part in scope.rstrip("/").split("/"))
        groups.append((label, re.escape(scope)))
    return [*groups, DCN_CONVOLUTIONS]


@dataclass
class TfliteGroups:
    """The TFLite keep-float strategy: screen each module group float alone, then add the helpful ones best first.

    The first accumulation round is its group's screen trial (the driver memoizes trials).
    """

    fp32: bytes
    calibration: CalibrationSet
    options: object
    contract: DecodeContract
    open_tflite: OpenTflite
    max_rounds: int
    screened: list[tuple[float, str, str]] = field(default_factory=list, init=False)
    labels: dict[str, str] = field(default_factory=dict, init=False)
    order: list[str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # The FP32 reference keeps the layout facts (a MediaPipe file's output layout), not the INT8 ones.
        layout = {key: value for key, value in self.contract.extra.items() if key not in ("int8", "calibration")}
        self.reference = self.open_tflite(self.fp32, self.contract.replace(precision="fp32", extra=layout)).infer
        self.batches = [batch.transpose(0, 3, 1, 2).copy() if self.contract.input_layout == "NHWC" else batch
                        for batch in self.calibration.batches(1)]

    def trial(self, kept: tuple[str, ...]) -> Trial:
        """Quantizes with the ``kept`` scopes float besides ``options.keep_float`` and measures the agreement."""
        timings: dict[str, float] = {}
        options = dataclasses.replace(self.options, keep_float=(*self.options.keep_float, *kept))
        data, facts = quantize_int8(self.fp32, self.calibration, options, timings)
        agreement = detection_agreement(self.reference, self.open_tflite(data, self.contract).infer, self.batches,
                                        self.contract)
        step = SearchStep(kept, round(agreement, 4), round(tflite_float_mac_fraction(data), 4))
        return Trial(step, (data, facts, timings))

    def next_kept(self, trials, trial) -> tuple[str, ...] | None:
        """Screens the groups on the first call; then the helpful groups, best first, one more each round."""
        if self.order is None:
            for label, pattern in module_groups(self.fp32, tuple(self.options.keep_float)):
                self.labels[pattern] = label
                self.screened.append((trial((pattern,)).step.agreement, label, pattern))
            default = trials[0].step.agreement
            helpful = sorted((row for row in self.screened if row[0] > default), key=lambda row: -row[0])
            self.order = [pattern for _, _, pattern in helpful[:self.max_rounds]]
        if len(trials) > len(self.order):
            return None
        return tuple(self.order[:len(trials)])

    def describe(self, kept: tuple[str, ...]) -> str:
        """The groups kept float, by label."""
        return " + ".join(self.labels.get(pattern, pattern) for pattern in kept)

    def search_facts(self, outcome: SearchOutcome) -> dict:
        """The groups kept float and each group's screen agreement."""
        return {"groups_kept_float": [self.labels.get(pattern, pattern) for pattern in outcome.kept.step.kept_float],
                "screen": [{"group": label, "agreement": agreement} for agreement, label, _ in self.screened]}


def quantize_checked(fp32: bytes, calibration: CalibrationSet, options, contract: DecodeContract,
                     open_tflite: OpenTflite, *, threshold: float = TFLITE_AGREEMENT_THRESHOLD,
                     budget: float = TFLITE_SEARCH_BUDGET, forced: bool = False, max_rounds: int = 8,
                     log: Log | None = None, timings: dict[str, float] | None = None) -> tuple[bytes, dict]:
    """The INT8 flatbuffer (and its ``extra["int8"]`` facts) that meets the agreement budget, or the best one found.

    Args:
        fp32: The converted FP32 flatbuffer (no metadata).
        calibration: The calibration set (also where the agreement is measured).
        options: :class:`~featherface_deploy.export_options.TfliteOptions`; the search adds to ``keep_float``.
        contract: The INT8 file's decode contract (input layout, size, priors).
        open_tflite: Opens a flatbuffer as a runtime (the pipeline's ``ExportContext.open_tflite``).
        threshold: Agreement of the default quantization below which an unforced search runs.
        budget: Agreement the search aims at.
        forced: Search even when the default meets ``threshold`` (``--search``).
        max_rounds: Groups added at most in the accumulation phase.
        log: Progress callback.
        timings: Filled with the ``calibrate``/``quantize`` times of the kept file.

    Returns:
        The flatbuffer and the facts, with ``agreement``, ``search`` and ``float_mac_fraction``.
    """
    strategy = TfliteGroups(fp32, calibration, options, contract, open_tflite, max_rounds)
    outcome = search_keep_float(strategy, budget=budget, threshold=threshold, forced=forced, max_rounds=max_rounds,
                                log=log)
    data, facts, trial_timings = outcome.kept.artifact
    if timings is not None:
        timings.update(trial_timings)
    facts["int8"].update({"float_mac_fraction": outcome.kept.step.float_fraction,
                          "integer_mac_fraction": round(integer_mac_fraction(data), 4),
                          **search_facts(outcome, strategy, len(calibration))})
    return data, facts


def plain_facts(data: bytes, facts: dict) -> dict:
    """The facts of an unchecked quantization (``--no-search``): the float and integer MAC shares, the search off."""
    facts["int8"].update({"float_mac_fraction": round(tflite_float_mac_fraction(data), 4),
                          "integer_mac_fraction": round(integer_mac_fraction(data), 4),
                          "search": {"mode": "off", "ran": False}})
    return facts


__all__ = ["DCN_CONVOLUTIONS", "TfliteGroups", "module_groups", "plain_facts", "quantize_checked"]
