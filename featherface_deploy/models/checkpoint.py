"""Loading checkpoints safely and matching them to a registered architecture."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from featherface_deploy.errors import CheckpointError
from featherface_deploy.models.registry import create_model, list_models

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
_KEY_PREVIEW = 8


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
    strips a ``module.`` prefix left by ``DataParallel``.

    Raises:
        CheckpointError: The file is missing, is not a PyTorch checkpoint, or
            does not hold a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - garbage input makes the unpickler raise almost anything
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first_line})") from error
    if isinstance(data, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a dict of tensors)")
    return {k.removeprefix("module."): v for k, v in data.items()}


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
    name = architecture or detect_architecture(state)
    model = create_model(name)
    missing, unexpected, wrong = _mismatch(model, state)
    if missing or unexpected or wrong:
        raise CheckpointError(_mismatch_message(name, missing, unexpected, wrong, closest=False))
    model.load_state_dict(state, strict=True)
    return LoadedModel(model=model.eval(), architecture=name, path=Path(path))
