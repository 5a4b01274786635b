"""``Conv2d``: a 2-D convolution layer, the weights and bias of ``functional.conv2d``."""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional

from minires.backend import DeviceLike
from minires.functional.conv import conv2d
from minires.functional.im2col import pair
from minires.nn import init
from minires.nn.module import Module
from minires.nn.parameter import DTypeLike, Parameter, empty
from minires.tensor import Tensor


class Conv2d(Module):
    """out = conv2d(x, weight, bias, stride, padding, dilation, groups).

    Shapes: x (N, in_channels, H, W) -> out (N, out_channels, oH, oW), with
    oH = floor((H + 2 * padding - dilation * (kH - 1) - 1) / stride) + 1 (and the same for oW).
    Parameters: ``weight`` (out_channels, in_channels / groups, kH, kW) and ``bias``
    (out_channels,) unless ``bias=False``. Initialised as PyTorch does: the weight with
    ``kaiming_uniform_(a=sqrt(5))``, the bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 device: DeviceLike = None, dtype: Optional[DTypeLike] = None):
        super().__init__()
        if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"Conv2d: groups must be a positive int, got {groups!r}")
        groups = int(groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must both "
                             f"be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = padding if padding in ("same", "valid") else pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        if self.padding == "same" and self.stride != (1, 1):
            raise ValueError(f"Conv2d: padding='same' is not supported for strided convolutions "
                             f"(stride={self.stride}); use stride=1, or give the padding as numbers")
        shape = (out_channels, in_channels // groups) + self.kernel_size     # (out, in / groups, kH, kW)
        self.weight = Parameter(empty(shape, dtype, device))
        if bias:
            self.bias = Parameter(empty((out_channels,), dtype, device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation (drawn from minires's seeded generator)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))                   # bound = 1 / sqrt(fan_in)
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text
