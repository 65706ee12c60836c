"""Model code against the shared checkpoints and golden outputs."""

import numpy as np
import pytest
import torch

from featherface_deploy.errors import CheckpointError
from featherface_deploy.models import create_model, detect_architecture, list_models, load_model, read_state_dict
from featherface_deploy.models.registry import create_untrained_model
from support.seeding import generator
from conftest import shared_path

EXPECTED_PARAMS = {"featherface-v1": 489_015, "featherface-v2-ca": 493_095}
GOLDEN_INPUTS = ("astronaut_512x512", "astronaut_crop_405x491")
GOLDEN_ATOL = 1e-4


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_checkpoint_loads_strictly_and_is_detected(name):
    path = shared_path("weights", f"{name}.pth")
    loaded = load_model(path)
    assert loaded.architecture == name
    assert sum(p.numel() for p in loaded.model.parameters()) == EXPECTED_PARAMS[name]
    assert detect_architecture(read_state_dict(path)) == name


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
@pytest.mark.parametrize("tag", GOLDEN_INPUTS)
def test_golden_raw_outputs(name, tag):
    golden = np.load(shared_path("docs", "golden", f"{name}.npz"))
    model = load_model(shared_path("weights", f"{name}.pth")).model
    with torch.no_grad():
        outputs = model(torch.from_numpy(golden[f"{tag}__input"]))
    for output, role in zip(outputs, ("loc", "conf", "landmarks")):
        np.testing.assert_allclose(output.numpy(), golden[f"{tag}__{role}"], atol=GOLDEN_ATOL, rtol=0,
                                   err_msg=f"{name} {tag} {role}")


def test_output_shapes_follow_input_size():
    model = create_untrained_model("featherface-tiny", 0)
    with torch.no_grad():
        loc, conf, landmarks = model(torch.randn(2, 3, 97, 130, generator=generator(1)))
    anchors = 2 * sum(-(-97 // s) * -(-130 // s) for s in (8, 16, 32))
    assert loc.shape == (2, anchors, 4) and conf.shape == (2, anchors, 2) and landmarks.shape == (2, anchors, 10)
    np.testing.assert_allclose(conf.sum(-1).numpy(), 1.0, atol=1e-6)


@pytest.mark.parametrize("size", [(64, 64), (96, 160)])
def test_attention_pooling_is_not_frozen_to_one_size(size):
    """Pooling is a mean over explicit dims: at any input size, Coordinate Attention's transform gets the mean of
    its input over the full width (then the full height), and the model's outputs have that size's anchors."""
    model = create_untrained_model("featherface-tiny", 0)
    seen = {}
    attention = model.ca_p4
    hooks = [attention.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0])),
             attention.conv_transform.register_forward_pre_hook(
                 lambda module, args: seen.setdefault("pooled", []).append(args[0]))]
    with torch.no_grad():
        loc, _, _ = model(torch.randn(1, 3, *size, generator=generator(2)) * 50)
    for hook in hooks:
        hook.remove()
    x, (along_width, along_height) = seen["x"], seen["pooled"]
    assert x.shape[2:] == (size[0] // 16, size[1] // 16)
    torch.testing.assert_close(along_width, x.mean(dim=3, keepdim=True), rtol=0, atol=1e-6)
    torch.testing.assert_close(along_height, x.mean(dim=2, keepdim=True), rtol=0, atol=1e-6)
    assert loc.shape[1] == 2 * sum(-(-size[0] // s) * -(-size[1] // s) for s in (8, 16, 32))


def test_registry_lists_variants():
    assert {"featherface-v1", "featherface-v2-ca", "featherface-tiny"} <= set(list_models())
    with pytest.raises(CheckpointError, match="unknown architecture"):
        create_model("featherface-v9")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pth")


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(path)


def test_truncated_checkpoint_is_a_clear_error(tmp_path, v1_weights):
    path = tmp_path / "truncated.pth"
    path.write_bytes(v1_weights.read_bytes()[:100_000])
    with pytest.raises(CheckpointError):
        load_model(path)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(CheckpointError, match="is not a plain state dict: it holds a pickled") as error:
        load_model(path)
    assert "weights_only=False" not in str(error.value)


def test_wrong_architecture_names_missing_and_unexpected_keys(tmp_path):
    state = create_model("featherface-v1").state_dict()
    state.pop("ClassHead.0.conv1x1.bias")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_model(path)
    assert "ClassHead.0.conv1x1.bias" in str(error.value) and "extra.weight" in str(error.value)


def test_explicit_architecture_mismatch_is_reported(v1_weights):
    with pytest.raises(CheckpointError, match="missing keys: ca_p"):
        load_model(v1_weights, architecture="featherface-v2-ca")


def test_wrapped_and_prefixed_state_dict_loads(tmp_path):
    model = create_model("featherface-tiny")
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, path)
    assert load_model(path).architecture == "featherface-tiny"


@pytest.mark.parametrize("size", [(64, 64), (96, 160)])
def test_bifpn_stride2_resampling_is_the_same_function_on_multiples_of_32(v1_weights, size):
    """The shape-independent BiFPN form (×2 upsampling, constant pads) that Core ML flexible shapes need."""
    from featherface_deploy.models.bifpn import set_bifpn_resampling

    model = load_model(v1_weights).model
    x = torch.randn(1, 3, *size, generator=generator(3)) * 50
    with torch.no_grad():
        exact = model(x)
        set_bifpn_resampling(model, "stride2")
        stride2 = model(x)
    for a, b in zip(exact, stride2):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown BiFPN resampling"):
        set_bifpn_resampling(model, "bilinear")
