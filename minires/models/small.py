"""The paper's own CIFAR networks (He et al. 2016, section 4.2): ResNet-20/32/44/56/110 and their plain twins.

For 32x32 images the paper does not use the ImageNet network at all but a thin one of 6n + 2 layers:

    conv1    3x3, 16 channels, stride 1             (N, 16, 32, 32)
    layer1   n blocks, 16 channels                  (N, 16, 32, 32)
    layer2   n blocks, 32 channels, stride 2        (N, 32, 16, 16)
    layer3   n blocks, 64 channels, stride 2        (N, 64,  8,  8)
    avgpool, fc                                     (N, num_classes)

Each block is two 3x3 convolutions. In a ResNet (``resnet20`` ... ``resnet110``) it is torchvision's
``BasicBlock``, ``relu(F(x) + x)``; where a block halves the size and doubles the channels, the shortcut
is the paper's option A, parameter-free: every other pixel of x, with zeros for the new channels
(``ShortcutA``). So the shortcuts add no parameters, and n = 3, 5, 7, 9, 18 give the paper's
0.27, 0.46, 0.66, 0.85 and 1.7 million. A plain network (``plain20`` ... ``plain110``) has the same
layers, with the same names, but no shortcut at all: ``relu(F(x))`` (``PlainBlock``). Plain-56 against
plain-20 is the paper's degradation experiment: the deeper plain network trains WORSE, and the
shortcuts fix it (docs/paper.md). ResNet-20 trains in seconds on a CPU: it is the model ``minires
train`` trains by default. The initialisation is torchvision's (Kaiming-normal, fan_out).
"""
from __future__ import annotations

from typing import List

from minires import functional as F
from minires import nn
from minires.models.resnet import BasicBlock, conv3x3, init_resnet_weights
from minires.tensor import Tensor


class ShortcutA(nn.Module):
    """The paper's option-A shortcut, no parameters: ``x[:, :, ::stride, ::stride]`` with ``extra_channels``
    channels of zeros after x's own (``F.pad``), so that it has the shape of the block's output."""

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra_channels, self.stride = extra_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride
        x = x[:, :, ::s, ::s]                                   # (N, C, H/s, W/s)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # (N, C + extra, H/s, W/s)


class PlainBlock(BasicBlock):
    """A BasicBlock without its shortcut:  out = relu(bn2(conv2(relu(bn1(conv1(x)))))).

    Same layers and parameter names as ``BasicBlock``, so a plain network's state dict has its
    ResNet's keys."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))   # (N, planes, H/stride, W/stride)
        out = self.bn2(self.conv2(out))
        return self.relu(out)


class SmallResNet(nn.Module):
    """A 3-stage network of ``6 * blocks_per_stage + 2`` layers with 16, 32 and 64 channels:
    a ResNet with option-A shortcuts, or, with ``residual=False``, its plain counterpart."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3,
                 residual: bool = True) -> None:
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be at least 1, got {blocks_per_stage}")
        self.residual = residual
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
        if not self.residual:
            layers: List[nn.Module] = [PlainBlock(self.inplanes, planes, stride)]
        else:
            shortcut = None
            if stride != 1 or self.inplanes != planes:
                shortcut = ShortcutA(planes - self.inplanes, stride)
            layers = [BasicBlock(self.inplanes, planes, stride, shortcut)]
        self.inplanes = planes
        block = BasicBlock if self.residual else PlainBlock
        layers += [block(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))   # (N, 16, H, W)
        x = self.layer1(x)                       # (N, 16, H, W)
        x = self.layer2(x)                       # (N, 32, H/2, W/2)
        x = self.layer3(x)                       # (N, 64, H/4, W/4)
        x = self.avgpool(x)                      # (N, 64, 1, 1)
        return self.fc(F.flatten(x, 1))          # (N, num_classes)


def resnet20(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """ResNet-20 of the paper's CIFAR experiments: 3 BasicBlocks per stage, 0.27M parameters."""
    return SmallResNet(3, num_classes, in_channels)


def resnet32(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """ResNet-32: 5 BasicBlocks per stage, 0.46M parameters."""
    return SmallResNet(5, num_classes, in_channels)


def resnet44(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """ResNet-44: 7 BasicBlocks per stage, 0.66M parameters."""
    return SmallResNet(7, num_classes, in_channels)


def resnet56(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """ResNet-56: 9 BasicBlocks per stage, 0.85M parameters."""
    return SmallResNet(9, num_classes, in_channels)


def resnet110(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """ResNet-110: 18 BasicBlocks per stage, 1.7M parameters."""
    return SmallResNet(18, num_classes, in_channels)


def plain20(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """Plain-20: ResNet-20's 20 layers without shortcuts."""
    return SmallResNet(3, num_classes, in_channels, residual=False)


def plain32(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """Plain-32: ResNet-32's layers without shortcuts."""
    return SmallResNet(5, num_classes, in_channels, residual=False)


def plain44(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """Plain-44: ResNet-44's layers without shortcuts."""
    return SmallResNet(7, num_classes, in_channels, residual=False)


def plain56(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """Plain-56: ResNet-56's layers without shortcuts."""
    return SmallResNet(9, num_classes, in_channels, residual=False)


def plain110(*, num_classes: int = 10, in_channels: int = 3) -> SmallResNet:
    """Plain-110: ResNet-110's layers without shortcuts."""
    return SmallResNet(18, num_classes, in_channels, residual=False)
