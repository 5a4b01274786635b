"""ResNet-18 as "Dive into Deep Learning" builds it (chapter "Residual Networks (ResNet)").

The book's layout differs from torchvision's in three ways, all visible below:

- every convolution has a bias (the batch norm that follows makes it redundant, but the book keeps it);
- the shortcut that changes the shape is a 1x1 convolution alone, without a batch norm (``use_1x1conv``);
- the network is one ``nn.Sequential`` of five stages and a head, so its state-dict keys are numbers
  (``1.0.conv1.weight``), not torchvision's names.

``d2l_resnet18(in_channels=1, num_classes=10)`` is the book's Fashion-MNIST model: on a 1x1x224x224 input
``summary`` reports 11,186,186 values, 11,178,378 trainable and 7,808 non-trainable (the running mean and
variance of its 3,904 batch-norm channels), with stage outputs 64x56x56, 128x28x28, 256x14x14, 512x7x7.
"""
from __future__ import annotations

from typing import List

from minires import functional as F
from minires import nn
from minires.tensor import Tensor


class Residual(nn.Module):
    """The book's residual block:  out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)),

    with shortcut(x) = conv3(x), a strided 1x1 convolution, when ``use_1x1conv``, and x otherwise.
    """

    def __init__(self, in_channels: int, num_channels: int, use_1x1conv: bool = False, strides: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2d(in_channels, num_channels, kernel_size=1, stride=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))      # (N, num_channels, H/strides, W/strides)
        y = self.bn2(self.conv2(y))
        if self.conv3 is not None:
            x = self.conv3(x)                    # (N, num_channels, H/strides, W/strides)
        y = y + x                                # never in place: the graph still needs `y`
        return F.relu(y)


def resnet_block(in_channels: int, num_channels: int, num_residuals: int, first_block: bool = False) -> nn.Sequential:
    """One stage of ``num_residuals`` blocks. Its first block halves the size and changes the channels with a
    1x1 shortcut, except in the first stage (``first_block``), which follows a max pool and keeps both."""
    blocks: List[nn.Module] = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blocks.append(Residual(in_channels, num_channels, use_1x1conv=True, strides=2))
        else:
            blocks.append(Residual(num_channels, num_channels))
    return nn.Sequential(*blocks)


def d2l_resnet18(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """The book's ResNet-18 (1 input channel, 10 classes by default: Fashion-MNIST resized to 224x224).

    Keys: ``0`` the stem, ``1``-``4`` the stages, ``5`` global average pooling, ``6`` flatten, ``7`` the
    classifier. Layers keep minires's (PyTorch's) default initialisation, as in the book.
    """
    b1 = nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),   # (N, 64, 112, 112) for 224x224
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),                 # (N, 64, 56, 56)
    )
    b2 = resnet_block(64, 64, 2, first_block=True)                        # (N, 64, 56, 56)
    b3 = resnet_block(64, 128, 2)                                         # (N, 128, 28, 28)
    b4 = resnet_block(128, 256, 2)                                        # (N, 256, 14, 14)
    b5 = resnet_block(256, 512, 2)                                        # (N, 512, 7, 7)
    return nn.Sequential(
        b1, b2, b3, b4, b5,
        nn.AdaptiveAvgPool2d((1, 1)),                                     # (N, 512, 1, 1)
        nn.Flatten(),                                                     # (N, 512)
        nn.Linear(512, num_classes),                                      # (N, num_classes)
    )
