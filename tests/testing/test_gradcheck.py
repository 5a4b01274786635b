"""The gradient-check toolkit, tested against PLANTED WRONG backward passes.

Each planted bug is a small custom ``Function`` whose forward is right and whose backward
carries one classic mistake. ``gradcheck`` must catch every one with a ``GradcheckError``
whose message names the input, the element, both values and the relative error; the same
Function with the mistake removed must pass. Two rules cannot be decided by finite
differences at all (ReLU'(0) and ties in a max): those tests show why, and that an exact
test decides them instead.
"""
import re

import numpy as np
import pytest

import minires as mr
from minires import backend
from minires.autograd import Function
from minires.backend import get_array_module
from minires.functional.im2col import col2im, conv_output_size, im2col
from minires.testing import GradcheckError, adjoint_check, gradcheck
from minires.testing.strategies import away_from_zero, distinct_values, normal_array

NUMBER = r"([-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf))"
ELEMENT_FAILURE = re.compile(
    r"input (\d+) \(shape \(([\d, ]*)\)\), worst element \(([\d, ]*)\): "
    rf"analytic {NUMBER}, numeric {NUMBER}, relative error {NUMBER}")


def leaf(xp, values):
    """A float64 leaf on xp's device that requires a gradient."""
    return mr.tensor(xp.asarray(values, dtype=np.float64), requires_grad=True)


def element_failure(error: GradcheckError, shape: tuple) -> tuple:
    """Parse a per-element failure; check the message is complete and self-consistent.

    Returns (input position, element index, analytic, numeric).
    """
    message = str(error)
    match = ELEMENT_FAILURE.search(message)
    assert match, f"the message does not name input, element, both values and the error: {message}"
    position = int(match.group(1))
    reported_shape = tuple(int(n) for n in match.group(2).split(",") if n.strip())
    index = tuple(int(n) for n in match.group(3).split(",") if n.strip())
    analytic, numeric, rel = (float(match.group(k)) for k in (4, 5, 6))
    assert reported_shape == tuple(shape)
    assert len(index) == len(shape) and all(0 <= i < n for i, n in zip(index, shape))
    assert analytic != pytest.approx(numeric, rel=1e-3, abs=1e-6)
    expected_rel = abs(analytic - numeric) / max(abs(analytic), abs(numeric))
    assert rel == pytest.approx(expected_rel, rel=1e-2)
    assert "eps=" in message and "rtol=" in message
    assert "<lambda>" not in message and re.match(r"gradcheck of \w", message), message   # names the operation
    assert "L = <G, f(x)>" in message and "weighted by G" in message    # the numbers are G-weighted sums
    return position, index, analytic, numeric


# ------------------------------------------------------------------ a missing 1/N in a mean

class Mean(Function):
    """out = mean(x) over the last axis;  dx = dout / N broadcast back."""

    def __init__(self, forget_the_count: bool = False):
        self.forget_the_count = forget_the_count

    def forward(self, x):
        self.n = x.shape[-1]
        return x.mean(axis=-1)

    def backward(self, dout):
        xp = get_array_module(dout)
        dx = xp.repeat(dout[..., None], self.n, axis=-1)                 # (..., N)
        return (dx if self.forget_the_count else dx / self.n,)            # planted: no 1/N


def test_a_correct_backward_passes(xp):
    x = leaf(xp, normal_array((3, 5), seed=1))
    assert gradcheck(lambda t: Mean.apply(t), x)


def test_a_missing_one_over_n_in_a_mean_is_caught(xp):
    x = leaf(xp, normal_array((3, 5), seed=1))
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda t: Mean.apply(t, forget_the_count=True), x)
    position, index, analytic, numeric = element_failure(caught.value, (3, 5))
    assert position == 0
    assert analytic == pytest.approx(5 * numeric, rel=1e-6)             # off by exactly N
    assert str(caught.value).startswith("gradcheck of Mean failed")      # the Function met in the graph
    # the output (3,) is small: the element's own Jacobian entry, 1 against the true 1/N = 0.2
    assert re.search(r"The Jacobian entry d out\[\d\] / d input0\[\d, \d\] itself: analytic 1, numeric 0.2",
                     str(caught.value)), str(caught.value)


def test_messages_use_an_explicit_name_or_the_function_name(xp):
    x = leaf(xp, normal_array((3, 5), seed=1))

    def my_mean(t):
        return Mean.apply(t, forget_the_count=True)
    for fn, name, expected in ((my_mean, None, "my_mean"), (lambda t: my_mean(t), "the row mean", "the row mean")):
        with pytest.raises(GradcheckError, match=rf"^gradcheck of {expected} failed"):
            gradcheck(fn, x, name=name)


