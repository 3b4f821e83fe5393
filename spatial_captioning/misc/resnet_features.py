"""ResNet grid features as self-critical.pytorch extracts them (caffe-style ResNet, layer4 map, 14x14 pooling)."""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_DIRS = ("data/imagenet_weights", "data")
log = logging.getLogger(__name__)


def caffe_style_resnet(name: str) -> nn.Module:
    """torchvision ResNet changed like ruotianluo's misc/resnet.py: maxpool without padding and ceil_mode, and the
    stride-2 of each stage's first block on conv1 instead of conv2 (the layout of the converted resnet101.pth)."""
    net = getattr(torchvision.models, name)(weights=None)
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
    for i in range(2, 5):
        block = getattr(net, f"layer{i}")[0]
        block.conv1.stride = (2, 2)
        block.conv2.stride = (1, 1)
    return net


def find_weights(name: str, weight_dir: str = "") -> str:
    dirs = (weight_dir,) if weight_dir else WEIGHT_DIRS
    for d in dirs:
        path = os.path.join(d, f"{name}.pth")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{name}.pth not found in {' or '.join(dirs)}: download it from "
                            "https://drive.google.com/drive/folders/0B7fNdx_jAqhtbVYzOURMdDNHSGM "
                            "('make spatial_captioning-data')")


class GridFeatureExtractor(nn.Module):
    def __init__(self, name: str = "resnet101", weight_dir: str = "", att_size: int = 14, allow_random: bool = False):
        """``allow_random``: without the weight file, warn once and keep random weights (captions are then
        meaningless, but the pipeline runs); otherwise a missing file raises FileNotFoundError."""
        super().__init__()
        self.net = caffe_style_resnet(name)
        try:
            self.net.load_state_dict(torch.load(find_weights(name, weight_dir), map_location="cpu"))
        except FileNotFoundError as err:
            if not allow_random:
                raise
            log.warning("%s; using RANDOM ResNet weights, so the captions mean nothing", err)
        self.att_size = att_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1))

    @torch.no_grad()
    def forward(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """image (H, W, 3) or (H, W) uint8, full resolution -> fc (2048,), att (att_size, att_size, 2048)."""
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        x = torch.from_numpy(image[:, :, :3].astype(np.float32) / 255.0).permute(2, 0, 1).to(self.mean.device)
        x = ((x - self.mean) / self.std).unsqueeze(0)
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        fc = x.mean(3).mean(2).squeeze(0)
        att = F.adaptive_avg_pool2d(x, [self.att_size, self.att_size]).squeeze(0).permute(1, 2, 0)
        return fc, att
