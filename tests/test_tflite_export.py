"""PyTorch → TFLite: FP32 exactness, FP16/INT8 derivation, contract embedding, the zero-pad max-pool.

One litert-torch conversion of the tiny model (module fixture) serves every
precision; FP16 and INT8 are derived from it in seconds. Trained-weight checks
skip when the shared checkpoints are absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import requires_backend  # noqa: E402

requires_backend("tflite-int8", "export")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from featherface_deploy.contract import METADATA_KEY, read_sidecar  # noqa: E402
from featherface_deploy.errors import ContractError, ExportError  # noqa: E402
from featherface_deploy.exporters import tflite_quantize  # noqa: E402
from featherface_deploy.exporters.tflite_graph import op_census, rewrite_leaky_relu  # noqa: E402
from featherface_deploy.harness.profile_litert import delegation  # noqa: E402
from featherface_deploy.metadata.tflite import add_metadata, read_metadata  # noqa: E402
from featherface_deploy.exporters.torch2tflite import convert_fp32, scratch_key  # noqa: E402
from featherface_deploy.runtimes.tflite_runtime import TfliteRuntime  # noqa: E402
from featherface_deploy.verify.tolerances import Tolerances  # noqa: E402

from conftest import export_row  # noqa: E402
from support.tflite_models import SIZE, tiny_model_and_fp32  # noqa: E402

ROLES = ("loc", "conf", "landmarks")


@pytest.fixture(scope="module")
def tiny():
    return tiny_model_and_fp32()[0]


@pytest.fixture(scope="module")
def converted():
    return tiny_model_and_fp32()[1]


@pytest.fixture(scope="module")
def scratch(tiny, converted):
    """The pipeline's scratch holding the module's one conversion, so every precision reuses it."""
    return {scratch_key(tiny, SIZE, "NHWC"): converted}


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    """Six synthetic photos (smooth colour fields with blobs) in a folder, for the shared calibration package."""
    folder = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:160]
    for i in range(6):
        image = np.zeros((120, 160, 3))
        for channel in range(3):
            image[..., channel] = 128 + 60 * np.sin(xx / (10 + 5 * i) + channel) * np.cos(yy / (13 + 3 * channel))
        image += rng.normal(0, 8, image.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def _inputs(n=2, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-120, 130, (1, 3, *SIZE)).astype(np.float32) for _ in range(n)]


def _torch(model, batch):
    with torch.no_grad():
        return dict(zip(ROLES, (t.numpy() for t in model(torch.from_numpy(batch)))))


@pytest.mark.slow
def test_fp32_export_is_exact_and_carries_its_contract(tiny, converted, scratch, tmp_path):
    result = export_row(tiny, tmp_path / "tiny.tflite", "tflite", imgsz=SIZE, scratch=scratch)
    assert result.parity.passed and result.contract.input_layout == "NHWC"
    runtime = TfliteRuntime(result.path, threads=1)
    assert runtime.contract == result.contract == read_sidecar(result.path)
    assert runtime.input_details["shape"].tolist() == [1, *SIZE, 3]  # NHWC in the file
    for batch in _inputs():
        got, want = runtime.infer(batch), _torch(tiny, batch)
        for role in ROLES:
            assert got[role].shape == want[role].shape
            np.testing.assert_allclose(got[role], want[role], atol=2e-5, rtol=0, err_msg=role)


@pytest.mark.slow
def test_metadata_round_trip_keeps_the_converters_entries(tiny, converted, scratch, tmp_path):
    result = export_row(tiny, tmp_path / "tiny.tflite", "tflite", imgsz=SIZE, scratch=scratch)
    entries = read_metadata(result.path.read_bytes())
    assert "min_runtime_version" in entries  # written by the converter, kept
    assert json.loads(entries[METADATA_KEY])["precision"] == "fp32"
    again = add_metadata(result.path.read_bytes(), {METADATA_KEY: b"{}", "other": b"\x00\x01"})
    entries = read_metadata(again)
    assert entries[METADATA_KEY] == b"{}" and entries["other"] == b"\x00\x01" and "min_runtime_version" in entries


@pytest.mark.slow
def test_model_without_contract_is_rejected(converted, tmp_path):
    with pytest.raises(ContractError, match="no decode contract"):
        TfliteRuntime(converted.data)
    path = tmp_path / "bare.tflite"
    path.write_bytes(converted.data)
    with pytest.raises(ContractError, match="sidecar"):
        TfliteRuntime(path)


@pytest.mark.slow
def test_fp16_is_close(tiny, converted, scratch, tmp_path):
    result = export_row(tiny, tmp_path / "tiny16.tflite", "tflite-fp16", imgsz=SIZE, scratch=scratch)
    assert result.contract.precision == "fp16"
    census = op_census(result.path.read_bytes())
    assert census["DEQUANTIZE:FLOAT32"] > 0 and result.facts["size_bytes"] < len(converted.data)  # fp16 weights, fp32 math
    runtime = TfliteRuntime(result.path)
    got, want = runtime.infer(_inputs(1)[0]), _torch(tiny, _inputs(1)[0])
    assert np.abs(got["conf"] - want["conf"]).max() < 5e-3
    assert np.abs(got["loc"] - want["loc"]).max() < 5e-2


LOOSE = Tolerances(conf=None, loc=None, landmarks=None, min_match_rate=0.0, max_score_diff=1.0)  # random weights


@pytest.mark.slow
def test_full_integer_int8_quantizes_input_and_dequantizes_outputs(tiny, converted, scratch, calib_dir, tmp_path):
    result = export_row(tiny, tmp_path / "tiny8.tflite", "tflite-int8", imgsz=SIZE, calib_dir=calib_dir,
                        calib_images=6, tolerances=LOOSE, scratch=scratch)
    facts = result.contract.extra["int8"]
    assert result.contract.precision == "int8" and facts["io"] == "int8" and facts["leaky_relu_rewritten"] > 0
    assert "LEAKY_RELU" not in facts["float_ops"]
    runtime = TfliteRuntime(result.path)
    assert runtime.input_details["dtype"] == np.int8
    assert all(d["dtype"] == np.int8 for d in runtime.output_details.values())

    batch = _inputs(1)[0]
    got = runtime.infer(batch)
    # The same computation by hand: quantize with the input's own scale, dequantize each output with its own.
    interpreter, detail = runtime.interpreter, runtime.input_details
    scale, zero = detail["quantization_parameters"]["scales"][0], detail["quantization_parameters"]["zero_points"][0]
    q = np.clip(np.round(batch.transpose(0, 2, 3, 1) / scale) + zero, -128, 127).astype(np.int8)
    interpreter.set_tensor(detail["index"], q)
    interpreter.invoke()
    for role, out in runtime.output_details.items():
        s, z = out["quantization_parameters"]["scales"][0], out["quantization_parameters"]["zero_points"][0]
        np.testing.assert_allclose(got[role], (interpreter.get_tensor(out["index"]).astype(np.float32) - z) * s,
                                   rtol=1e-6, atol=1e-7)
    want = _torch(tiny, batch)
    assert np.abs(got["conf"] - want["conf"]).mean() < 0.05  # int8 but still the same function


@pytest.mark.slow
def test_int8_with_float_io(tiny, converted, scratch, calib_dir, tmp_path):
    result = export_row(tiny, tmp_path / "tiny8f.tflite", "tflite-int8", imgsz=SIZE, float_io=True, calib_dir=calib_dir,
                        calib_images=6, tolerances=LOOSE, scratch=scratch)
    runtime = TfliteRuntime(result.path)
    assert runtime.input_details["dtype"] == np.float32
    assert all(d["dtype"] == np.float32 for d in runtime.output_details.values())
    assert op_census(result.path.read_bytes())["CONV_2D:INT8"] > 0


def test_int8_needs_calibration():
    # Options are checked before the checkpoint is even opened.
    with pytest.raises(ExportError, match="calib"):
        export_row("missing.pth", "unused.tflite", "tflite-int8", imgsz=SIZE)
    with pytest.raises(ExportError, match="not used by --format tflite .it applies to: tflite-int8"):
        export_row("missing.pth", "unused.tflite", "tflite", imgsz=SIZE, float_io=True)


def test_int8_graph_rewrites_for_xnnpack(tiny, converted, scratch, calib_dir, tmp_path, monkeypatch):
    """After quantization: int8 MAXIMUM/MUL pairs become int8 LEAKY_RELU ops that XNNPACK takes, no less exact;
    the DCN row lookups read the int8 table (bit-identical outputs)."""
    from ai_edge_litert.interpreter import Interpreter

    def export(name, leaky=True, lookups=True):
        with monkeypatch.context() as patch:
            for rewrite, wanted in (("fuse_int8_leaky_relu", leaky), ("look_up_int8_rows", lookups)):
                if not wanted:
                    patch.setattr(tflite_quantize, rewrite, lambda data: (data, 0))
            return export_row(tiny, tmp_path / f"{name}.tflite", "tflite-int8", imgsz=SIZE, calib_dir=calib_dir,
                              calib_images=6, tolerances=LOOSE, scratch=scratch, search=False, float_io=True)

    neither, leaky_only, both = export("neither", False, False), export("leaky", True, False), export("both")
    census = {name: op_census(result.path.read_bytes())
              for name, result in (("neither", neither), ("leaky", leaky_only), ("both", both))}
    pairs, lookups = census["neither"]["MAXIMUM:INT8"], census["neither"]["EMBEDDING_LOOKUP:FLOAT32"]
    assert pairs > 0 and both.contract.extra["int8"]["leaky_relu_int8"] == pairs
    assert census["leaky"]["LEAKY_RELU:INT8"] == pairs and "MAXIMUM:INT8" not in census["leaky"]
    assert census["leaky"]["QUANTIZE:INT8"] < census["neither"]["QUANTIZE:INT8"]  # the requantizations of x went too
    assert lookups > 0 and both.contract.extra["int8"]["int8_row_lookups"] == lookups
    assert census["both"]["EMBEDDING_LOOKUP:INT8"] == lookups and "EMBEDDING_LOOKUP:FLOAT32" not in census["both"]

    def outside_xnnpack(path):
        """({"OP:dtype" of each op left to the built-in kernels}, XNNPACK partitions)."""
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
        ops, partitions = delegation(interpreter)
        details, dtypes = interpreter._get_ops_details(), {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
        return {f"{op['op']}:{np.dtype(dtypes[details[op['index']]['outputs'][0]]).name}"
                for op in ops if op["partition"] is None}, partitions

    (fused_outside, fused_partitions), (pairs_outside, pairs_partitions) = map(
        outside_xnnpack, (leaky_only.path, neither.path))
    assert "MAXIMUM:int8" in pairs_outside and not {"MAXIMUM:int8", "LEAKY_RELU:int8"} & fused_outside
    assert fused_partitions < pairs_partitions

    x = _inputs(1, seed=5)[0].transpose(0, 2, 3, 1)
    first = _first_op_output(leaky_only.path.read_bytes(), "LEAKY_RELU")
    tensors = {name: _run_preserving(result.path, x) for name, result in
               (("neither", neither), ("leaky", leaky_only), ("both", both))}
    # One rounding instead of two: the first fused op's int8 output is within one step of its pair's (every op
    # upstream of it is the same in both files).
    fused_values, pair_values = (tensors[name][first].astype(np.int32) for name in ("leaky", "neither"))
    assert (fused_values < 0).any() and np.abs(fused_values - pair_values).max() <= 1
    # Dequantizing after the lookup instead of before: every output bit-identical.
    outputs = Interpreter(model_path=str(both.path)).get_output_details()
    assert all(np.array_equal(tensors["both"][o["name"]], tensors["leaky"][o["name"]]) for o in outputs)


def _run_preserving(path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor of one LiteRT run of ``path`` on ``x``, by name."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    values = {}
    for detail in interpreter.get_tensor_details():
        try:
            values[detail["name"]] = interpreter.get_tensor(detail["index"]).copy()
        except ValueError:  # constants without data and scratch tensors
            continue
    return values


def _first_op_output(data: bytes, op_name: str) -> str:
    """The output tensor name of the first ``op_name`` operator of the primary subgraph."""
    from featherface_deploy.metadata.tflite import flatbuffer_schema, unpack_model

    _, schema = flatbuffer_schema()
    model = unpack_model(data)
    graph = model.subgraphs[0]
    code = getattr(schema.BuiltinOperator, op_name)
    for op in graph.operators:
        opcode = model.operatorCodes[op.opcodeIndex]
        if max(opcode.builtinCode, opcode.deprecatedBuiltinCode) == code:
            return graph.tensors[op.outputs[0]].name.decode("utf-8")
    raise AssertionError(f"no {op_name} in the model")


@pytest.mark.slow
def test_leaky_relu_rewrite_is_exact(converted):
    rewritten, count = rewrite_leaky_relu(converted.data)
    assert count == op_census(converted.data)["LEAKY_RELU:FLOAT32"] > 0
    assert "LEAKY_RELU:FLOAT32" not in op_census(rewritten)
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(3).uniform(-120, 130, (1, *SIZE, 3)).astype(np.float32)
    a, b = (Interpreter(model_content=d).get_signature_runner() for d in (converted.data, rewritten))
    ra, rb = a(input=x), b(input=x)
    assert all(np.array_equal(ra[k], rb[k]) for k in ROLES)


@pytest.mark.slow
def test_zero_padded_maxpool_is_not_folded(converted):
    """Every MAX_POOL_2D is VALID and fed by explicit zeros (PAD or CONCATENATION), never −inf padding."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(converted.data), 0)
    graph = model.subgraphs[0]
    producer = {out: op for op in graph.operators for out in op.outputs}
    code = lambda op: max(model.operatorCodes[op.opcodeIndex].builtinCode,  # noqa: E731
                          model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)
    pools = [op for op in graph.operators if code(op) == schema.BuiltinOperator.MAX_POOL_2D]
    assert len(pools) == 4  # 2 BiFPN cells × 2 bottom-up pools
    for pool in pools:
        assert pool.builtinOptions.padding == schema.Padding.VALID
        assert code(producer[pool.inputs[0]]) in (schema.BuiltinOperator.PAD, schema.BuiltinOperator.PADV2,
                                                  schema.BuiltinOperator.CONCATENATION)


