"""``Dropout``: the dropout layer, active in training mode only."""
from __future__ import annotations

from minires.functional.dropout import _check_p, dropout
from minires.nn.module import Module
from minires.tensor import Tensor


class Dropout(Module):
    """Zero each value with probability ``p`` in training mode and scale the rest by 1 / (1 - p);
    in evaluation mode (``module.eval()``) return the input unchanged, as PyTorch does.

    ``inplace`` is accepted so that PyTorch code runs unchanged, but minires never overwrites
    its input: ``inplace=True`` computes exactly what ``False`` does.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p = _check_p(p)
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
