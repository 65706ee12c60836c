"""Registry of model architectures: ``register_model`` and ``create_model(name)``."""

from __future__ import annotations

from typing import Callable

from torch import nn

from featherface_deploy.errors import CheckpointError

_REGISTRY: dict[str, Callable[[], nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator registering a zero-argument model factory under ``name``."""

    def decorate(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is registered twice")
        _REGISTRY[name] = factory
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
    if name not in _REGISTRY:
        raise CheckpointError(f"unknown architecture '{name}'; known: {', '.join(list_models())}")
    return _REGISTRY[name]().eval()
