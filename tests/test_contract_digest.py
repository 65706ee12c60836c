"""The contract's digest and the one rule for embedded copy and sidecar (issue 24, class 4)."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from featherface_deploy.cli.main import cli
from featherface_deploy.contract import DecodeContract, sidecar_path, signed
from featherface_deploy.detector import FaceDetector
from featherface_deploy.errors import ContractError

DOCUMENT = json.loads(DecodeContract("featherface-tiny", input_size=(64, 64), size_divisor=32).to_json())
# Edits that keep the contract well-formed (so only the digest can catch them), each a real change.
EDITS = {
    ("priors", "steps"): [32, 16, 8],
    ("priors", "min_sizes"): [[256, 512], [64, 128], [16, 32]],
    ("priors", "variance"): [0.2, 0.1],
    ("mean_bgr",): [123.0, 117.0, 104.0],
    ("conf_is_probability",): False,
    ("input_layout",): "NHWC",
    ("a_field_added_later",): {"nms": True},
}


def _edited(path: tuple, value) -> dict:
    document = json.loads(json.dumps(DOCUMENT))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return document


@settings(max_examples=60, deadline=None)
@given(path=st.sampled_from(sorted(EDITS)), resign=st.booleans())
def test_an_edited_contract_is_refused_unless_it_is_signed_again(path, resign):
    document = _edited(path, EDITS[path])
    if resign:  # what export does: any field, known or added later, is covered without code changes
        DecodeContract.from_json(json.dumps(signed(document)))
    else:
        with pytest.raises(ContractError, match="edited after export"):
            DecodeContract.from_json(json.dumps(document))


def test_schema_1_contracts_are_read_unprotected_and_schema_2_needs_its_digest():
    old = {key: value for key, value in DOCUMENT.items() if key != "digest"}
    assert DecodeContract.from_json(json.dumps({**old, "schema_version": 1})).model_name == "featherface-tiny"
    with pytest.raises(ContractError, match="edited after export"):
        DecodeContract.from_json(json.dumps(old))


@pytest.fixture
def model_copy(tiny_onnx, tmp_path):
    copy = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, copy)
    shutil.copy(sidecar_path(tiny_onnx), sidecar_path(copy))
    return copy


def test_an_edited_sidecar_stops_detect(model_copy):
    document = json.loads(sidecar_path(model_copy).read_text())
    document["priors"]["variance"] = [0.2, 0.1]
    sidecar_path(model_copy).write_text(json.dumps(document))
    with pytest.raises(ContractError, match="edited after export"):
        FaceDetector.load(model_copy)
    result = CliRunner().invoke(cli, ["detect", "x.jpg", "--weights", str(model_copy)])
    assert result.exit_code == 1 and "edited after export" in result.output


def test_embedded_copy_and_sidecar_are_one_truth_for_info_and_detect(model_copy):
    contract = FaceDetector.load(model_copy).runtime.contract
    sidecar_path(model_copy).write_text(contract.replace(mean_bgr=(0.0, 0.0, 0.0)).to_json())
    for arguments in (["info", str(model_copy)], ["detect", "x.jpg", "--weights", str(model_copy)]):
        result = CliRunner().invoke(cli, arguments)
        assert result.exit_code == 1 and "disagree (mean_bgr)" in result.output, result.output
    sidecar_path(model_copy).unlink()  # the file's own copy is then the contract, for both
    result = CliRunner().invoke(cli, ["info", str(model_copy)])
    assert result.exit_code == 0 and "architecture: featherface-tiny" in result.output, result.output
