"""Model construction from the config (``build_model``): GIN or its ZSGNet baseline."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import logging

from .backbone import RetinaBackBone
from .resnet import ResNet, load_imagenet_weights
from .zsgnet import ZSGNet

ORIGINAL_BACKBONE = {"backbone_width": 64, "backbone_layers": [3, 4, 6, 3]}
LOG = logging.getLogger(__name__)


def uses_four_levels(cfg: Mapping[str, Any]) -> bool:
    """Original behaviour: these input sizes use only P4-P7 (GIN added 608 to ZSGNet's 600)."""
    sizes = [[600, 600], [608, 608]] if cfg["arch"] == "gin" else [[600, 600]]
    return list(cfg["resize_img"]) in sizes


def build_model(cfg: Mapping[str, Any], n_anchors: int, load_pretrained: bool = True) -> ZSGNet:
    encoder = ResNet(cfg["backbone_width"], tuple(cfg["backbone_layers"]))
    is_original = all(cfg[k] == v for k, v in ORIGINAL_BACKBONE.items())
    if load_pretrained and is_original:
        from config import resolve_path

        load_imagenet_weights(encoder, resolve_path(cfg["pretrained_path"]))
    elif load_pretrained:
        LOG.info("narrow backbone (backbone_width/backbone_layers changed): ImageNet weights do not apply; random init")
    lang_dim = cfg["lstm_dim"] * (2 if cfg["use_bidirectional"] else 1)
    backbone = RetinaBackBone(
        encoder, gin=cfg["arch"] == "gin", lang_dim=lang_dim, fpn_dim=cfg["fpn_dim"], afs_hidden=cfg["afs_hidden"],
        afs_out=cfg["afs_out"], garan_heads=cfg["garan_heads"], four_levels=uses_four_levels(cfg), do_norm=cfg["do_norm"],
    )
    return ZSGNet(
        backbone, n_anchors, emb_dim=cfg["emb_dim"], lstm_dim=cfg["lstm_dim"], bidirectional=cfg["use_bidirectional"],
        fpn_dim=cfg["fpn_dim"], head_dim=cfg["head_dim"], head_convs=cfg["head_convs"],
        use_same_atb=cfg["use_same_atb"], lstm_init=cfg["lstm_init"],
    )
