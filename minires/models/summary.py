"""``summary(model, input_shape)``: each layer's output shape and size, and the model's totals.

It runs one forward pass on zeros, in evaluation mode and under ``no_grad()``, and watches every layer as it
runs: for the duration of that pass, each watched module's ``forward`` is wrapped (on the instance, never on
the class) by a function that records the output's shape; afterwards every wrapper is removed and every
module's ``training`` flag is put back as it was. Nothing global changes.

The counts are the ones the tutorials print (Keras' ``model.summary()``):

- trainable:      parameters that require a gradient;
- non-trainable:  frozen parameters (``requires_grad=False``) and the floating-point buffers, i.e. batch
                  norm's ``running_mean`` and ``running_var``. The integer ``num_batches_tracked`` is a
                  counter, not a value of the model, and is not counted;
- total:          the sum of the two.

So for a plain ResNet, ``total`` is larger than ``sum(p.numel() for p in model.parameters())`` (the number
torchvision publishes) by two values per batch-norm channel.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy

from minires import backend
from minires.autograd import no_grad
from minires.backend import DeviceLike
from minires.nn import Module
from minires.tensor import Tensor


@dataclass(frozen=True)
class SummaryRow:
    """One call of one layer: its dotted name in the model, its type, the shape it returned, and its size
    (parameters and running statistics; 0 when the same layer was already listed, so the rows add up)."""

    name: str
    layer: str
    output_shape: Any
    num_params: int


@dataclass(frozen=True, repr=False)
class ModelSummary:
    """What ``summary`` returns; ``str()`` (or ``print``) gives the table."""

    rows: List[SummaryRow]
    input_shape: Tuple[int, ...]
    total: int
    trainable: int
    non_trainable: int
    output_shape: Any = field(default=None)

    def __str__(self) -> str:
        shapes = [_format_shape(r.output_shape) for r in self.rows]
        names = [f"{r.name} ({r.layer})" if r.name else r.layer for r in self.rows]
        name_width = max([len("Layer (type)")] + [len(n) for n in names]) + 2
        shape_width = max([len("Output shape")] + [len(s) for s in shapes]) + 2
        param_width = max([len("Param #")] + [len(f"{r.num_params:,}") for r in self.rows])
        width = name_width + shape_width + param_width
        lines = ["Layer (type)".ljust(name_width) + "Output shape".ljust(shape_width)
                 + "Param #".rjust(param_width), "=" * width]
        for name, shape, row in zip(names, shapes, self.rows):
            lines.append(name.ljust(name_width) + shape.ljust(shape_width) + f"{row.num_params:,}".rjust(param_width))
        lines += ["=" * width,
                  f"Total params: {self.total:,}",
                  f"Trainable params: {self.trainable:,}",
                  f"Non-trainable params: {self.non_trainable:,}",
                  "-" * width,
                  f"Input shape: {_format_shape(self.input_shape)}",
                  f"Output shape: {_format_shape(self.output_shape)}"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def summary(model: Module, input_shape: Sequence[int], device: DeviceLike = None, dtype: Any = None,
            depth: Optional[int] = None) -> ModelSummary:
    """Run ``model`` once on zeros of ``input_shape`` (batch dimension included, e.g. (1, 1, 224, 224)) and
    tabulate its layers.

    ``depth=None`` lists every leaf layer (a module without children), once per call: a ReLU used twice in
    a block gives two rows. ``depth=k`` lists the modules k levels down instead (``depth=1``: the model's
    children, e.g. the stages of ``d2l_resnet18``), and leaves that sit higher up. ``device`` and ``dtype``
    default to those of the model's parameters (the CPU and float32 for a model without any).
    """
    if isinstance(input_shape, int) or not all(isinstance(s, (int, numpy.integer)) and s > 0
                                               for s in input_shape):
        raise ValueError(f"input_shape is the full input shape with the batch dimension, positive integers, "
                         f"e.g. (1, 3, 224, 224); got {input_shape!r}")
    if depth is not None and depth < 1:
        raise ValueError(f"depth counts levels below the model and starts at 1 (its children); got {depth}")
    input_shape = tuple(int(s) for s in input_shape)
    first = next(iter(model.parameters()), None)
    if dtype is None:
        dtype = numpy.float32 if first is None else first.dtype
    if device is None:
        device = "cpu" if first is None else first.device
    x = Tensor(backend.to_device(numpy.zeros(input_shape, dtype=dtype), device))

    rows: List[SummaryRow] = []
    listed: set = set()                        # ids of modules whose size is already in a row
    watched = _watched_modules(model, depth)
    modes = [(m, m.training) for m in model.modules()]
    originals = [(m, m.__dict__.get("forward")) for _, m in watched]
    try:
        for name, module in watched:
            module.forward = _recording(module, name, rows, listed)
        model.eval()
        with no_grad():
            out = model(x)
    finally:
        for module, original in originals:
            if "forward" in module.__dict__:
                del module.forward              # drop the wrapper: the class's forward shows again
            if original is not None:
                module.forward = original       # an instance-level forward the user had set
        for module, training in modes:
            module.training = training

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    statistics = sum(b.numel() for b in model.buffers() if numpy.issubdtype(b.dtype, numpy.floating))
    return ModelSummary(rows=rows, input_shape=input_shape, total=trainable + frozen + statistics,
                        trainable=trainable, non_trainable=frozen + statistics, output_shape=_shape_of(out))


def _watched_modules(model: Module, depth: Optional[int]) -> List[Tuple[str, Module]]:
    """The (name, module) pairs that get a row: leaves, or the modules ``depth`` levels down (and
    shallower leaves). A model without children is its own single row."""
    chosen = []
    for name, module in model.named_modules():
        level = 0 if name == "" else name.count(".") + 1
        is_leaf = next(iter(module.children()), None) is None
        if depth is None:
            wanted = is_leaf
        else:
            wanted = level == depth or (level < depth and is_leaf)
        if wanted:
            chosen.append((name, module))
    return chosen


def _recording(module: Module, name: str, rows: List[SummaryRow], listed: set) -> Callable[..., Any]:
    """``module``'s own forward, wrapped to append a row for each call."""
    forward = module.forward

    def recorded_forward(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        size = 0 if id(module) in listed else _size(module)
        listed.add(id(module))
        rows.append(SummaryRow(name, type(module).__name__, _shape_of(out), size))
        return out

    return recorded_forward


def _size(module: Module) -> int:
    """Parameters and floating-point buffers (running statistics) of ``module`` and everything below it."""
    params = sum(p.numel() for p in module.parameters())
    return params + sum(b.numel() for b in module.buffers() if numpy.issubdtype(b.dtype, numpy.floating))


def _shape_of(out: Any) -> Any:
    if isinstance(out, Tensor):
        return out.shape
    if isinstance(out, (tuple, list)):
        return [_shape_of(o) for o in out]
    return type(out).__name__


def _format_shape(shape: Any) -> str:
    if isinstance(shape, tuple):
        return "(" + ", ".join(str(s) for s in shape) + ")"
    if isinstance(shape, list):
        return "[" + ", ".join(_format_shape(s) for s in shape) + "]"
    return str(shape)