@pytest.mark.slow
def test_nchw_layout_and_all_negative_pool(tmp_path):
    """An NCHW-input file and an all-negative input: the zero padding must win at the border."""
    from featherface_deploy.contract import DecodeContract, PriorConfig
    from featherface_deploy.models.bifpn import same_maxpool

    class PoolProbe(torch.nn.Module):  # detector-shaped outputs from the BiFPN pool alone
        def forward(self, x):
            pooled = same_maxpool(x)  # (1, 3, 17, 24) from 33×48: odd rows pad 1/1, even columns 0/1
            flat = pooled.permute(0, 2, 3, 1).reshape(1, -1, 1)
            return flat.expand(-1, -1, 4), flat.expand(-1, -1, 2), flat.expand(-1, -1, 10)

    probe = PoolProbe().eval()
    converted = convert_fp32(probe, (33, 48), "NCHW", "probe")
    # The probe's rows are the pooled map (17×24) × 3 channels: describe them as one stride-2 level with three
    # anchors, so the runtime's prior-count check against the file's outputs holds.
    priors = PriorConfig(min_sizes=((16, 32, 64),), steps=(2,))
    contract = DecodeContract(model_name="probe", input_size=(33, 48), input_layout="NCHW", source_format="tflite",
                              priors=priors)
    runtime = TfliteRuntime(converted.data, contract=contract)
    assert runtime.input_details["shape"].tolist() == [1, 3, 33, 48]
    x = -1.0 - np.random.default_rng(0).random((1, 3, 33, 48), dtype=np.float32)
    got = runtime.infer(x)
    want = [t.numpy() for t in probe(torch.from_numpy(x))]
    np.testing.assert_array_equal(got["loc"], want[0])
    pooled = got["loc"].reshape(17, 24, 3, 4)
    # Borders that touch the padding pool zeros (−inf padding would give the negatives); the inside stays negative.
    assert (pooled[0] == 0).all() and (pooled[-1] == 0).all() and (pooled[:, -1] == 0).all()
    assert (pooled[1:-1, :-1] < 0).all()


