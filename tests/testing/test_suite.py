"""The suite behind ``minires gradcheck`` flags plausible wrong backward passes, and passes the real ones.

Each wrong backward is planted with ``monkeypatch`` for one test: the mistakes students (and
frameworks) make, each of which hides from a check that runs one fixed setup (groups = 1,
no dilation, no ties, an all-ones upstream gradient, reductions over a non-square shape).
"""
import numpy as np
import pytest

from minires.functional import arithmetic, loss, pooling
from minires.functional.activation import ReLU
from minires.functional.conv import Conv2d
from minires.functional.linear import Linear
from minires.functional.normalization import BatchNorm
from minires.functional.reduction import Max, Mean, Sum
from minires.testing.suite import Operation, run_operation, run_suite
from minires.testing.suite_ops import OPERATIONS

EXAMPLES = 5


def run(name: str):
    return run_operation(OPERATIONS[name], examples=EXAMPLES, seed=0)


def test_the_real_backward_passes_pass_every_operation():
    results = run_suite(sorted(OPERATIONS), examples=EXAMPLES)
    assert [r.name for r in results if not r.passed] == [], [r.message for r in results if not r.passed]
    assert {"relu", "linear", "matmul", "add", "mul", "div", "sum", "mean", "max", "conv2d", "max_pool2d",
            "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "log_softmax", "cross_entropy", "basic_block",
            "bottleneck"} <= set(OPERATIONS)


# ------------------------------------------------------------------ the planted mistakes

def _wrap(cls, method, after):
    """cls.method, with ``after(self, result, *args)`` applied to what the real one returns."""
    real = getattr(cls, method)

    def wrapped(self, *args):
        return after(self, real(self, *args), *args)
    return wrapped


