"""One litert-torch conversion of the tiny model per test session, shared by the TFLite test files.

A conversion costs about a minute whatever the model's width (it scales with
the number of graph ops), so both ``test_tflite_*`` files reuse this one.
"""

from __future__ import annotations

import functools

SIZE = (96, 128)  # not square: catches height/width mix-ups


@functools.cache
def tiny_model_and_fp32():
    """Returns (the seeded tiny model, its NHWC FP32 ``ConvertedModel`` at :data:`SIZE`)."""
    import torch

    from featherface_deploy.exporters.torch2tflite import convert_fp32
    from featherface_deploy.models.registry import create_untrained_model

    model = create_untrained_model("featherface-tiny", 0)
    return model, convert_fp32(model, SIZE, "NHWC", "featherface-tiny")
