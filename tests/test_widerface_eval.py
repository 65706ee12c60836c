"""Tests of featherface_deploy.evaluation (official WIDER FACE protocol: ground truth, protocol, submission).

The core check compares :func:`evaluate` with a deliberately naive, loop-based
re-implementation of the official Python port (``widerface_evaluate/
evaluation.py``: ``get_gt_boxes``, ``get_preds``, ``norm_score``,
``bbox_overlaps``, ``image_eval``, ``img_pr_info``, ``dataset_pr_info``,
``voc_ap``), fed with the same synthetic ``.mat`` files and submission folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from conftest import shared_dir
from featherface_deploy.errors import DatasetError, OutputError
from featherface_deploy.evaluation import (
    SETTINGS,
    WiderFaceAP,
    WiderGroundTruth,
    evaluate,
    list_images,
    load_ground_truth,
    read_predictions,
    write_predictions,
)

# ---------------------------------------------------------------------------
# Naive reference: the official Python port, loop for loop.
# ---------------------------------------------------------------------------


def ref_bbox_overlaps(boxes, query_boxes):
    n_, k_ = boxes.shape[0], query_boxes.shape[0]
    overlaps = np.zeros((n_, k_), dtype=np.float64)
    for k in range(k_):
        box_area = ((query_boxes[k, 2] - query_boxes[k, 0] + 1)
                    * (query_boxes[k, 3] - query_boxes[k, 1] + 1))
        for n in range(n_):
            iw = min(boxes[n, 2], query_boxes[k, 2]) - max(boxes[n, 0], query_boxes[k, 0]) + 1
            if iw > 0:
                ih = min(boxes[n, 3], query_boxes[k, 3]) - max(boxes[n, 1], query_boxes[k, 1]) + 1
                if ih > 0:
                    ua = float((boxes[n, 2] - boxes[n, 0] + 1) * (boxes[n, 3] - boxes[n, 1] + 1)
                               + box_area - iw * ih)
                    overlaps[n, k] = iw * ih / ua
    return overlaps


def ref_get_gt_boxes(gt_dir):
    gt_mat = scipy.io.loadmat(os.path.join(gt_dir, "wider_face_val.mat"))
    hard_mat = scipy.io.loadmat(os.path.join(gt_dir, "wider_hard_val.mat"))
    medium_mat = scipy.io.loadmat(os.path.join(gt_dir, "wider_medium_val.mat"))
    easy_mat = scipy.io.loadmat(os.path.join(gt_dir, "wider_easy_val.mat"))
    return (gt_mat["face_bbx_list"], gt_mat["event_list"], gt_mat["file_list"],
            hard_mat["gt_list"], medium_mat["gt_list"], easy_mat["gt_list"])


def ref_read_pred_file(filepath):
    with open(filepath) as f:
        lines = f.readlines()
        img_file = lines[0].rstrip("\n\r")
        lines = lines[2:]
    boxes = []
    for line in lines:
        line = line.rstrip("\r\n").split(" ")
        if line[0] == "":
            continue
        boxes.append([float(line[0]), float(line[1]), float(line[2]), float(line[3]),
                      float(line[4])])
    return img_file.split("/")[-1], np.array(boxes)


def ref_get_preds(pred_dir):
    boxes = {}
    for event in os.listdir(pred_dir):
        current_event = {}
        for imgtxt in os.listdir(os.path.join(pred_dir, event)):
            imgname, _boxes = ref_read_pred_file(os.path.join(pred_dir, event, imgtxt))
            current_event[imgname] = _boxes
        boxes[event] = current_event
    return boxes


def ref_norm_score(pred):
    max_score, min_score = 0, 1
    for _, k in pred.items():
        for _, v in k.items():
            if len(v) == 0:
                continue
            max_score = max(np.max(v[:, -1]), max_score)
            min_score = min(np.min(v[:, -1]), min_score)
    diff = max_score - min_score
    for _, k in pred.items():
        for _, v in k.items():
            if len(v) == 0:
                continue
            v[:, -1] = (v[:, -1] - min_score) / diff


def ref_image_eval(pred, gt, ignore, iou_thresh):
    _pred, _gt = pred.copy(), gt.copy()
    pred_recall = np.zeros(_pred.shape[0])
    recall_list = np.zeros(_gt.shape[0])
    proposal_list = np.ones(_pred.shape[0])
    _pred[:, 2] = _pred[:, 2] + _pred[:, 0]
    _pred[:, 3] = _pred[:, 3] + _pred[:, 1]
    _gt[:, 2] = _gt[:, 2] + _gt[:, 0]
    _gt[:, 3] = _gt[:, 3] + _gt[:, 1]
    overlaps = ref_bbox_overlaps(_pred[:, :4], _gt)
    for h in range(_pred.shape[0]):
        gt_overlap = overlaps[h]
        max_overlap, max_idx = gt_overlap.max(), gt_overlap.argmax()
        if max_overlap >= iou_thresh:
            if ignore[max_idx] == 0:
                recall_list[max_idx] = -1
                proposal_list[h] = -1
            elif recall_list[max_idx] == 0:
                recall_list[max_idx] = 1
        pred_recall[h] = len(np.where(recall_list == 1)[0])
    return pred_recall, proposal_list


def ref_img_pr_info(thresh_num, pred_info, proposal_list, pred_recall):
    pr_info = np.zeros((thresh_num, 2)).astype("float")
    for t in range(thresh_num):
        thresh = 1 - (t + 1) / thresh_num
        r_index = np.where(pred_info[:, 4] >= thresh)[0]
        if len(r_index) == 0:
            pr_info[t, 0] = 0
            pr_info[t, 1] = 0
        else:
            r_index = r_index[-1]
            p_index = np.where(proposal_list[:r_index + 1] == 1)[0]
            pr_info[t, 0] = len(p_index)
            pr_info[t, 1] = pred_recall[r_index]
    return pr_info


def ref_dataset_pr_info(thresh_num, pr_curve, count_face):
    _pr_curve = np.zeros((thresh_num, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(thresh_num):
            _pr_curve[i, 0] = pr_curve[i, 1] / pr_curve[i, 0]
            _pr_curve[i, 1] = pr_curve[i, 1] / count_face
    return _pr_curve


def ref_voc_ap(rec, prec):
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def ref_evaluation(pred_dir, gt_dir, iou_thresh=0.5):
    pred = ref_get_preds(pred_dir)
    ref_norm_score(pred)
    facebox_list, event_list, file_list, hard_gt_list, medium_gt_list, easy_gt_list = (
        ref_get_gt_boxes(gt_dir))
    thresh_num = 1000
    aps = []
    for gt_list in [easy_gt_list, medium_gt_list, hard_gt_list]:
        count_face = 0
        pr_curve = np.zeros((thresh_num, 2)).astype("float")
        for i in range(len(event_list)):
            event_name = str(event_list[i][0][0])
            img_list = file_list[i][0]
            pred_list = pred[event_name]
            sub_gt_list = gt_list[i][0]
            gt_bbx_list = facebox_list[i][0]
            for j in range(len(img_list)):
                pred_info = pred_list[str(img_list[j][0][0])]
                gt_boxes = gt_bbx_list[j][0].astype("float")
                keep_index = sub_gt_list[j][0]
                count_face += len(keep_index)
                if len(gt_boxes) == 0 or len(pred_info) == 0:
                    continue
                ignore = np.zeros(gt_boxes.shape[0])
                if len(keep_index) != 0:
                    ignore[keep_index - 1] = 1
                pred_recall, proposal_list = ref_image_eval(pred_info, gt_boxes, ignore,
                                                            iou_thresh)
                pr_curve += ref_img_pr_info(thresh_num, pred_info, proposal_list, pred_recall)
        pr_curve = ref_dataset_pr_info(thresh_num, pr_curve, count_face)
        aps.append(ref_voc_ap(pr_curve[:, 1], pr_curve[:, 0]))
    return aps


# ---------------------------------------------------------------------------
# Synthetic data in the official .mat layout
# ---------------------------------------------------------------------------


def _cells(items):
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def make_synthetic(rng, root: Path, n_images=20, n_events=4):
    """Writes WIDER-like ground truth (.mat) under ``root``; returns {key: (boxes, keeps)}."""
    events = [f"{i}--Event{i}" for i in range(n_events)]
    per_event = {e: [] for e in events}
    for j in range(n_images):
        event = events[j % n_events]
        n = int(rng.integers(0, 31))
        size = np.exp(rng.uniform(np.log(2), np.log(160), n))
        w = size * rng.uniform(0.7, 1.0, n)
        h = size
        # Faces come in crowds: cluster centres so that boxes overlap.
        centres = rng.uniform(0, 400, (max(1, n // 6), 2))
        c = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 25, (n, 2))
        boxes = np.stack([c[:, 0], c[:, 1], w, h], axis=1)
        if n > 3:
            boxes[rng.integers(0, n), 2] = 0.0  # degenerate face, as in the real data
        hard = np.flatnonzero((h >= 6) & (rng.random(n) < 0.9)) + 1
        medium = np.array([k for k in hard if h[k - 1] >= 15], dtype=np.int64)
        easy = np.array([k for k in medium if h[k - 1] >= 40 and rng.random() < 0.8],
                        dtype=np.int64)
        keeps = {"hard": hard, "medium": medium, "easy": easy}
        per_event[event].append((f"{j}_{event[3:]}_img_{j}", boxes, keeps))
    gt_dir = root / "eval_tools" / "ground_truth"
    gt_dir.mkdir(parents=True)
    event_list = _cells([np.array([e]) for e in events])
    file_list = _cells([_cells([np.array([n]) for n, _, _ in per_event[e]]) for e in events])
    bbx_list = _cells([_cells([b for _, b, _ in per_event[e]]) for e in events])
    scipy.io.savemat(gt_dir / "wider_face_val.mat", {
        "event_list": event_list, "file_list": file_list, "face_bbx_list": bbx_list})
    for setting in SETTINGS:
        gt_list = _cells([_cells([k[setting].reshape(-1, 1).astype(np.uint16)
                                  for _, _, k in per_event[e]]) for e in events])
        scipy.io.savemat(gt_dir / f"wider_{setting}_val.mat", {
            "event_list": event_list, "file_list": file_list, "face_bbx_list": bbx_list,
            "gt_list": gt_list})
    return {(e, n): (b, k) for e in events for n, b, k in per_event[e]}


def make_predictions(rng, truth, quantise):
    """Jittered gt (some missed, some duplicated) plus false positives, sorted by score."""
    preds = {}
    for key, (boxes, _) in truth.items():
        rows = []
        for x, y, w, h in boxes:
            for _ in range(int(rng.random() < 0.85) + int(rng.random() < 0.15)):
                s = max(w, h, 1.0)  # small faces: noisier boxes, lower scores
                noise = 0.04 + 0.1 * np.exp(-s / 30)
                x1, y1 = x + rng.normal(0, noise * s), y + rng.normal(0, noise * s)
                rows.append([x1, y1, x1 + w * rng.uniform(0.85, 1.15),
                             y1 + h * rng.uniform(0.85, 1.15),
                             rng.beta(2 + s / 10, 2)])
        for _ in range(int(rng.integers(0, 12))):
            x1, y1 = rng.uniform(0, 400, 2)
            size = np.exp(rng.uniform(np.log(3), np.log(120)))
            rows.append([x1, y1, x1 + size, y1 + size * 1.2, rng.beta(2, 5)])
        arr = np.array(rows, dtype=np.float64).reshape(-1, 5)
        if quantise and len(arr):
            arr[:, 4] = np.round(arr[:, 4], 2)  # many ties, many scores on thresholds
        if rng.random() < 0.1:
            continue  # image absent from the predictions
        preds[key] = arr[np.argsort(-arr[:, 4], kind="stable")]
    if quantise:  # pin the global range to exactly [0, 1]
        first = next(k for k, v in preds.items() if len(v) >= 2)
        preds[first][0, 4], preds[first][-1, 4] = 1.0, 0.0
    else:  # a range inside (0, 1), so that normalisation matters
        for v in preds.values():
            v[:, 4] = 0.03 + 0.9 * v[:, 4]
    return preds


def _shuffled(rng, preds):
    return {k: v[rng.permutation(len(v))] for k, v in reversed(list(preds.items()))}


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_implementation(tmp_path, seed):
    rng = np.random.default_rng(seed)
    truth = make_synthetic(rng, tmp_path / "wider")
    preds = make_predictions(rng, truth, quantise=seed % 2 == 0)
    gt = load_ground_truth(tmp_path / "wider")
    assert gt.num_images == len(truth)
    assert all(gt.num_kept(s) > 0 for s in SETTINGS)

    # The reference reads a submission folder, as the official tool does; it
    # needs a file for every gt image, so absent images get an empty file.
    sub = {k: preds.get(k, np.zeros((0, 5))) for k in truth}
    write_predictions(sub, tmp_path / "sub")
    expected = ref_evaluation(str(tmp_path / "sub"), str(tmp_path / "wider" / "eval_tools"
                                                         / "ground_truth"))
    for iou in (0.5,):
        got = evaluate(_shuffled(rng, preds), gt, iou_threshold=iou)
        assert isinstance(got, WiderFaceAP)
        np.testing.assert_allclose([got.easy, got.medium, got.hard], expected,
                                   rtol=0, atol=1e-9)
    assert 0.05 < min(expected) and max(expected) < 0.999  # a non-trivial operating point
    # And the evaluator on the folder read back gives the same numbers.
    again = evaluate(read_predictions(tmp_path / "sub"), gt)
    np.testing.assert_allclose([again.easy, again.medium, again.hard], expected, atol=1e-9)


def test_matches_reference_at_other_iou(tmp_path):
    rng = np.random.default_rng(123)
    truth = make_synthetic(rng, tmp_path / "wider")
    preds = make_predictions(rng, truth, quantise=True)
    write_predictions({k: preds.get(k, np.zeros((0, 5))) for k in truth}, tmp_path / "sub")
    gt = load_ground_truth(tmp_path / "wider")
    gt_dir = str(tmp_path / "wider" / "eval_tools" / "ground_truth")
    for iou in (0.3, 0.7):
        got = evaluate(preds, gt, iou_threshold=iou)
        expected = ref_evaluation(str(tmp_path / "sub"), gt_dir, iou_thresh=iou)
        np.testing.assert_allclose([got.easy, got.medium, got.hard], expected, atol=1e-9)


@pytest.mark.parametrize("scale, offset", [(4.0, 3.0), (0.5, -2.0)])
def test_matches_reference_with_scores_outside_unit_range(tmp_path, scale, offset):
    # The official norm_score starts its running max at 0 and min at 1, which
    # matters when all scores are > 1 (or < 0); mirror that too.
    rng = np.random.default_rng(99)
    truth = make_synthetic(rng, tmp_path / "wider")
    preds = make_predictions(rng, truth, quantise=False)
    for value in preds.values():
        value[:, 4] = offset + scale * value[:, 4]
    write_predictions({k: preds.get(k, np.zeros((0, 5))) for k in truth}, tmp_path / "sub")
    expected = ref_evaluation(str(tmp_path / "sub"),
                              str(tmp_path / "wider" / "eval_tools" / "ground_truth"))
    got = evaluate(preds, load_ground_truth(tmp_path / "wider"))
    np.testing.assert_allclose([got.easy, got.medium, got.hard], expected, rtol=0, atol=1e-9)


def _gt_as_predictions(gt: WiderGroundTruth, rng=None, subset=None):
    preds = {}
    for key in gt.images:
        boxes = gt.boxes[key]
        idx = np.arange(len(boxes)) if subset is None else subset[key] - 1
        b = boxes[idx]
        score = np.ones(len(b)) if rng is None else rng.uniform(0.1, 1.0, len(b))
        preds[key] = np.column_stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2],
                                      b[:, 1] + b[:, 3], score])
    return preds


def test_perfect_predictions_give_ap_one(tmp_path):
    rng = np.random.default_rng(7)
    make_synthetic(rng, tmp_path / "wider")
    gt = load_ground_truth(tmp_path / "wider")
    for preds in (_gt_as_predictions(gt), _gt_as_predictions(gt, rng)):
        ap = evaluate(preds, gt)
        assert (ap.easy, ap.medium, ap.hard) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)
        assert ap.percentages == pytest.approx({"easy": 100.0, "medium": 100.0,
                                                "hard": 100.0})
        assert ap.format() == "Easy 100.00% | Medium 100.00% | Hard 100.00%"


def test_empty_predictions_give_ap_zero(tmp_path):
    rng = np.random.default_rng(8)
    make_synthetic(rng, tmp_path / "wider")
    gt = load_ground_truth(tmp_path / "wider")
    assert evaluate({}, gt) == WiderFaceAP(0.0, 0.0, 0.0)
    assert evaluate({k: np.zeros((0, 5)) for k in gt.images}, gt) == WiderFaceAP(0.0, 0.0, 0.0)
    far = {k: np.array([[1000.0, 1000.0, 1010.0, 1010.0, 0.9]]) for k in gt.images}
    assert evaluate(far, gt) == WiderFaceAP(0.0, 0.0, 0.0)


def test_setting_without_faces_gives_nan(tmp_path):
    rng = np.random.default_rng(14)
    make_synthetic(rng, tmp_path / "wider")
    full = load_ground_truth(tmp_path / "wider")
    key = next(k for k in full.images
               if len(full.keep["hard"][k]) and not len(full.keep["easy"][k]))
    subset = WiderGroundTruth(images=(key,), boxes={key: full.boxes[key]},
                              keep={s: {key: full.keep[s][key]} for s in SETTINGS})
    ap = evaluate(_gt_as_predictions(subset), subset)
    assert np.isnan(ap.easy) and ap.hard == pytest.approx(1.0)


def test_invalid_predictions_raise(tmp_path):
    rng = np.random.default_rng(9)
    make_synthetic(rng, tmp_path / "wider")
    gt = load_ground_truth(tmp_path / "wider")
    key = gt.images[0]
    with pytest.raises(ValueError, match="shape"):
        evaluate({key: np.zeros((3, 4))}, gt)
    with pytest.raises(ValueError, match="NaN"):
        evaluate({key: np.array([[0, 0, 5, 5, np.nan]])}, gt)


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(10)
    preds = {
        ("0--Parade", "0_Parade_Parade_0_194"): np.column_stack(
            [rng.uniform(0, 300, (7, 2)), rng.uniform(300, 400, (7, 2)), rng.random(7)]),
        ("0--Parade", "0_Parade_marchingband_1_593"): np.zeros((0, 5)),
        ("9--Press_Conference", "9_Press_Conference_Press_Conference_9_10"): np.array(
            [[10.0, 20.0, 30.5, 44.25, 0.5]]),
    }
    paths = write_predictions(preds, tmp_path / "sub")
    assert [p.relative_to(tmp_path / "sub").as_posix() for p in paths] == [
        f"{e}/{n}.txt" for e, n in preds]
    lines = (tmp_path / "sub/9--Press_Conference/"
             "9_Press_Conference_Press_Conference_9_10.txt").read_text().splitlines()
    assert lines == ["9_Press_Conference_Press_Conference_9_10", "1",
                     "10.0 20.0 20.5 24.25 0.5"]
    assert (tmp_path / "sub/0--Parade/0_Parade_marchingband_1_593.txt").read_text() == (
        "0_Parade_marchingband_1_593\n0\n")
    leftovers = [p for p in (tmp_path / "sub").rglob("*") if p.is_file() and p.suffix != ".txt"]
    assert leftovers == []
    back = read_predictions(tmp_path / "sub")
    assert set(back) == set(preds)
    for key, value in preds.items():
        assert back[key].shape == (len(value), 5)
        np.testing.assert_allclose(back[key], value, rtol=0, atol=1e-9)
    # An existing set is replaced only with exist_ok, and then whole: no stale file of the old set stays.
    with pytest.raises(OutputError, match="already exists"):
        write_predictions(preds, tmp_path / "sub")
    stale = tmp_path / "sub/0--Parade/0_Parade_stale_1.txt"
    stale.write_text("0_Parade_stale_1\n0\n")
    write_predictions(preds, tmp_path / "sub", exist_ok=True)
    assert set(read_predictions(tmp_path / "sub")) == set(preds) and not stale.exists()


def test_read_predictions_rejects_bad_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_predictions(tmp_path / "nope")
    (tmp_path / "sub" / "ev").mkdir(parents=True)
    (tmp_path / "sub" / "ev" / "a.txt").write_text("a\n3\n1 2 3 4 0.5\n")
    with pytest.raises(DatasetError, match="announces 3"):
        read_predictions(tmp_path / "sub")
    (tmp_path / "sub" / "ev" / "a.txt").write_text("a\n1\n1 2 x 4 0.5\n")
    with pytest.raises(DatasetError, match="malformed"):
        read_predictions(tmp_path / "sub")
    (tmp_path / "sub" / "ev" / "a.txt").write_text("a\n5\n" + "1 2 3 4\n" * 5)
    with pytest.raises(DatasetError, match="5 numbers"):
        read_predictions(tmp_path / "sub")
    # The official writer's style: image path on line 1, trailing space, int boxes.
    (tmp_path / "sub" / "ev" / "a.txt").write_text("ev/a.jpg\n1\n1 2 3 4 0.5 \n")
    assert read_predictions(tmp_path / "sub")[("ev", "a")].tolist() == [[1, 2, 4, 6, 0.5]]


def test_load_ground_truth_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="ground_truth"):
        load_ground_truth(tmp_path)
    rng = np.random.default_rng(11)
    make_synthetic(rng, tmp_path / "wider")
    (tmp_path / "wider/eval_tools/ground_truth/wider_hard_val.mat").write_bytes(b"not a mat")
    with pytest.raises(DatasetError, match="wider_hard_val.mat"):
        load_ground_truth(tmp_path / "wider")
    (tmp_path / "wider/eval_tools/ground_truth/wider_medium_val.mat").unlink()
    with pytest.raises(DatasetError, match="wider_medium_val.mat"):
        load_ground_truth(tmp_path / "wider")


def test_list_images_missing_image(tmp_path):
    rng = np.random.default_rng(12)
    truth = make_synthetic(rng, tmp_path / "wider")
    images = tmp_path / "wider" / "WIDER_val" / "images"
    for event, name in truth:
        (images / event).mkdir(parents=True, exist_ok=True)
        (images / event / f"{name}.jpg").write_bytes(b"")
    listed = list_images(tmp_path / "wider")
    assert [(e, n) for e, n, _ in listed] == list(truth)
    assert all(p == images / e / f"{n}.jpg" for e, n, p in listed)
    event, name = next(iter(truth))
    (images / event / f"{name}.jpg").unlink()
    with pytest.raises(DatasetError, match=f"{name}.jpg"):
        list_images(tmp_path / "wider")


def test_evaluate_is_fast(tmp_path):
    rng = np.random.default_rng(13)
    truth = make_synthetic(rng, tmp_path / "wider", n_images=200, n_events=10)
    gt = load_ground_truth(tmp_path / "wider")
    preds = {}
    for key in truth:
        x1y1 = rng.uniform(0, 400, (2000, 2))
        wh = rng.uniform(2, 100, (2000, 2))
        preds[key] = np.column_stack([x1y1, x1y1 + wh, rng.random(2000)])
    # CPU time of this process, not wall-clock: a loaded host slows the clock, not the work (vectorised: ~1 s).
    start = time.process_time()
    evaluate(preds, gt)
    assert time.process_time() - start < 10.0


# ---------------------------------------------------------------------------
# Real data (the 200-image, 416 px WIDER FACE val subset in the shared folder)
# ---------------------------------------------------------------------------

WIDER_416 = shared_dir() / "data" / "widerface-val-416"


@pytest.fixture(scope="module")
def real_gt() -> WiderGroundTruth:
    if not (WIDER_416 / "eval_tools" / "ground_truth" / "wider_face_val.mat").is_file():
        pytest.skip(f"shared WIDER FACE subset not found at {WIDER_416} "
                    "(set FEATHERFACE_SHARED to the shared folder)")
    return load_ground_truth(WIDER_416)


def test_real_ground_truth_counts(real_gt):
    assert real_gt.num_images == 200
    assert len(real_gt.events) == 10
    assert real_gt.num_faces == 4372
    counts = {s: real_gt.num_kept(s) for s in SETTINGS}
    assert counts == {"easy": 548, "medium": 1189, "hard": 3477}
    listed = list_images(WIDER_416)
    assert len(listed) == 200 and all(p.is_file() for _, _, p in listed)
    assert listed == list_images(WIDER_416)  # deterministic


def test_real_gt_boxes_as_predictions(real_gt):
    # Settings are nested (easy in medium in hard), which the expectations use.
    for key in real_gt.images:
        e, m, h = (set(real_gt.keep[s][key].tolist()) for s in SETTINGS)
        assert e <= m <= h
    # Every face predicted: kept faces are TPs, others are ignored -> AP 1.
    ap = evaluate(_gt_as_predictions(real_gt), real_gt)
    assert (ap.easy, ap.medium, ap.hard) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)
    ap = evaluate(_gt_as_predictions(real_gt, np.random.default_rng(0)), real_gt)
    assert (ap.easy, ap.medium, ap.hard) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)
    # Only the easy faces: precision stays 1, recall tops out at the easy share.
    easy_only = _gt_as_predictions(real_gt, subset=real_gt.keep["easy"])
    ap = evaluate(easy_only, real_gt)
    assert ap.easy == pytest.approx(1.0, abs=1e-12)
    assert ap.medium == pytest.approx(548 / 1189, abs=1e-12)
    assert ap.hard == pytest.approx(548 / 3477, abs=1e-12)
    # Only faces kept in no setting: all ignored, nothing counts -> AP 0.
    ignored = {k: np.setdiff1d(np.arange(1, len(real_gt.boxes[k]) + 1), real_gt.keep["hard"][k])
               for k in real_gt.images}
    assert sum(len(v) for v in ignored.values()) == 4372 - 3477
    assert evaluate(_gt_as_predictions(real_gt, subset=ignored), real_gt) == WiderFaceAP(0, 0, 0)


def test_invalid_predictions_are_project_errors(tmp_path):
    from featherface_deploy.errors import EvaluationError, FeatherFaceError

    rng = np.random.default_rng(9)
    make_synthetic(rng, tmp_path / "wider")
    gt = load_ground_truth(tmp_path / "wider")
    with pytest.raises(EvaluationError, match="shape") as caught:
        evaluate({gt.images[0]: np.zeros((3, 4))}, gt)
    assert isinstance(caught.value, FeatherFaceError)
    with pytest.raises(EvaluationError, match="invalid event or image name"):
        write_predictions({("..", "x"): np.zeros((0, 5))}, tmp_path / "sub")
    with pytest.raises(EvaluationError, match="NaN"):
        write_predictions({("e", "x"): np.array([[0, 0, 5, np.inf, 0.5]])}, tmp_path / "sub")
    assert not (tmp_path / "sub").exists()
