"""The operations of ``minires gradcheck``: for each, the cases to draw and the properties to check.

The same properties as ``tests/functional/``: gradcheck on Hypothesis-drawn configurations,
adjoint checks for the linear operations, and exact tests of the kink rules. Each ``examples``
tuple holds the configurations where classic mistakes hide (groups > 1, dilation, overlapping
windows, ``ceil_mode``, padding without ``count_include_pad``, ties, square shapes reduced along
one axis, broadcasting on a leading and on a middle axis, batch norm in both modes).
"""
from __future__ import annotations

from typing import Dict

import numpy
from hypothesis import strategies as st

import minires
import minires.functional as F
from minires import reference
from minires.functional.im2col import conv_output_size, pool_output_size
from minires.testing.gradcheck import adjoint_check, gradcheck, gradcheck_module
from minires.testing.strategies import (ConvConfig, PoolConfig, away_from_zero, conv2d_configs, distinct_values,
                                        normal_array, pool2d_configs)
from minires.testing.suite import Operation, exact, leaf
from minires.testing.suite_ops_more import more_operations
from minires.testing.tiers import GradcheckError

SEEDS = st.integers(0, 2**16)
SHAPES = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def _upstream(shape: tuple, seed: int) -> numpy.ndarray:
    """Small integers as an upstream gradient: sums of them are exact, so kink tests compare bits."""
    return numpy.random.default_rng(seed + 7).integers(1, 5, size=shape).astype(numpy.float64)


# ------------------------------------------------------------------ relu, linear, matmul

def _relu(case: dict) -> None:
    gradcheck(F.relu, leaf(away_from_zero(case["shape"], case["seed"])), seed=case["seed"])
    x = leaf(numpy.random.default_rng(case["seed"]).integers(-1, 2, size=case["shape"]))   # zeros: the kink
    x.data.reshape(-1)[0] = 0.0
    dout = _upstream(case["shape"], case["seed"])
    F.relu(x).backward(dout)
    exact("relu's kink rule, ReLU'(0) = 0", x.grad.numpy(), dout * (x.data > 0))


def _linear(case: dict) -> None:
    s = case["seed"]
    x = leaf(normal_array(case["lead"] + (case["in"],), s))
    w, b = leaf(normal_array((case["out"], case["in"]), s + 1)), leaf(normal_array((case["out"],), s + 2))
    gradcheck(F.linear, x, w, b if case["bias"] else None, seed=s)


MATMUL_SHAPES = {"matrix": ((2, 3), (3, 4)), "batched": ((2, 2, 3), (2, 3, 4)),
                 "broadcast_b": ((2, 2, 3), (3, 4)), "broadcast_a": ((2, 3), (2, 3, 4)),
                 "vector_a": ((3,), (3, 4)), "vector_b": ((2, 3), (3,))}


def _matmul(case: dict) -> None:
    a_shape, b_shape = MATMUL_SHAPES[case["kind"]]
    a, b = leaf(normal_array(a_shape, case["seed"])), leaf(normal_array(b_shape, case["seed"] + 1))
    gradcheck(F.matmul, a, b, seed=case["seed"])


# ------------------------------------------------------------------ broadcasting binary operations

@st.composite
def _broadcast_cases(draw) -> dict:
    """a's shape, and b's: a suffix of it with some axes set to 1 (a leading, middle or last axis)."""
    shape = tuple(draw(st.lists(st.integers(2, 3), min_size=1, max_size=3)))
    kept = draw(st.integers(1, len(shape)))
    b = tuple(1 if draw(st.booleans()) else n for n in shape[len(shape) - kept:])
    swap = draw(st.booleans())
    return {"a": b if swap else shape, "b": shape if swap else b, "seed": draw(SEEDS)}


BROADCAST_EXAMPLES = ({"a": (2, 3, 4), "b": (3, 1), "seed": 0},        # leading axis added, last stretched
                      {"a": (2, 3, 4), "b": (2, 1, 4), "seed": 1},     # a middle axis stretched
                      {"a": (3,), "b": (2, 3), "seed": 2})             # a, not b, broadcast on a leading axis


