"""TensorRT knowledge that needs no TensorRT: version rules, the ONNX parser check, the calibration cache.

Nothing here imports ``tensorrt``; :mod:`~featherface_deploy.trt.graph_check`
imports ``onnx`` and is loaded only when used.
"""
