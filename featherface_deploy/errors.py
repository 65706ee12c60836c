"""The project's exception hierarchy.

Every error a user can cause (a bad checkpoint, an unreadable image, a missing
optional backend, a broken export) is one of these, with a message that says
what to do. Catch :class:`FeatherFaceError` to handle them all.
"""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class FeatherFaceError(Exception):
    """Base class of every error raised on purpose by featherface_deploy."""


class CheckpointError(FeatherFaceError):
    """A checkpoint file is unreadable or matches no known architecture."""


class ImageError(FeatherFaceError):
    """An image cannot be read or has an unsupported layout."""


class DatasetError(FeatherFaceError):
    """A dataset folder does not have the expected layout."""


class EvaluationError(FeatherFaceError, ValueError):
    """Detections handed to the evaluator are malformed (shape, NaN/inf, an unsafe image name).

    Also a ``ValueError``, which is what these checks raised before they had a project class.
    """


class OptionError(FeatherFaceError, ValueError):
    """An option or setting has a value that cannot be used (out of range, NaN); the message names it."""


class BackendNotInstalledError(FeatherFaceError):
    """An optional backend is needed but its package is not installed."""


class ContractError(FeatherFaceError):
    """A model file lacks a valid decode contract (metadata)."""


class InputError(FeatherFaceError):
    """An inference input has the wrong name, dtype or shape."""


class BackendError(FeatherFaceError):
    """A backend (ONNX Runtime, LiteRT, torch…) failed to load or run a model; its own error is chained."""


class ExportError(FeatherFaceError):
    """An export or conversion failed or was asked for something unsupported."""


class DeviceError(FeatherFaceError):
    """A step on a remote device failed (connect, copy, run, fetch); the message names the device and the step."""


class ConnectionLostError(DeviceError):
    """The connection to a remote device could not be made or dropped; later steps there would fail too."""


class OutputError(FeatherFaceError):
    """An output file cannot or must not be written (it is an input, exists, or its folder is read-only)."""


class ParityError(ExportError):
    """An exported model's outputs differ from the reference beyond tolerance."""


def missing_backend(package: str, extra: str) -> BackendNotInstalledError:
    """Builds the error for an optional backend that is not installed.

    Args:
        package: The import name that failed (e.g. ``"onnxruntime"``).
        extra: The pip extra of this project that installs it (e.g. ``"onnx"``).

    Returns:
        An error whose message names the pip command to run.
    """
    return BackendNotInstalledError(
        f"'{package}' is not installed; install it with "
        f"`pip install featherface-deploy[{extra}]` (or `pip install -e .[{extra}]` from a clone)"
    )


class InterpreterError(FeatherFaceError):
    """The Core ML reference interpreter cannot run a program (an op it lacks, a bad input, a failing op)."""
