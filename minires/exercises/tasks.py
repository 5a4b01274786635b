"""The exercises: one per operation's backward pass, each with its configurations and its hints.

Each ``Task`` names where the solution lives (a file of ``minires/functional`` and the Function
class whose ``backward`` is marked), what the student's stub says (the gradients that must come
out, the formula, the derivation page), and a fixed list of configurations, smallest first, each
varying one thing from the plain case so that "fails only when ..." names that thing.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Dict, List

import numpy

import minires
from minires.exercises.cases import (Case, Config, coverage, distinct, leaf, normal, shape_text, tied_maxima,
                                     ties)
from minires.functional import activation, adaptive_pool, conv, loss, normalization, pooling
from minires.functional.im2col import conv_output_size, pool_output_size

# minires.functional's function linear() hides its module linear: ask for the module by its full name
linear_module = importlib.import_module("minires.functional.linear")


@dataclass(frozen=True)
class Task:
    name: str                                  # the marker's name: "# BEGIN SOLUTION conv2d"
    path: str                                  # the file, relative to the package: "functional/conv.py"
    cls: str                                   # the Function class whose backward is the exercise
    returns: str                               # what backward must return, with the shapes
    formula: str
    page: str                                  # the derivation, relative to the repository
    configs: Callable[[], List[Config]]
    only: Dict[str, str]                       # feature -> what "fails only with it" suggests

    @property
    def module(self) -> str:
        return "minires." + self.path[:-3].replace("/", ".")


# ------------------------------------------------------------------------------ conv2d

def _conv(seed: int, N: int, cin: int, cout: int, size: int, k: int, s: int = 1, p: int = 0, d: int = 1,
          g: int = 1) -> Config:
    o = conv_output_size(size, k, s, p, d)
    x_shape, w_shape = (N, cin, size, size), (cout, cin // g, k, k)
    geometry = ((k, k), (s, s), (p, p), (d, d), (o, o))
    cover = coverage(x_shape, *geometry)
    features = {name for name, on in (("overlapping windows", cover.max() > 1), ("stride > 1", s > 1),
                                      ("padding > 0", p > 0), ("dilation > 1", d > 1), ("groups > 1", g > 1),
                                      ("a 1x1 kernel", k == 1))
                if on}

    def make() -> Case:
        return Case(lambda x, w, b: conv.conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g),
                    [leaf(normal(seed, *x_shape)), leaf(normal(seed + 1, *w_shape)), leaf(normal(seed + 2, cout))],
                    ("x", "weight", "bias"), masks={"overlap": cover > 1},
                    factors={f"N = {N}, the batch size": N, f"1/N = 1/{N}": 1 / N})
    label = f"x {x_shape}, weight {w_shape}, stride={s}, padding={p}, dilation={d}, groups={g}"
    return Config(label, frozenset(features), make)


def _conv_configs() -> List[Config]:
    return [_conv(10, 1, 1, 1, 4, 2, s=2), _conv(20, 2, 2, 3, 4, 1), _conv(30, 2, 2, 3, 5, 3),
            _conv(40, 2, 2, 2, 5, 3, s=2, p=1), _conv(50, 2, 2, 2, 6, 2, d=2), _conv(60, 2, 4, 4, 4, 3, g=2),
            _conv(70, 2, 3, 2, 5, 1, s=2)]


# ------------------------------------------------------------------------------ pooling

def _pool(kind: str, seed: int, size: int, k: int, s: int, p: int = 0, d: int = 1, ceil: bool = False,
          cip: bool = True, tied: bool = False) -> Config:
    o = pool_output_size(size, k, s, p, d, ceil)
    x_shape = (2, 2, size, size)
    geometry = ((k, k), (s, s), (p, p), (d, d), (o, o))
    cover = coverage(x_shape, *geometry)
    full = (k * k) * numpy.ones((o, o))
    if kind == "avg":
        counts = numpy.asarray(pooling._window_counts(numpy, size, k, s, p, o, cip))
        full = counts[:, None] * counts[None, :]
    features = {name for name, on in (
        ("overlapping windows", cover.max() > 1), ("stride > 1", s > 1 and not cover.max() > 1),
        ("padding > 0", p > 0), ("dilation > 1", d > 1), ("ceil_mode=True", ceil),
        ("count_include_pad=False", not cip and kind == "avg"), ("ties", tied),
        ("windows with fewer than kH*kW counted elements", kind == "avg" and (full != k * k).any())) if on}
    values = ties(seed, *x_shape) if tied else distinct(seed, *x_shape)

    def make() -> Case:
        if kind == "max":
            fn = lambda x: pooling.max_pool2d(x, k, s, p, dilation=d, ceil_mode=ceil)       # noqa: E731
            masks = {"overlap": cover > 1, "tie": tied_maxima(values, *geometry)}
        else:
            fn = lambda x: pooling.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=cip)  # noqa: E731
            masks = {"overlap": cover > 1}
        return Case(fn, [leaf(values)], ("x",), kink=tied, masks=masks, linear=kind == "avg",
                    factors={f"kH*kW = {k * k}, the window's size": k * k, f"1/(kH*kW) = 1/{k * k}": 1 / (k * k)})
    extra = (f", dilation={d}" if kind == "max" else f", count_include_pad={cip}") + (", with ties" if tied else "")
    label = f"x {x_shape}, kernel_size={k}, stride={s}, padding={p}, ceil_mode={ceil}{extra}"
    return Config(label, frozenset(features), make)


def _max_pool_configs() -> List[Config]:
    return [_pool("max", 1, 4, 2, 2), _pool("max", 2, 5, 3, 1), _pool("max", 3, 5, 3, 2, p=1),
            _pool("max", 4, 5, 2, 1, d=2), _pool("max", 5, 6, 3, 2, p=1, ceil=True),
            _pool("max", 6, 4, 2, 2, tied=True), _pool("max", 7, 5, 3, 1, tied=True)]


def _avg_pool_configs() -> List[Config]:
    return [_pool("avg", 1, 4, 2, 2), _pool("avg", 2, 5, 3, 1), _pool("avg", 3, 5, 3, 2, p=1),
            _pool("avg", 4, 5, 3, 2, p=1, cip=False), _pool("avg", 5, 5, 2, 2, ceil=True)]


def _adaptive(seed: int, h: int, w: int, out: int) -> Config:
    x_shape = (2, 2, h, w)
    overlap = (h % out != 0) or (w % out != 0)
    features = {name for name, on in (("output_size=1 (the global mean)", out == 1), ("bins that overlap", overlap),
                                      ("an output larger than the input", out > min(h, w))) if on}

    def make() -> Case:
        return Case(lambda x: adaptive_pool.adaptive_avg_pool2d(x, out), [leaf(normal(seed, *x_shape))], ("x",),
                    linear=True)
    return Config(f"x {x_shape}, output_size={out}", frozenset(features), make)


def _adaptive_configs() -> List[Config]:
    return [_adaptive(1, 4, 4, 2), _adaptive(2, 4, 4, 1), _adaptive(3, 5, 7, 3), _adaptive(4, 3, 3, 5)]


# ------------------------------------------------------------------------------ batch norm, relu

def _bn(seed: int, shape: tuple, training: bool, affine: bool = True) -> Config:
    C = shape[1]
    m = int(numpy.prod(shape)) // C
    features = {"training mode" if training else "evaluation mode"} | ({"weight=None"} if not affine else set())

    def make() -> Case:
        rng = numpy.random.default_rng(seed)
        running = None if training else (rng.standard_normal(C), 0.5 + rng.random(C))
        rm, rv = running if running else (None, None)
        x = leaf(normal(seed + 1, *shape) * 2 + 0.5)
        if affine:
            fn = lambda x, w, b: normalization.batch_norm(x, rm, rv, w, b, training=training)  # noqa: E731
            inputs, names = [x, leaf(normal(seed + 2, C) + 1), leaf(normal(seed + 3, C))], ("x", "weight", "bias")
        else:
            fn = lambda x: normalization.batch_norm(x, rm, rv, training=training)              # noqa: E731
            inputs, names = [x], ("x",)
        k = ((m - 1) / m) ** 0.5
        factors = {f"sqrt((m-1)/m) with m = {m} values per channel: the unbiased variance (divide by m - 1) "
                   f"where batch norm normalises with the biased one (divide by m)": k,
                   f"sqrt(m/(m-1)) with m = {m}: the variance's divisor m - 1 and m mixed up": 1 / k,
                   f"m = {m}, the values per channel": m, f"1/m = 1/{m}": 1 / m}
        return Case(fn, inputs, names, factors=factors, channel_axes=(0,) + tuple(range(2, len(shape))))
    mode = "training=True" if training else "training=False (running statistics)"
    return Config(f"x {shape}, {mode}" + ("" if affine else ", weight=None, bias=None"), frozenset(features), make)


def _bn_configs() -> List[Config]:
    return [_bn(1, (8, 2), True), _bn(2, (8, 2), False), _bn(3, (2, 3, 2, 2), True), _bn(4, (2, 3, 2, 2), False),
            _bn(5, (4, 3), True, affine=False)]


def _relu(seed: int, shape: tuple, zeros: bool) -> Config:
    def make() -> Case:
        values = distinct(seed, *shape)
        if zeros:
            values[..., ::2] = 0.0
        return Case(activation.relu, [leaf(values)], ("x",), kink=zeros, masks={"zero": values == 0})
    return Config(f"x {shape}" + (", some entries exactly 0" if zeros else ""),
                  frozenset({"zeros"} if zeros else set()), make)


# ------------------------------------------------------------------------------ linear, matmul

def _linear(seed: int, x_shape: tuple, out: int, bias: bool = True) -> Config:
    n_in = x_shape[-1]
    M = int(numpy.prod(x_shape[:-1]))
    features = ({"x with more than 2 axes"} if len(x_shape) > 2 else set()) | (set() if bias else {"bias=None"})

    def make() -> Case:
        inputs = [leaf(normal(seed, *x_shape)), leaf(normal(seed + 1, out, n_in))]
        if bias:
            inputs.append(leaf(normal(seed + 2, out)))
        return Case(lambda *a: linear_module.linear(*a), inputs, ("x", "weight", "bias")[:len(inputs)],
                    factors={f"M = {M}, the rows of x": M, f"1/M = 1/{M}": 1 / M})
    return Config(f"x {x_shape}, weight {(out, n_in)}" + (f", bias {(out,)}" if bias else ", no bias"),
                  frozenset(features), make)


def _matmul(seed: int, a_shape: tuple, b_shape: tuple) -> Config:
    features = {name for name, on in (("a batch of matrices (broadcasting)", len(a_shape) > 2 or len(b_shape) > 2),
                                      ("a 1-d operand", len(a_shape) == 1 or len(b_shape) == 1)) if on}

    def make() -> Case:
        return Case(linear_module.matmul, [leaf(normal(seed, *a_shape)), leaf(normal(seed + 1, *b_shape))], ("a", "b"))
    return Config(f"a {a_shape} @ b {b_shape}", frozenset(features), make)


# ------------------------------------------------------------------------------ log_softmax, cross_entropy

def _log_softmax(seed: int, shape: tuple, dim: int) -> Config:
    def make() -> Case:
        return Case(lambda x: loss.log_softmax(x, dim=dim), [leaf(normal(seed, *shape))], ("x",))
    return Config(f"x {shape}, dim={dim}", frozenset({f"dim={dim}"} if dim != 1 else set()), make)


def _cross_entropy(seed: int, shape: tuple, reduction: str, smoothing: float = 0.0) -> Config:
    M = int(numpy.prod(shape)) // shape[1]
    features = {f"reduction={reduction!r}"} | ({"label_smoothing > 0"} if smoothing else set()) \
        | ({"a spatial target (N, d1)"} if len(shape) > 2 else set())

    def make() -> Case:
        target = numpy.random.default_rng(seed).integers(0, shape[1], size=(shape[0],) + shape[2:])
        t = minires.tensor(target)                                         # no gradient
        fn = lambda z: loss.cross_entropy(z, t, reduction=reduction, label_smoothing=smoothing)  # noqa: E731
        return Case(fn, [leaf(normal(seed + 1, *shape))], ("logits",),
                    factors={f"M = {M}, the number of losses that reduction='mean' averages (the 1/M of the "
                             f"mean)": M, f"1/M = 1/{M}": 1 / M})
    return Config(f"logits {shape}, reduction={reduction!r}, label_smoothing={smoothing}", frozenset(features), make)


TASKS: Dict[str, Task] = {t.name: t for t in [
    Task("relu", "functional/activation.py", "ReLU", "(dx,): dx of shape x.shape",
         "dx = dout where x > 0, else 0 (ReLU'(0) = 0)", "docs/derivations/relu.md",
         lambda: [_relu(1, (3, 4), False), _relu(2, (2, 3, 4), False), _relu(3, (3, 4), True)],
         {"zeros": "ReLU'(0) = 0: the gradient passes only where x > 0 (strictly)"}),
    Task("linear", "functional/linear.py", "Linear",
         "(dx, dw, db): dx of shape x.shape, dw of shape weight.shape (out, in), db of shape (out,) "
         "(None for an input whose needs_input_grad is False)",
         "dx = dout @ W;  dW = dout^T @ x;  db = dout summed over every axis but the last",
         "docs/derivations/linear.md",
         lambda: [_linear(1, (4, 5), 3), _linear(2, (2, 4, 5), 3), _linear(3, (4, 5), 3, bias=False)],
         {"x with more than 2 axes": "flatten x and dout to (M, features) for dW and db",
          "bias=None": "return None for the bias when there is none"}),
    Task("matmul", "functional/linear.py", "MatMul", "(da, db): da of shape a.shape, db of shape b.shape",
         "da = dout @ b^T;  db = a^T @ dout, summed over broadcast axes", "docs/derivations/linear.md",
         lambda: [_matmul(1, (3, 4), (4, 5)), _matmul(2, (2, 3, 4), (4, 5)), _matmul(3, (4,), (4, 5)),
                  _matmul(4, (3, 4), (4,))],
         {"a batch of matrices (broadcasting)": "sum the gradient of a broadcast operand over the batch axes "
                                                "(sum_to_shape)",
          "a 1-d operand": "a 1-d operand is a row (a) or a column (b): add that axis, then remove it"}),
    Task("conv2d", "functional/conv.py", "Conv2d",
         "(dx, dw, db): dx of shape x.shape, dw of shape weight.shape, db of shape (C_out,) "
         "(None for an input whose needs_input_grad is False)",
         "per group: dW_g = dout_g @ cols_g^T,  dcols_g = W_g^T @ dout_g,  dx = col2im(dcols),  db = sum of dout",
         "docs/derivations/conv2d.md", _conv_configs,
         {"groups > 1": "each group's filters see only their own C_in/groups input channels: one product per group "
                        "(w_g is (G, Og, K), dout_g (G, Og, M))",
          "overlapping windows": "an input pixel in several windows gets the sum of their gradients: col2im must "
                                 "ADD each column back (+=), not assign it",
          "stride > 1": "the windows start every stride pixels: use the forward's stride in im2col/col2im",
          "padding > 0": "the gradient of the padding is dropped: crop it away after col2im",
          "dilation > 1": "a dilated window skips pixels: pass the dilation to im2col/col2im",
          "a 1x1 kernel": "the forward's 1x1 shortcut (self.pointwise) keeps no cols: handle it, or recompute cols"}),
    Task("max_pool2d", "functional/pooling.py", "MaxPool2d",
         "(dx,): dx of shape x.shape, or of (C, H, W) for an unbatched input",
         "dx = dout sent back to each window's winner (self.winner: the offset k = i*kW + j of its FIRST maximum), "
         "added up over overlapping windows", "docs/derivations/pooling.md", _max_pool_configs,
         {"ties": "a window's gradient goes to ONE element: its FIRST maximum in row-major order (strict >)",
          "overlapping windows": "an element that wins several windows gets the sum of their gradients (+=)",
          "padding > 0": "the padding never wins: crop the padded gradient back to (H, W)",
          "dilation > 1": "a dilated window's offset (i, j) is at (i*dH, j*dW)",
          "ceil_mode=True": "ceil_mode adds a last window that may hang past the input: crop it"}),
    Task("avg_pool2d", "functional/pooling.py", "AvgPool2d", "(dx,): dx of shape x.shape",
         "dx = dout / divisor added back onto every position of its window (the transpose of the average)",
         "docs/derivations/pooling.md", _avg_pool_configs,
         {"windows with fewer than kH*kW counted elements":
              "the divisor is not always kH*kW: with count_include_pad=False only real positions count, and a "
              "ceil_mode window hanging past the input counts only its part inside; use the forward's "
              "self.divisor (oH, oW)",
          "count_include_pad=False": "with count_include_pad=False the divisor counts only the real positions",
          "overlapping windows": "windows overlap: add each window's share (+=), do not assign it",
          "ceil_mode=True": "ceil_mode's last window hangs past the input: its divisor and its crop"}),
    Task("adaptive_avg_pool2d", "functional/adaptive_pool.py", "AdaptiveAvgPool2d", "(dx,): dx of shape x.shape",
         "out = A_h @ x @ A_w^T, so dx = A_h^T @ dout @ A_w", "docs/derivations/pooling.md", _adaptive_configs,
         {"output_size=1 (the global mean)": "the forward's global-mean path (self.global_pool) has no A_h, A_w: "
                                             "dx = dout / (H*W) everywhere",
          "bins that overlap": "overlapping bins: an element in two bins gets both shares"}),
    Task("batch_norm", "functional/normalization.py", "BatchNorm",
         "(dx, None, None, dweight, dbias): dx of shape x.shape, dweight and dbias of shape (C,) "
         "(None for the running statistics, and for an input whose needs_input_grad is False)",
         "training: dx = gamma * inv_std * (dout - mean(dout) - xhat * mean(dout * xhat)); evaluation: "
         "dx = gamma * inv_std * dout; dgamma = sum(dout * xhat), dbeta = sum(dout)",
         "docs/derivations/batch_norm.md", _bn_configs,
         {"training mode": "in training the mean and variance depend on x: dx has the two mean terms",
          "evaluation mode": "in evaluation the running statistics are constants: dx = gamma * inv_std * dout",
          "weight=None": "weight=None means gamma = 1 (self.gamma), and no dweight/dbias to return"}),
    Task("log_softmax", "functional/loss.py", "LogSoftmax", "(dx,): dx of shape x.shape",
         "dx = dout - softmax * sum(dout) along dim", "docs/derivations/cross_entropy.md",
         lambda: [_log_softmax(1, (4, 5), 1), _log_softmax(2, (3, 4, 5), -1), _log_softmax(3, (4, 5), 0)],
         {"dim=-1": "sum along self.dim, not a fixed axis", "dim=0": "sum along self.dim, not a fixed axis"}),
    Task("cross_entropy", "functional/loss.py", "CrossEntropy",
         "(dlogits, None): dlogits of shape logits.shape, None for the target",
         "dlogits = (softmax - q) * dloss, q = (1 - ls) * onehot(target) + ls / C; dloss = dout / M for "
         "reduction='mean'", "docs/derivations/cross_entropy.md",
         lambda: [_cross_entropy(1, (4, 5), "sum"), _cross_entropy(2, (4, 5), "mean"),
                  _cross_entropy(3, (4, 5), "none"), _cross_entropy(4, (4, 5), "sum", 0.1),
                  _cross_entropy(5, (2, 3, 4), "mean")],
         {"reduction='mean'": "reduction='mean' divides the loss by M, so each dloss is dout / M",
          "reduction='none'": "reduction='none': dout holds one value per loss",
          "label_smoothing > 0": "with label smoothing the target is q = (1 - ls) * onehot + ls / C",
          "a spatial target (N, d1)": "the class axis is axis 1; positions (d1, ...) follow it"}),
]}


def select(ops: str = "") -> List[Task]:
    """The tasks named in ``ops`` ("conv2d,batch_norm"), in the order of ``TASKS``; all for ""."""
    if not ops:
        return list(TASKS.values())
    names = [n.strip() for n in ops.split(",") if n.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"unknown exercise(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    return [t for t in TASKS.values() if t.name in names]


__all__ = ["TASKS", "Task", "select", "shape_text"]
