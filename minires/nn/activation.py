"""``ReLU``: the activation layer."""
from __future__ import annotations

from minires.functional.activation import relu
from minires.nn.module import Module
from minires.tensor import Tensor


class ReLU(Module):
    """out = max(x, 0), with ReLU'(0) = 0.

    ``inplace`` is accepted so that PyTorch code (``nn.ReLU(inplace=True)``) runs unchanged, but
    minires never overwrites its input: an in-place activation would destroy a value that the
    backward pass still needs. ``inplace=True`` therefore computes exactly what ``False`` does.
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return relu(x)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""
