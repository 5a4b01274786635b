"""Each update rule against its formula written out by hand, plus what a step does around it:
parameters without a gradient, the version counter, zero_grad, closures, dtypes and devices."""
import numpy as np
import pytest

import minires
from minires import backend, nn, optim


def param(values, device="cpu", dtype="float64"):
    return nn.Parameter(minires.tensor(np.asarray(values, dtype=np.float64), dtype=dtype, device=device))


def give_grad(p, values):
    p.grad = minires.tensor(np.asarray(values, dtype=np.float64), dtype=p.dtype, device=p.device)


def run(optimizer, p, grads):
    """Take one step per gradient in ``grads``; the values of ``p`` after each, as NumPy arrays."""
    out = []
    for g in grads:
        give_grad(p, g)
        optimizer.step()
        out.append(backend.to_numpy(p.data).copy())
    return out


THETA0 = np.array([0.5, -1.0, 2.0])
GRADS = [np.array([1.0, -2.0, 0.5]), np.array([-0.5, 0.25, 1.5]), np.array([0.3, 0.3, -1.0])]


def test_sgd_plain_by_hand(device):
    p = param(THETA0, device)
    got = run(optim.SGD([p], lr=0.1), p, GRADS)
    theta = THETA0.copy()
    for g, after in zip(GRADS, got):
        theta = theta - 0.1 * g
        np.testing.assert_allclose(after, theta, rtol=1e-15)


@pytest.mark.parametrize("nesterov, dampening", [(False, 0.0), (False, 0.25), (True, 0.0)])
def test_sgd_momentum_by_hand(device, nesterov, dampening):
    lr, mu, wd = 0.1, 0.9, 0.01
    p = param(THETA0, device)
    got = run(optim.SGD([p], lr=lr, momentum=mu, dampening=dampening, weight_decay=wd, nesterov=nesterov), p, GRADS)
    theta, buf = THETA0.copy(), None
    for g, after in zip(GRADS, got):
        g = g + wd * theta
        buf = g.copy() if buf is None else mu * buf + (1 - dampening) * g    # no dampening at the first step
        direction = g + mu * buf if nesterov else buf
        theta = theta - lr * direction
        np.testing.assert_allclose(after, theta, rtol=1e-14)


def test_sgd_maximize_climbs(device):
    p = param(THETA0, device)
    got = run(optim.SGD([p], lr=0.1, maximize=True), p, GRADS[:1])
    np.testing.assert_allclose(got[0], THETA0 + 0.1 * GRADS[0], rtol=1e-15)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_by_hand(device, amsgrad, decoupled):
    lr, (b1, b2), eps, wd = 0.01, (0.9, 0.999), 1e-8, 0.1
    p = param(THETA0, device)
    cls = optim.AdamW if decoupled else optim.Adam
    got = run(cls([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, amsgrad=amsgrad), p, GRADS)
    theta, m, v, vmax = THETA0.copy(), 0.0, 0.0, 0.0
    for t, (g, after) in enumerate(zip(GRADS, got), start=1):
        if decoupled:
            theta = theta * (1 - lr * wd)
        else:
            g = g + wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1 ** t)
        v_hat = (vmax if amsgrad else v) / (1 - b2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(after, theta, rtol=1e-13)


def test_adam_first_step_moves_each_weight_by_lr(device):
    """Bias correction makes the first step lr * g / |g| (up to eps): a classic check of Adam."""
    p = param(THETA0, device)
    got = run(optim.Adam([p], lr=0.01), p, GRADS[:1])
    np.testing.assert_allclose(got[0], THETA0 - 0.01 * np.sign(GRADS[0]), rtol=1e-7)


def test_adamw_default_weight_decay_and_flag():
    p = param(THETA0)
    adamw = optim.AdamW([p])
    assert adamw.defaults["weight_decay"] == 1e-2 and adamw.defaults["decoupled_weight_decay"] is True
    assert optim.Adam([param(THETA0)]).defaults["weight_decay"] == 0


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
    lambda ps: optim.Adam(ps, weight_decay=0.1),
    lambda ps: optim.AdamW(ps),
], ids=["sgd", "adam", "adamw"])
def test_a_parameter_without_gradient_is_left_alone(device, make):
    a, b = param(THETA0, device), param([1.0, 2.0], device)
    optimizer = make([a, b])
    give_grad(a, GRADS[0])
    optimizer.step()
    np.testing.assert_array_equal(backend.to_numpy(b.data), [1.0, 2.0])     # weight decay did not touch it
    assert b._version == 0 and b not in optimizer.state
    assert not np.array_equal(backend.to_numpy(a.data), THETA0)


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1),
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: optim.Adam(ps, amsgrad=True),
    lambda ps: optim.AdamW(ps),
], ids=["sgd", "nesterov", "amsgrad", "adamw"])
def test_step_bumps_the_version_and_keeps_the_object(device, make):
    p = param(THETA0, device)
    array_before = p.data
    optimizer = make([p])
    give_grad(p, GRADS[0])
    before = p._version
    optimizer.step()
    assert p._version > before                       # the step counts as an in-place change
    assert p.data is array_before                    # the same array, written in place
    assert p.requires_grad and p.is_leaf and p.grad_fn is None


