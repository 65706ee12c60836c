"""Model definitions (torch): the FeatherFace architectures, their registry and checkpoint loading."""

from featherface_deploy.models import zoo as _zoo  # noqa: F401  (registers the variants)
from featherface_deploy.models.checkpoint import LoadedModel, detect_architecture, load_model, read_state_dict
from featherface_deploy.models.featherface import FeatherFace, FeatherFaceConfig
from featherface_deploy.models.registry import create_model, list_models, register_model

__all__ = [
    "FeatherFace",
    "FeatherFaceConfig",
    "LoadedModel",
    "create_model",
    "detect_architecture",
    "list_models",
    "load_model",
    "read_state_dict",
    "register_model",
]