def _binary(fn):
    def check(case: dict) -> None:
        a = leaf(normal_array(case["a"], case["seed"]))
        b_values = away_from_zero(case["b"], case["seed"] + 1, margin=0.5)   # div: far from b = 0
        gradcheck(fn, a, leaf(b_values), seed=case["seed"])
    return check


# ------------------------------------------------------------------ reductions

@st.composite
def _reduction_cases(draw, tuples: bool = True) -> dict:
    shape = draw(SHAPES)
    axes = list(range(len(shape))) + [-1]
    dims = [None] + axes + ([(0, len(shape) - 1)] if tuples and len(shape) > 1 else [])
    return {"shape": shape, "dim": draw(st.sampled_from(dims)), "keepdim": draw(st.booleans()),
            "seed": draw(SEEDS)}


REDUCTION_EXAMPLES = ({"shape": (3, 3), "dim": 0, "keepdim": False, "seed": 0},   # square: a wrong axis fits
                      {"shape": (3, 3), "dim": 1, "keepdim": False, "seed": 1},
                      {"shape": (2, 3, 4), "dim": 1, "keepdim": True, "seed": 2},
                      {"shape": (2, 3, 4), "dim": None, "keepdim": False, "seed": 3})


def _reduction(fn):
    def check(case: dict) -> None:
        x = leaf(normal_array(case["shape"], case["seed"]))
        gradcheck(lambda t: fn(t, dim=case["dim"], keepdim=case["keepdim"]), x, seed=case["seed"], name=fn.__name__)
    return check


def _max(case: dict) -> None:
    dim, keepdim, shape = case["dim"], case["keepdim"], case["shape"]

    def values(t):
        out = F.max(t, dim=dim, keepdim=keepdim)
        return out if dim is None else out.values
    values.__name__ = "max"
    gradcheck(values, leaf(distinct_values(shape, case["seed"])), seed=case["seed"])
    ties = numpy.random.default_rng(case["seed"]).integers(0, 2, size=shape).astype(numpy.float64)
    x = leaf(ties)
    out = values(x)
    dout = _upstream(out.shape, case["seed"])
    out.backward(dout)
    want = numpy.zeros(ties.size) if dim is None else numpy.zeros(numpy.moveaxis(ties, dim, -1).shape)
    if dim is None:
        want[ties.reshape(-1).argmax()] = dout.reshape(())            # numpy's argmax: the first maximum
    else:
        moved = numpy.moveaxis(ties, dim, -1)
        d = dout if not keepdim else numpy.squeeze(dout, axis=dim)
        numpy.put_along_axis(want, moved.argmax(-1)[..., None], d[..., None], axis=-1)
        want = numpy.moveaxis(want, -1, dim)
    exact("max's tie rule, the gradient goes to the first maximum", x.grad.numpy(), want.reshape(shape))


# ------------------------------------------------------------------ convolution and pooling

def conv_config(batch: int, cin: int, cout: int, size: tuple, kernel: tuple, stride: tuple = (1, 1),
                padding: tuple = (0, 0), dilation: tuple = (1, 1), groups: int = 1) -> ConvConfig:
    out = tuple(conv_output_size(size[a], kernel[a], stride[a], padding[a], dilation[a]) for a in (0, 1))
    return ConvConfig(batch, cin, cout, size, kernel, stride, padding, dilation, groups, out)


def pool_config(batch: int, channels: int, size: tuple, kernel: tuple, stride: tuple, padding: tuple = (0, 0),
                dilation: tuple = (1, 1), ceil_mode: bool = False) -> PoolConfig:
    out = tuple(pool_output_size(size[a], kernel[a], stride[a], padding[a], dilation[a], ceil_mode) for a in (0, 1))
    return PoolConfig(batch, channels, size, kernel, stride, padding, dilation, ceil_mode, out)


