"""The export pipeline: one orchestrator for every row of :data:`featherface_deploy.formats.FORMATS`.

- :mod:`.options`: which options a row (and the rows it is built from) accepts; suffix checks.
- :mod:`.builder`: :func:`export_model`: build the chain (``engine`` ← ``onnx`` ← checkpoint),
  open each artifact with its runtime, check parity against PyTorch on real photos, and
  only then move it into place.
"""

from featherface_deploy.pipeline.builder import ExportOutcome, export_model

__all__ = ["ExportOutcome", "export_model"]
