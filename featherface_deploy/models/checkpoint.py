"""Loading checkpoints safely and matching them to a registered architecture."""

from __future__ import annotations

import io
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from featherface_deploy.errors import CheckpointError, first_line
from featherface_deploy.file_writing import atomic_write_bytes
from featherface_deploy.models.registry import create_model, create_untrained_model, list_models

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
_KEY_PREVIEW = 8
_HALF_LIMITS = {torch.float16: ("float16", 65504.0), torch.bfloat16: ("bfloat16", 3.39e38)}
_NOT_PLAIN = ("{path} is not a plain state dict: it holds a pickled {found}, which loading with weights_only=True "
              "(always on here) refuses because unpickling it could run code. Convert it once, where it was made and "
              "with code you trust: torch.save(model.state_dict(), 'weights.pth'), then use that file")


@dataclass(frozen=True)
class LoadedModel:
    """A model with its weights and where they came from.

    Attributes:
        model: The model, in eval mode.
        architecture: Its registry name.
        path: The checkpoint it was loaded from.
    """

    model: nn.Module
    architecture: str
    path: Path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a state dict with ``weights_only=True`` (a checkpoint can never run code).

    Accepts a plain state dict or one wrapped under ``state_dict``/``model``, and
    strips a ``module.`` prefix left by ``DataParallel``. Every tensor must be
    finite; float16/bfloat16 tensors are returned as float32.

    Raises:
        CheckpointError: The file is missing, is not a PyTorch checkpoint, does
            not hold a dict of tensors (e.g. a pickled module), or holds a NaN
            or infinite value (the message names the first such tensor).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused:
            raise CheckpointError(_NOT_PLAIN.format(path=path, found=refused.group(1))) from error
        # torch's own text advises weights_only=False: only its diagnosis is kept, never that advice.
        reason = re.search(r"WeightsUnpickler error:\s*(.+)", str(error))
        detail = reason.group(1).strip() if reason else first_line(error)
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({detail})") from error
    except Exception as error:  # noqa: BLE001 - garbage input makes the unpickler raise almost anything
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first_line(error)})") from error
    if isinstance(data, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a dict of tensors)")
    state = {k.removeprefix("module."): v for k, v in data.items()}
    _check_finite(state, path)
    return {k: v.float() if v.is_floating_point() and v.dtype != torch.float32 else v for k, v in state.items()}


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuses a state dict with a NaN or infinite value, naming the first bad tensor and why."""
    for key, tensor in state.items():
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()):
            continue
        nan, total = int(torch.isnan(tensor).sum()), tensor.numel()
        inf = int(torch.isinf(tensor).sum())
        found = f"{nan} NaN and {inf} infinite of {total} values" if nan and inf else (
            f"{nan} NaN of {total} values" if nan else f"{inf} infinite of {total} values")
        if tensor.dtype in _HALF_LIMITS and inf:
            name, limit = _HALF_LIMITS[tensor.dtype]
            why = (f"a value overflowed {name} (largest {limit:,.0f}) when the file was made; re-save the "
                   "checkpoint in float32 (model.float().state_dict())")
        else:
            why = "the weights are corrupt (or training diverged); use another checkpoint"
        raise CheckpointError(f"{path}: tensor '{key}' ({str(tensor.dtype).removeprefix('torch.')}) holds {found}: "
                              f"{why}")


def _mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    return missing, unexpected, wrong_shape


def _preview(keys: list[str]) -> str:
    shown = ", ".join(keys[:_KEY_PREVIEW])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > _KEY_PREVIEW else "")


def detect_architecture(state: dict[str, torch.Tensor]) -> str:
    """Returns the registered architecture whose keys and shapes match ``state`` exactly.

    Raises:
        CheckpointError: Nothing matches; the message names the missing,
            unexpected and mis-shaped keys against the closest architecture.
    """
    best = None
    for name in list_models():
        missing, unexpected, wrong = _mismatch(create_model(name), state)
        if not (missing or unexpected or wrong):
            return name
        score = len(missing) + len(unexpected) + len(wrong)
        if best is None or score < best[0]:
            best = (score, name, missing, unexpected, wrong)
    _, name, missing, unexpected, wrong = best
    raise CheckpointError(_mismatch_message(name, missing, unexpected, wrong, closest=True))


def _mismatch_message(name: str, missing: list[str], unexpected: list[str], wrong: list[str], closest: bool) -> str:
    lead = f"checkpoint matches no known architecture (closest: '{name}')" if closest else (
        f"checkpoint does not match architecture '{name}'"
    )
    parts = [lead]
    if missing:
        parts.append(f"missing keys: {_preview(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_preview(unexpected)}")
    if wrong:
        parts.append(f"wrong shapes: {_preview(wrong)}")
    return "; ".join(parts)


def load_model(path: str | Path, architecture: str | None = None) -> LoadedModel:
    """Loads a checkpoint strictly into its architecture.

    Args:
        path: A ``.pth`` state dict.
        architecture: A registered name; detected from the keys when omitted.

    Returns:
        The loaded model in eval mode.

    Raises:
        CheckpointError: Unreadable file, unknown name, or keys that do not match.
    """
    state = read_state_dict(path)
    try:
        name = architecture or detect_architecture(state)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from error
    model = create_model(name)
    missing, unexpected, wrong = _mismatch(model, state)
    if missing or unexpected or wrong:
        raise CheckpointError(f"{path}: {_mismatch_message(name, missing, unexpected, wrong, closest=False)}")
    model.load_state_dict(state, strict=True)
    return LoadedModel(model=model.eval(), architecture=name, path=Path(path))


def write_untrained_checkpoint(name: str, seed: int, folder: str | Path) -> Path:
    """Saves the random weights of ``create_untrained_model(name, seed)`` as ``folder/NAME-untrained-seedN.pth``.

    For tools that take a checkpoint file (``compare --random-init``); the same name and seed always
    give the same weights. Written atomically.

    Returns:
        The file's path.
    """
    buffer = io.BytesIO()
    torch.save(create_untrained_model(name, seed).state_dict(), buffer)
    path = Path(folder) / f"{name}-untrained-seed{seed}.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