def _conv2d(case: dict) -> None:
    cfg, s = case["cfg"], case["seed"]
    x, w = leaf(normal_array(cfg.x_shape, s)), leaf(normal_array(cfg.weight_shape, s + 1))
    b = leaf(normal_array((cfg.out_channels,), s + 2)) if case["bias"] else None
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, **cfg.kwargs()), x, w, b, seed=s, name="conv2d")
    adjoint_check(lambda v: F.conv2d(v, minires.tensor(w.data), **cfg.kwargs()), cfg.x_shape, seed=s)
    adjoint_check(lambda v: F.conv2d(minires.tensor(x.data), v, **cfg.kwargs()), cfg.weight_shape, seed=s)


def _pool_args(cfg: PoolConfig) -> dict:
    return dict(kernel_size=cfg.kernel_size, stride=cfg.stride, padding=cfg.padding, ceil_mode=cfg.ceil_mode)


def _max_pool2d(case: dict) -> None:
    cfg, s = case["cfg"], case["seed"]
    args = dict(_pool_args(cfg), dilation=cfg.dilation)
    gradcheck(lambda t: F.max_pool2d(t, **args), leaf(distinct_values(cfg.x_shape, s)), seed=s, name="max_pool2d")
    ties = numpy.random.default_rng(s).integers(-1, 2, size=cfg.x_shape).astype(numpy.float64)  # windows tie
    x = leaf(ties)
    dout = _upstream(cfg.x_shape[:2] + cfg.out_size, s)
    F.max_pool2d(x, **args).backward(dout)
    exact("max_pool2d's tie rule, each window's gradient goes to its first maximum (row-major), overlapping "
          "windows add up", x.grad.numpy(), reference.max_pool2d_backward(ties, dout, **args))


def _avg_pool2d(case: dict) -> None:
    cfg, s = case["cfg"], case["seed"]

    def pool(t):
        return F.avg_pool2d(t, **_pool_args(cfg), count_include_pad=case["count_include_pad"])
    pool.__name__ = "avg_pool2d"
    gradcheck(pool, leaf(normal_array(cfg.x_shape, s)), seed=s)
    adjoint_check(pool, cfg.x_shape, seed=s)