# ------------------------------------------------------------------ `=` instead of `+=` in col2im

def col2im_that_assigns(cols, x_shape, kernel, stride, padding, dilation):
    """col2im's loop with the planted bug: `=` where windows overlap keeps only the last share.

    Written for padding 0 and dilation 1 (the geometry of the tests below)."""
    xp = get_array_module(cols)
    C, kh, kw, N, oh, ow = cols.shape                                     # (C, kH, kW, N, oH, oW)
    dx = xp.zeros(x_shape, dtype=cols.dtype)                              # (N, C, H, W)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride[0] * (oh - 1) + 1, stride[0])
            columns = slice(j, j + stride[1] * (ow - 1) + 1, stride[1])
            dx[:, :, rows, columns] = cols[:, i, j].transpose(1, 0, 2, 3)  # planted: should be +=
    return dx


class Im2Col(Function):
    """cols = im2col(x) (no padding, no dilation);  dx = col2im(dcols), the adjoint."""

    def __init__(self, kernel, stride, adjoint=col2im):
        self.kernel, self.stride, self.adjoint = kernel, stride, adjoint

    def forward(self, x):
        self.x_shape = x.shape
        out = tuple(conv_output_size(x.shape[2 + a], self.kernel[a], self.stride[a], 0, 1) for a in (0, 1))
        return im2col(x, self.kernel, self.stride, (0, 0), (1, 1), out)   # (C, kH, kW, N, oH, oW)

    def backward(self, dcols):
        return (self.adjoint(dcols, self.x_shape, self.kernel, self.stride, (0, 0), (1, 1)),)


def windows_covering(x_shape, kernel, stride):
    """How many windows cover each pixel (by counting, independent of im2col)."""
    count = np.zeros(x_shape[2:], dtype=int)
    for y in range(0, x_shape[2] - kernel[0] + 1, stride[0]):
        for x in range(0, x_shape[3] - kernel[1] + 1, stride[1]):
            count[y:y + kernel[0], x:x + kernel[1]] += 1
    return count


def test_col2im_that_assigns_is_caught_by_gradcheck_on_overlapping_windows(xp):
    shape, kernel, stride = (1, 2, 4, 5), (2, 3), (1, 1)                 # windows overlap
    x = leaf(xp, normal_array(shape, seed=2))
    assert gradcheck(lambda t: Im2Col.apply(t, kernel=kernel, stride=stride), x)
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda t: Im2Col.apply(t, kernel=kernel, stride=stride, adjoint=col2im_that_assigns), x)
    position, index, _, _ = element_failure(caught.value, shape)
    assert position == 0
    assert windows_covering(shape, kernel, stride)[index[2:]] >= 2      # a pixel where windows overlap


def test_col2im_that_assigns_is_caught_by_adjoint_check_but_only_where_windows_overlap(device):
    shape, kernel = (2, 3, 5, 4), (3, 2)

    def geometry(stride):
        out = tuple(conv_output_size(shape[2 + a], kernel[a], stride[a], 0, 1) for a in (0, 1))
        return (lambda x: im2col(x, kernel, stride, (0, 0), (1, 1), out),
                lambda c: col2im(c, shape, kernel, stride, (0, 0), (1, 1)),
                lambda c: col2im_that_assigns(c, shape, kernel, stride, (0, 0), (1, 1)))

    forward, right, wrong = geometry((1, 1))                              # overlapping
    assert adjoint_check(forward, shape, adjoint_fn=right, device=device)
    with pytest.raises(GradcheckError, match=r"<A x, y> = \S+ but <x, A\^T y> = \S+ \(relative error"):
        adjoint_check(forward, shape, adjoint_fn=wrong, device=device)
    # With stride == kernel no pixel is in two windows, so `=` and `+=` agree: a test on that
    # geometry alone would never see the bug. The overlapping geometry is what catches it.
    forward, right, wrong = geometry(kernel)
    assert adjoint_check(forward, shape, adjoint_fn=wrong, device=device)


# ------------------------------------------------------------------ gradient to every tied maximum

