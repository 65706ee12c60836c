"""PyTorch runtime: runs a checkpoint directly (the reference every export is compared with)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import BackendNotInstalledError, InputError, missing_backend
from featherface_deploy.runtimes.base import Runtime, usable_threads

try:
    import torch
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("torch", "torch") from error


def contract_for_model(model_name: str) -> DecodeContract:
    """The registry's decode contract of an in-memory model; eager PyTorch takes any size (divisor 1)."""
    from featherface_deploy.models.registry import base_contract

    return base_contract(model_name, size_divisor=1, source_format="torch", versions={"torch": torch.__version__})


class TorchRuntime(Runtime):
    """Runs a FeatherFace ``nn.Module`` on the CPU or an NVIDIA GPU.

    Args:
        model: A checkpoint path, or an already built model (injected, e.g. by tests).
        threads: Intra-op threads (``None`` keeps torch's setting).
        architecture: Architecture name when loading a path (detected if omitted).
        device: ``cpu``, or ``cuda`` / ``cuda:N`` (the GPU row; needs a CUDA build of torch and a GPU).
        half: On CUDA, run under FP16 autocast (outputs are returned as float32).
        contract: Decode and preprocess as this contract says (e.g. an export's fixed input size, so the
            reference sees the export's exact tensors); default: the architecture's own, any size.

    Raises:
        BackendNotInstalledError: CUDA asked for but unavailable (the message says why).
        InputError: ``half`` without CUDA.
    """

    name = "torch"
    thread_safe = True  # a module in eval and inference mode keeps no state between calls

    def __init__(self, model: str | Path | torch.nn.Module, threads: int | None = None,
                 architecture: str | None = None, device: str = "cpu", half: bool = False,
                 contract: DecodeContract | None = None) -> None:
        self.device = _checked_device(device, half)
        self.half = half
        from featherface_deploy.models import load_model

        if isinstance(model, torch.nn.Module):
            module, model_name = model, getattr(getattr(model, "config", None), "name", "custom")
        else:
            loaded = load_model(model, architecture)
            module, model_name = loaded.model, loaded.architecture
        threads = usable_threads(threads)
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = module.eval().to(self.device)
        if self.device.type == "cuda":
            self.name = "torch-cuda-fp16" if half else "torch-cuda"
        precision = "fp16" if half else "fp32"
        super().__init__((contract or contract_for_model(model_name)).replace(precision=precision,
                                                                              source_format="torch"))

    def _infer(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
            loc, conf, landmarks = self.model(torch.from_numpy(batch).to(self.device))
        return {"loc": _host(loc), "conf": _host(conf), "landmarks": _host(landmarks)}


def _host(tensor: "torch.Tensor") -> np.ndarray:
    return tensor.float().cpu().numpy()


def _checked_device(device: str, half: bool) -> "torch.device":
    """Validates the device before any model is moved (a clear error instead of torch's)."""
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise InputError(f"unknown torch device '{device}' (use cpu or cuda[:N])") from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise BackendNotInstalledError(f"device '{device}' needs an NVIDIA GPU: torch {torch.__version__} "
                                       f"({build}) sees none; install a CUDA build of torch on a GPU machine")
    if half and parsed.type != "cuda":
        raise InputError("half=True (FP16 autocast) runs on CUDA only; pass device='cuda'")
    return parsed
