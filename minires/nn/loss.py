"""``CrossEntropyLoss``: the classification loss as a layer."""
from __future__ import annotations

from typing import Any, Optional

from minires.functional.loss import cross_entropy
from minires.nn.module import Module
from minires.tensor import Tensor


class CrossEntropyLoss(Module):
    """loss = cross_entropy(logits, target): log-softmax over the classes and the negative log-likelihood.

    ``criterion = nn.CrossEntropyLoss(); loss = criterion(logits, target)``, logits (N, C) and
    integer targets (N,) or class probabilities (N, C). PyTorch's arguments: ``weight`` (one per
    class), ``ignore_index`` (a target value that counts for nothing), ``reduction`` "mean"
    (default), "sum" or "none"; ``label_smoothing`` mixes the target with the uniform
    distribution: (1 - ls) * onehot + ls / C.
    """

    def __init__(self, weight: Optional[Tensor] = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__()
        self.weight, self.ignore_index = weight, ignore_index
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return cross_entropy(logits, target, self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)
