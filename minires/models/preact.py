"""Pre-activation ResNet ("Identity Mappings in Deep Residual Networks", He et al. 2016), CIFAR layout.

The original block adds the shortcut and THEN applies a ReLU, so the signal between blocks passes through
a nonlinearity. The pre-activation block moves batch norm and ReLU in front of each convolution:

    original:        out = relu(bn(conv(relu(bn(conv(x))))) + x)
    pre-activation:  out = conv(relu(bn(conv(relu(bn(x)))))) + x

and the shortcut path from the input of the first block to the output of the last is a pure sum: nothing
but additions between blocks. The layout here is the one most CIFAR code uses (kuangliu/pytorch-cifar):

    conv1     3x3, stride 1, 64 channels, no bias (no BN or ReLU: the first block pre-activates it)
    layer1-4  pre-activation blocks, 64/128/256/512 planes, stride 1/2/2/2 (32, 16, 8, 4 for 32x32 inputs)
    head      bn_final -> relu -> avgpool (global) -> flatten -> fc

- ``shortcut`` is a 1x1 strided convolution WITHOUT batch norm where a block changes the shape, applied to
  the pre-activated input ``relu(bn1(x))``; elsewhere the shortcut is ``x`` itself.
- ``bn_final`` + ``relu`` is the paper's "extra activation after the last element-wise addition" (the
  paper's own code has it; kuangliu's omits it, which leaves the last block's sum un-normalised).
- Convolutions use Kaiming-normal with ``mode="fan_out"`` (the paper's code: normal(0, sqrt(2 / (k*k*out)))).
"""
from __future__ import annotations

from typing import List, Sequence, Type, Union

from minires import functional as F
from minires import nn
from minires.models.resnet import conv1x1, conv3x3, init_resnet_weights
from minires.tensor import Tensor


class PreActBlock(nn.Module):
    """Two pre-activated 3x3 convolutions:  out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut."""

    expansion: int = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU()
        if stride != 1 or in_planes != planes * self.expansion:
            self.shortcut = conv1x1(in_planes, planes * self.expansion, stride)
        else:
            self.shortcut = None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))                                           # pre-activation
        shortcut = self.shortcut(out) if self.shortcut is not None else x     # (N, planes, H/stride, W/stride)
        out = self.conv1(out)                                                  # (N, planes, H/stride, W/stride)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut                                                  # no ReLU after the sum


class PreActBottleneck(nn.Module):
    """Pre-activated 1x1 reduce, 3x3 (with the stride), 1x1 expand to ``planes * 4`` channels:

        out = conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x))))))))) + shortcut
    """

    expansion: int = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.relu = nn.ReLU()
        if stride != 1 or in_planes != planes * self.expansion:
            self.shortcut = conv1x1(in_planes, planes * self.expansion, stride)
        else:
            self.shortcut = None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))                                           # pre-activation
        shortcut = self.shortcut(out) if self.shortcut is not None else x     # (N, 4 planes, H/stride, W/stride)
        out = self.conv1(out)                                                  # (N, planes, H, W)
        out = self.conv2(self.relu(self.bn2(out)))                             # (N, planes, H/stride, W/stride)
        out = self.conv3(self.relu(self.bn3(out)))                             # (N, 4 planes, H/stride, W/stride)
        return out + shortcut                                                  # no ReLU after the sum


PreActBlockType = Type[Union[PreActBlock, PreActBottleneck]]


class PreActResNet(nn.Module):
    """A pre-activation ResNet from a block type and the number of blocks per stage (CIFAR layout).

    ``include_top=False`` makes ``fc`` an ``nn.Identity()``: the model returns the pooled features,
    shape (N, 512 * block.expansion).
    """

    def __init__(self, block: PreActBlockType, layers: Sequence[int], num_classes: int = 10,
                 in_channels: int = 3, include_top: bool = True) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers gives the number of blocks in each of the 4 stages, e.g. [2, 2, 2, 2] "
                             f"for PreAct ResNet-18; got {list(layers)}")
        self.in_planes = 64  # channels entering the next stage; _make_layer advances it
        self.conv1 = conv3x3(in_channels, 64)
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.bn_final = nn.BatchNorm2d(512 * block.expansion)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes) if include_top else nn.Identity()

        init_resnet_weights(self)

    def _make_layer(self, block: PreActBlockType, planes: int, blocks: int, stride: int) -> nn.Sequential:
        """One stage: the first block takes the stride (and the new width), the others keep the shape."""
        layers: List[nn.Module] = []
        for block_stride in [stride] + [1] * (blocks - 1):
            layers.append(block(self.in_planes, planes, block_stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)                    # (N, 64, H, W)
        x = self.layer1(x)                   # (N,  64 * expansion, H,   W)
        x = self.layer2(x)                   # (N, 128 * expansion, H/2, W/2)
        x = self.layer3(x)                   # (N, 256 * expansion, H/4, W/4)
        x = self.layer4(x)                   # (N, 512 * expansion, H/8, W/8)
        x = self.relu(self.bn_final(x))      # the last block's sum, normalised and activated
        x = self.avgpool(x)                  # (N, 512 * expansion, 1, 1)
        x = F.flatten(x, 1)                  # (N, 512 * expansion)
        x = self.fc(x)                       # (N, num_classes), or the features themselves without the top
        return x


def preact_resnet18(*, num_classes: int = 10, in_channels: int = 3, include_top: bool = True) -> PreActResNet:
    """Pre-activation ResNet-18: PreActBlock x [2, 2, 2, 2]."""
    return PreActResNet(PreActBlock, [2, 2, 2, 2], num_classes, in_channels, include_top)


def preact_resnet34(*, num_classes: int = 10, in_channels: int = 3, include_top: bool = True) -> PreActResNet:
    """Pre-activation ResNet-34: PreActBlock x [3, 4, 6, 3]."""
    return PreActResNet(PreActBlock, [3, 4, 6, 3], num_classes, in_channels, include_top)


def preact_resnet50(*, num_classes: int = 10, in_channels: int = 3, include_top: bool = True) -> PreActResNet:
    """Pre-activation ResNet-50: PreActBottleneck x [3, 4, 6, 3]."""
    return PreActResNet(PreActBottleneck, [3, 4, 6, 3], num_classes, in_channels, include_top)


def preact_resnet101(*, num_classes: int = 10, in_channels: int = 3, include_top: bool = True) -> PreActResNet:
    """Pre-activation ResNet-101: PreActBottleneck x [3, 4, 23, 3]."""
    return PreActResNet(PreActBottleneck, [3, 4, 23, 3], num_classes, in_channels, include_top)


def preact_resnet152(*, num_classes: int = 10, in_channels: int = 3, include_top: bool = True) -> PreActResNet:
    """Pre-activation ResNet-152: PreActBottleneck x [3, 8, 36, 3]."""
    return PreActResNet(PreActBottleneck, [3, 8, 36, 3], num_classes, in_channels, include_top)
