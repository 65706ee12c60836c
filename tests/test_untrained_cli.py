"""``info --architecture`` and ``export --random-init``: untrained architectures from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from featherface_deploy.cli.main import cli
from featherface_deploy.contract import DecodeContract, sidecar_path
from featherface_deploy.errors import ContractError, ExportError
from featherface_deploy.models import create_model
from featherface_deploy.models.design_claims import MODULE_CLAIMS, TOTAL
from featherface_deploy.models.registry import create_untrained_model, list_models
from featherface_deploy.pipeline import export_model


def test_info_architecture_prints_each_module_beside_the_documents_claims():
    result = CliRunner().invoke(cli, ["info", "--architecture", "featherface-v2-optimized"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    ssh = next(line for line in lines if line.lstrip().startswith("ssh1+ssh2+ssh3"))
    assert ssh.split()[1:3] == ["6,768", "12,288"] and 'SSH_Grouped : 3 modules (12,288 params, 4.8%)' in ssh
    total = next(line for line in lines if line.lstrip().startswith("total"))
    assert total.split()[1:3] == ["259,947", "256,148"] and "v2-optimized-architecture.md §" in total
    assert "parameters: 259,947" in result.output and "(B, 16800, 10)" in result.output


def test_info_architecture_works_for_every_registered_name():
    for name in list_models():
        result = CliRunner().invoke(cli, ["info", "--architecture", name, "--imgsz", "64"])
        assert result.exit_code == 0, (name, result.output)
        assert f"parameters: {sum(p.numel() for p in create_model(name).parameters()):,}" in result.output
    tiny = CliRunner().invoke(cli, ["info", "--architecture", "featherface-tiny"]).output
    assert "give no parameter counts" in tiny


def test_every_claim_names_modules_the_architecture_has():
    for name, claims in MODULE_CLAIMS.items():
        modules = {child for child, _ in create_model(name).named_children()} | {TOTAL}
        for claim in claims:
            assert set(claim.modules) <= modules, (name, claim)


def test_info_needs_exactly_one_of_model_and_architecture(v1_weights):
    assert "one of the two" in CliRunner().invoke(cli, ["info"]).output
    both = CliRunner().invoke(cli, ["info", str(v1_weights), "--architecture", "featherface-v1"])
    assert both.exit_code != 0 and "one of the two" in both.output
    unknown = CliRunner().invoke(cli, ["info", "--architecture", "featherface-v3"])
    assert unknown.exit_code == 1 and "unknown architecture 'featherface-v3'" in unknown.output


# --- export --random-init: an untrained model, flagged so in its contract and in every report -----------


def test_a_contract_written_before_the_untrained_flag_still_reads_as_trained():
    old = json.loads(DecodeContract("featherface-v1").to_json())
    del old["untrained_seed"], old["digest"]
    old["schema_version"] = 1  # a contract written before the untrained flag (and the digest) existed
    contract = DecodeContract.from_json(json.dumps(old))
    assert contract.untrained_seed is None and not contract.untrained and contract.weights_note() == ""
    flagged = DecodeContract.from_json(DecodeContract("featherface-v2-ultra", untrained_seed=7).to_json())
    assert flagged.untrained and "seed 7" in flagged.weights_note()
    for bad in (-1, "7", True, 1.5):
        with pytest.raises(ContractError, match="untrained_seed"):
            DecodeContract.from_json(json.dumps({**old, "untrained_seed": bad}))


def test_untrained_models_are_seeded_and_leave_the_global_rng_alone():
    with torch.random.fork_rng(devices=[]):  # a known global state for this test only
        torch.manual_seed(123)
        before = torch.random.get_rng_state()
        first, again = (create_untrained_model("featherface-v2-ultra", 5).state_dict() for _ in range(2))
        other = create_untrained_model("featherface-v2-ultra", 6).state_dict()
        assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["dynamic_weight_sharing.shared_weights"],
                           other["dynamic_weight_sharing.shared_weights"])
    with pytest.raises(ValueError, match="seed"):
        create_untrained_model("featherface-v2-ultra", -1)


@pytest.mark.parametrize("arguments, message", [
    (["--random-init"], "--random-init needs --architecture NAME"),
    (["CHECKPOINT", "--architecture", "featherface-v1", "--random-init"], "not both"),
    (["--architecture", "featherface-v1", "--seed", "3"], "--seed applies to --random-init only"),
    (["--architecture", "featherface-v1"], "give a CHECKPOINT (.pth), or --architecture NAME --random-init"),
    (["--architecture", "featherface-v9", "--random-init"], "unknown architecture 'featherface-v9'"),
])
def test_random_init_misuse_is_a_clear_error(arguments, message, v1_weights, tmp_path):
    arguments = [str(v1_weights) if a == "CHECKPOINT" else a for a in arguments]
    result = CliRunner().invoke(cli, ["export", *arguments, "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_the_pipeline_refuses_an_untrained_seed_for_a_checkpoint(v1_weights, tmp_path):
    with pytest.raises(ExportError, match="is a checkpoint"):
        export_model(v1_weights, tmp_path / "m.onnx", "onnx", untrained_seed=0)


@pytest.fixture(scope="module")
def untrained_onnx(tmp_path_factory):
    """``export --architecture featherface-tiny --random-init --seed 4`` (64×64 ONNX), through the CLI."""
    out = tmp_path_factory.mktemp("untrained") / "tiny.onnx"
    result = CliRunner().invoke(cli, ["export", "--architecture", "featherface-tiny", "--random-init", "--seed", "4",
                                      "--imgsz", "64", "--no-simplify", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "random weights (seed 4), UNTRAINED" in result.output and "parity onnxruntime" in result.output
    return out


def test_random_init_export_is_flagged_in_its_metadata_and_sidecar(untrained_onnx):
    from featherface_deploy.metadata.onnx import read_contract

    assert read_contract(untrained_onnx).untrained_seed == 4
    assert json.loads(sidecar_path(untrained_onnx).read_text())["untrained_seed"] == 4
    info = CliRunner().invoke(cli, ["info", str(untrained_onnx)])
    assert info.exit_code == 0 and "UNTRAINED: random weights (seed 4)" in info.output


def test_every_report_of_an_untrained_model_says_so(untrained_onnx, tmp_path):
    photo = Path(__file__).parents[1] / "featherface_deploy" / "data" / "astronaut.jpg"
    detect = CliRunner().invoke(cli, ["detect", str(photo), "--weights", str(untrained_onnx)])
    assert detect.exit_code == 0 and "UNTRAINED: random weights (seed 4)" in detect.output
    report = tmp_path / "bench.json"
    bench = CliRunner().invoke(cli, ["benchmark", str(untrained_onnx), "--iters", "2", "--warmup", "0",
                                     "--imgsz", "64", "--json", str(report)])
    assert bench.exit_code == 0, bench.output
    assert "UNTRAINED: random weights (seed 4)" in bench.output
    assert json.loads(report.read_text())["facts"]["untrained_seed"] == 4


def test_evaluate_of_an_untrained_model_says_its_ap_means_nothing(untrained_onnx, widerface_root):
    result = CliRunner().invoke(cli, ["evaluate", "--weights", str(untrained_onnx), "--widerface",
                                      str(widerface_root), "--limit", "1", "--imgsz", "64"])
    assert result.exit_code == 0, result.output
    assert "UNTRAINED: random weights (seed 4)" in result.output and "measures nothing" in result.output


def test_a_checkpoint_trained_elsewhere_is_detected_and_loaded_strictly(tmp_path):
    path = tmp_path / "trained-elsewhere.pth"
    torch.save(create_untrained_model("featherface-v2-ultra", 1).state_dict(), path)
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "architecture: featherface-v2-ultra" in result.output and "parameters: 252,761" in result.output
    assert "244,483" in result.output  # the document's total, beside the measured one


@pytest.mark.parametrize("arguments, message", [
    (["--random-init"], "--random-init needs --architecture NAME"),
    (["CHECKPOINT", "--architecture", "featherface-v1"], "--architecture is for --random-init"),
    (["--architecture", "featherface-tiny", "--random-init", "--max-ap-drop", "1"], "no AP to drop"),
])
def test_compare_random_init_misuse_is_a_clear_error(arguments, message, v1_weights, tmp_path):
    arguments = [str(v1_weights) if a == "CHECKPOINT" else a for a in arguments]
    result = CliRunner().invoke(cli, ["compare", *arguments, "--images", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # one tiny ONNX export, then a 2-round interleaved timing
def test_compare_random_init_reports_untrained_and_no_ap(tmp_path, widerface_root):
    result = CliRunner().invoke(cli, ["compare", "--architecture", "featherface-tiny", "--random-init", "--seed", "2",
                                      "--formats", "onnx", "--widerface", str(widerface_root), "--limit", "2",
                                      "--imgsz", "64", "--iters", "2", "--warmup", "0", "--parity-images", "2",
                                      "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "compare.json").read_text())
    assert report["facts"]["untrained_seed"] == 2
    assert [row["untrained_seed"] for row in report["rows"]] == [2, 2]
    assert not any("ap_easy" in row for row in report["rows"])  # random weights: no AP, and the notes say why
    assert report["notes"][0].startswith("UNTRAINED: random weights (seed 2)") and "no AP" in report["notes"][0]
    assert report["rows"][1]["parity_pass"], report["rows"][1].get("parity_failures")
    assert "UNTRAINED" in result.output


def test_untrained_parity_judges_raw_outputs_and_only_reports_detections():
    from featherface_deploy.verify.tolerances import Tolerances

    tiers = Tolerances.fp32(), Tolerances.fp32().for_untrained()
    assert [(t.conf, t.loc, t.landmarks, t.max_score_diff) for t in tiers] == [(1e-4, 1e-3, 1e-3, 1e-3)] * 2
    assert (tiers[1].min_match_rate, tiers[1].min_reference_faces) == (0.0, 0)
