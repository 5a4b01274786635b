"""``CrossEntropyLoss``: the classification loss as a layer."""
from __future__ import annotations

from typing import Any

from minires.functional.loss import cross_entropy
from minires.nn.module import Module
from minires.tensor import Tensor


class CrossEntropyLoss(Module):
    """loss = cross_entropy(logits, target): log-softmax over the classes and the negative log-likelihood.

    ``criterion = nn.CrossEntropyLoss(); loss = criterion(logits, target)``, logits (N, C) and
    integer targets (N,). ``reduction`` is "mean" (default), "sum" or "none"; ``label_smoothing``
    mixes the one-hot target with the uniform distribution: (1 - ls) * onehot + ls / C.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__()
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return cross_entropy(logits, target, reduction=self.reduction, label_smoothing=self.label_smoothing)
