"""Every runtime is safe to call from several threads (issue 24, class 5): one runtime, 8 threads, the same
results as one thread, no error. Backends whose engine cannot be shared are serialised by the runtime's lock.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import requires_backend

THREADS, CALLS = 8, 10


def _torch(tiny_checkpoint, request):
    from featherface_deploy.runtimes.torch_runtime import TorchRuntime

    return TorchRuntime(tiny_checkpoint), (64, 64)


def _ort(tiny_checkpoint, request):
    from featherface_deploy.runtimes.ort_runtime import OrtRuntime

    return OrtRuntime(request.getfixturevalue("tiny_onnx")), (64, 64)


def _tflite(tiny_checkpoint, request):
    requires_backend("tflite", "export")
    from conftest import export_row
    from featherface_deploy.exporters.torch2tflite import scratch_key
    from featherface_deploy.runtimes.tflite_runtime import TfliteRuntime
    from support.tflite_models import SIZE, tiny_model_and_fp32

    model, converted = tiny_model_and_fp32()
    path = request.getfixturevalue("tmp_path") / "tiny.tflite"
    export_row(model, path, "tflite", imgsz=SIZE, scratch={scratch_key(model, SIZE, "NHWC"): converted})
    return TfliteRuntime(path), SIZE


def _coreml_interpreter(tiny_checkpoint, request):
    from featherface_deploy.runtimes.coreml_runtime import CoremlRuntime

    return CoremlRuntime(request.getfixturevalue("tiny_coreml"), engine="interpreter"), (64, 64)


BACKENDS = {"torch": _torch, "onnxruntime": _ort, "litert": _tflite, "coreml-interpreter": _coreml_interpreter}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_one_runtime_called_from_eight_threads_gives_one_threads_results(backend, tiny_checkpoint, request):
    requires_backend({"torch": "torch", "onnxruntime": "onnx", "litert": "tflite",
                      "coreml-interpreter": "coreml"}[backend])
    runtime, (height, width) = BACKENDS[backend](tiny_checkpoint, request)
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(-120, 130, (1, 3, height, width)).astype(np.float32) for _ in range(4)]
    expected = [runtime.infer(batch) for batch in inputs]

    def call(index: int):
        which = index % len(inputs)
        return which, runtime.infer(inputs[which])

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(call, range(THREADS * CALLS)))
    assert len(results) == THREADS * CALLS
    for which, outputs in results:
        for role, value in expected[which].items():
            np.testing.assert_allclose(outputs[role], value, rtol=0, atol=1e-5, err_msg=f"{backend} {role}")
