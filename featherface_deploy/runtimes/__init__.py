"""Runtimes: one class per backend behind the shared :class:`Runtime` interface.

Backends are imported lazily (``featherface_deploy.formats`` names them), so
importing this package does not import torch or any backend.
"""

from featherface_deploy.runtimes.base import RawOutputs, Runtime

__all__ = ["RawOutputs", "Runtime"]
