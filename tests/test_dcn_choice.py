"""The DCN lowering of each export: the measured fastest by default, ``--dcn`` forcing one, the contract and ``info``."""

import pytest
from click.testing import CliRunner

from conftest import export_row, requires_backend
from featherface_deploy.cli.main import cli
from featherface_deploy.errors import ExportError
from featherface_deploy.exporters.dcn_choice import FASTEST, choose_lowering, int8_source_lowering


@pytest.mark.parametrize("backend", sorted(FASTEST))
def test_auto_takes_the_fastest_measured_and_a_forced_one_is_kept(backend):
    assert choose_lowering(backend) == (FASTEST[backend], f"auto: fastest measured for {backend}")
    assert choose_lowering(backend, "gather") == ("gather", "forced")
    assert choose_lowering(backend, "portable") == ("gather", "forced")
    with pytest.raises(ExportError, match="unknown DCN lowering 'grid_sample'"):
        choose_lowering(backend, "grid_sample")  # GridSample: slow in ONNX Runtime, absent from TFLite


def test_native_is_onnx_only_and_gather_float_needs_a_fixed_size():
    with pytest.raises(ExportError, match="for tflite"):
        choose_lowering("tflite", "native")
    with pytest.raises(ExportError, match="fixed input size"):
        choose_lowering("onnx", "gather_float", dynamic=True)
    assert choose_lowering("onnx", dynamic=True)[0] in ("gather", "native")


def test_onnx_auto_respects_an_opset_without_deformconv_and_int8_never_gets_native():
    from featherface_deploy.export_options import OnnxOptions

    assert OnnxOptions(opset=18).dcn_choice()[0] != "native"
    assert OnnxOptions(dcn="native").resolved_opset == 19
    assert int8_source_lowering("auto") == "gather" and int8_source_lowering("gather_float") == "gather_float"
    assert int8_source_lowering("auto", "fused") == "native" and int8_source_lowering("native", "fused") == "native"
    with pytest.raises(ExportError, match="TensorRT has no DeformConv"):
        int8_source_lowering("native")


def test_forced_lowering_is_exported_recorded_and_shown_by_info(tmp_path):
    requires_backend("onnx", "export")
    import torch

    from featherface_deploy.models.registry import create_untrained_model

    result = export_row(create_untrained_model("featherface-tiny", 0), tmp_path / "tiny.onnx", "onnx", imgsz=(64, 64),
                        dcn="gather_float")
    assert result.parity.passed
    assert (result.contract.extra["dcn"], result.contract.extra["dcn_selected"]) == ("gather_float", "forced")
    shown = CliRunner().invoke(cli, ["info", str(result.path)])
    assert shown.exit_code == 0 and "dcn: gather_float (forced)" in shown.output
