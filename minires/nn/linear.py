"""``Linear`` (the fully connected layer) and ``Identity`` (a layer that does nothing)."""
from __future__ import annotations

import math
from typing import Optional

from minires.backend import DeviceLike
from minires.functional.linear import linear
from minires.nn import init
from minires.nn.module import Module
from minires.nn.parameter import DTypeLike, Parameter, empty
from minires.tensor import Tensor


class Identity(Module):
    """out = x. A placeholder: ``model.fc = nn.Identity()`` turns a classifier into a feature extractor."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class Linear(Module):
    """out = x @ weight^T + bias;  x (..., in_features) -> out (..., out_features).

    Parameters: ``weight`` (out_features, in_features) and ``bias`` (out_features,) unless
    ``bias=False``. Initialised as PyTorch does: ``kaiming_uniform_(a=sqrt(5))`` for the weight
    (U(-1/sqrt(in_features), 1/sqrt(in_features))), the bias from the same range.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: DeviceLike = None, dtype: Optional[DTypeLike] = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(empty((out_features, in_features), dtype, device))
        if bias:
            self.bias = Parameter(empty((out_features,), dtype, device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation (drawn from minires's seeded generator)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
