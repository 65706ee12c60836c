"""V2-Optimized and V2-Ultra, whole models with random weights (seed 0), through every format with parity.

Each test exports one model to one FP32 row through the gated pipeline
(``export_model`` with ``untrained_seed``: parity against PyTorch on two real
photos, raw outputs judged at the FP32 limits, the detections ≥ 0.5 that random
weights give reported but not judged, and the contract read back), at 160×160 to stay small. Core ML is checked with the
numpy reference interpreter off macOS (V2-Ultra's package includes ``upsample_bilinear``). One conversion per test,
so all are slow.
"""

from __future__ import annotations

import pytest
from conftest import requires_backend, shared_path

from featherface_deploy.models.registry import create_untrained_model
from featherface_deploy.pipeline import export_model

SIZE = (160, 160)
SEED = 0
ROWS = {"onnx": ".onnx", "tflite": ".tflite", "coreml": ".mlpackage"}
CASES = [(architecture, row) for architecture in ("featherface-v2-optimized", "featherface-v2-ultra")
         for row in sorted(ROWS)]


@pytest.fixture(scope="module")
def photos():
    return sorted(shared_path("data", "calibration").glob("*.jpg"))[:2]


@pytest.mark.slow
@pytest.mark.parametrize("architecture, row", CASES)
def test_untrained_v2_light_exports_with_parity(architecture, row, photos, tmp_path):
    requires_backend(row, "export")
    requires_backend(row, "run")
    out = tmp_path / f"{architecture}{ROWS[row]}"
    outcome = export_model(create_untrained_model(architecture, SEED), out, row, {"imgsz": SIZE},
                           parity_images=photos, untrained_seed=SEED)
    report = outcome.parity
    assert report.passed, report.format()
    assert report.images == len(photos) == 2
    assert max(report.max_abs.values()) < 1e-3  # FP32 raw outputs, every role
    # random weights: the detections ≥ 0.5 are compared and reported, not judged (Tolerances.for_untrained)
    assert report.tolerances.min_match_rate == 0.0 and report.max_score_diff <= 1e-3
    contract = outcome.contract
    assert (contract.model_name, contract.untrained_seed, contract.precision) == (architecture, SEED, "fp32")
    assert contract.input_size == SIZE and "UNTRAINED" in contract.weights_note()
    if row == "onnx":
        import onnx

        ops = {node.op_type for node in onnx.load(str(out)).graph.node}
        assert not ops & {"GlobalAveragePool", "GlobalMaxPool", "TopK", "DeformConv"}  # explicit reductions only
