"""Checkpoints: non-finite weights refused with the reason, FP16/BF16 cast to float32, safe-load refusals in our words."""

from __future__ import annotations

import pytest
import torch

from featherface_deploy.errors import CheckpointError
from featherface_deploy.models import load_model
from featherface_deploy.models.checkpoint import read_state_dict
from featherface_deploy.models.registry import create_untrained_model


@pytest.fixture(scope="module")
def tiny_state():
    return create_untrained_model("featherface-tiny", 0).state_dict()


def _saved(tmp_path, state, name="ck.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def _first_bn_var(state) -> str:
    return next(key for key in state if key.endswith("running_var"))


def test_nan_weights_are_refused_naming_the_tensor(tmp_path, tiny_state):
    state = {k: v.clone() for k, v in tiny_state.items()}
    key = next(k for k in state if k.endswith("weight"))
    state[key].view(-1)[0] = float("nan")
    with pytest.raises(CheckpointError, match=f"'{key}' \\(float32\\) holds 1 NaN of"):
        load_model(_saved(tmp_path, state))


def test_fp16_overflow_says_what_happened_and_how_to_fix_it(tmp_path, tiny_state):
    state = {k: v.clone() for k, v in tiny_state.items()}
    key = _first_bn_var(state)
    state[key].view(-1)[0] = 83378.0  # the V1 value that does not fit in float16
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    with pytest.raises(CheckpointError) as caught:
        load_model(_saved(tmp_path, half))
    message = str(caught.value)
    assert f"'{key}' (float16) holds 1 infinite" in message
    assert "overflowed float16" in message and "re-save the checkpoint in float32" in message


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_finite_half_state_dicts_load_as_float32(tmp_path, tiny_state, dtype):
    half = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tiny_state.items()}
    state = read_state_dict(_saved(tmp_path, half))
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
    loaded = load_model(_saved(tmp_path, half, "again.pth"))
    key = _first_bn_var(tiny_state)
    torch.testing.assert_close(loaded.model.state_dict()[key], tiny_state[key].to(dtype).float())


def test_pickled_module_is_refused_without_advice_to_turn_safety_off(tmp_path):
    path = _saved(tmp_path, {"model": torch.nn.Conv2d(1, 1, 1)})
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert "not a plain state dict" in message and "torch.nn.modules.conv.Conv2d" in message
    assert "torch.save(model.state_dict()" in message and "\n" not in message
    assert "weights_only=False" not in message and "can still be loaded" not in message


def test_garbage_is_refused_without_torchs_advice(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)
    assert "not a readable PyTorch checkpoint" in str(caught.value)
    assert "can still be loaded" not in str(caught.value) and "weights_only=False" not in str(caught.value)