class WindowMax(Function):
    """out[n, i] = max(x[n, i], x[n, i + 1]) (windows of 2, stride 1: they overlap);
    dx: each window's dout goes to its FIRST maximum; overlapping windows add up."""

    def __init__(self, every_tied_maximum: bool = False):
        self.every_tied_maximum = every_tied_maximum

    def forward(self, x):
        windows = get_array_module(x).stack([x[:, :-1], x[:, 1:]], axis=-1)   # (N, L - 1, 2)
        self.windows = windows
        return windows.max(axis=-1)

    def backward(self, dout):
        xp = get_array_module(dout)
        if self.every_tied_maximum:                                       # planted: ties all win
            winner = self.windows == self.windows.max(axis=-1, keepdims=True)
        else:
            winner = xp.arange(2) == self.windows.argmax(axis=-1)[..., None]
        share = dout[..., None] * winner                                  # (N, L - 1, 2)
        dx = xp.zeros((dout.shape[0], dout.shape[1] + 1), dtype=dout.dtype)
        dx[:, :-1] += share[..., 0]
        dx[:, 1:] += share[..., 1]
        return (dx,)


def upsample_then_window_max(x, every_tied_maximum=False):
    """Nearest-neighbour upsampling (each value twice) and then the window max.

    The repeated value makes exact ties that SURVIVE every perturbation (both copies move
    together), so the function is differentiable and finite differences can judge the tie rule.
    """
    repeated = np.repeat(np.arange(x.shape[1]), 2)                       # [0, 0, 1, 1, 2, 2, ...]
    return WindowMax.apply(x[:, repeated], every_tied_maximum=every_tied_maximum)


def test_gradient_to_every_tied_maximum_is_caught_where_ties_persist(xp):
    x = leaf(xp, distinct_values((2, 4), seed=3))
    assert gradcheck(upsample_then_window_max, x)
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda t: upsample_then_window_max(t, every_tied_maximum=True), x)
    assert element_failure(caught.value, (2, 4))[0] == 0


def test_a_tie_between_two_values_is_a_kink_that_finite_differences_cannot_judge(xp):
    """At an accidental tie max(a, b) with a == b, (L(a + h) - L(a - h)) / 2h sees half the slope:
    neither the first-maximum rule (1 and 0) nor any other matches it. So the strategies keep
    ties away (``distinct_values``) and the rule is tested exactly instead."""
    x = leaf(xp, [[0.5, 0.5, -1.0]])                                     # the first window ties
    for planted in (False, True):
        with pytest.raises(GradcheckError) as caught:
            gradcheck(lambda t: WindowMax.apply(t, every_tied_maximum=planted), x)
        _, index, _, _ = element_failure(caught.value, (1, 3))
        assert index[1] in (0, 1)                                         # one of the tied pair
    # The exact test: dout = 1 on the tied window goes to the first maximum only.
    for planted, expected in ((False, [1.0, 0.0, 0.0]), (True, [1.0, 1.0, 0.0])):
        x.grad = None
        WindowMax.apply(x, every_tied_maximum=planted).backward(xp.asarray([[1.0, 0.0]]))
        np.testing.assert_array_equal(backend.to_numpy(x.grad)[0], expected)


# ------------------------------------------------------------------ ReLU'(0) = 1

class ReLU(Function):
    """out = max(x, 0);  dx = dout where x > 0 (ReLU'(0) = 0, as in PyTorch)."""

    def __init__(self, slope_one_at_zero: bool = False):
        self.slope_one_at_zero = slope_one_at_zero

    def forward(self, x):
        self.mask = (x >= 0) if self.slope_one_at_zero else (x > 0)        # planted: >= instead of >
        return get_array_module(x).maximum(x, 0)

    def backward(self, dout):
        return (dout * self.mask,)


def test_relu_slope_at_zero_is_a_kink_rule_decided_by_an_exact_test(xp):
    """ReLU is not differentiable at 0: the central difference there is (h - 0) / 2h = 1/2, which
    matches neither convention, so gradcheck fails BOTH the right rule and the planted one on an
    input with exact zeros. That is why the strategies draw values away from zero
    (``away_from_zero``) and why the convention ReLU'(0) = 0 has an exact test of its own."""
    values = away_from_zero((3, 4), seed=4)
    values[0, 1] = values[2, 3] = 0.0
    x = leaf(xp, values)
    for planted in (False, True):
        with pytest.raises(GradcheckError) as caught:
            gradcheck(lambda t: ReLU.apply(t, slope_one_at_zero=planted), x)
        _, index, analytic, numeric = element_failure(caught.value, (3, 4))
        assert index in ((0, 1), (2, 3))                                  # it points at a zero
        if planted:
            assert numeric == pytest.approx(0.5 * analytic, rel=1e-6)
        else:
            assert analytic == 0.0
    # Away from zero both agree with finite differences: the bug is invisible there ...
    x_away = leaf(xp, away_from_zero((3, 4), seed=4))
    assert gradcheck(lambda t: ReLU.apply(t, slope_one_at_zero=True), x_away)
    # ... and the exact test is what catches it.
    for planted, expected in ((False, 0.0), (True, 1.0)):
        x.grad = None
        ReLU.apply(x, slope_one_at_zero=planted).backward(xp.ones((3, 4)))
        assert float(x.grad[0, 1]) == expected and float(x.grad[2, 3]) == expected


