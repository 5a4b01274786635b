"""Weight initialisation, with PyTorch's rules and names (``torch.nn.init``).

Each function fills a tensor IN PLACE (its ``.data``, outside any graph) and returns it. Random
values come from minires's generator (``minires.manual_seed`` makes them reproducible), or
from the NumPy ``generator`` passed in; they are drawn on the CPU in float64 and then copied
to the tensor's device and dtype, so a seed gives the same weights on NumPy and CuPy.

The scaled initialisations keep the variance of activations (He/Kaiming) or of activations and
gradients (Glorot/Xavier) about constant from layer to layer. They depend on the fans:

    fan_in  = size(1) * receptive field     (input channels x kernel height x kernel width)
    fan_out = size(0) * receptive field     (output channels x kernel height x kernel width)

for a weight (out, in, *kernel); a Linear weight (out, in) has a receptive field of 1.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy

from minires import backend
from minires.autograd import no_grad
from minires.random import default_generator
from minires.tensor import Tensor

_LINEAR_NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                          "conv_transpose2d", "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    """The factor that keeps activations' variance through ``nonlinearity``.

    linear, conv*, sigmoid: 1;  tanh: 5/3;  relu: sqrt(2);  selu: 3/4;
    leaky_relu: sqrt(2 / (1 + slope^2)), slope = ``param`` (0.01 when None).
    """
    if nonlinearity in _LINEAR_NONLINEARITIES:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain('leaky_relu', param) expects a number for the negative slope, "
                             f"got {param!r}")
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain does not know the nonlinearity {nonlinearity!r}; expected one of "
                     f"{_LINEAR_NONLINEARITIES + ('tanh', 'relu', 'leaky_relu', 'selu')}")


def calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple:
    """(fan_in, fan_out) of a weight shaped (out, in, *kernel): size(1) and size(0) times the kernel size."""
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a weight with at least 2 dimensions, (out, in, *kernel); "
                         f"got shape {shape}. A bias has no fans: initialise it with uniform_, normal_ or zeros_")
    receptive_field = math.prod(shape[2:])       # kH * kW for a conv weight, 1 for a Linear weight
    return shape[1] * receptive_field, shape[0] * receptive_field


def _fan(tensor: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _fill(tensor: Tensor, values: numpy.ndarray) -> Tensor:
    """Copy CPU ``values`` into ``tensor``'s own array (same object, same device, same dtype)."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nn.init fills a Tensor or Parameter in place, got {type(tensor).__name__}")
    with no_grad():                                       # an in-place change: its version counts it
        tensor.copy_(backend.to_device(values.astype(tensor.dtype, copy=False), tensor.device))
    return tensor


def _rng(generator: Optional[numpy.random.Generator]) -> numpy.random.Generator:
    return default_generator() if generator is None else generator


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0,
             generator: Optional[numpy.random.Generator] = None) -> Tensor:
    """Fill with values drawn uniformly from [a, b)."""
    return _fill(tensor, _rng(generator).uniform(a, b, size=tensor.shape))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0,
            generator: Optional[numpy.random.Generator] = None) -> Tensor:
    """Fill with values drawn from N(mean, std^2)."""
    return _fill(tensor, _rng(generator).normal(mean, std, size=tensor.shape))


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    return _fill(tensor, numpy.full(tensor.shape, val))


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0 (a bias; batch norm's beta; a block's last gamma under zero_init_residual)."""
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1 (batch norm's gamma)."""
    return constant_(tensor, 1.0)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: Optional[numpy.random.Generator] = None) -> Tensor:
    """He initialisation, uniform: U(-bound, bound), bound = gain * sqrt(3 / fan).

    ``a`` is the negative slope of the leaky ReLU that follows (only used with
    ``nonlinearity="leaky_relu"``). Conv2d and Linear use ``a=sqrt(5)``, which gives bound
    = 1 / sqrt(fan_in). A zero-element tensor is returned unchanged.
    """
    if 0 in tensor.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std                  # U(-b, b) has variance b^2 / 3
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: Optional[numpy.random.Generator] = None) -> Tensor:
    """He initialisation, normal: N(0, std^2), std = gain / sqrt(fan).

    torchvision's ResNets use ``mode="fan_out", nonlinearity="relu"``: std = sqrt(2 / (out * kH * kW)).
    A zero-element tensor is returned unchanged.
    """
    if 0 in tensor.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, generator)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0,
                    generator: Optional[numpy.random.Generator] = None) -> Tensor:
    """Glorot initialisation, uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    if 0 in tensor.shape:
        return tensor
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0,
                   generator: Optional[numpy.random.Generator] = None) -> Tensor:
    """Glorot initialisation, normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    if 0 in tensor.shape:
        return tensor
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)
