"""ResNet-50 encoder with torchvision's parameter names and a configurable base width and depth.

With the defaults (width 64, blocks [3, 4, 6, 3]) the module is torchvision's ``resnet50`` key for key (``fc``
included, unused), so the ImageNet file ``resnet50-19c8e357.pth`` loads into it.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

LOG = logging.getLogger(__name__)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet; ``forward`` returns the layer2/3/4 maps (C3, C4, C5 at strides 8/16/32)."""

    def __init__(self, width: int = 64, blocks: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, blocks[0], 1)
        self.layer2 = self._make_layer(width * 2, blocks[1], 2)
        self.layer3 = self._make_layer(width * 4, blocks[2], 2)
        self.layer4 = self._make_layer(width * 8, blocks[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # Unused by the grounding model, kept so the checkpoint keys equal the original's (tvm.resnet50 has it).
        self.fc = nn.Linear(width * 8 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    @property
    def out_channels(self) -> list[int]:
        return [layer[-1].conv3.out_channels for layer in (self.layer2, self.layer3, self.layer4)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer2(self.layer1(x))
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]


def load_imagenet_weights(encoder: ResNet, path: str | Path) -> bool:
    """Load torchvision's ImageNet ResNet-50 file when it exists; otherwise warn loudly and keep random weights."""
    path = Path(path)
    if not path.is_file():
        LOG.warning("*** ImageNet ResNet-50 weights not found at %s: the backbone starts from RANDOM weights "
                    "(run 'make gin-data' to fetch them) ***", path)
        return False
    state = torch.load(path, map_location="cpu", weights_only=True)
    encoder.load_state_dict(state, strict=True)
    LOG.info("loaded ImageNet backbone weights from %s", path)
    return True
