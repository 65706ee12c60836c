"""FeatherFace V2-Optimized and V2-Ultra (the design documents' untrained variants).

Parameter counts are pinned per top-level module to the readings written in
``featherface_deploy/models/featherface_v2_light.py``; the export test runs
every block these models add to V1 through ONNX Runtime and LiteRT on real
photos (one conversion each, session fixtures).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import requires_backend

from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import CheckpointError
from featherface_deploy.models import detect_architecture, load_model, read_state_dict
from featherface_deploy.models.registry import create_untrained_model
from featherface_deploy.models.featherface_v2_light import V2OptimizedConfig, V2UltraConfig
from featherface_deploy.models.light_heads import ChannelShuffleLight
from featherface_deploy.models.ultra_ops import multiscale_intelligence, progressive_enhancement, scaled_size
from featherface_deploy.postprocess import load_image, preprocess
from support.seeding import generator

PARAMS = {
    "featherface-v2-optimized": {
        "body": 213_072, "backbone_cbam_manager": 5_938, "bifpn": 18_420, "bifpn_cbam_manager": 197,
        "ssh1": 2_256, "ssh2": 2_256, "ssh3": 2_256, "shared_heads": 15_552, "total": 259_947,
    },
    "featherface-v2-ultra": {
        "body": 213_072, "backbone_cbam_manager": 1_960, "bifpn": 18_420, "bifpn_cbam_manager": 197,
        "ssh1": 1_176, "ssh2": 1_176, "ssh3": 1_176, "shared_heads": 15_552, "dynamic_weight_sharing": 32,
        "total": 252_761,
    },
}
PROBE_SIZE = (96, 128)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module", params=sorted(PARAMS))
def seeded(request):
    return request.param, create_untrained_model(request.param, 0)


def test_parameter_counts_per_module(seeded):
    name, model = seeded
    counts = {child: _count(module) for child, module in model.named_children() if _count(module)}
    assert counts == {k: v for k, v in PARAMS[name].items() if k != "total"}
    assert _count(model) == PARAMS[name]["total"]
    assert [n for n, m in model.named_children() if not _count(m)] == ["ssh1_cs", "ssh2_cs", "ssh3_cs"]


def test_configs_are_frozen_and_distinct():
    assert V2OptimizedConfig().name == "featherface-v2-optimized" and V2UltraConfig().name == "featherface-v2-ultra"
    assert (V2OptimizedConfig().cbam_reduction, V2UltraConfig().cbam_reduction) == (32, 128)
    with pytest.raises(AttributeError):
        V2UltraConfig().ssh_groups = 4


def test_checkpoint_trained_elsewhere_loads_strictly(seeded, tmp_path):
    name, model = seeded
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    assert detect_architecture(read_state_dict(path)) == name
    loaded = load_model(path)
    assert loaded.architecture == name
    x = torch.randn(1, 3, 64, 96, generator=generator(1))
    with torch.no_grad():
        for expected, found in zip(model(x), loaded.model(x)):
            torch.testing.assert_close(found, expected, rtol=0, atol=0)
    other = next(n for n in PARAMS if n != name)
    with pytest.raises(CheckpointError, match=f"does not match architecture '{other}'"):
        load_model(path, other)


@pytest.mark.parametrize("size", [(97, 130), (64, 64)])
def test_any_input_size_gives_v1_shaped_outputs(seeded, size):
    # Odd sizes: the nearest resizes, the rescales (floor, at least 1) and the max-pool padding all follow H×W.
    _, model = seeded
    with torch.no_grad():
        loc, conf, landmarks = model(torch.randn(2, 3, *size, generator=generator(2)))
    anchors = 2 * sum(-(-size[0] // s) * -(-size[1] // s) for s in (8, 16, 32))
    assert loc.shape == (2, anchors, 4) and conf.shape == (2, anchors, 2) and landmarks.shape == (2, anchors, 10)
    np.testing.assert_allclose(conf.sum(-1).numpy(), 1.0, atol=1e-6)
    assert torch.isfinite(loc).all() and torch.isfinite(landmarks).all()


def test_channel_shuffle_is_the_documents_code():
    x = torch.randn(2, 32, 3, 5, generator=generator(3))
    b, c, h, w = x.shape
    documented = x.view(b, 4, c // 4, h, w).transpose(1, 2).contiguous().view(b, c, h, w)
    torch.testing.assert_close(ChannelShuffleLight(4)(x), documented, rtol=0, atol=0)


def test_innovations_follow_the_documents_formulas():
    x = torch.randn(1, 4, 20, 13, generator=generator(4))
    assert scaled_size(x, 0.75) == (15, 9) and scaled_size(torch.zeros(1, 1, 2, 1), 0.4) == (1, 1)
    enhanced = x
    for scale in (0.5, 0.75):
        small = torch.nn.functional.interpolate(enhanced, size=scaled_size(enhanced, scale), mode="bilinear")
        enhanced = enhanced + torch.nn.functional.interpolate(small, size=x.shape[-2:])  # nearest, floor rule
    torch.testing.assert_close(progressive_enhancement(x), 2 * enhanced / 3)
    constant = torch.full((1, 2, 8, 8), 3.0)  # every rescale of a constant map is the map itself
    expected = 3.0 * sum(s ** 0.5 for s in (1.0, 0.8, 0.6, 0.4)) / 4
    torch.testing.assert_close(multiscale_intelligence(constant), torch.full_like(constant, expected))


@pytest.fixture(scope="session")
def probe_inputs():
    from conftest import shared_path

    photos = sorted(shared_path("data", "calibration").iterdir())[:2]
    contract = DecodeContract(model_name="v2-light-probe", input_size=PROBE_SIZE)
    return np.stack([preprocess(load_image(p), contract)[0] for p in photos]).astype(np.float32)


@pytest.fixture(scope="session")
def probe():
    from support.seeding import seeded
    from support.v2_light_probe import V2LightProbe

    return seeded(V2LightProbe, 0).eval()


def _reference(probe, inputs):
    with torch.no_grad():
        return [[t.numpy() for t in probe(torch.from_numpy(x[None]))] for x in inputs]


@pytest.mark.slow
def test_new_blocks_export_to_onnx_with_parity_on_photos(probe, probe_inputs):
    requires_backend("onnx", "export")
    import onnxruntime as ort
    from featherface_deploy.export_options import OnnxOptions
    from featherface_deploy.exporters.torch2onnx import build_onnx, simplify_onnx

    proto = simplify_onnx(build_onnx(probe, OnnxOptions(imgsz=PROBE_SIZE)))
    ops = {node.op_type for node in proto.graph.node}
    assert {"ReduceMax", "ReduceMean", "Resize", "Gather", "Conv", "Transpose"} <= ops
    assert not ops & {"GlobalAveragePool", "GlobalMaxPool", "AveragePool", "TopK"}  # pooling = explicit reductions
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for x, expected in zip(probe_inputs, _reference(probe, probe_inputs)):
        for found, want in zip(session.run(None, {"input": x[None]}), expected):
            np.testing.assert_allclose(found, want, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_new_blocks_convert_to_tflite_with_parity_on_photos(probe, probe_inputs):
    requires_backend("tflite", "export")
    from ai_edge_litert.interpreter import Interpreter

    from featherface_deploy.exporters.torch2tflite import convert_fp32

    converted = convert_fp32(probe, PROBE_SIZE, "NCHW", "v2-light-probe")
    runner = Interpreter(model_content=converted.data, num_threads=2).get_signature_runner()
    for x, expected in zip(probe_inputs, _reference(probe, probe_inputs)):
        found = runner(input=x[None])
        for role, want in zip(("loc", "conf", "landmarks"), expected):
            np.testing.assert_allclose(found[role], want, atol=1e-4, rtol=0, err_msg=role)
