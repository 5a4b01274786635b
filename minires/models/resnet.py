"""ResNet, ResNeXt and Wide ResNet, laid out exactly as torchvision lays them out.

"Deep Residual Learning for Image Recognition" (He et al., 2015) in torchvision's version 1.5:

    stem    conv1 7x7/2 (no bias) -> bn1 -> relu -> maxpool 3x3/2
    layer1  blocks at  64 * expansion channels, stride 1     (56x56 for a 224x224 image)
    layer2  blocks at 128 * expansion channels, stride 2     (28x28)
    layer3  blocks at 256 * expansion channels, stride 2     (14x14)
    layer4  blocks at 512 * expansion channels, stride 2     (7x7)
    head    avgpool (global) -> flatten -> fc

A block computes ``relu(F(x) + shortcut(x))``: the shortcut is the identity, or, where the block changes the
shape (stride 2 or more channels), ``downsample`` = 1x1 convolution + batch norm. The attribute names are
torchvision's, so ``state_dict()`` keys match it key for key and torchvision's weights load unchanged.

Initialisation (torchvision's): convolutions Kaiming-normal with ``mode="fan_out"`` for a ReLU, batch-norm
gamma 1 and beta 0; ``zero_init_residual=True`` zeroes each block's last gamma, so every block starts as
the identity. The classifier keeps ``Linear``'s own default initialisation.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Type, Union

from minires import functional as F
from minires import nn
from minires.tensor import Tensor

NormLayer = Callable[[int], nn.Module]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding (= dilation, so stride 1 keeps the size), no bias: a batch norm follows."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
                     groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias: changes the number of channels (and, with a stride, the size)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18 and -34):  out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    ``stride`` 2 on conv1 halves the size; ``downsample`` (1x1 conv + BN) then brings x to the same shape.
    """

    expansion: int = 1  # out channels = planes * expansion

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1,
                 norm_layer: Optional[NormLayer] = None) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock only supports groups=1 and base_width=64, got groups={groups} and "
                             f"base_width={base_width}; grouped and wider blocks are Bottleneck's "
                             f"(ResNeXt, Wide ResNet)")
        if dilation > 1:
            raise NotImplementedError(f"Dilation > 1 not supported in BasicBlock (got dilation={dilation}); "
                                      f"replace_stride_with_dilation needs a Bottleneck network")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)                      # (N, planes, H/stride, W/stride)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)        # (N, planes, H/stride, W/stride)

        out = out + identity                     # never in place: the graph still needs `out`
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (ResNet-50 and deeper, ResNeXt, Wide ResNet):

        out = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))) + shortcut(x))

    The stride sits on the 3x3 convolution (conv2): torchvision's "ResNet v1.5"; the original paper put it
    on conv1. The inner width is ``int(planes * base_width / 64) * groups``: 64-wide groups of one make
    ResNet-50, 32 groups of 4 make ResNeXt-50 32x4d, base_width 128 makes Wide ResNet-50-2.
    """

    expansion: int = 4  # out channels = planes * expansion

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1,
                 norm_layer: Optional[NormLayer] = None) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)                      # (N, width, H, W)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)                    # (N, width, H/stride, W/stride)
        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)                    # (N, planes * 4, H/stride, W/stride)
        out = self.bn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)        # (N, planes * 4, H/stride, W/stride)

        out = out + identity                     # never in place: the graph still needs `out`
        out = self.relu(out)
        return out


Block = Type[Union[BasicBlock, Bottleneck]]


def init_resnet_weights(model: nn.Module) -> None:
    """torchvision's ResNet initialisation: every convolution Kaiming-normal with mode="fan_out"
    (the variance is kept through the backward pass), every batch norm gamma = 1, beta = 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """A ResNet from a block type and the number of blocks per stage: ``ResNet(BasicBlock, [2, 2, 2, 2])`` is
    ResNet-18.

    ``include_top=False`` makes a feature extractor: ``fc`` is ``nn.Identity()`` (nothing in the state dict)
    and the model returns the pooled features, shape (N, 512 * block.expansion). Assign ``model.fc =
    nn.Linear(...)`` to put a new classifier on it. ``replace_stride_with_dilation`` (three bools, one per
    stage 2-4) keeps a stage's resolution and dilates its convolutions instead (Bottleneck only).
    """

    def __init__(self, block: Block, layers: Sequence[int], num_classes: int = 1000,
                 zero_init_residual: bool = False, groups: int = 1, width_per_group: int = 64,
                 replace_stride_with_dilation: Optional[Sequence[bool]] = None,
                 norm_layer: Optional[NormLayer] = None, in_channels: int = 3, include_top: bool = True) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        if len(layers) != 4:
            raise ValueError(f"layers gives the number of blocks in each of the 4 stages, e.g. [2, 2, 2, 2] "
                             f"for ResNet-18; got {list(layers)}")
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(f"replace_stride_with_dilation should be None or a 3-element tuple (one bool "
                             f"for each of layer2, layer3, layer4), got {replace_stride_with_dilation}")

        self.inplanes = 64   # channels entering the next stage; _make_layer advances it
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes) if include_top else nn.Identity()

        init_resnet_weights(self)

        # Zero each block's last batch-norm gamma: the residual branch then outputs 0 and every block
        # starts as the identity, which "improves the model by 0.2~0.3%" (Goyal et al., 2017).
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1,
                    dilate: bool = False) -> nn.Sequential:
        """One stage: a first block that may change the shape (stride, channels), then blocks-1 that keep it."""
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),
            )

        layers: List[nn.Module] = [
            block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation,
                  norm_layer)
        ]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                                dilation=self.dilation, norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)          # (N, 64, H/2, W/2)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)        # (N, 64, H/4, W/4)

        x = self.layer1(x)         # (N,  64 * expansion, H/4,  W/4)
        x = self.layer2(x)         # (N, 128 * expansion, H/8,  W/8)
        x = self.layer3(x)         # (N, 256 * expansion, H/16, W/16)
        x = self.layer4(x)         # (N, 512 * expansion, H/32, W/32)

        x = self.avgpool(x)        # (N, 512 * expansion, 1, 1)
        x = F.flatten(x, 1)        # (N, 512 * expansion)
        x = self.fc(x)             # (N, num_classes), or the features themselves without the top
        return x


