"""The keep-float search of the INT8 exports: one driver, a strategy per format.

An INT8 file that disagrees with its FP32 source gets layers kept in float until
its detections agree within a budget. The driver (:func:`search_keep_float`) is
the same for every format:

- **round 0** is the plain quantization; unless the search is forced, a round 0
  that agrees at least ``threshold`` is the result (the search does not run);
- then the strategy proposes what to keep float next (:meth:`Strategy.next_kept`),
  each proposal is quantized and measured (:meth:`Strategy.trial`), until a round
  reaches ``budget``, the strategy has nothing left, or ``max_rounds`` rounds ran;
- :func:`choose_round` picks the round kept, and :func:`search_facts` records the
  search in the file's ``extra["int8"]``.

The strategies: ONNX ranks the quantized layers by the error they add and keeps
the worst few float each round (:mod:`~featherface_deploy.exporters.int8_sensitivity`);
TFLite screens module groups one at a time, then adds the helpful ones best first
(:mod:`~featherface_deploy.exporters.tflite_int8_search`). Trials are memoized by
what they keep float, so a strategy may measure a candidate once and propose it again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

Log = Callable[[str], None]
Kept = tuple[str, ...]


@dataclass(frozen=True)
class SearchStep:
    """One round of a keep-float search: the layers kept float so far and the agreement reached."""

    kept_float: Kept
    agreement: float
    float_fraction: float

    def record(self) -> dict:
        """The step as JSON reads it back (lists, not tuples), for the contract."""
        return {"kept_float": list(self.kept_float), "agreement": self.agreement, "float_fraction": self.float_fraction}


@dataclass(frozen=True)
class Trial:
    """One quantization with some layers kept float, measured.

    Attributes:
        step: What it kept float (as the format records it), its agreement and float MAC share.
        artifact: What the strategy made (an ONNX result, a flatbuffer and its facts…).
    """

    step: SearchStep
    artifact: object = field(compare=False)


class Strategy(Protocol):
    """What one format's search does; the driver decides when."""

    def trial(self, kept: Kept) -> Trial:
        """Quantizes with ``kept`` float besides the defaults and measures the agreement with FP32."""

    def next_kept(self, trials: Sequence[Trial], trial: Callable[[Kept], Trial]) -> Kept | None:
        """What to keep float in the next round (``None``: nothing left to try), given the rounds so far.

        ``trial`` is the driver's memoized :meth:`trial`, for strategies that measure candidates first.
        """

    def describe(self, kept: Kept) -> str:
        """``kept`` in a log line (``"3 layers"``, ``"+ ssh1"``)."""

    def search_facts(self, outcome: SearchOutcome) -> dict:
        """The format's own facts for ``extra["int8"]["search"]`` (its sensitivity ranking, groups screened)."""


@dataclass(frozen=True)
class SearchOutcome:
    """A finished search.

    Attributes:
        trials: Round 0 (the plain quantization), then each round of the search.
        chosen: The index of the round kept (:func:`choose_round`).
        ran: Whether the search ran (forced, or round 0 below the threshold).
        met: Whether a round reached the budget (``True`` when the search did not run).
        threshold: Agreement of round 0 below which an unforced search runs (at most the budget).
        budget: The agreement the search aimed at.
        forced: The search was asked for (``--search``).
    """

    trials: list[Trial]
    chosen: int
    ran: bool
    met: bool
    threshold: float
    budget: float
    forced: bool

    @property
    def history(self) -> list[SearchStep]:
        """Each round's :class:`SearchStep`."""
        return [trial.step for trial in self.trials]

    @property
    def kept(self) -> Trial:
        """The round kept."""
        return self.trials[self.chosen]


def choose_round(history: Sequence[SearchStep], budget: float, ran: bool) -> int:
    """The round a search keeps: of those that reach ``budget``, the cheapest (fewest MACs in float, then the
    highest agreement: what runs in integer kernels is the point of INT8); when none does, :func:`best_round`.

    A search that did not run keeps round 0. The one rule for every format.
    """
    if not ran:
        return 0
    meeting = [index for index, step in enumerate(history) if step.agreement >= budget]
    if meeting:
        return min(meeting, key=lambda index: (history[index].float_fraction, -history[index].agreement))
    return best_round(history)


