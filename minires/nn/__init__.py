"""``minires.nn``: layers and models as Modules, with PyTorch's names, arguments and state_dict keys.

A Module holds parameters (learned), buffers (saved, not learned) and child modules; its
``forward`` calls the operations of ``minires.functional``, which hold all of the math.
"""
from minires.nn import init
from minires.nn import utils
from minires.nn.activation import ReLU
from minires.nn.containers import ModuleList, Sequential
from minires.nn.conv import Conv2d
from minires.nn.dropout import Dropout
from minires.nn.linear import Identity, Linear
from minires.nn.loss import CrossEntropyLoss
from minires.nn.module import IncompatibleKeys, Module
from minires.nn.normalization import BatchNorm1d, BatchNorm2d
from minires.nn.parameter import Parameter
from minires.nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from minires.nn.shape import Flatten

__all__ = [
    "Module", "Parameter", "IncompatibleKeys", "Sequential", "ModuleList",
    "Conv2d", "Linear", "Identity", "Flatten", "BatchNorm1d", "BatchNorm2d", "ReLU",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "CrossEntropyLoss", "init", "utils",
    "Dropout",
]
