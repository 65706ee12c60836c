"""Property tests: the decode contract from random JSON, and decode + NMS on random raw outputs (NaN/Inf included).

Each property runs a bounded number of examples (about a second or two each)
so it can stay in the default test run.
"""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from featherface_deploy.contract import DecodeContract, signed
from featherface_deploy.errors import ContractError
from featherface_deploy.postprocess import PostprocessConfig, decode_image, generate_priors
from featherface_deploy.postprocess.preprocess import Transform

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = json.loads(DecodeContract(model_name="featherface-tiny", input_size=(64, 64), size_divisor=32).to_json())

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
_JSON = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                     max_leaves=8)


def _edit(document: dict, path: tuple, value) -> dict:
    """A copy of ``document`` with the entry at ``path`` set to ``value`` (``...`` removes it)."""
    edited = json.loads(json.dumps(document))
    parent = edited
    for key in path[:-1]:
        parent = parent[key]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return signed(edited)  # re-signed, so the contract's own validation is what is tested here


_PATHS = st.sampled_from([(key,) for key in VALID] + [("priors", key) for key in VALID["priors"]]
                         + [("input_size", 0), ("mean_bgr", 2), ("priors", "steps", 0), ("priors", "min_sizes", 1)])
# A valid contract with one entry replaced by random JSON or removed, or a document that is random JSON.
_DOCUMENTS = st.one_of(st.builds(_edit, st.just(VALID), _PATHS, st.one_of(_JSON, st.just(...))), _JSON)


@PROPERTY
@given(document=_DOCUMENTS)
def test_property_contract_is_parsed_or_refused_with_a_contract_error(document):
    text = json.dumps(document)  # Python's json writes NaN/Infinity, which json.loads reads back
    try:
        contract = DecodeContract.from_json(text, source="random.json")
    except ContractError as error:
        assert str(error).startswith("random.json: ") and "\n" not in str(error)
        return
    assert contract.problems() == []
    assert DecodeContract.from_json(contract.to_json()) == contract  # what is accepted survives a round trip
    priors = contract.priors
    assert all(step > 0 for step in priors.steps) and len(priors.steps) == len(priors.min_sizes)
    assert all(math.isfinite(v) and v > 0 for v in priors.variance)


@PROPERTY
@given(text=st.one_of(st.text(max_size=40), st.binary(max_size=40)))
def test_property_any_text_is_a_contract_error_or_a_contract(text):
    try:
        DecodeContract.from_json(text)
    except ContractError:
        pass


_RAW = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def _raw_outputs(draw):
    height, width = draw(st.sampled_from([(32, 32), (32, 64), (64, 32), (64, 96)]))
    contract = DecodeContract(model_name="random", conf_is_probability=draw(st.booleans()))
    rows = len(generate_priors(contract.priors, height, width))
    loc, conf, landmarks = (draw(hnp.arrays(np.float32, (rows, columns), elements=st.one_of(
        st.floats(-3, 3, width=32), _RAW))) for columns in (4, 2, 10))
    scale_x, scale_y = draw(st.floats(0.05, 4)), draw(st.floats(0.05, 4))
    original = (max(1, round(height / scale_y)), max(1, round(width / scale_x)))
    return loc, conf, landmarks, (height, width), contract, Transform(scale_x, scale_y, original)


@PROPERTY
@given(raw=_raw_outputs(), threshold=st.floats(0, 1), iou=st.floats(0.05, 1))
def test_property_decode_and_nms_never_crash_and_give_finite_well_formed_faces(raw, threshold, iou):
    loc, conf, landmarks, size, contract, transform = raw
    config = PostprocessConfig(conf_threshold=threshold, nms_iou=iou)
    with np.errstate(all="ignore"):  # the inputs are garbage on purpose; only the result matters
        faces = decode_image(loc, conf, landmarks, size, contract, transform, config)
    count = len(faces)
    assert faces.boxes.shape == (count, 4) and faces.scores.shape == (count,) and faces.landmarks.shape == (count, 5, 2)
    assert all(array.dtype == np.float32 for array in (faces.boxes, faces.scores, faces.landmarks))
    assert np.isfinite(faces.boxes).all() and np.isfinite(faces.scores).all() and np.isfinite(faces.landmarks).all()
    assert (faces.boxes[:, 2] >= faces.boxes[:, 0]).all() and (faces.boxes[:, 3] >= faces.boxes[:, 1]).all()
    assert (faces.scores >= threshold).all() and (np.diff(faces.scores) <= 0).all()  # best first
    assert count <= min(config.keep_top_k, len(loc))


@PROPERTY
@given(raw=_raw_outputs())
def test_property_faces_from_bounded_outputs_stay_near_the_image(raw):
    """With deltas a trained head can give (|·| ≤ 3) every face lies within the image plus one largest prior.

    Boxes are deliberately not clipped (as in the reference decoder, pinned by
    ``test_decode_image_maps_back_to_original_pixels``): a face cut by the
    image border keeps its full extent. This bounds how far outside they go.
    """
    loc, conf, landmarks, size, contract, transform = raw
    loc, landmarks = (np.clip(np.nan_to_num(a), -3, 3) for a in (loc, landmarks))
    with np.errstate(all="ignore"):
        faces = decode_image(loc, conf, landmarks, size, contract, transform)
    height, width = size
    largest = max(max(level) for level in contract.priors.min_sizes)
    centre_shift, size_growth = contract.priors.variance
    # In input pixels: a centre moves ≤ 3·var·prior, a half-size grows to ≤ exp(3·var)·prior / 2.
    margin = largest * (3 * centre_shift + math.exp(3 * size_growth) / 2)
    for values, side, scale in ((faces.boxes[:, [0, 2]], width, transform.scale_x),
                                (faces.boxes[:, [1, 3]], height, transform.scale_y),
                                (faces.landmarks[..., 0], width, transform.scale_x),
                                (faces.landmarks[..., 1], height, transform.scale_y)):
        assert (values >= -margin / scale - 1e-3).all() and (values <= (side + margin) / scale + 1e-3).all()