@pytest.mark.slow
def test_int8_measures_its_agreement_and_a_forced_search_keeps_groups_float(tiny, converted, scratch, calib_dir,
                                                                               tmp_path):
    from featherface_deploy.exporters.tflite_graph import tflite_float_mac_fraction
    from featherface_deploy.exporters.tflite_int8_search import DCN_CONVOLUTIONS, module_groups
    from featherface_deploy.export_options import TFLITE_DEFAULT_KEEP_FLOAT

    everything = [label for label, _ in module_groups(converted.data)]
    groups = module_groups(converted.data, TFLITE_DEFAULT_KEEP_FLOAT)
    assert "MobileNetV1_body/Sequential_stage2" in everything and "MobileNetV1_body/Sequential_stage1" in everything
    assert [label for label, _ in groups] == [label for label in everything if not label.endswith("_stage1")]
    assert groups[-1] == DCN_CONVOLUTIONS and len(groups) > 2
    assert all(label and pattern for label, pattern in groups)
    result = export_row(tiny, tmp_path / "searched.tflite", "tflite-int8", imgsz=SIZE, calib_dir=calib_dir,
                        calib_images=6, tolerances=LOOSE, scratch=scratch, search=True, search_budget=1.0)
    facts = read_sidecar(result.path).extra["int8"]
    search, agreement, history = facts["search"], facts["agreement"], facts["search"]["history"]
    assert search["mode"] == "forced" and search["ran"] is True
    assert [row["group"] for row in search["screen"]] == [label for label, _ in groups]
    assert agreement["default"] == history[0]["agreement"] and agreement["images"] == 6
    chosen = history[search["chosen_round"]]
    assert agreement["final"] == chosen["agreement"]
    if agreement["met"]:  # the first round that reaches the budget ends the search
        assert search["chosen_round"] == len(history) - 1 and chosen["agreement"] >= search["budget"]
    else:  # none did: the best round
        assert chosen["agreement"] == max(row["agreement"] for row in history) < search["budget"]
    assert facts["float_mac_fraction"] == pytest.approx(tflite_float_mac_fraction(result.path.read_bytes()), abs=1e-4)
    assert facts["float_mac_fraction"] == chosen["float_fraction"]
    assert len(search["groups_kept_float"]) == len(chosen["kept_float"])


@pytest.mark.slow
def test_int8_no_search_is_unchecked_and_says_so(tiny, converted, scratch, calib_dir, tmp_path):
    result = export_row(tiny, tmp_path / "plain.tflite", "tflite-int8", imgsz=SIZE, calib_dir=calib_dir,
                        calib_images=6, tolerances=LOOSE, scratch=scratch, search=False)
    facts = result.contract.extra["int8"]
    assert facts["search"] == {"mode": "off", "ran": False} and "agreement" not in facts
    assert 0.0 < facts["float_mac_fraction"] < 1.0
    with pytest.raises(ExportError, match="--no-search never"):
        export_row(tiny, tmp_path / "bad.tflite", "tflite-int8", imgsz=SIZE, calib_dir=calib_dir,
                   search=False, search_budget=0.9)