def best_round(history: Sequence[SearchStep]) -> int:
    """The round a search that missed its budget keeps: the highest agreement, then the fewest MACs in float.

    Agreement is not monotone in the layers kept float (V2-CA's ONNX search: 0.9893 at round 6,
    0.9851 at round 12), so the last round is not the best one.
    """
    return max(range(len(history)), key=lambda index: (history[index].agreement, -history[index].float_fraction))


def search_keep_float(strategy: Strategy, *, budget: float, threshold: float, forced: bool, max_rounds: int,
                      log: Log | None = None) -> SearchOutcome:
    """Runs the search: round 0, then the strategy's rounds until the budget, nothing left, or ``max_rounds``.

    Args:
        strategy: The format's :class:`Strategy`.
        budget: Agreement the search aims at.
        threshold: Agreement of round 0 below which an unforced search runs (capped at ``budget``).
        forced: Search even when round 0 meets ``threshold``; the strategy still analyses round 0
            (ranks layers, screens groups) when it already meets ``budget``, and adds nothing.
        max_rounds: Rounds after round 0, at most.
        log: Progress callback.
    """
    log = log or (lambda message: None)
    threshold = min(threshold, budget)
    memo: dict[Kept, Trial] = {}

    def trial(kept: Kept) -> Trial:
        if kept not in memo:
            memo[kept] = strategy.trial(kept)
        return memo[kept]

    trials = [trial(())]
    first = trials[0].step
    log(f"  detection agreement with FP32 on the calibration photos: {first.agreement:.4f} "
        f"({100 * first.float_fraction:.1f}% of MACs float)")
    ran = forced or first.agreement < threshold
    log(f"  {'forced' if forced else 'below' if ran else 'meets'}"
        + ("" if forced else f" the threshold {threshold}") + (f": keep-float search to {budget}" if ran else ": no search"))
    while ran and len(trials) <= max_rounds:
        if len(trials) > 1 and trials[-1].step.agreement >= budget:
            break
        kept = strategy.next_kept(trials, trial)
        if kept is None or trials[-1].step.agreement >= budget:
            break
        trials.append(trial(kept))
        step = trials[-1].step
        log(f"  round {len(trials) - 1}, {strategy.describe(kept)} float: agreement {step.agreement:.4f} "
            f"({100 * step.float_fraction:.1f}% of MACs float)")
    cheaper = [t for t in memo.values() if ran and t not in trials and t.step.agreement >= budget
               and t.step.float_fraction < min((r.step.float_fraction for r in trials if r.step.agreement >= budget),
                                               default=1.0)]
    if cheaper:  # a trial measured on the way (a screened group) meets the budget with fewer MACs in float
        trials.append(min(cheaper, key=lambda t: (t.step.float_fraction, -t.step.agreement)))
        log(f"  cheapest trial that meets the budget: {strategy.describe(trials[-1].step.kept_float)} float "
            f"({trials[-1].step.agreement:.4f}, {100 * trials[-1].step.float_fraction:.1f}% of MACs float)")
    history = [t.step for t in trials]
    met = not ran or any(step.agreement >= budget for step in history)
    chosen = choose_round(history, budget, ran)
    if not met:
        log(f"  warning: the budget {budget} was not reached in {len(history) - 1} rounds; keeping round {chosen}, "
            f"the best ({history[chosen].agreement:.4f}, {100 * history[chosen].float_fraction:.1f}% of MACs float)")
    return SearchOutcome(trials, chosen, ran, met, threshold, budget, forced)


def search_facts(outcome: SearchOutcome, strategy: Strategy, images: int) -> dict:
    """The ``agreement`` and ``search`` records of ``extra["int8"]``, the format's own facts included."""
    kept = outcome.kept.step
    return {
        "agreement": {"threshold": outcome.threshold, "budget": outcome.budget,
                      "default": outcome.trials[0].step.agreement, "final": kept.agreement, "met": outcome.met,
                      "images": images, "measured_on": "calibration"},
        "search": {"mode": "forced" if outcome.forced else "auto", "ran": outcome.ran, "budget": outcome.budget,
                   "chosen_round": outcome.chosen, "history": [step.record() for step in outcome.history],
                   **strategy.search_facts(outcome)},
    }
