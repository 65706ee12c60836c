"""TFLite INT8 that checks itself: detection agreement with the FP32 flatbuffer, and a keep-float search.

After the default quantization (:func:`~featherface_deploy.exporters.torch2tflite.quantize_int8`),
:func:`quantize_checked` runs the FP32 and the INT8 flatbuffers with LiteRT on the
calibration photos and measures their detection agreement
(:func:`~featherface_deploy.verify.agreement.detection_agreement`). When it falls short of
the threshold, it searches which module groups to keep in float:

1. **screen**: each group of :func:`module_groups` (a backbone stage, a BiFPN cell, an SSH
   module, an attention block, a head level, the DCN offset/mask convolutions) is kept float
   alone, and the agreement measured;
2. **accumulate**: the groups that helped are added one at a time, best first, until the
   agreement reaches the budget.

Of the trials (screen and accumulation) that reach the budget, the one with the fewest MACs in
float is kept; when none does, the best one
(:func:`~featherface_deploy.exporters.keep_float_rounds.kept_round`). ai-edge-quantizer has no
per-layer error report like ONNX Runtime's, hence groups of modules rather than single layers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from featherface_deploy.calibration import CalibrationSet
from featherface_deploy.contract import DecodeContract
from featherface_deploy.exporters.keep_float_rounds import SearchStep, kept_round
from featherface_deploy.exporters.tflite_graph import float_mac_fraction, integer_mac_fraction, tensor_names
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


def quantize_checked(fp32: bytes, calibration: CalibrationSet, options, contract: DecodeContract,
                     open_tflite: OpenTflite, *, threshold: float, budget: float, forced: bool = False,
                     max_rounds: int = 8,
                     log: Log | None = None, timings: dict[str, float] | None = None) -> tuple[bytes, dict]:
    """The INT8 flatbuffer (and its ``extra["int8"]`` facts) that meets the agreement budget, or the best one found.

    Args:
        fp32: The converted FP32 flatbuffer (no metadata).
        calibration: The calibration set (also where the agreement is measured).
        options: :class:`~featherface_deploy.exporters.torch2tflite.TfliteOptions`; the search adds to ``keep_float``.
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
    from featherface_deploy.exporters.torch2tflite import quantize_int8

    log = log or (lambda message: None)
    threshold = min(threshold, budget)
    reference = open_tflite(fp32, contract.replace(precision="fp32", extra={})).infer
    batches = [batch.transpose(0, 3, 1, 2).copy() if contract.input_layout == "NHWC" else batch
               for batch in calibration.batches(1)]

    def trial(extra_scopes: tuple[str, ...]) -> tuple[bytes, dict, SearchStep, dict]:
        trial_timings: dict[str, float] = {}
        keep = (*options.keep_float, *extra_scopes)
        data, facts = quantize_int8(fp32, calibration, dataclasses.replace(options, keep_float=keep), trial_timings)
        agreement = detection_agreement(reference, open_tflite(data, contract).infer, batches, contract)
        return data, facts, SearchStep(extra_scopes, round(agreement, 4), round(float_mac_fraction(data), 4)), \
            trial_timings

    first = trial(())
    history, files = [first[2]], [first]
    log(f"  detection agreement with FP32 on {len(calibration)} calibration photos: {first[2].agreement:.4f} "
        f"({100 * first[2].float_fraction:.1f}% of MACs float)")
    ran = forced or first[2].agreement < threshold
    screened: list[tuple[float, str, str]] = []
    alone: dict[str, tuple] = {}  # each group's screen trial: the first accumulation round is one of them
    if ran:
        log(f"  {'forced' if forced else f'below the threshold {threshold}'}: keep-float search over module "
            f"groups to {budget}")
        for label, pattern in module_groups(fp32, tuple(options.keep_float)):
            result = trial((pattern,))
            screened.append((result[2].agreement, label, pattern))
            alone[pattern] = result
            log(f"    {label} float: {result[2].agreement:.4f}")
        kept: list[str] = []
        helpful = sorted((row for row in screened if row[0] > first[2].agreement), key=lambda row: -row[0])
        for _, label, pattern in helpful[:max_rounds]:
            if history[-1].agreement >= budget:
                break
            kept.append(pattern)
            result = alone[pattern] if len(kept) == 1 else trial(tuple(kept))
            history.append(result[2])
            files.append(result)
            log(f"  + {label}: {result[2].agreement:.4f} ({100 * result[2].float_fraction:.1f}% of MACs float)")
    # The screen trials are candidates too: one group alone may meet the budget with fewer MACs in float
    # than the accumulation's rounds, whose first group is the one that helped most.
    candidates = [*files, *(alone[pattern] for _, _, pattern in screened)]
    chosen = kept_round([candidate[2] for candidate in candidates], budget) if ran else 0
    met = candidates[chosen][2].agreement >= budget
    if ran and not met:
        log(f"  warning: the budget {budget} was not reached; keeping the best trial "
            f"({candidates[chosen][2].agreement:.4f}, {100 * candidates[chosen][2].float_fraction:.1f}% of MACs float)")
    data, facts, step, trial_timings = candidates[chosen]
    if timings is not None:
        timings.update(trial_timings)
    labels = {pattern: label for _, label, pattern in screened}
    facts["int8"].update({
        "float_mac_fraction": step.float_fraction, "integer_mac_fraction": round(integer_mac_fraction(data), 4),
        "agreement": {"threshold": threshold, "budget": budget, "default": history[0].agreement,
                      "final": step.agreement, "met": met if ran else True, "images": len(calibration),
                      "measured_on": "calibration"},
        "search": {"mode": "forced" if forced else "auto", "ran": ran, "budget": budget,
                   "chosen_round": chosen if chosen < len(history) else None, "chosen": step.record(),
                   "groups_kept_float": [labels.get(pattern, pattern) for pattern in step.kept_float],
                   "screen": [{"group": label, "agreement": agreement,
                               "float_fraction": alone[pattern][2].float_fraction}
                              for agreement, label, pattern in screened],
                   "history": [row.record() for row in history]},
    })
    return data, facts


def plain_facts(data: bytes, facts: dict) -> dict:
    """The facts of an unchecked quantization (``--no-search``): the float MAC share, the search off."""
    facts["int8"].update({"float_mac_fraction": round(float_mac_fraction(data), 4),
                          "integer_mac_fraction": round(integer_mac_fraction(data), 4),
                          "search": {"mode": "off", "ran": False}})
    return facts


__all__ = ["DCN_CONVOLUTIONS", "module_groups", "plain_facts", "quantize_checked"]
