"""The Core ML lowering of ``featherface::nms`` (MIL ``non_maximum_suppression``) against the torch reference.

A small module calling the op is traced, converted with coremltools (iOS16: the
iOS15 op with its score threshold and count; iOS17: the op without either),
saved, and run with the project's numpy MIL interpreter (Core ML itself does
not run on Linux).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

ct = pytest.importorskip("coremltools")

from featherface_deploy.exporters import nms_coreml  # noqa: E402
from featherface_deploy.exporters.nms_op import nms  # noqa: E402
from featherface_deploy.runtimes.mil.detection_ops import detection_ops  # noqa: E402
from featherface_deploy.runtimes.mil.interpreter import MilInterpreter  # noqa: E402

CANDIDATES = 48
MAX_OUTPUT = 12
IOU = 0.5


class _CallsNms(torch.nn.Module):
    def forward(self, boxes: torch.Tensor, scores: torch.Tensor):
        return torch.ops.featherface.nms(boxes, scores, IOU, MAX_OUTPUT)


@pytest.fixture(scope="module", params=["iOS16", "iOS17"])
def run_coreml(request, tmp_path_factory):
    nms_coreml.register()
    traced = torch.jit.trace(_CallsNms().eval(), (torch.rand(CANDIDATES, 4), torch.rand(CANDIDATES)))
    mlmodel = ct.convert(traced, inputs=[ct.TensorType(name="boxes", shape=(CANDIDATES, 4)),
                                         ct.TensorType(name="scores", shape=(CANDIDATES,))],
                         convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, request.param),
                         compute_precision=ct.precision.FLOAT32)
    path = tmp_path_factory.mktemp(request.param) / "nms.mlpackage"
    mlmodel.save(str(path))
    interpreter = MilInterpreter(path)
    assert interpreter.op_counts["non_maximum_suppression"] == 1

    def run(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, int]:
        indices, count = interpreter.run({"boxes": boxes.astype(np.float32),
                                          "scores": scores.astype(np.float32)}).values()
        return indices, int(count[0])

    return run


def _assert_same(run_coreml, boxes: np.ndarray, scores: np.ndarray) -> None:
    indices, count = run_coreml(boxes, scores)
    want_indices, want_count = nms(torch.from_numpy(boxes.astype(np.float32)),
                                   torch.from_numpy(scores.astype(np.float32)), IOU, MAX_OUTPUT)
    assert count == int(want_count[0])
    np.testing.assert_array_equal(indices, want_indices.numpy())


def _random_case(seed: int, spread: float, size: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, spread, (CANDIDATES, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(1, size, (CANDIDATES, 2))], axis=1)
    scores = rng.permutation(np.linspace(1.0, 0.01, CANDIDATES))
    scores[rng.random(CANDIDATES) < 0.3] = 0.0
    return boxes, scores


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("spread, size", [(200, 30), (20, 30), (5, 60)], ids=["sparse", "overlap", "heavy"])
def test_random_boxes(run_coreml, seed, spread, size):
    _assert_same(run_coreml, *_random_case(seed, spread, size))


def test_iou_exactly_at_threshold_is_kept(run_coreml):
    boxes = np.tile([1000.0, 1000, 1001, 1001], (CANDIDATES, 1))
    boxes[:3] = [[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 5.5]]  # IoU 0.5 (kept) and 0.55 (suppressed)
    scores = np.zeros(CANDIDATES)
    scores[:3] = [0.9, 0.8, 0.7]
    _assert_same(run_coreml, boxes, scores)
    indices, count = run_coreml(boxes, scores)
    assert count == 2 and list(indices[:2]) == [0, 1]


def test_non_positive_scores_are_never_selected(run_coreml):
    boxes, scores = _random_case(4, 100, 20)
    scores[:4] = [-0.5, 0.0, -np.inf, np.nan]
    indices, count = run_coreml(boxes, scores)
    want_indices, want_count = nms(torch.from_numpy(boxes.astype(np.float32)),
                                   torch.from_numpy(scores.astype(np.float32)),
                                   IOU, MAX_OUTPUT)
    assert count == int(want_count[0]) and not set(indices[:count]) & {0, 1, 2, 3}
    np.testing.assert_array_equal(indices, want_indices.numpy())


def test_nothing_selectable_pads_with_zero(run_coreml):
    boxes, _ = _random_case(0, 100, 20)
    indices, count = run_coreml(boxes, np.zeros(CANDIDATES))
    assert count == 0 and not indices.any()


def test_interpreter_topk_and_split_kernels():
    kernels = detection_ops()
    values, indices = kernels["topk"](np.array([[0.2, 0.9, 0.2, 0.5]], np.float32), k=3, axis=-1)
    np.testing.assert_array_equal(indices, [[1, 3, 0]])  # ties: lower index first
    np.testing.assert_array_equal(values, np.array([[0.9, 0.5, 0.2]], np.float32))
    parts = kernels["split"](np.arange(10).reshape(2, 5), axis=1, split_sizes=np.array([2, 3]))
    assert [p.shape for p in parts] == [(2, 2), (2, 3)]


def test_interpreter_nms_reads_centre_size_boxes():
    """Two boxes given as (cx, cy, w, h): IoU 1/3 keeps both at 0.5 and suppresses one at 0.3."""
    boxes = np.array([[[5, 5, 10, 10], [10, 5, 10, 10]]], np.float32)
    scores = np.array([[[0.9], [0.8]]], np.float32)
    nms_kernel = detection_ops()["non_maximum_suppression"]
    _, _, indices, count = nms_kernel(boxes, scores, 0.5, 3, score_threshold=0.0)
    assert count[0] == 2 and indices[0].tolist() == [0, 1, -1]
    _, _, indices, count = nms_kernel(boxes, scores, 0.3, 3, score_threshold=0.0)
    assert count[0] == 1 and indices[0].tolist() == [0, -1, -1]