def conv_groups_mixed_up(monkeypatch):
    """dx of group g lands on the channels of group g+1 (indexing the groups wrongly)."""
    def after(self, grads, dout):
        dx, dw, db = grads
        G = self.w_g.shape[0]
        return (np.roll(dx, dx.shape[-3] // G, axis=-3) if dx is not None and G > 1 else dx), dw, db
    monkeypatch.setattr(Conv2d, "backward", _wrap(Conv2d, "backward", after))


def conv_ignores_dilation(monkeypatch):
    """The backward pass forgets the dilation: its windows, for dW and for dx, are undilated."""
    real = Conv2d.backward

    def backward(self, dout):
        dilation, self.dilation = self.dilation, (1, 1)
        try:
            return real(self, dout)
        finally:
            self.dilation = dilation
    monkeypatch.setattr(Conv2d, "backward", backward)


def _pool_backward(self, dout, rule):
    """Max pooling's backward by loops, sending each window's gradient by ``rule``: 'last' or 'all' maxima."""
    x = self.saved_x if self.saved_x.ndim == 4 else self.saved_x[None]
    d = dout if dout.ndim == 4 else dout[None]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
    dx = np.zeros_like(x)
    N, C, H, W = x.shape
    for n in range(N):
        for c in range(C):
            for i in range(d.shape[2]):
                for j in range(d.shape[3]):
                    cells = [(i * sh - ph + u * dh, j * sw - pw + v * dw) for u in range(kh) for v in range(kw)]
                    cells = [(r, q) for r, q in cells if 0 <= r < H and 0 <= q < W]
                    best = max(x[n, c, r, q] for r, q in cells)
                    winners = [(r, q) for r, q in cells if x[n, c, r, q] == best]
                    for r, q in (winners if rule == "all" else winners[-1:]):
                        dx[n, c, r, q] += d[n, c, i, j]
    return (dx if dout.ndim == 4 else dx[0],)


def _max_pool_rule(monkeypatch, rule):
    def forward(self, x):
        self.saved_x = x
        return real_forward(self, x)
    real_forward = pooling.MaxPool2d.forward
    monkeypatch.setattr(pooling.MaxPool2d, "forward", forward)
    monkeypatch.setattr(pooling.MaxPool2d, "backward", lambda self, dout: _pool_backward(self, dout, rule))


def max_pool_to_the_last_maximum(monkeypatch):
    _max_pool_rule(monkeypatch, "last")


def max_pool_to_every_tied_maximum(monkeypatch):
    _max_pool_rule(monkeypatch, "all")


def avg_pool_wrong_divisor(monkeypatch):
    """The backward divides by the other count_include_pad rule's divisor."""
    real = pooling.AvgPool2d.backward

    def backward(self, dout):
        N, C, H, W = self.x_shape
        oh, ow = dout.shape[-2:]
        flip = not self.count_include_pad
        self.divisor = (pooling._window_counts(np, H, self.kernel[0], self.stride[0], self.padding[0], oh, flip)[:, None]
                        * pooling._window_counts(np, W, self.kernel[1], self.stride[1], self.padding[1], ow, flip)[None, :])
        return real(self, dout)
    monkeypatch.setattr(pooling.AvgPool2d, "backward", backward)


def _channel_axes(a):
    return (0,) + tuple(range(2, a.ndim))


def batch_norm_missing_a_term(monkeypatch):
    """Training-mode dx without the -xhat * mean(dout * xhat) term (as if var were a constant)."""
    def after(self, grads, dout):
        dx, _, _, dw, db = grads
        if self.training and dx is not None:
            shape = (1, -1) + (1,) * (dout.ndim - 2)
            scale = (self.gamma * self.inv_std).reshape(shape)
            dx = scale * (dout - dout.mean(axis=_channel_axes(dout), keepdims=True))
        return dx, None, None, dw, db
    monkeypatch.setattr(BatchNorm, "backward", _wrap(BatchNorm, "backward", after))


def batch_norm_eval_with_the_training_formula(monkeypatch):
    real = BatchNorm.backward

    def backward(self, dout):
        self.training = True
        return real(self, dout)
    monkeypatch.setattr(BatchNorm, "backward", backward)


def relu_slope_one_at_zero(monkeypatch):
    real = ReLU.forward

    def forward(self, x):
        out = real(self, x)
        self.mask = x >= 0
        return out
    monkeypatch.setattr(ReLU, "forward", forward)


def sum_along_the_wrong_axis(monkeypatch):
    """dout is given its size-1 axis at the end, whatever axis was summed."""
    def backward(self, dout):
        moved = dout if self.keepdim or len(self.dims) != 1 else dout[..., None]
        return (np.broadcast_to(moved, self.shape).copy(),)
    monkeypatch.setattr(Sum, "backward", backward)


def mean_without_one_over_n(monkeypatch):
    monkeypatch.setattr(Mean, "backward", _wrap(Mean, "backward", lambda self, grads, dout: (
        grads[0] * np.prod([self.shape[d] for d in self.dims]),)))


def max_to_the_last_maximum(monkeypatch):
    def after(self, out, x):
        flat = x.reshape(-1) if self.dim is None else np.moveaxis(x, self.dim, -1)
        self.argmax = flat.shape[-1] - 1 - flat[..., ::-1].argmax(axis=-1)
        return out
    monkeypatch.setattr(Max, "forward", _wrap(Max, "forward", after))


def _sum_to_shape_that(first_slice_on: str):
    def wrong(grad, shape):
        shape = tuple(shape)
        lead = grad.ndim - len(shape)
        if lead > 0:
            grad = grad[(0,) * lead] if first_slice_on == "leading" else grad.sum(axis=tuple(range(lead)))
        for i, n in enumerate(shape):
            if n == 1 and grad.shape[i] != 1:
                grad = grad[(slice(None),) * i + (slice(0, 1),)] if first_slice_on == "stretched" \
                    else grad.sum(axis=i, keepdims=True)
        return grad
    return wrong


def broadcast_leading_axis_not_summed(monkeypatch):
    monkeypatch.setattr(arithmetic, "sum_to_shape", _sum_to_shape_that("leading"))


def broadcast_stretched_axis_not_summed(monkeypatch):
    monkeypatch.setattr(arithmetic, "sum_to_shape", _sum_to_shape_that("stretched"))


def cross_entropy_missing_one_over_n(monkeypatch):
    monkeypatch.setattr(loss, "_dloss", lambda dout, reduction, total_weight, shape: (
        dout.reshape(shape) if reduction == "none" else np.broadcast_to(dout, shape)))


def log_softmax_missing_the_sum(monkeypatch):
    monkeypatch.setattr(loss.LogSoftmax, "backward", lambda self, dout: (dout - self.softmax,))


def linear_bias_averaged(monkeypatch):
    monkeypatch.setattr(Linear, "backward", _wrap(Linear, "backward", lambda self, grads, dout: (
        grads[0], grads[1], None if grads[2] is None else dout.reshape(-1, dout.shape[-1]).mean(axis=0))))


WRONG = [  # (the planted mistake, the operations whose suite must flag it)
    (conv_groups_mixed_up, ["conv2d"]),
    (conv_ignores_dilation, ["conv2d"]),
    (max_pool_to_the_last_maximum, ["max_pool2d"]),
    (max_pool_to_every_tied_maximum, ["max_pool2d"]),
    (avg_pool_wrong_divisor, ["avg_pool2d"]),
    (batch_norm_missing_a_term, ["batch_norm", "basic_block"]),
    (batch_norm_eval_with_the_training_formula, ["batch_norm", "bottleneck"]),
    (relu_slope_one_at_zero, ["relu"]),
    (sum_along_the_wrong_axis, ["sum"]),
    (mean_without_one_over_n, ["mean"]),
    (max_to_the_last_maximum, ["max"]),
    (broadcast_leading_axis_not_summed, ["add", "mul", "div"]),
    (broadcast_stretched_axis_not_summed, ["add", "mul", "div"]),
    (cross_entropy_missing_one_over_n, ["cross_entropy"]),
    (log_softmax_missing_the_sum, ["log_softmax"]),
    (linear_bias_averaged, ["linear"]),
]


@pytest.mark.parametrize("plant, names", WRONG, ids=[plant.__name__ for plant, _ in WRONG])
def test_every_planted_mistake_is_flagged(monkeypatch, plant, names):
    plant(monkeypatch)
    for name in names:
        result = run(name)
        assert not result.passed, f"{plant.__name__} passed the {name} suite"
        assert result.case is not None and result.message, result
        assert "<lambda>" not in result.message


def test_a_kink_rule_failure_names_the_rule_and_the_element(monkeypatch):
    relu_slope_one_at_zero(monkeypatch)
    result = run("relu")
    assert "ReLU'(0) = 0" in result.message and "exact test" in result.message
    assert result.describe() == "shape=(3, 4), seed=0"               # the explicit case, as it was given


def test_a_failure_is_shrunk_to_a_small_case(monkeypatch):
    """With no explicit case to fail on, Hypothesis finds a failing one and shrinks it."""
    linear_bias_averaged(monkeypatch)
    op = OPERATIONS["linear"]
    result = run_operation(Operation("linear", op.cases, (), op.check), examples=30)
    assert not result.passed
    assert result.case["bias"] and result.case["in"] == 1 and result.case["out"] == 1   # the smallest that fails
    assert "gradcheck of linear failed: input 2" in result.message


def test_every_operation_is_reported_whatever_the_others_did(monkeypatch):
    relu_slope_one_at_zero(monkeypatch)
    seen = []
    results = run_suite(["relu", "linear", "sum"], examples=2, report=seen.append)
    assert [(r.name, r.passed) for r in results] == [("relu", False), ("linear", True), ("sum", True)]
    assert seen == results


def test_runs_are_deterministic(monkeypatch):
    mean_without_one_over_n(monkeypatch)
    op = OPERATIONS["mean"]
    drawn_only = Operation("mean", op.cases, (), op.check)
    first, second = (run_operation(drawn_only, examples=20, seed=3) for _ in range(2))
    assert (first.case, first.message) == (second.case, second.message)


def test_unknown_operations_and_bad_counts_are_clear_errors():
    with pytest.raises(KeyError, match="unknown operation 'conv3d'; choose one of: .*conv2d"):
        run_suite(["conv3d"])
    with pytest.raises(ValueError, match="examples must be at least 1"):
        run_operation(OPERATIONS["relu"], examples=0)


def test_the_later_operations_are_in_the_suite_and_their_kink_rules_are_exact(monkeypatch):
    from minires.functional import activation
    assert {"sigmoid", "tanh", "gelu", "leaky_relu", "abs", "softmax", "mse_loss", "l1_loss",
            "binary_cross_entropy_with_logits", "cat", "stack", "where"} <= set(OPERATIONS)
    real = activation.Abs.backward

    def abs_with_slope_one_at_zero(self, dout):                # sign(0) taken as 1: a classic slip
        (dx,) = real(self, dout)
        return (dx + dout * (self.sign == 0),)

    monkeypatch.setattr(activation.Abs, "backward", abs_with_slope_one_at_zero)
    result = run("abs")
    assert not result.passed and "abs'(0) = 0" in result.message
