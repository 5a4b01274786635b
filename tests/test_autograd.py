"""The backward pass: order, accumulation, broadcasting, recording rules, memory and errors."""
import gc
import sys
import threading
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minires as mr
from minires import backend
from minires import functional as F
from minires.autograd import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from minires.testing import gradcheck
from minires.testing.strategies import normal_array, seeds

# Hypothesis and a per-test fixture (xp): the fixture is only the array module, never state.
WITH_FIXTURE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def leaf(xp, values, dtype=np.float64):
    return mr.tensor(xp.asarray(values, dtype=dtype), requires_grad=True)


def host(array):
    return backend.to_numpy(array)


# ------------------------------------------------------------------ the basics

def test_backward_on_a_scalar(xp):
    a = np.array([1.0, -2.0, 3.0])
    x = leaf(xp, a)
    loss = (x * x).sum()
    loss.backward()
    np.testing.assert_allclose(host(x.grad), 2 * a)
    assert x.grad.dtype == np.float64 and backend.get_array_module(x.grad) is xp


def test_backward_on_a_leaf_and_with_a_given_gradient(xp):
    x = leaf(xp, [1.0, 2.0])
    x.backward(xp.asarray([3.0, 4.0]))
    np.testing.assert_array_equal(host(x.grad), [3.0, 4.0])
    y = leaf(xp, [1.0, 2.0, 3.0])
    (y * 2.0).backward([1.0, 0.0, -1.0])                                 # Python values are fine too
    np.testing.assert_array_equal(host(y.grad), [2.0, 0.0, -2.0])