def test_a_stale_graph_notices_the_step():
    """A backward through a graph that saved the parameter before the step raises (the version check)."""
    p = param(THETA0)
    loss = (p * p).sum()
    give_grad(p, GRADS[0])
    optim.SGD([p], lr=0.1).step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_step_runs_without_recording():
    """The step happens under no_grad even when the caller records: no error, no graph."""
    p = param(THETA0)
    give_grad(p, GRADS[0])
    assert minires.is_grad_enabled()
    optim.Adam([p]).step()
    assert p.is_leaf and minires.is_grad_enabled()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_and_device_are_kept(xp, device, dtype):
    p = param(THETA0, device, dtype)
    for optimizer in (optim.SGD([p], lr=0.1, momentum=0.9), optim.Adam([p], amsgrad=True)):
        give_grad(p, GRADS[0])
        optimizer.step()
        optimizer.step()
        assert p.dtype == np.dtype(dtype) and isinstance(p.data, xp.ndarray)
        for value in optimizer.state[p].values():
            if backend.is_array(value):
                assert value.dtype == np.dtype(dtype) and isinstance(value, xp.ndarray)


def test_zero_grad_to_none_and_in_place(device):
    a, b, c = param(THETA0, device), param([1.0], device), param([2.0], device)
    optimizer = optim.SGD([a, b, c], lr=0.1)
    give_grad(a, GRADS[0])
    give_grad(b, [3.0])
    grad_a = a.grad
    optimizer.zero_grad(set_to_none=False)
    assert a.grad is grad_a and grad_a._version == 1      # the same Tensor, zeroed in place
    np.testing.assert_array_equal(backend.to_numpy(a.grad.data), 0.0)
    np.testing.assert_array_equal(backend.to_numpy(b.grad.data), 0.0)
    assert c.grad is None
    optimizer.zero_grad()
    assert a.grad is None and b.grad is None and c.grad is None


def test_zero_grad_then_backward_accumulates_fresh():
    p = param(THETA0)
    optimizer = optim.SGD([p], lr=0.1)
    for set_to_none in (True, False):
        (p * p).sum().backward()
        optimizer.zero_grad(set_to_none=set_to_none)
        (p * p).sum().backward()
        np.testing.assert_allclose(p.grad.numpy(), 2 * THETA0)
        optimizer.zero_grad()


def test_closure_is_called_with_recording_on_and_its_loss_returned():
    p = param(THETA0)
    optimizer = optim.SGD([p], lr=0.1)
    calls = []

    def closure():
        optimizer.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        calls.append(minires.is_grad_enabled())
        return loss

    with minires.no_grad():
        loss = optimizer.step(closure)
    assert calls == [True]
    assert loss.item() == pytest.approx(float((THETA0 ** 2).sum()))
    np.testing.assert_allclose(p.numpy(), THETA0 - 0.1 * 2 * THETA0)
    assert optimizer.step() is None


def test_training_a_linear_model_reduces_the_loss():
    """End to end: fit y = 2x - 1 with each optimizer."""
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal((64, 1)))
    y = 2 * x - 1
    for make in (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: optim.Adam(ps, lr=0.1),
                 lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.0)):
        model = nn.Linear(1, 1, dtype="float64")
        optimizer = make(model.parameters())
        for _ in range(200):
            optimizer.zero_grad()
            loss = ((model(x) - y) * (model(x) - y)).mean()
            loss.backward()
            optimizer.step()
        assert loss.item() < 1e-4
        np.testing.assert_allclose(model.weight.numpy().ravel(), [2.0], atol=1e-2)
