"""Every operation of minires, each a Function with its forward and its backward side by side.

The signatures are PyTorch's (``torch.nn.functional``), so code moves between the two.
"""
from minires.functional.activation import abs, gelu, leaky_relu, relu, sigmoid, softmax, tanh
from minires.functional.arithmetic import (add, clamp, clone, div, exp, fill, log, mul, neg, pow, sqrt, sub,
                                           sum_to_shape)
from minires.functional.combine import cat, stack, where
from minires.functional.conv import conv2d, save_cols
from minires.functional.dropout import dropout
from minires.functional.linear import linear, matmul
from minires.functional.loss import cross_entropy, log_softmax, nll_loss
from minires.functional.normalization import batch_norm
from minires.functional.padding import pad
from minires.functional.adaptive_pool import adaptive_avg_pool2d
from minires.functional.pooling import avg_pool2d, max_pool2d
from minires.functional.regression import binary_cross_entropy_with_logits, l1_loss, mse_loss
from minires.functional.reduction import max, mean, sum
from minires.functional.shape import flatten, getitem, permute, reshape, to, transpose

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "clamp", "clone", "fill", "sum_to_shape",
    "sum", "mean", "max",
    "reshape", "flatten", "transpose", "permute", "getitem", "to",
    "matmul", "linear", "relu",
    "conv2d", "save_cols", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "batch_norm", "log_softmax", "cross_entropy", "nll_loss",
    "pad",
    "sigmoid", "tanh", "softmax", "leaky_relu", "gelu", "abs",
    "mse_loss", "l1_loss", "binary_cross_entropy_with_logits",
    "cat", "stack", "where",
    "dropout",
]
