"""The runtime side must not import torch or any backend until one is used."""

import subprocess
import sys

HEAVY = ("torch", "onnxruntime", "onnx", "tensorflow", "coremltools", "tensorrt", "ai_edge_litert", "scipy")


def _imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_package_and_postprocess_import_no_backend():
    assert _imported_after("import featherface_deploy, featherface_deploy.postprocess, "
                           "featherface_deploy.runtimes, featherface_deploy.formats") == set()


def test_cli_import_does_not_import_torch():
    assert _imported_after("import featherface_deploy.cli.main") == set()