def test_gradients_accumulate_across_backward_calls(xp):
    x = leaf(xp, [1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [6.0, 6.0])


def test_a_tensor_used_twice_gets_both_gradients(xp):
    x = leaf(xp, [1.5, -0.5])
    (x * x).sum().backward()                                              # both inputs of one Mul
    np.testing.assert_array_equal(host(x.grad), [3.0, -1.0])


def test_the_residual_connection(xp):
    """y = f(x) + x: the identity path and the f path both reach x, and they add."""
    a = normal_array((3, 4), seed=0)
    w = normal_array((4, 4), seed=1)
    x, weight = leaf(xp, a), mr.tensor(xp.asarray(w))
    y = F.relu(x @ weight) + x
    G = normal_array((3, 4), seed=2)
    y.backward(xp.asarray(G))
    pre = a @ w
    expected = ((pre > 0) * G) @ w.T + G                                 # f path + identity path
    np.testing.assert_allclose(host(x.grad), expected, rtol=1e-12)
    assert gradcheck(lambda t: F.relu(t @ weight) + t, x)


def test_a_diamond_reaches_its_root_once_with_the_sum_of_both_branches(xp):
    x = leaf(xp, [2.0])
    h = x * 3.0                                                          # used by two branches
    loss = (h * h + h.exp()).sum()
    loss.backward()
    np.testing.assert_allclose(host(x.grad), [3.0 * (2 * 6.0 + np.exp(6.0))], rtol=1e-12)


def test_float32_graphs_give_float32_gradients(xp):
    x = leaf(xp, [1.0, 2.0], np.float32)
    (x * x).sum().backward(xp.asarray(1.0, dtype=np.float64))            # the gradient is cast, as in PyTorch
    assert x.grad.dtype == np.float32


# ------------------------------------------------------------------ broadcasting

@st.composite
def broadcast_pairs(draw):
    """Two shapes that broadcast: each drops some leading axes of the result and sets some to 1."""
    out = draw(st.lists(st.integers(1, 3), min_size=0, max_size=4))

    def one_side():
        ndim = draw(st.integers(0, len(out)))
        return tuple(1 if draw(st.booleans()) else n for n in out[len(out) - ndim:])
    return one_side(), one_side()


def sum_back(G, shape):
    """dL/dinput for an input of `shape` broadcast to G's shape: add up every copy (by counting)."""
    positions = np.broadcast_to(np.arange(int(np.prod(shape))).reshape(shape), G.shape)
    counts = np.bincount(positions.reshape(-1), weights=G.reshape(-1), minlength=int(np.prod(shape)))
    return counts.reshape(shape)


@WITH_FIXTURE
@given(broadcast_pairs(), seeds())
def test_broadcasting_is_summed_back_to_each_input_shape(xp, shapes, seed):
    a_shape, b_shape = shapes
    a, b = normal_array(a_shape, seed), normal_array(b_shape, seed + 1) + 3.0  # b away from 0 for div
    G = normal_array(np.broadcast_shapes(a_shape, b_shape), seed + 2)
    for op, da, db in [(F.add, G, G), (F.sub, G, -G), (F.mul, G * b, G * a), (F.div, G / b, -G * a / b ** 2)]:
        x, y = leaf(xp, a), leaf(xp, b)
        op(x, y).backward(xp.asarray(G))
        assert x.grad.shape == a_shape and y.grad.shape == b_shape
        np.testing.assert_allclose(host(x.grad), sum_back(da, a_shape), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(host(y.grad), sum_back(db, b_shape), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ what gets recorded

def test_no_grad_records_nothing(xp):
    x = leaf(xp, [1.0, 2.0])
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2.0
    assert is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_no_grad_as_a_decorator(xp):
    x = leaf(xp, [1.0, 2.0])

    @no_grad()
    def double(t):
        return t * 2.0
    assert not double(x).requires_grad and is_grad_enabled()
    assert double.__name__ == "double"


def test_grad_mode_is_restored_by_a_recursive_decorated_function_and_on_errors():
    @no_grad()
    def depth(n):
        return depth(n - 1) if n else is_grad_enabled()
    assert depth(3) is False
    assert is_grad_enabled()

    @no_grad()
    def fails():
        raise KeyError("boom")
    with pytest.raises(KeyError):
        fails()
    assert is_grad_enabled()


def test_grad_mode_is_per_thread():
    seen = []
    with no_grad():
        worker = threading.Thread(target=lambda: seen.append(is_grad_enabled()))
        worker.start()
        worker.join()
    assert seen == [True]


def test_enable_grad_inside_no_grad_and_set_grad_enabled(xp):
    x = leaf(xp, [1.0])
    with no_grad():
        with enable_grad():
            assert (x * 2.0).requires_grad
        assert not (x * 2.0).requires_grad
    set_grad_enabled(False)
    try:
        assert not (x * 2.0).requires_grad
    finally:
        set_grad_enabled(True)
    assert (x * 2.0).requires_grad


def test_requires_grad_propagates_and_constants_get_no_gradient(xp):
    x, c = leaf(xp, [1.0, 2.0]), mr.tensor(xp.asarray([3.0, 4.0]))
    assert not (c * c).requires_grad and (c * c).is_leaf
    y = x * c
    assert y.requires_grad and not y.is_leaf
    y.sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(host(x.grad), [3.0, 4.0])


def test_needs_input_grad_lets_a_backward_skip_work(xp):
    calls = []

    class Scale(Function):
        def forward(self, a, b):
            self.a, self.b = a, b
            return a * b

        def backward(self, dout):
            calls.append(self.needs_input_grad)
            return (dout * self.b if self.needs_input_grad[0] else None,
                    dout * self.a if self.needs_input_grad[1] else None)

    x, c = leaf(xp, [2.0]), mr.tensor(xp.asarray([5.0]))
    Scale.apply(x, c).sum().backward()
    assert calls == [(True, False)] and float(x.grad[0]) == 5.0


def test_forward_knows_whether_a_backward_can_follow(xp):
    """apply sets needs_input_grad before forward (as PyTorch's ctx.needs_input_grad): all False when
    nothing is recorded. A Function called by hand may always be followed by its backward."""
    seen = []

    class Probe(Function):
        def forward(self, a, b):
            seen.append((self.needs_input_grad, self.backward_possible))
            return a * b

        def backward(self, dout):
            return dout, dout

    x, c = leaf(xp, [2.0]), mr.tensor(xp.asarray([5.0]))
    Probe.apply(x, c)
    Probe.apply(c, c)                                           # no input requires a gradient
    with mr.no_grad():
        Probe.apply(x, c)
    assert seen == [((True, False), True), ((False, False), False), ((False, False), False)]
    from minires.functional.activation import ReLU
    relu = ReLU()                                               # by hand: forward, then backward
    assert relu.backward_possible
    relu.forward(xp.asarray([-1.0, 2.0]))
    assert backend.to_numpy(relu.backward(xp.asarray([3.0, 3.0]))[0]).tolist() == [0.0, 3.0]


def test_detach_cuts_the_graph(xp):
    x = leaf(xp, [1.0, 2.0])
    y = x * x.detach()                                                   # d/dx counts one factor only
    y.sum().backward()
    np.testing.assert_array_equal(host(x.grad), [1.0, 2.0])


def test_retain_grad_keeps_an_intermediate_gradient(xp):
    x = leaf(xp, [1.0, 2.0])
    h = (x * 3.0).retain_grad()
    other = x * 2.0
    (h * h).sum().backward()
    np.testing.assert_allclose(host(h.grad), 2 * 3.0 * np.array([1.0, 2.0]))
    assert other.grad is None
    assert x.retain_grad() is x                                          # leaves always keep theirs


# ------------------------------------------------------------------ deep graphs and memory

def test_backward_through_a_graph_deeper_than_the_recursion_limit(xp):
    depth = 20_000
    assert depth > sys.getrecursionlimit()
    x = leaf(xp, [1.0])
    y = x
    for _ in range(depth):
        y = y * 1.0                                                      # depth Functions in a chain
    y.sum().backward()
    assert float(x.grad[0]) == 1.0
    unused = x
    for _ in range(depth):
        unused = unused * 1.0
    del unused                                                           # dropping a deep graph unrun is fine too
    gc.collect()


def test_a_finished_graph_lets_its_activations_go(xp):
    x = leaf(xp, np.ones(1000))
    hidden = x * 2.0
    alive = weakref.ref(hidden.data)
    loss = (hidden * hidden).sum()
    del hidden
    assert alive() is not None                                           # Mul's backward needs it ...
    loss.backward()
    assert alive() is None                                               # ... and nothing after it
    np.testing.assert_array_equal(host(x.grad), np.full(1000, 8.0))


def test_an_input_no_backward_reads_is_not_kept_by_the_graph(xp):
    """The graph links a Function to its input's creator, not to the input: an intermediate result
    that no backward saved (the input of an addition) is freed as soon as the user drops it."""
    x = leaf(xp, np.ones(1000))
    hidden = x * 2.0
    alive_tensor, alive_data = weakref.ref(hidden), weakref.ref(hidden.data)
    loss = (hidden + 1.0).sum()
    del hidden
    assert alive_tensor() is None and alive_data() is None               # freed before the backward
    loss.backward()
    np.testing.assert_array_equal(host(x.grad), np.full(1000, 2.0))


# ------------------------------------------------------------------ clear errors

def test_a_second_backward_through_a_freed_graph_is_a_clear_error(xp):
    x = leaf(xp, [1.0, 2.0])
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"backward through the graph a second time.*retain_graph=True"):
        loss.backward()


def test_retain_graph_allows_a_second_backward(xp):
    x = leaf(xp, [1.0, 2.0])
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_array_equal(host(x.grad), [4.0, 8.0])


def test_backward_from_a_non_scalar_needs_a_gradient(xp):
    y = leaf(xp, np.ones((2, 3))) * 2.0
    with pytest.raises(RuntimeError, match=r"single-value tensor.*shape \(2, 3\).*pass gradient="):
        y.backward()


def test_backward_with_a_gradient_of_the_wrong_shape(xp):
    y = leaf(xp, np.ones((2, 3))) * 2.0
    with pytest.raises(RuntimeError, match=r"gradient of shape \(3, 2\) for a tensor of shape \(2, 3\)"):
        y.backward(xp.ones((3, 2)))


def test_backward_on_a_tensor_that_needs_no_gradient(xp):
    with pytest.raises(RuntimeError, match="does not require grad"):
        mr.tensor(xp.ones(2)).sum().backward()


def test_a_function_that_returns_the_wrong_gradients_is_named(xp):
    class TwoForOne(Function):
        def forward(self, x):
            return x * 2

        def backward(self, dout):
            return dout, dout

    class WrongShape(Function):
        def forward(self, x):
            return x * 2

        def backward(self, dout):
            return (dout[:1],)

    x = leaf(xp, [1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"TwoForOne.backward returned 2 gradient\(s\) for 1 input"):
        TwoForOne.apply(x).sum().backward()
    with pytest.raises(RuntimeError, match=r"WrongShape.backward returned a gradient of shape \(1,\) "
                                           r"for an input of shape \(2,\)"):
        WrongShape.apply(x).sum().backward()


def test_mixing_devices_is_a_clear_error_that_names_both(xp, monkeypatch):
    """No second device is needed to test the error: one array is made to report another device
    than the one it is on (cuda:0 on the CPU; cuda:1 on a machine's first GPU, so that the two differ)."""
    a, b = leaf(xp, [1.0, 2.0]), leaf(xp, [3.0, 4.0])
    real_device_of = backend.device_of
    here = real_device_of(a.data)
    other = "cuda:1" if here == "cuda:0" else "cuda:0"
    monkeypatch.setattr(backend, "device_of", lambda arr: other if arr is b.data else real_device_of(arr))
    with pytest.raises(RuntimeError, match=rf"different devices: \['{here}', '{other}'\].*\.to\("):
        a + b
    with pytest.raises(RuntimeError, match="different devices"):
        F.matmul(a, b)
    with pytest.raises(RuntimeError, match=rf"gradient on {other} for a tensor on {here}"):
        (a * 2.0).backward(b.data)


@pytest.mark.gpu
def test_mixing_a_real_gpu_and_the_cpu_is_refused():
    if not backend.cuda_is_available():
        pytest.skip("CuPy with a CUDA device is not available on this machine")
    a = mr.tensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"different devices: \['cpu', 'cuda:0'\]"):
        a + a.to("cuda")


@pytest.mark.parametrize("op", [F.add, F.sub, F.mul, F.div, F.matmul, F.pow])
def test_float32_and_float64_do_not_mix(xp, op):
    a = mr.tensor(xp.ones((2, 2), dtype=np.float32))
    b = mr.tensor(xp.ones((2, 2), dtype=np.float64))
    with pytest.raises(TypeError, match=r"dtypes float32 and float64; minires does not promote.*\.to\("):
        op(a, b)


def test_float_and_int_do_not_mix_where_it_means_nothing(xp):
    floats = mr.tensor(xp.ones((2, 2), dtype=np.float64))
    ints = mr.tensor(xp.ones((2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="matmul got inputs of dtypes int64 and float64"):
        ints @ floats
    with pytest.raises(TypeError, match="add got inputs of dtypes float64 and int64"):
        floats + ints
    assert (ints @ ints).dtype == np.int64


def test_no_grad_decorates_with_and_without_brackets_and_set_grad_enabled_is_a_context_too():
    @no_grad
    def bare():
        return is_grad_enabled()

    @no_grad()
    def called():
        return is_grad_enabled()

    @set_grad_enabled(False)
    def decorated():
        return is_grad_enabled()

    assert not bare() and not called() and is_grad_enabled()
    assert not decorated() and is_grad_enabled()               # decorating did not switch recording off
    with set_grad_enabled(False):
        assert not is_grad_enabled()
        with set_grad_enabled(True):
            assert is_grad_enabled()
        assert not is_grad_enabled()
    assert is_grad_enabled()
    set_grad_enabled(False)                                    # a plain call switches at once
    try:
        assert not is_grad_enabled()
    finally:
        set_grad_enabled(True)
