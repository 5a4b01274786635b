"""Pooling layers: ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d``.

They have no parameters: each holds its window geometry and calls its ``functional`` twin.
"""
from __future__ import annotations

from typing import Any, Optional

from minires.functional.adaptive_pool import adaptive_avg_pool2d
from minires.functional.pooling import avg_pool2d, max_pool2d
from minires.nn.module import Module
from minires.tensor import Tensor


class MaxPool2d(Module):
    """The maximum of each window (padding counts as -inf); ``stride`` defaults to ``kernel_size``.

    x (N, C, H, W) -> (N, C, oH, oW), oH = floor((H + 2p - d(k - 1) - 1) / s) + 1 (ceil with ``ceil_mode``).
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation, self.ceil_mode = padding, dilation, ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """The average of each window (zero padding); ``stride`` defaults to ``kernel_size``.

    The divisor counts the padding (``count_include_pad=True``, PyTorch's default) or only the
    real input positions; ``divisor_override`` replaces it with a constant.
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: Optional[int] = None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size: x (N, C, H, W) -> (N, C, oH, oW).

    ``AdaptiveAvgPool2d((1, 1))`` is global average pooling, as at the end of a ResNet.
    Bin i spans rows floor(i * H / oH) to ceil((i + 1) * H / oH).
    """

    def __init__(self, output_size: Any):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