# --------------------------------------------------------------------------------------------- builders
# Parameter counts are with the default 1000 classes; each equals torchvision's published one.

def resnet18(*, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False,
             include_top: bool = True, groups: int = 1, width_per_group: int = 64,
             replace_stride_with_dilation: Optional[Sequence[bool]] = None,
             norm_layer: Optional[NormLayer] = None) -> ResNet:
    """ResNet-18: BasicBlock x [2, 2, 2, 2], 11,689,512 parameters."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, zero_init_residual, groups, width_per_group,
                  replace_stride_with_dilation, norm_layer, in_channels, include_top)


def resnet34(*, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False,
             include_top: bool = True, groups: int = 1, width_per_group: int = 64,
             replace_stride_with_dilation: Optional[Sequence[bool]] = None,
             norm_layer: Optional[NormLayer] = None) -> ResNet:
    """ResNet-34: BasicBlock x [3, 4, 6, 3], 21,797,672 parameters."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, zero_init_residual, groups, width_per_group,
                  replace_stride_with_dilation, norm_layer, in_channels, include_top)


def resnet50(*, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False,
             include_top: bool = True, groups: int = 1, width_per_group: int = 64,
             replace_stride_with_dilation: Optional[Sequence[bool]] = None,
             norm_layer: Optional[NormLayer] = None) -> ResNet:
    """ResNet-50: Bottleneck x [3, 4, 6, 3], 25,557,032 parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual, groups, width_per_group,
                  replace_stride_with_dilation, norm_layer, in_channels, include_top)


def resnet101(*, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False,
              include_top: bool = True, groups: int = 1, width_per_group: int = 64,
              replace_stride_with_dilation: Optional[Sequence[bool]] = None,
              norm_layer: Optional[NormLayer] = None) -> ResNet:
    """ResNet-101: Bottleneck x [3, 4, 23, 3], 44,549,160 parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, zero_init_residual, groups, width_per_group,
                  replace_stride_with_dilation, norm_layer, in_channels, include_top)


def resnet152(*, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False,
              include_top: bool = True, groups: int = 1, width_per_group: int = 64,
              replace_stride_with_dilation: Optional[Sequence[bool]] = None,
              norm_layer: Optional[NormLayer] = None) -> ResNet:
    """ResNet-152: Bottleneck x [3, 8, 36, 3], 60,192,808 parameters."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, zero_init_residual, groups, width_per_group,
                  replace_stride_with_dilation, norm_layer, in_channels, include_top)


def resnext50_32x4d(*, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False,
                    include_top: bool = True, replace_stride_with_dilation: Optional[Sequence[bool]] = None,
                    norm_layer: Optional[NormLayer] = None) -> ResNet:
    """ResNeXt-50 32x4d ("Aggregated Residual Transformations", Xie et al. 2016): ResNet-50 whose 3x3
    convolutions have 32 groups of 4 channels per 64 planes; 25,028,904 parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual, 32, 4,
                  replace_stride_with_dilation, norm_layer, in_channels, include_top)


def resnext101_32x8d(*, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False,
                     include_top: bool = True, replace_stride_with_dilation: Optional[Sequence[bool]] = None,
                     norm_layer: Optional[NormLayer] = None) -> ResNet:
    """ResNeXt-101 32x8d: ResNet-101 with 32 groups of 8 channels per 64 planes; 88,791,336 parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, zero_init_residual, 32, 8,
                  replace_stride_with_dilation, norm_layer, in_channels, include_top)


def wide_resnet50_2(*, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False,
                    include_top: bool = True, replace_stride_with_dilation: Optional[Sequence[bool]] = None,
                    norm_layer: Optional[NormLayer] = None) -> ResNet:
    """Wide ResNet-50-2 ("Wide Residual Networks", Zagoruyko & Komodakis 2016): ResNet-50 with every
    Bottleneck's inner width doubled (the outer 1x1 widths stay); 68,883,240 parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual, 1, 64 * 2,
                  replace_stride_with_dilation, norm_layer, in_channels, include_top)
