"""INT8 ONNX export: QDQ forms (ONNX Runtime's fused, TensorRT's symmetric), keep-float, contract, sensitivity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import requires_backend  # noqa: E402

requires_backend("onnx-int8", "export")
import onnx  # noqa: E402
import torch  # noqa: E402

from PIL import Image  # noqa: E402

from featherface_deploy.calibration import CalibrationConfig, build_calibration_set  # noqa: E402
from featherface_deploy.contract import METADATA_KEY, read_sidecar  # noqa: E402
from featherface_deploy.errors import ExportError  # noqa: E402

pytestmark = pytest.mark.slow
SIZE = (64, 64)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import export_row
    from featherface_deploy.models.registry import create_untrained_model

    root = tmp_path_factory.mktemp("int8")
    # The tests below lean on this random model's INT8 agreement (between 0.5 and 1): fix its weights, whatever
    # ran before in the session (torch's own default seed, with which these tests were written).
    export_row(create_untrained_model("featherface-tiny", 67280421310721), root / "tiny.onnx", "onnx", imgsz=SIZE,
               simplify=False, dcn="gather")  # the DCN sampling arithmetic of the plain-op graph must stay float (tested below)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (60 + i, 70, 3), dtype=np.uint8)).save(images / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def calib_set(workdir: Path):
    from featherface_deploy.metadata.onnx import read_contract

    contract = read_contract(workdir / "tiny.onnx")
    return build_calibration_set(workdir / "images", contract, CalibrationConfig(4, 0, SIZE), use_cache=False)


@pytest.fixture(scope="module")
def int8(workdir: Path, calib_set):
    from featherface_deploy.exporters.onnx_quantize import quantize_onnx

    return quantize_onnx(workdir / "tiny.onnx", workdir / "tiny-int8.onnx", calib_set)


def _producers(model):
    return {out: node for node in model.graph.node for out in node.output}


def _initializers(model):
    return {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}


def test_fused_placement_runs_integer_convolutions(workdir: Path, calib_set, tmp_path) -> None:
    import onnxruntime

    from featherface_deploy.exporters.onnx_quantize import Int8Options, quantize_onnx
    from featherface_deploy.harness.int8_kernels import integer_mac_share

    fused = quantize_onnx(workdir / "tiny.onnx", workdir / "tiny-fused.onnx", calib_set, Int8Options(placement="fused"))
    model = onnx.load(str(fused.path))
    zero_points = [_initializers(model)[node.input[2]] for node in model.graph.node
                   if node.op_type == "QuantizeLinear" and len(node.input) > 2]
    assert zero_points and all(zero_point.dtype == np.uint8 for zero_point in zero_points)
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxruntime.InferenceSession(str(fused.path), options, providers=["CPUExecutionProvider"])
    share = integer_mac_share(model, onnx.load(str(tmp_path / "optimized.onnx")), (1, 3, *SIZE))
    assert share.kernels.get("QLinearConv", 0) > 0 and 0.5 < share.fraction < 1.0  # depthwise convs stay float
    assert fused.facts["placement"] == "fused" and fused.facts["activations"] == "uint8 asymmetric"


def test_qdq_symmetric_int8_on_layer_inputs(int8) -> None:
    model = onnx.load(str(int8.path))
    quant = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert any(n.op_type == "QuantizeLinear" for n in quant)
    inits = _initializers(model)
    for node in quant:
        if len(node.input) > 2 and node.input[2] in inits:
            zero_point = inits[node.input[2]]
            if zero_point.dtype != np.int32:  # int32 = bias
                assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
    producers = _producers(model)
    for output in model.graph.output:
        assert producers[output.name].op_type != "DequantizeLinear", f"{output.name} is quantized"
    for node in model.graph.node:
        if node.op_type == "Softmax":
            assert producers[node.input[0]].op_type != "DequantizeLinear"


def test_runs_and_outputs_float(int8, calib_set) -> None:
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime

    runtime = OrtRuntime(int8.path)
    out = runtime.infer(calib_set.inputs[:1])
    assert out["conf"].dtype == np.float32 and np.isfinite(out["loc"]).all()


def test_contract_says_int8(workdir: Path, int8, calib_set) -> None:
    from featherface_deploy.exporters.onnx_quantize import layer_macs, prepare_for_quantization

    model = onnx.load(str(int8.path))
    embedded = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert embedded["precision"] == "int8"
    facts = embedded["extra"]["int8"]
    assert facts["calibration"]["digest"] == calib_set.digest and facts["method"] == "minmax"
    # The recorded share of float MACs is what the file holds: the MAC layers whose weights are not dequantized.
    prepared = prepare_for_quantization(workdir / "tiny.onnx", workdir / "prepared-macs.onnx")
    macs = layer_macs(onnx.load(str(prepared)), calib_set.inputs[:1].shape)
    producers, nodes = _producers(model), {node.name: node for node in model.graph.node}
    float_macs = sum(count for name, count in macs.items()
                     if getattr(producers.get(nodes[name].input[1]), "op_type", None) != "DequantizeLinear")
    assert 0 < float_macs < sum(macs.values())
    assert facts["float_mac_fraction"] == pytest.approx(float_macs / sum(macs.values()), abs=1e-4)
    assert read_sidecar(int8.path).precision == "int8"


def test_keep_float_honoured(workdir: Path, calib_set) -> None:
    from featherface_deploy.exporters.onnx_quantize import Int8Options, quantize_onnx

    model = onnx.load(str(workdir / "tiny.onnx"))
    first_conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    result = quantize_onnx(workdir / "tiny.onnx", workdir / "keep.onnx", calib_set, Int8Options(keep_float_nodes=(first_conv,)))
    assert first_conv in result.kept_float and result.float_fraction > 0
    quantized = onnx.load(str(result.path))
    producers = _producers(quantized)
    node = next(n for n in quantized.graph.node if n.name == first_conv)
    assert producers.get(node.input[0]) is None or producers[node.input[0]].op_type != "DequantizeLinear"
    assert first_conv in result.facts["keep_float_nodes"]
    with pytest.raises(ExportError, match="neither a node name"):
        quantize_onnx(workdir / "tiny.onnx", workdir / "bad.onnx", calib_set, Int8Options(keep_float_nodes=("no_such_node",)))


def test_dcn_sampling_never_quantized(workdir: Path, calib_set) -> None:
    from featherface_deploy.exporters.onnx_quantize import Int8Options, dcn_sampling_nodes, quantize_onnx

    result = quantize_onnx(workdir / "tiny.onnx", workdir / "wide.onnx", calib_set,
                           Int8Options(op_types=("Conv", "Add", "Mul", "Gather", "GatherND", "Sigmoid", "Concat")))
    model = onnx.load(str(result.path))
    protected = dcn_sampling_nodes(model)
    assert any(n.op_type == "Floor" for n in model.graph.node if n.name in protected)
    producers = _producers(model)
    for node in model.graph.node:
        if node.name in protected:
            for name in node.input:
                assert name not in producers or producers[name].op_type != "DequantizeLinear", node.name


def test_sensitivity_report_ranks_layers(workdir: Path, int8, calib_set) -> None:
    from featherface_deploy.exporters.int8_sensitivity import sensitivity_report
    from featherface_deploy.exporters.onnx_quantize import prepare_for_quantization
    from featherface_deploy.pipeline.builder import onnx_activations

    prepared = prepare_for_quantization(workdir / "tiny.onnx", workdir / "prepared.onnx")
    report = sensitivity_report(prepared, int8.path, calib_set, onnx_activations, images=2)
    assert report and all(row.op_type in ("Conv", "MatMul", "Gemm") for row in report)
    losses = [row.loss_db for row in report]
    assert losses == sorted(losses, reverse=True)


def test_bad_method(workdir: Path, calib_set) -> None:
    from featherface_deploy.exporters.onnx_quantize import Int8Options, quantize_onnx

    with pytest.raises(ExportError, match="unknown calibration method"):
        quantize_onnx(workdir / "tiny.onnx", workdir / "x.onnx", calib_set, Int8Options(method="kl"))


def test_detection_agreement_is_one_against_itself_and_at_most_one_for_int8(workdir: Path, int8, calib_set) -> None:
    from featherface_deploy.exporters.int8_sensitivity import onnx_file_agreement
    from featherface_deploy.exporters.onnx_quantize import prepare_for_quantization
    from featherface_deploy.metadata.onnx import read_contract
    from featherface_deploy.pipeline.builder import open_onnx

    contract = read_contract(workdir / "tiny.onnx")
    prepared = prepare_for_quantization(workdir / "tiny.onnx", workdir / "prepared-agreement.onnx")
    assert onnx_file_agreement(prepared, prepared, calib_set, contract, open_onnx) == pytest.approx(1.0, abs=1e-12)
    # The same measure through the runtimes on every calibration input; INT8 changes some detections.
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime
    from featherface_deploy.verify.agreement import detection_agreement

    expected = detection_agreement(OrtRuntime(prepared, contract=contract).infer, OrtRuntime(int8.path).infer,
                                   calib_set.batches(1), contract)
    measured = onnx_file_agreement(prepared, int8.path, calib_set, contract, open_onnx)
    assert measured == pytest.approx(expected, abs=1e-12)
    assert 0.5 <= expected < 1.0


def test_keep_float_search_runs_only_when_agreement_falls_short(workdir: Path, calib_set) -> None:
    """The tiny model's INT8 agreement is below 1.0 and above 0.5: threshold 0.5 keeps the plain file, 1.0 searches."""
    from featherface_deploy.exporters.int8_sensitivity import search_keep_float
    from featherface_deploy.pipeline.builder import onnx_activations, open_onnx

    kept, history, report = search_keep_float(workdir / "tiny.onnx", workdir / "auto-kept.onnx", calib_set, open_onnx,
                                              onnx_activations, budget=1.0, threshold=0.5, max_rounds=1, forced=False)
    default_agreement = history[0].agreement
    assert 0.5 <= default_agreement < 1.0 and len(history) == 1 and not report
    facts = read_sidecar(kept.path).extra["int8"]
    assert facts["search"]["mode"] == "auto" and facts["search"]["ran"] is False
    assert facts["agreement"] == {"threshold": 0.5, "budget": 1.0, "default": default_agreement,
                                  "final": default_agreement, "met": True, "images": len(calib_set),
                                  "measured_on": "calibration"}
    searched, history, report = search_keep_float(workdir / "tiny.onnx", workdir / "auto-searched.onnx", calib_set,
                                                  open_onnx, onnx_activations,
                                                  budget=1.0, threshold=1.0, per_round=2, max_rounds=1, forced=False)
    assert len(history) == 2 and len(history[1].kept_float) == 2 and report
    embedded = json.loads({p.key: p.value for p in onnx.load(str(searched.path)).metadata_props}[METADATA_KEY])
    facts = embedded["extra"]["int8"]
    assert facts["search"]["ran"] is True and facts["agreement"]["default"] == default_agreement
    met = history[-1].agreement >= 1.0
    assert facts["agreement"]["met"] is met
    chosen = facts["search"]["chosen_round"]
    assert chosen == (1 if met else max((0, 1), key=lambda i: (history[i].agreement, -history[i].float_fraction)))
    assert facts["agreement"]["final"] == history[chosen].agreement
    assert set(history[chosen].kept_float) <= set(facts["keep_float_nodes"])
    assert facts["float_mac_fraction"] == pytest.approx(history[chosen].float_fraction, abs=1e-4)


