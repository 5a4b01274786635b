"""More operations for ``minires gradcheck``: the activations, losses and combinations added after the first
eighteen, with the same properties: gradcheck on drawn shapes, and the kink rules tested exactly.
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy
from hypothesis import strategies as st

import minires
import minires.functional as F
from minires.testing.gradcheck import gradcheck
from minires.testing.strategies import away_from_zero
from minires.testing.suite import Operation, exact, leaf

SEEDS = st.integers(0, 2**16)
SHAPES = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
ELEMENTWISE = st.fixed_dictionaries({"shape": SHAPES, "seed": SEEDS})
ELEMENTWISE_EXAMPLES = ({"shape": (3, 4), "seed": 0}, {"shape": (2, 1, 3), "seed": 1})


def _kink_input(shape: tuple, seed: int) -> "minires.Tensor":
    """Values in {-1, 0, 1} with a 0 for certain: where a kink rule decides the gradient."""
    values = numpy.random.default_rng(seed).integers(-1, 2, size=shape).astype(numpy.float64)
    values.reshape(-1)[0] = 0.0
    return leaf(values)


def _elementwise(fn: Callable, kink: str = "", slope_at_zero: float = 0.0) -> Callable[[dict], None]:
    """gradcheck away from 0; with ``kink``, the gradient at 0 must be exactly ``slope_at_zero``."""
    def check(case: dict) -> None:
        gradcheck(fn, leaf(away_from_zero(case["shape"], case["seed"])), seed=case["seed"], name=fn.__name__)
        if kink:
            x = _kink_input(case["shape"], case["seed"])
            fn(x).backward(minires.ones(*case["shape"], dtype="float64"))
            got = x.grad.numpy()
            exact(kink, got[x.data == 0], numpy.full(int((x.data == 0).sum()), slope_at_zero))
    return check


def _softmax(case: dict) -> None:
    x = leaf(numpy.random.default_rng(case["seed"]).standard_normal(case["shape"]))
    gradcheck(lambda t: F.softmax(t, case["dim"]), x, seed=case["seed"], name="softmax")


def _loss(fn: Callable, kink: str = "") -> Callable[[dict], None]:
    def check(case: dict) -> None:
        rng = numpy.random.default_rng(case["seed"])
        target = minires.tensor(rng.standard_normal(case["shape"]))
        x = leaf(target.numpy() + away_from_zero(case["shape"], case["seed"]))        # |x - target| >= margin
        gradcheck(lambda t: fn(t, target, reduction=case["reduction"]), x, seed=case["seed"], name=fn.__name__)
        if kink:                                                    # l1 at x == target: torch's sign(0) = 0
            y = leaf(target.numpy())
            fn(y, target, reduction="sum").backward()
            exact(kink, y.grad.numpy(), numpy.zeros(case["shape"]))
    return check


def _bce(case: dict) -> None:
    rng = numpy.random.default_rng(case["seed"])
    target = minires.tensor(rng.random(case["shape"]))
    x = leaf(rng.standard_normal(case["shape"]) * 3)
    gradcheck(lambda t: F.binary_cross_entropy_with_logits(t, target, reduction=case["reduction"]), x,
              seed=case["seed"], name="binary_cross_entropy_with_logits")


def _combine(kind: str) -> Callable[[dict], None]:
    def check(case: dict) -> None:
        rng = numpy.random.default_rng(case["seed"])
        shape, dim = case["shape"], case["dim"] % len(case["shape"])
        a, b = leaf(rng.standard_normal(shape)), leaf(rng.standard_normal(shape))
        if kind == "where":
            cond = minires.tensor(rng.random(shape) < 0.5)
            gradcheck(lambda p, q: F.where(cond, p, q), a, b, seed=case["seed"], name="where")
        else:
            fn = F.cat if kind == "cat" else F.stack
            gradcheck(lambda p, q: fn([p, q], dim), a, b, seed=case["seed"], name=kind)
    return check


def more_operations() -> Dict[str, Operation]:
    reductions = st.fixed_dictionaries({"shape": SHAPES, "seed": SEEDS,
                                        "reduction": st.sampled_from(["mean", "sum", "none"])})
    reduction_examples = ({"shape": (3, 4), "seed": 0, "reduction": "mean"},
                          {"shape": (2, 3), "seed": 1, "reduction": "none"})
    along = st.fixed_dictionaries({"shape": SHAPES, "seed": SEEDS, "dim": st.integers(-3, 2)})
    along_examples = ({"shape": (3, 4), "seed": 0, "dim": 1}, {"shape": (2, 3, 2), "seed": 1, "dim": 0})
    ops = [
        Operation("sigmoid", ELEMENTWISE, ELEMENTWISE_EXAMPLES, _elementwise(F.sigmoid)),
        Operation("tanh", ELEMENTWISE, ELEMENTWISE_EXAMPLES, _elementwise(F.tanh)),
        Operation("gelu", ELEMENTWISE, ELEMENTWISE_EXAMPLES, _elementwise(F.gelu)),
        Operation("leaky_relu", ELEMENTWISE, ELEMENTWISE_EXAMPLES,
                  _elementwise(F.leaky_relu, "leaky_relu's kink rule: the gradient at 0 is the slope", 0.01)),
        Operation("abs", ELEMENTWISE, ELEMENTWISE_EXAMPLES,
                  _elementwise(F.abs, "abs's kink rule: abs'(0) = 0", 0.0)),
        Operation("softmax", along.map(lambda c: dict(c, dim=c["dim"] % len(c["shape"]))), along_examples, _softmax),
        Operation("mse_loss", reductions, reduction_examples, _loss(F.mse_loss)),
        Operation("l1_loss", reductions, reduction_examples,
                  _loss(F.l1_loss, "l1_loss's kink rule: the gradient where input == target is 0")),
        Operation("binary_cross_entropy_with_logits", reductions, reduction_examples, _bce),
        Operation("cat", along, along_examples, _combine("cat")),
        Operation("stack", along, along_examples, _combine("stack")),
        Operation("where", along, along_examples, _combine("where")),
    ]
    return {op.name: op for op in ops}
