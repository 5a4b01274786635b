"""ResNets for 32x32 images (CIFAR-10/100): torchvision's ResNet with a small stem.

torchvision's stem (7x7 stride-2 convolution, then a stride-2 max pool) is made for 224x224 images: it
would shrink a 32x32 image to 8x8 before the first block. The CIFAR layout (He et al. 2015, section 4.2,
as in the widely used kuangliu/pytorch-cifar code) changes exactly two things:

    conv1    3x3, stride 1, padding 1, no bias     (torchvision: 7x7, stride 2, padding 3)
    maxpool  none (nn.Identity)                    (torchvision: 3x3, stride 2)

so layer1..layer4 see 32x32, 16x16, 8x8 and 4x4 maps. Everything else, the blocks, the state-dict keys
(``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ..., ``fc.weight``) and the initialisation, is
torchvision's. ``cifar_resnet18()`` has 11,173,962 parameters.
"""
from __future__ import annotations

from typing import Optional, Sequence

from minires import nn
from minires.models.resnet import BasicBlock, Block, Bottleneck, NormLayer, ResNet, conv3x3


class CifarResNet(ResNet):
    """``ResNet`` with a 3x3 stride-1 stem and no max pooling, for 32x32 inputs; same arguments as ``ResNet``
    (10 classes by default)."""

    def __init__(self, block: Block, layers: Sequence[int], num_classes: int = 10,
                 zero_init_residual: bool = False, groups: int = 1, width_per_group: int = 64,
                 replace_stride_with_dilation: Optional[Sequence[bool]] = None,
                 norm_layer: Optional[NormLayer] = None, in_channels: int = 3, include_top: bool = True) -> None:
        super().__init__(block, layers, num_classes, zero_init_residual, groups, width_per_group,
                         replace_stride_with_dilation, norm_layer, in_channels, include_top)
        self.conv1 = conv3x3(in_channels, 64)   # (N, 64, 32, 32): stride 1 keeps the 32x32 image whole
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()             # no max pooling: layer1 sees 32x32


def cifar_resnet18(*, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False,
                   include_top: bool = True) -> CifarResNet:
    """ResNet-18 for 32x32 images: BasicBlock x [2, 2, 2, 2], 11,173,962 parameters with 10 classes."""
    return CifarResNet(BasicBlock, [2, 2, 2, 2], num_classes, zero_init_residual,
                       in_channels=in_channels, include_top=include_top)


def cifar_resnet34(*, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False,
                   include_top: bool = True) -> CifarResNet:
    """ResNet-34 for 32x32 images: BasicBlock x [3, 4, 6, 3], 21,282,122 parameters with 10 classes."""
    return CifarResNet(BasicBlock, [3, 4, 6, 3], num_classes, zero_init_residual,
                       in_channels=in_channels, include_top=include_top)


def cifar_resnet50(*, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False,
                   include_top: bool = True) -> CifarResNet:
    """ResNet-50 for 32x32 images: Bottleneck x [3, 4, 6, 3], 23,520,842 parameters with 10 classes."""
    return CifarResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual,
                       in_channels=in_channels, include_top=include_top)


def cifar_resnet101(*, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False,
                    include_top: bool = True) -> CifarResNet:
    """ResNet-101 for 32x32 images: Bottleneck x [3, 4, 23, 3], 42,512,970 parameters with 10 classes."""
    return CifarResNet(Bottleneck, [3, 4, 23, 3], num_classes, zero_init_residual,
                       in_channels=in_channels, include_top=include_top)


def cifar_resnet152(*, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False,
                    include_top: bool = True) -> CifarResNet:
    """ResNet-152 for 32x32 images: Bottleneck x [3, 8, 36, 3], 58,156,618 parameters with 10 classes."""
    return CifarResNet(Bottleneck, [3, 8, 36, 3], num_classes, zero_init_residual,
                       in_channels=in_channels, include_top=include_top)
