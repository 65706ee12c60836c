"""Registry of model architectures: ``register_model``, ``create_model(name)`` and each one's decode defaults.

Each variant registers its factory with the :class:`ArchitectureDefaults` its
checkpoints were trained with (priors, BGR mean, size divisor, the input size
its figures were measured at), the way timm attaches a config to each variant.
:func:`base_contract` turns them into the decode contract that ``info``, the
PyTorch runtime and every exporter start from, so a contract is assembled in
one place only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from featherface_deploy.contract import OUTPUT_ROLES, DecodeContract, PriorConfig
from featherface_deploy.errors import CheckpointError


@dataclass(frozen=True)
class ArchitectureDefaults:
    """What an architecture's outputs mean and what input it expects.

    Attributes:
        priors: Anchor layout of its three output levels.
        mean_bgr: Mean subtracted from the BGR image (no scaling).
        size_divisor: Height and width must be multiples of this (the coarsest stride).
        input_size: The (height, width) exports default to and the figures were measured at.
    """

    priors: PriorConfig = field(default_factory=PriorConfig)
    mean_bgr: tuple[float, float, float] = (104.0, 117.0, 123.0)
    size_divisor: int = 32
    input_size: tuple[int, int] = (640, 640)


_REGISTRY: dict[str, tuple[Callable[[], nn.Module], ArchitectureDefaults]] = {}


def register_model(name: str, defaults: ArchitectureDefaults = ArchitectureDefaults()
                   ) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator registering a zero-argument model factory under ``name``, with its decode defaults."""

    def decorate(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is registered twice")
        _REGISTRY[name] = (factory, defaults)
        return factory

    return decorate


def list_models() -> list[str]:
    """Returns the registered architecture names, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str) -> nn.Module:
    """Builds a freshly initialised model of the named architecture, in eval mode.

    Raises:
        CheckpointError: The name is not registered.
    """
    return _entry(name)[0]().eval()


def create_untrained_model(name: str, seed: int) -> nn.Module:
    """Builds the named architecture with random weights drawn from ``seed`` (the same seed, the same weights).

    The global torch RNG is left as it was (the draw happens inside ``torch.random.fork_rng``).

    Raises:
        CheckpointError: The name is not registered.
        ValueError: ``seed`` is negative.
    """
    if seed < 0:
        raise ValueError(f"seed must be ≥ 0, got {seed}")
    factory = _entry(name)[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory().eval()


def architecture_defaults(name: str) -> ArchitectureDefaults:
    """The registered defaults of ``name``; a model built outside the registry gets the FeatherFace defaults."""
    return _REGISTRY[name][1] if name in _REGISTRY else ArchitectureDefaults()


def base_contract(name: str, **fields) -> DecodeContract:
    """The decode contract of architecture ``name`` (any input size, FP32), with ``fields`` changed.

    Exporters pass what their file fixes (input size, layout, precision, source format, versions…).
    """
    defaults = architecture_defaults(name)
    contract = DecodeContract(model_name=name, output_names=OUTPUT_ROLES, priors=defaults.priors,
                              mean_bgr=defaults.mean_bgr, size_divisor=defaults.size_divisor)
    return contract.replace(**fields) if fields else contract


def _entry(name: str):
    if name not in _REGISTRY:
        raise CheckpointError(f"unknown architecture '{name}'; known: {', '.join(list_models())}")
    return _REGISTRY[name]
