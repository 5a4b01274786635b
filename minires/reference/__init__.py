"""By-definition oracles: the slow, obviously-right versions of minires' operations.

Each function here follows the textbook definition with explicit loops over output elements,
computes in float64, and uses nothing but NumPy (no other minires module, no CuPy). They
serve two purposes:

- test oracles: the fast operations in `minires.functional` must agree with them;
- teaching material: read one beside its fast twin to see what the im2col version computes.

They are never used in training. Their semantics are PyTorch's, down to the corner cases
(ceil_mode windows, average-pool divisors, the unbiased running variance).
"""

from .conv import conv2d
from .loss import cross_entropy, log_softmax
from .normalization import batch_norm
from .pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d, max_pool2d_backward

__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "conv2d",
    "cross_entropy",
    "log_softmax",
    "max_pool2d",
    "max_pool2d_backward",
]