def test_a_search_that_misses_its_budget_keeps_its_best_round_not_its_last() -> None:
    from featherface_deploy.exporters.keep_float_search import SearchStep, best_round

    history = [SearchStep((), 0.9718, 0.045), SearchStep(("a",), 0.9893, 0.219), SearchStep(("a", "b"), 0.9851, 0.388),
               SearchStep(("a", "b", "c"), 0.9893, 0.30)]
    assert best_round(history) == 1


def test_forced_search_ranks_layers_even_when_the_default_meets_the_budget(workdir: Path, calib_set) -> None:
    from featherface_deploy.exporters.int8_sensitivity import search_keep_float
    from featherface_deploy.pipeline.builder import onnx_activations, open_onnx

    result, history, report = search_keep_float(workdir / "tiny.onnx", workdir / "forced.onnx", calib_set, open_onnx,
                                                onnx_activations, budget=0.5, max_rounds=1, forced=True)
    assert len(history) == 1 and report
    search = result.facts["search"]
    assert search["mode"] == "forced" and search["ran"] is True and search["report_top"]


def test_no_search_export_skips_the_agreement_check(workdir: Path) -> None:
    from featherface_deploy.exporters.common import ExportContext
    from featherface_deploy.export_options import OnnxInt8Options
    from featherface_deploy.exporters.onnx2int8 import export
    from featherface_deploy.harness.int8_kernels import ort_integer_share

    options = OnnxInt8Options(calib_dir=workdir / "images", calib_images=4, search=False)
    context = ExportContext("featherface-tiny", onnx_integer_share=ort_integer_share)
    result = export(workdir / "tiny.onnx", workdir / "plain.onnx", None, options, context)
    facts = result.contract.extra["int8"]
    assert facts["search"] == {"mode": "off", "ran": False} and "agreement" not in facts
    assert result.facts["search_ran"] is False and result.facts["agreement"] is None


def test_a_search_keeps_the_cheapest_round_that_meets_its_budget() -> None:
    from featherface_deploy.exporters.keep_float_search import SearchStep, choose_round

    history = [SearchStep((), 0.97, 0.045), SearchStep(("ssh",), 0.991, 0.60), SearchStep(("stage2",), 0.990, 0.12),
               SearchStep(("stage2", "bifpn"), 0.995, 0.30)]
    assert choose_round(history, 0.99, ran=True) == 2
    assert choose_round(history, 0.999, ran=True) == 3  # none meets it: the best round
    assert choose_round(history, 0.99, ran=False) == 0
