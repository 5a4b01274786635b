"""minires: a deep-learning framework written from scratch on NumPy and CuPy.

Every operation is a Function with an explicit forward and backward pass, in plain array code
that runs on NumPy (CPU) and CuPy (GPU) alike. Start with ``minires.tensor`` and
``minires.functional``; check any gradient with ``minires.testing.gradcheck``.
"""
from minires import backend, data, functional, io, models, nn, optim, parallel
from minires.autograd import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from minires.functional import (abs, cat, clamp, exp, log, matmul, sigmoid, softmax, sqrt, stack, tanh,  # noqa: A004
                                where)
from minires.backend import cuda_is_available
from minires.io import load, save
from minires.parallel import get_num_threads, set_num_threads
from minires.creation import arange, full, ones, ones_like, zeros, zeros_like
from minires.random import manual_seed, rand, randint, randn
from minires.tensor import Tensor, tensor
from minires import viz
from minires.trace import trace

float32 = "float32"
float64 = "float64"
int64 = "int64"

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled",
    "manual_seed", "randn", "rand", "randint", "zeros", "ones", "full", "zeros_like", "ones_like",
    "arange", "cuda_is_available", "backend", "functional", "models", "nn", "optim", "data", "io", "save", "load", "float32", "float64", "int64",
    "viz", "trace", "parallel", "get_num_threads", "set_num_threads",
    "abs", "cat", "clamp", "exp", "log", "matmul", "sigmoid", "softmax", "sqrt", "stack", "tanh", "where",
]
