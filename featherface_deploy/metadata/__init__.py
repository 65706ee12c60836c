"""The decode contract inside each format's own metadata slot: one module per format.

- :mod:`.onnx`: ``metadata_props`` of an ONNX model.
- :mod:`.tflite`: the flatbuffer's ``metadata`` list.
- :mod:`.coreml`: an ML Program's ``user_defined_metadata``.

TensorRT engines carry theirs in the sidecar only (:func:`featherface_deploy.contract.read_sidecar`):
nothing is prepended to the engine bytes. Readers need only the standard library,
numpy and the format's own runtime; writers are called by the exporters.
"""