@st.composite
def _adaptive_cases(draw) -> dict:
    size = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    out = (draw(st.integers(1, size[0])), draw(st.integers(1, size[1])))
    return {"x_shape": (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + size, "output_size": out,
            "seed": draw(SEEDS)}


def _adaptive(case: dict) -> None:
    def pool(t):
        return F.adaptive_avg_pool2d(t, case["output_size"])
    pool.__name__ = "adaptive_avg_pool2d"
    gradcheck(pool, leaf(normal_array(case["x_shape"], case["seed"])), seed=case["seed"])
    adjoint_check(pool, case["x_shape"], seed=case["seed"])


# ------------------------------------------------------------------ batch norm, softmax, loss

@st.composite
def _batch_norm_cases(draw) -> dict:
    spatial = draw(st.sampled_from([(), (1, 2), (2, 2)]))
    return {"shape": (draw(st.integers(2, 4)), draw(st.integers(1, 3))) + spatial,
            "training": draw(st.booleans()), "affine": draw(st.booleans()), "seed": draw(SEEDS)}


def _batch_norm(case: dict) -> None:
    shape, s, training = case["shape"], case["seed"], case["training"]
    C = shape[1]
    x = leaf(normal_array(shape, s))
    w, b = (leaf(1 + 0.5 * normal_array((C,), s + 1)), leaf(normal_array((C,), s + 2))) if case["affine"] else (None, None)
    running_var = 0.5 + numpy.random.default_rng(s + 3).random(C)

    def norm(x, w, b):                    # fresh running statistics each call: every forward sees the same
        return F.batch_norm(x, minires.tensor(normal_array((C,), s + 4)), minires.tensor(running_var.copy()),
                            w, b, training=training)
    gradcheck(norm, x, w, b, seed=s, name=f"batch_norm (training={training})")
    if training:                           # the input gradient sums to zero per channel
        out = norm(x, w, b)
        out.backward(normal_array(shape, s + 5))
        sums = x.grad.numpy().sum(axis=tuple(i for i in range(len(shape)) if i != 1))
        if not numpy.allclose(sums, 0, atol=1e-10):
            raise AssertionError(f"batch_norm in training: the input gradient must sum to 0 over each channel "
                                 f"(the batch mean is subtracted), but the sums are {sums}")


def _log_softmax(case: dict) -> None:
    dim = case["dim"] % len(case["shape"]) if case["dim"] >= 0 else case["dim"]

    def fn(t):
        return F.log_softmax(t, dim=dim)
    fn.__name__ = "log_softmax"
    gradcheck(fn, leaf(normal_array(case["shape"], case["seed"])), seed=case["seed"])


def _cross_entropy(case: dict) -> None:
    s, shape = case["seed"], (case["batch"], case["classes"]) + case["spatial"]
    target = minires.tensor(numpy.random.default_rng(s).integers(0, case["classes"], size=(shape[0],) + shape[2:]))

    def loss(z):
        return F.cross_entropy(z, target, reduction=case["reduction"], label_smoothing=case["label_smoothing"])
    loss.__name__ = "cross_entropy"
    gradcheck(loss, leaf(normal_array(shape, s)), seed=s)


# ------------------------------------------------------------------ residual blocks

def _block(kind: str):
    def check_at(case: dict, seed: int) -> None:
        from minires.models import BasicBlock, Bottleneck

        cls = BasicBlock if kind == "basic_block" else Bottleneck
        inplanes, planes, stride = (4, 4, case["stride"]) if cls is BasicBlock else (8, 2, case["stride"])
        minires.manual_seed(seed)
        downsample = None
        if stride != 1 or inplanes != planes * cls.expansion:
            downsample = minires.nn.Sequential(
                minires.nn.Conv2d(inplanes, planes * cls.expansion, 1, stride=stride, bias=False),
                minires.nn.BatchNorm2d(planes * cls.expansion))
        net = cls(inplanes, planes, stride=stride, downsample=downsample).to("float64")
        net.train() if case["training"] else net.eval()
        x = leaf(normal_array((2, inplanes, 4, 4), seed))
        gradcheck_module(net, x, seed=seed, elementwise=False, n_directions=3)

    def check(case: dict) -> None:
        try:
            check_at(case, case["seed"])
        except GradcheckError:
            # A ReLU input within a step of 0 makes central differences straddle its kink: a false alarm
            # (about one case in a thousand). A wrong backward fails again at a fresh point; a kink does not.
            check_at(case, case["seed"] + 1)
    return check


def _block_cases() -> st.SearchStrategy:
    return st.fixed_dictionaries({"stride": st.sampled_from([1, 2]), "training": st.booleans(), "seed": SEEDS})


BLOCK_EXAMPLES = ({"stride": 2, "training": True, "seed": 0}, {"stride": 1, "training": False, "seed": 1})


def _operations() -> Dict[str, Operation]:
    pool = pool2d_configs(max_batch=1, max_channels=2)
    ops = [
        Operation("relu", st.fixed_dictionaries({"shape": SHAPES, "seed": SEEDS}),
                  ({"shape": (3, 4), "seed": 0},), _relu),
        Operation("linear", st.fixed_dictionaries({"lead": st.sampled_from([(), (3,), (2, 2)]), "in": st.integers(1, 4),
                                                   "out": st.integers(1, 4), "bias": st.booleans(), "seed": SEEDS}),
                  ({"lead": (2, 3), "in": 4, "out": 3, "bias": True, "seed": 0},), _linear),
        Operation("matmul", st.fixed_dictionaries({"kind": st.sampled_from(sorted(MATMUL_SHAPES)), "seed": SEEDS}),
                  tuple({"kind": k, "seed": 0} for k in ("broadcast_b", "broadcast_a", "vector_a", "vector_b")),
                  _matmul),
        Operation("add", _broadcast_cases(), BROADCAST_EXAMPLES, _binary(F.add)),
        Operation("mul", _broadcast_cases(), BROADCAST_EXAMPLES, _binary(F.mul)),
        Operation("div", _broadcast_cases(), BROADCAST_EXAMPLES, _binary(F.div)),
        Operation("sum", _reduction_cases(), REDUCTION_EXAMPLES, _reduction(F.sum)),
        Operation("mean", _reduction_cases(), REDUCTION_EXAMPLES, _reduction(F.mean)),
        Operation("max", _reduction_cases(tuples=False), REDUCTION_EXAMPLES, _max),
        Operation("conv2d", st.fixed_dictionaries({"cfg": conv2d_configs(max_batch=1), "bias": st.booleans(),
                                                   "seed": SEEDS}),
                  ({"cfg": conv_config(1, 4, 4, (4, 4), (3, 3), padding=(1, 1), groups=2), "bias": True, "seed": 0},
                   {"cfg": conv_config(1, 2, 2, (5, 5), (2, 2), dilation=(2, 2)), "bias": False, "seed": 1},
                   {"cfg": conv_config(2, 2, 3, (5, 4), (3, 2), stride=(2, 1), padding=(1, 0)), "bias": True,
                    "seed": 2}), _conv2d),
        Operation("max_pool2d", st.fixed_dictionaries({"cfg": pool, "seed": SEEDS}),
                  ({"cfg": pool_config(1, 2, (5, 5), (3, 3), (2, 2), (1, 1), ceil_mode=True), "seed": 0},
                   {"cfg": pool_config(1, 1, (5, 5), (2, 2), (1, 1), dilation=(2, 2)), "seed": 1}), _max_pool2d),
        Operation("avg_pool2d", st.fixed_dictionaries({"cfg": pool2d_configs(max_batch=1, max_channels=2, dilation=False),
                                                       "count_include_pad": st.booleans(), "seed": SEEDS}),
                  ({"cfg": pool_config(1, 1, (5, 5), (3, 3), (2, 2), (1, 1), ceil_mode=True),
                    "count_include_pad": False, "seed": 0},
                   {"cfg": pool_config(1, 1, (4, 4), (2, 2), (2, 2), (1, 1), ceil_mode=True),
                    "count_include_pad": True, "seed": 1}), _avg_pool2d),
        Operation("adaptive_avg_pool2d", _adaptive_cases(),
                  ({"x_shape": (1, 2, 5, 7), "output_size": (3, 3), "seed": 0},      # bins overlap
                   {"x_shape": (2, 1, 3, 3), "output_size": (1, 1), "seed": 1}), _adaptive),
        Operation("batch_norm", _batch_norm_cases(),
                  ({"shape": (4, 3, 2, 2), "training": True, "affine": True, "seed": 0},
                   {"shape": (4, 3), "training": False, "affine": True, "seed": 1},
                   {"shape": (2, 2, 1, 2), "training": True, "affine": False, "seed": 2}), _batch_norm),
        Operation("log_softmax", st.fixed_dictionaries({"shape": SHAPES, "dim": st.integers(-1, 2), "seed": SEEDS})
                  .map(lambda c: dict(c, dim=c["dim"] if c["dim"] < len(c["shape"]) else -1)),
                  ({"shape": (3, 4), "dim": 1, "seed": 0}, {"shape": (2, 3, 2), "dim": 0, "seed": 1}), _log_softmax),
        Operation("cross_entropy", st.fixed_dictionaries({
                      "batch": st.integers(1, 4), "classes": st.integers(2, 4), "spatial": st.sampled_from([(), (2,)]),
                      "reduction": st.sampled_from(["mean", "sum", "none"]),
                      "label_smoothing": st.sampled_from([0.0, 0.1]), "seed": SEEDS}),
                  ({"batch": 4, "classes": 5, "spatial": (), "reduction": "mean", "label_smoothing": 0.0, "seed": 0},
                   {"batch": 2, "classes": 3, "spatial": (2,), "reduction": "mean", "label_smoothing": 0.1,
                    "seed": 1}), _cross_entropy),
        Operation("basic_block", _block_cases(), BLOCK_EXAMPLES, _block("basic_block")),
        Operation("bottleneck", _block_cases(), BLOCK_EXAMPLES, _block("bottleneck")),
    ]
    return {op.name: op for op in ops}


#: Every operation ``minires gradcheck`` knows, by name.
OPERATIONS: Dict[str, Operation] = {**_operations(), **more_operations()}
