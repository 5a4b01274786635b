"""The paper's own CIFAR ResNets: ResNet-20, 32, 44, 56 and 110 (He et al. 2015, section 4.2).

For 32x32 images the paper does not use the ImageNet network at all but a thin one of 6n + 2 layers:

    conv1    3x3, 16 channels, stride 1             (N, 16, 32, 32)
    layer1   n BasicBlocks, 16 channels             (N, 16, 32, 32)
    layer2   n BasicBlocks, 32 channels, stride 2   (N, 32, 16, 16)
    layer3   n BasicBlocks, 64 channels, stride 2   (N, 64,  8,  8)
    avgpool, fc                                     (N, num_classes)

n = 3 gives ResNet-20 (about 0.27 million parameters, against 11 million for ResNet-18), small enough
to train in seconds on a CPU: it is the model ``minires train`` trains by default. The blocks are
torchvision's ``BasicBlock``; where a block changes the shape, its shortcut is a 1x1 convolution and a
batch norm (the paper's option B; its CIFAR runs used option A, a parameter-free zero-padded identity,
which differs by about 0.01 million parameters). The initialisation is torchvision's.
"""
from __future__ import annotations

from typing import List

from minires import nn
from minires.functional import flatten
from minires.models.resnet import BasicBlock, conv1x1, conv3x3, init_resnet_weights
from minires.tensor import Tensor


class SmallResNet(nn.Module):
    """A 3-stage ResNet of ``6 * blocks_per_stage + 2`` layers with 16, 32 and 64 channels."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be at least 1, got {blocks_per_stage}")
        self.inplanes = 16
        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(16, blocks_per_stage, stride=1)
        self.layer2 = self._make_layer(32, blocks_per_stage, stride=2)
        self.layer3 = self._make_layer(64, blocks_per_stage, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        init_resnet_weights(self)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers: List[nn.Module] = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))   # (N, 16, H, W)
        x = self.layer1(x)                       # (N, 16, H, W)
        x = self.layer2(x)                       # (N, 32, H/2, W/2)
        x = self.layer3(x)                       # (N, 64, H/4, W/4)
        x = self.avgpool(x)                      # (N, 64, 1, 1)
        return self.fc(flatten(x, 1))            # (N, num_classes)


def resnet20(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """ResNet-20 of the paper's CIFAR experiments: 3 BasicBlocks per stage."""
    return SmallResNet(3, num_classes, in_channels)


def resnet32(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """ResNet-32: 5 BasicBlocks per stage."""
    return SmallResNet(5, num_classes, in_channels)


def resnet44(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """ResNet-44: 7 BasicBlocks per stage."""
    return SmallResNet(7, num_classes, in_channels)


def resnet56(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """ResNet-56: 9 BasicBlocks per stage."""
    return SmallResNet(9, num_classes, in_channels)


def resnet110(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """ResNet-110: 18 BasicBlocks per stage."""
    return SmallResNet(18, num_classes, in_channels)