# ------------------------------------------------------------------ a dropped transpose in matmul

class MatMul(Function):
    """out = a @ b;  da = dout @ b^T, db = a^T @ dout, with planted ways to lose a transpose."""

    def __init__(self, planted: str = ""):
        self.planted = planted

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, dout):
        a_t, b_t = self.a.T, self.b.T
        if self.planted == "dropped":
            b_t = self.b                                                  # dout @ b
        elif self.planted == "reshaped":
            b_t = self.b.reshape(self.b.T.shape)                          # the right shape, wrong values
        elif self.planted == "reshaped_in_db":
            a_t = self.a.reshape(self.a.T.shape)
        return dout @ b_t, a_t @ dout


def test_a_transpose_replaced_by_a_reshape_is_caught_and_names_the_input(xp):
    """Non-square matrices: the shapes still fit after the reshape, only the values are wrong."""
    a, b = leaf(xp, normal_array((2, 3), seed=5)), leaf(xp, normal_array((3, 4), seed=6))
    assert gradcheck(lambda s, t: MatMul.apply(s, t), a, b)
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda s, t: MatMul.apply(s, t, planted="reshaped"), a, b)
    assert element_failure(caught.value, (2, 3))[0] == 0
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda s, t: MatMul.apply(s, t, planted="reshaped_in_db"), a, b)
    assert element_failure(caught.value, (3, 4))[0] == 1                  # the bug is in db: input 1


def test_a_dropped_transpose_is_caught(xp):
    # With b square (a is not) the dropped transpose still fits the shapes: gradcheck catches it.
    a, b = leaf(xp, normal_array((2, 3), seed=7)), leaf(xp, normal_array((3, 3), seed=8))
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda s, t: MatMul.apply(s, t, planted="dropped"), a, b)
    assert element_failure(caught.value, (2, 3))[0] == 0
    # A symmetric b hides it completely (b == b^T): why checks draw random, non-square inputs.
    symmetric = normal_array((3, 3), seed=8)
    assert gradcheck(lambda s, t: MatMul.apply(s, t, planted="dropped"), a,
                     mr.tensor(xp.asarray(symmetric + symmetric.T)))
    # With b non-square the dropped transpose cannot even multiply: a clear error, no silence.
    b_wide = leaf(xp, normal_array((3, 4), seed=9))
    with pytest.raises(ValueError):
        gradcheck(lambda s, t: MatMul.apply(s, t, planted="dropped"), a, b_wide)


# ------------------------------------------------------------------ random G, never all ones

class Centre(Function):
    """out = x - mean(x) over the last axis;  dx = dout - mean(dout) (batch norm's core)."""

    def __init__(self, planted: str = ""):
        self.planted = planted

    def forward(self, x):
        return x - x.mean(axis=-1, keepdims=True)

    def backward(self, dout):
        if self.planted == "identity":
            return (dout,)                                                # planted: forgot the mean
        if self.planted == "zeros":
            return (get_array_module(dout).zeros_like(dout),)              # planted: nothing flows
        return (dout - dout.mean(axis=-1, keepdims=True),)


def check_with_all_ones(fn, x: np.ndarray, eps: float = 1e-6) -> bool:
    """The check gradcheck refuses to be: L = f(x).sum(), i.e. an all-ones upstream gradient."""
    t = mr.tensor(x.copy(), requires_grad=True)
    fn(t).backward(np.ones(fn(t).shape))
    numeric = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[k] += eps
        minus[k] -= eps
        numeric[k] = (fn(mr.tensor(plus)).data.sum() - fn(mr.tensor(minus)).data.sum()) / (2 * eps)
    return np.allclose(t.grad, numeric, rtol=1e-4, atol=1e-6)


