"""PyTorch runtime: runs a checkpoint directly (the reference every export is compared with)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import missing_backend
from featherface_deploy.runtimes.base import Runtime, usable_threads

try:
    import torch
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("torch", "torch") from error


def contract_for_model(model_name: str) -> DecodeContract:
    """Returns the decode contract of an in-memory FeatherFace model (any input size)."""
    return DecodeContract(model_name=model_name, source_format="torch", versions={"torch": torch.__version__})


class TorchRuntime(Runtime):
    """Runs a FeatherFace ``nn.Module`` on the CPU.

    Args:
        model: A checkpoint path, or an already built model (injected, e.g. by tests).
        threads: Intra-op threads (``None`` keeps torch's setting).
        architecture: Architecture name when loading a path (detected if omitted).
    """

    name = "torch"

    def __init__(self, model: str | Path | torch.nn.Module, threads: int | None = None,
                 architecture: str | None = None) -> None:
        from featherface_deploy.models import load_model

        if isinstance(model, torch.nn.Module):
            module, model_name = model, getattr(getattr(model, "config", None), "name", "custom")
        else:
            loaded = load_model(model, architecture)
            module, model_name = loaded.model, loaded.architecture
        threads = usable_threads(threads)
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = module.eval()
        super().__init__(contract_for_model(model_name))

    def _infer(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        with torch.inference_mode():
            loc, conf, landmarks = self.model(torch.from_numpy(batch))
        return {"loc": loc.numpy(), "conf": conf.numpy(), "landmarks": landmarks.numpy()}
