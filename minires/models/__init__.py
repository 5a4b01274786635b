"""The ResNet family, and ``summary`` to look inside a model.

- ``resnet``: torchvision's ResNet, ResNeXt and Wide ResNet (state-dict keys match torchvision's), with the
  building blocks ``BasicBlock`` and ``Bottleneck`` public for assembling your own ``ResNet(block, layers)``;
- ``cifar``: the same networks with a 3x3 stride-1 stem and no max pooling, for 32x32 images;
- ``d2l``: ResNet-18 as "Dive into Deep Learning" builds it (biased convolutions, 1x1 shortcut without BN);
- ``small``: the paper's CIFAR ResNet-20 ... 110 (option-A shortcuts) and their plain twins, plain20 ... 110;
- ``preact``: the pre-activation ResNet of "Identity Mappings in Deep Residual Networks";
- ``summary``: each layer's output shape and size, with trainable and non-trainable totals.

A guide with the layouts side by side: docs/models.md.
"""
from minires.models.cifar import (CifarResNet, cifar_resnet18, cifar_resnet34, cifar_resnet50, cifar_resnet101,
                                  cifar_resnet152)
from minires.models.d2l import Residual, d2l_resnet18, resnet_block
from minires.models.preact import (PreActBlock, PreActBottleneck, PreActResNet, preact_resnet18, preact_resnet34,
                                   preact_resnet50, preact_resnet101, preact_resnet152)
from minires.models.resnet import (BasicBlock, Bottleneck, ResNet, conv1x1, conv3x3, resnet18, resnet34, resnet50,
                                   resnet101, resnet152, resnext50_32x4d, resnext101_32x8d, wide_resnet50_2)
from minires.models.small import (PlainBlock, ShortcutA, SmallResNet, plain20, plain32, plain44, plain56, plain110,
                                  resnet20, resnet32, resnet44, resnet56, resnet110)
from minires.models.summary import ModelSummary, SummaryRow, summary

__all__ = [
    "ResNet", "BasicBlock", "Bottleneck", "conv3x3", "conv1x1",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
    "CifarResNet", "cifar_resnet18", "cifar_resnet34", "cifar_resnet50", "cifar_resnet101", "cifar_resnet152",
    "Residual", "resnet_block", "d2l_resnet18",
    "SmallResNet", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "PlainBlock", "ShortcutA", "plain20", "plain32", "plain44", "plain56", "plain110",
    "PreActBlock", "PreActBottleneck", "PreActResNet",
    "preact_resnet18", "preact_resnet34", "preact_resnet50", "preact_resnet101", "preact_resnet152",
    "summary", "ModelSummary", "SummaryRow",
]
