"""``BatchNorm2d`` and ``BatchNorm1d``: batch normalization with running statistics.

The layer owns the learned scale and shift (``weight`` = gamma, ``bias`` = beta) and three
buffers: ``running_mean``, ``running_var`` and ``num_batches_tracked`` (how many training
batches it has seen, an int64 0-d tensor). Which statistics normalise the input depends on
the module's mode, set by ``model.train()`` / ``model.eval()`` and by nothing else:

- training: the batch's mean and biased variance; the running statistics move towards them
  (``running = (1 - f) * running + f * batch``, the unbiased variance for ``running_var``),
  with f = ``momentum``, or f = 1 / num_batches_tracked when ``momentum=None`` (a
  cumulative average of all batches seen);
- evaluation: the running statistics; nothing is measured or updated.

``no_grad()`` only stops the graph: under it a module in training mode still normalises with
the batch and still updates its running statistics, exactly as in PyTorch.
"""
from __future__ import annotations

from typing import Optional

import numpy

from minires import backend
from minires.backend import DeviceLike
from minires.functional.normalization import batch_norm
from minires.nn import init
from minires.nn.module import Module
from minires.nn.parameter import DTypeLike, Parameter, empty
from minires.tensor import Tensor


class _BatchNorm(Module):
    """What BatchNorm1d and BatchNorm2d share; they differ only in the input shapes they accept.

    Arguments as in PyTorch: ``affine=False`` drops gamma and beta, the keyword ``bias=False``
    only beta; ``track_running_stats=False`` keeps no running statistics (the batch's are then
    used in evaluation too).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device: DeviceLike = None, dtype: Optional[DTypeLike] = None, *, bias: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(empty((num_features,), dtype, device))      # gamma
        else:
            self.register_parameter("weight", None)
        if affine and bias:
            self.bias = Parameter(empty((num_features,), dtype, device))        # beta
        else:
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(empty((num_features,), dtype, device)))
            self.register_buffer("running_var", Tensor(empty((num_features,), dtype, device)))
            count = backend.to_device(numpy.zeros((), dtype=numpy.int64), device)
            self.register_buffer("num_batches_tracked", Tensor(count))           # int64, shape ()
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def _upgrade_state_dict(self, state_dict: dict, prefix: str) -> None:
        """A file from before ``num_batches_tracked`` existed loads with the count at 0, as in PyTorch."""
        key = f"{prefix}num_batches_tracked"
        if self.track_running_stats and key not in state_dict:
            state_dict[key] = numpy.zeros((), dtype=numpy.int64)

    def reset_running_stats(self) -> None:
        """running_mean = 0, running_var = 1, num_batches_tracked = 0."""
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self) -> None:
        """Fresh running statistics, gamma = 1 and beta = 0."""
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    # Set by each subclass: the input ranks it accepts, how to say so, and the layer for other ranks.
    _input_ndims: tuple = ()
    _expected: str = ""
    _instead: str = ""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.ndim not in self._input_ndims:
            raise ValueError(f"{type(self).__name__} expects {self._expected}, got shape {x.shape}; "
                             f"{self._instead}")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1                                  # count this batch, in place
            if self.momentum is None:                                           # cumulative average
                factor = 1.0 / int(self.num_batches_tracked.item())
        # Training, or no running statistics at all: normalise with the batch's statistics.
        use_batch_stats = self.training or self.running_mean is None
        # The running statistics are updated only in training mode and only when tracked;
        # batch_norm moves them in place: running = (1 - factor) * running + factor * batch.
        keep_running = not self.training or self.track_running_stats
        return batch_norm(x,
                          self.running_mean if keep_running else None,
                          self.running_var if keep_running else None,
                          self.weight, self.bias, use_batch_stats, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm2d(_BatchNorm):
    """Batch norm over images: x (N, C, H, W), C = ``num_features``; statistics per channel over N*H*W values."""

    _input_ndims = (4,)
    _expected = "a 4-D input (N, C, H, W)"
    _instead = "for (N, C) or (N, C, L) inputs use BatchNorm1d"


class BatchNorm1d(_BatchNorm):
    """Batch norm over features: x (N, C) or (N, C, L), C = ``num_features``; statistics per channel."""

    _input_ndims = (2, 3)
    _expected = "a 2-D (N, C) or 3-D (N, C, L) input"
    _instead = "for images (N, C, H, W) use BatchNorm2d"
