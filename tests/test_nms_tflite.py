"""The TFLite lowering of ``featherface::nms`` (NON_MAX_SUPPRESSION_V5) against the torch reference.

A small module calling the op is converted with litert-torch and run with
ai-edge-litert (XNNPACK on); its indices and count must equal the reference's
on random boxes, heavy overlap, IoUs exactly at the threshold, degenerate and
non-finite boxes, and score edge cases.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from featherface_deploy.exporters import nms_tflite  # noqa: E402
from featherface_deploy.exporters.nms_op import nms  # noqa: E402
from featherface_deploy.exporters.tflite_graph import op_census  # noqa: E402

CANDIDATES = 48
MAX_OUTPUT = 12
IOU = 0.5


class _CallsNms(torch.nn.Module):
    def forward(self, boxes: torch.Tensor, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        indices, count = torch.ops.featherface.nms(boxes, scores, IOU, MAX_OUTPUT)
        return {"indices": indices.to(torch.int32), "count": count.to(torch.int32)}


@pytest.fixture(scope="module")
def converted() -> bytes:
    import litert_torch

    nms_tflite.register()
    example = (torch.zeros(CANDIDATES, 4), torch.zeros(CANDIDATES))
    return bytes(litert_torch.convert(_CallsNms().eval(), example).model_content())


@pytest.fixture(scope="module")
def run_tflite(converted):
    interpreter = Interpreter(model_content=converted)
    runner = interpreter.get_signature_runner()
    input_names = list(runner.get_input_details())

    def run(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, int]:
        out = runner(**dict(zip(input_names, (boxes.astype(np.float32), scores.astype(np.float32)))))
        return out["indices"], int(out["count"][0])

    return run


def _reference(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, int]:
    indices, count = nms(torch.from_numpy(boxes.astype(np.float32)), torch.from_numpy(scores.astype(np.float32)),
                         IOU, MAX_OUTPUT)
    return indices.numpy(), int(count[0])


def _random_boxes(rng: np.random.Generator, spread: float, size: float) -> np.ndarray:
    corner = rng.uniform(0, spread, (CANDIDATES, 2))
    extent = rng.uniform(1, size, (CANDIDATES, 2))
    return np.concatenate([corner, corner + extent], axis=1)


def _distinct_scores(rng: np.random.Generator, zero_fraction: float = 0.0) -> np.ndarray:
    scores = rng.permutation(np.linspace(1.0, 0.01, CANDIDATES))
    scores[rng.random(CANDIDATES) < zero_fraction] = 0.0
    return scores


def _assert_same(run_tflite, boxes: np.ndarray, scores: np.ndarray) -> None:
    got_indices, got_count = run_tflite(boxes, scores)
    want_indices, want_count = _reference(boxes, scores)
    assert got_count == want_count
    np.testing.assert_array_equal(got_indices, want_indices)


def test_only_builtin_ops(converted):
    census = op_census(converted)
    assert not any(name.startswith("CUSTOM") for name in census), census
    assert census["NON_MAX_SUPPRESSION_V5:INT32"] == 1


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("spread, size", [(200, 30), (20, 30), (5, 60)], ids=["sparse", "overlap", "heavy"])
def test_random_boxes(run_tflite, seed, spread, size):
    rng = np.random.default_rng(seed)
    _assert_same(run_tflite, _random_boxes(rng, spread, size), _distinct_scores(rng, zero_fraction=0.3))


def test_iou_exactly_at_threshold_is_kept(run_tflite):
    boxes = np.zeros((CANDIDATES, 4))
    boxes[:] = [1000, 1000, 1001, 1001]
    boxes[0] = [0, 0, 10, 10]
    boxes[1] = [0, 0, 10, 5]     # IoU with box 0: 50 / 100 = 0.5 exactly (kept: the op suppresses at > 0.5)
    boxes[2] = [0, 0, 10, 5.5]   # IoU 0.55 with box 0 (suppressed)
    scores = np.zeros(CANDIDATES)
    scores[:3] = [0.9, 0.8, 0.7]
    _assert_same(run_tflite, boxes, scores)
    indices, count = run_tflite(boxes, scores)
    assert count == 2 and list(indices[:2]) == [0, 1]


def test_ranks_with_broken_ties(run_tflite):
    """Scores as the head feeds them: strictly decreasing ranks, masked candidates 0."""
    rng = np.random.default_rng(7)
    boxes = _random_boxes(rng, 30, 40)
    quantized = np.round(rng.uniform(0, 1, CANDIDATES) * 8) / 8  # many ties, as INT8 scores
    order = np.argsort(-quantized, kind="stable")
    ranks = np.zeros(CANDIDATES)
    ranks[order] = 1.0 - np.arange(CANDIDATES) / CANDIDATES
    ranks[quantized < 0.5] = 0.0
    _assert_same(run_tflite, boxes, ranks)


@pytest.mark.parametrize("bad", ["zero_width", "inverted", "nan", "inf", "point"])
def test_degenerate_boxes_selected_once(run_tflite, bad):
    rng = np.random.default_rng(3)
    boxes = _random_boxes(rng, 20, 30)
    scores = _distinct_scores(rng)
    for index in (int(np.argmax(scores)), 5, 17):
        x1, y1 = boxes[index, :2]
        boxes[index] = {"zero_width": [x1, y1, x1, y1 + 10], "inverted": [x1 + 10, y1, x1, y1 + 10],
                        "nan": [np.nan, y1, x1 + 5, y1 + 5], "inf": [x1, y1, np.inf, y1 + 5],
                        "point": [x1, y1, x1, y1]}[bad]
    _assert_same(run_tflite, boxes, scores)
    indices, count = run_tflite(boxes, scores)
    assert len(set(indices[:count].tolist())) == count


def test_score_edge_cases(run_tflite):
    rng = np.random.default_rng(11)
    boxes = _random_boxes(rng, 100, 20)
    scores = _distinct_scores(rng)
    scores[:3] = [-0.5, 0.0, -np.inf]
    _assert_same(run_tflite, boxes, scores)


def test_nan_score_is_never_selected(run_tflite):
    """A NaN score is "not strictly positive": never selected, the others as if it were 0 (as in the reference)."""
    rng = np.random.default_rng(12)
    boxes = _random_boxes(rng, 100, 20)
    scores = _distinct_scores(rng)
    scores[6] = np.nan
    indices, count = run_tflite(boxes, scores)
    want_indices, want_count = _reference(boxes, scores)
    assert count == want_count
    np.testing.assert_array_equal(indices, want_indices)


def test_nothing_selectable_gives_zero(run_tflite):
    boxes = _random_boxes(np.random.default_rng(0), 100, 20)
    indices, count = run_tflite(boxes, np.zeros(CANDIDATES))
    assert count == 0 and not indices.any()


def test_fewer_candidates_than_max_output_pads_with_zero(run_tflite):
    rng = np.random.default_rng(5)
    boxes = _random_boxes(rng, 300, 10)
    scores = np.zeros(CANDIDATES)
    scores[[4, 9, 30]] = [0.3, 0.9, 0.6]
    _assert_same(run_tflite, boxes, scores)


def test_kernel_threshold_is_the_next_float_up():
    threshold = nms_tflite.kernel_iou_threshold(0.4)
    assert np.float32(threshold) > np.float32(0.4)
    assert np.nextafter(np.float32(threshold), np.float32(0)) == np.float32(0.4)


def test_decomposition_matches_reference_in_torch():
    """The torch form of the lowering (kernel emulated) equals the reference, with max_output > candidates too."""
    rng = np.random.default_rng(2)
    boxes = torch.from_numpy(_random_boxes(rng, 10, 30).astype(np.float32))
    scores = torch.from_numpy(_distinct_scores(rng, 0.2).astype(np.float32))
    boxes[3] = torch.tensor([1.0, 1.0, 1.0, 9.0])
    for max_output in (5, CANDIDATES + 10):
        got = nms_tflite.decompose_nms(boxes, scores, IOU, max_output)
        want = nms(boxes, scores, IOU, max_output)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
