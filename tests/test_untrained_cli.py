"""``info --architecture`` and ``export --random-init``: untrained architectures from the command line."""

from __future__ import annotations

from click.testing import CliRunner

from featherface_deploy.cli.main import cli
from featherface_deploy.models import create_model
from featherface_deploy.models.design_claims import MODULE_CLAIMS, TOTAL
from featherface_deploy.models.registry import list_models


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