def test_an_all_ones_upstream_misses_a_zero_gradient_but_a_random_one_does_not(xp):
    """sum(x - mean(x)) is 0 for every x, so under an all-ones upstream gradient the true input
    gradient is exactly 0 and a backward that returns zeros passes. Batch norm has the same blind
    spot. gradcheck's L = <G, f(x)> with a random G sees the difference."""
    values = normal_array((2, 5), seed=10)
    assert check_with_all_ones(lambda t: Centre.apply(t, planted="zeros"), values)  # the blind spot
    x = leaf(xp, values)
    assert gradcheck(lambda t: Centre.apply(t), x)
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda t: Centre.apply(t, planted="zeros"), x)
    position, _, analytic, _ = element_failure(caught.value, (2, 5))
    assert position == 0 and analytic == 0.0


def test_a_centring_backward_that_forgets_the_mean_is_caught(xp):
    x = leaf(xp, normal_array((2, 5), seed=11))
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda t: Centre.apply(t, planted="identity"), x)
    assert element_failure(caught.value, (2, 5))[0] == 0


# ------------------------------------------------------------------ the toolkit's own contract

def test_float32_inputs_are_refused_with_a_helpful_message(xp):
    x = mr.tensor(xp.ones((2, 3), dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match=r"input 0 is float32; finite differences need float64.*\.to\("):
        gradcheck(lambda t: t * 2.0, x)


def test_nothing_to_check_and_a_dtype_change_are_clear_errors(xp):
    with pytest.raises(ValueError, match="requires_grad=True"):
        gradcheck(lambda t: t * 2.0, mr.tensor(xp.ones(3)))
    with pytest.raises(TypeError, match="silent dtype change"):
        gradcheck(lambda t: mr.tensor(t.data.astype(np.float32), requires_grad=True), leaf(xp, np.ones(3)))


def test_gradcheck_leaves_the_callers_tensors_alone(xp):
    x = leaf(xp, normal_array((3, 2), seed=12))
    before = backend.to_numpy(x.data).copy()
    gradcheck(lambda t: (t * t).exp(), x)
    np.testing.assert_array_equal(backend.to_numpy(x.data), before)
    assert x.grad is None


def test_a_large_input_is_checked_by_direction_and_still_diagnosed_per_element(xp):
    """Above max_elementwise only the cheap tiers run on a correct op; a failing input still
    gets its per-element diagnosis."""
    x = leaf(xp, normal_array((2, 300), seed=13))
    assert gradcheck(lambda t: Mean.apply(t), x)
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda t: Mean.apply(t, forget_the_count=True), x)
    _, _, analytic, numeric = element_failure(caught.value, (2, 300))
    assert analytic == pytest.approx(300 * numeric, rel=1e-6)


def test_hyper_parameters_pass_through_and_only_inputs_that_require_grad_are_checked(xp):
    a, b = leaf(xp, normal_array((2, 3), seed=14)), mr.tensor(xp.asarray(normal_array((3, 4), seed=15)))
    # a planted bug in db is not looked at when b does not require a gradient
    assert gradcheck(lambda s, t, planted: MatMul.apply(s, t, planted=planted), a, b, "reshaped_in_db")


def test_adjoint_check_catches_a_wrong_transpose(device):
    A = normal_array((3, 5), seed=16)
    A_dev = backend.to_device(A, device)
    assert adjoint_check(lambda x: A_dev @ x, (5, 2), adjoint_fn=lambda y: A_dev.T @ y, device=device)
    wrong = A_dev.reshape(5, 3)                                         # the right shape, not A^T
    with pytest.raises(GradcheckError, match=r"adjoint_check of .* failed: <A x, y> = \S+ but <x, A\^T y> ="):
        adjoint_check(lambda x: A_dev @ x, (5, 2), adjoint_fn=lambda y: wrong @ y, device=device)
    with pytest.raises(GradcheckError, match=r"A\^T y has shape \(3, 2\), x has \(5, 2\)"):
        adjoint_check(lambda x: A_dev @ x, (5, 2), adjoint_fn=lambda y: y, device=device)


def test_adjoint_check_through_a_backward_pass(device):
    b = mr.tensor(backend.to_device(normal_array((3, 4), seed=17), device))
    assert adjoint_check(lambda t: MatMul.apply(t, b), (2, 3), device=device)
    with pytest.raises(GradcheckError, match="not the transpose of the forward"):
        adjoint_check(lambda t: MatMul.apply(t, b, planted="reshaped"), (2, 3), device=device)

