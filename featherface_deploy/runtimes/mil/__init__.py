"""A numpy reference interpreter for Core ML ML Programs (checks converted ``.mlpackage`` files on Linux)."""

from featherface_deploy.runtimes.mil.interpreter import MilInterpreter, TensorSpec

__all__ = ["MilInterpreter", "TensorSpec"]
