"""The registered variants: the two trained FeatherFace models, a tiny test variant, the peer and the untrained V2 designs."""

from __future__ import annotations

from featherface_deploy.models.featherface import FeatherFace, FeatherFaceConfig
from featherface_deploy.models.registry import register_model


@register_model("featherface-v1")
def featherface_v1() -> FeatherFace:
    """FeatherFace V1 (489,015 parameters): no attention."""
    return FeatherFace(FeatherFaceConfig("featherface-v1"))


@register_model("featherface-v2-ca")
def featherface_v2_ca() -> FeatherFace:
    """FeatherFace V2 (493,095 parameters): V1 + Coordinate Attention after each SSH."""
    return FeatherFace(FeatherFaceConfig("featherface-v2-ca", coordinate_attention=True))


@register_model("featherface-tiny")
def featherface_tiny() -> FeatherFace:
    """A randomly initialised, narrow V2-shaped model that keeps tests fast (no trained weights)."""
    return FeatherFace(FeatherFaceConfig("featherface-tiny", base_width=4, fpn_width=16, coordinate_attention=True))


@register_model("retinaface-mnet025")
def retinaface_mnet025():
    """RetinaFace-MobileNet0.25 (biubug6/Pytorch_Retinaface), the peer baseline: plain-conv SSH, FPN width 64."""
    from featherface_deploy.models.retinaface import RetinaFace, RetinaFaceConfig

    return RetinaFace(RetinaFaceConfig("retinaface-mnet025"))


@register_model("featherface-v2-optimized")
def featherface_v2_optimized():
    """FeatherFace V2-Optimized of the design documents (no trained weights): CBAM_Plus, BiFPN_Light, SSH_Grouped."""
    from featherface_deploy.models.featherface_v2_light import FeatherFaceV2Optimized, V2OptimizedConfig

    return FeatherFaceV2Optimized(V2OptimizedConfig())


@register_model("featherface-v2-ultra")
def featherface_v2_ultra():
    """FeatherFace V2-Ultra of the design documents (no trained weights): V2-Optimized + the five innovations."""
    from featherface_deploy.models.featherface_v2_light import FeatherFaceV2Ultra, V2UltraConfig

    return FeatherFaceV2Ultra(V2UltraConfig())
