"""In-place updates with PyTorch's rules: the three cases, the version counter, `.grad` as a Tensor."""
import numpy as np
import pytest

import minires
import minires.functional as F
from minires import nn, no_grad


def leaf(xp, *shape, seed=0):
    values = np.random.default_rng(seed).standard_normal(shape)
    return minires.tensor(xp.asarray(values), requires_grad=True)


# ------------------------------------------------------------- case 1: nothing recorded
# name, call, the same update written out of place on arrays
UPDATES = [
    ("+=", lambda t, o: t.__iadd__(o), lambda x, o: x + o),
    ("-=", lambda t, o: t.__isub__(o), lambda x, o: x - o),
    ("*=", lambda t, o: t.__imul__(o), lambda x, o: x * o),
    ("/=", lambda t, o: t.__itruediv__(o), lambda x, o: x / o),
    ("add_ alpha", lambda t, o: t.add_(o, alpha=-0.5), lambda x, o: x - 0.5 * o),
    ("sub_ alpha", lambda t, o: t.sub_(o, alpha=2), lambda x, o: x - 2 * o),
    ("mul_", lambda t, o: t.mul_(o), lambda x, o: x * o),
    ("div_", lambda t, o: t.div_(o), lambda x, o: x / o),
    ("addcmul_", lambda t, o: t.addcmul_(o, o, value=0.1), lambda x, o: x + 0.1 * o * o),
    ("addcdiv_", lambda t, o: t.addcdiv_(o, o * o + 1, value=-2), lambda x, o: x - 2 * o / (o * o + 1)),
    ("lerp_", lambda t, o: t.lerp_(o, 0.25), lambda x, o: x + 0.25 * (o - x)),
    ("clamp_", lambda t, o: t.clamp_(-0.5, 0.5), lambda x, o: np.clip(x, -0.5, 0.5)),
    ("clamp_ min", lambda t, o: t.clamp_(min=0.0), lambda x, o: np.maximum(x, 0)),
    ("fill_", lambda t, o: t.fill_(3.5), lambda x, o: np.full_like(x, 3.5)),
    ("zero_", lambda t, o: t.zero_(), lambda x, o: np.zeros_like(x)),
    ("copy_", lambda t, o: t.copy_(o), lambda x, o: np.broadcast_to(o, x.shape)),
]


@pytest.mark.parametrize("name, call, expected", UPDATES, ids=[u[0] for u in UPDATES])
@pytest.mark.parametrize("other_shape", [(2, 3), (3,), (2, 1)], ids=["same", "broadcast-leading", "broadcast-trailing"])
def test_each_update_changes_the_array_in_place_and_bumps_the_version(xp, name, call, expected, other_shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3))
    o = rng.standard_normal(other_shape)
    t = minires.tensor(xp.asarray(x))
    array_before = t.data
    result = call(t, minires.tensor(xp.asarray(o)))
    assert result is t and t.data is array_before          # the same array, changed in place
    assert t._version == 1
    np.testing.assert_allclose(minires.backend.to_numpy(t.data), expected(x, o), rtol=1e-12)


def test_updates_accept_numbers_and_arrays(xp):
    t = minires.tensor(xp.asarray([1.0, 2.0]))
    t += 1
    t.mul_(xp.asarray([2.0, 3.0]))
    t -= minires.tensor(xp.asarray([1.0, 1.0]))
    assert t.tolist() == [3.0, 8.0] and t._version == 3


def test_the_textbook_update_of_a_parameter_works_under_no_grad():
    w = minires.tensor([1.0, -2.0], requires_grad=True)
    (w * w).sum().backward()
    with no_grad():
        w -= 0.25 * w.grad
    assert w.tolist() == [0.5, -1.0] and w.is_leaf and w.requires_grad


def test_the_old_pytorch_idiom_on_data_works_too():
    w = minires.tensor([1.0, -2.0], requires_grad=True)
    (w * w).sum().backward()
    w.data -= 0.25 * w.grad                                # rebinds .data to an array, as PyTorch's .data
    assert w.tolist() == [0.5, -1.0] and minires.backend.is_array(w.data)


def test_an_update_that_would_change_the_shape_or_the_dtype_is_refused():
    t = minires.zeros(3)
    with pytest.raises(RuntimeError, match=r"shape \(3,\) in place with one of shape \(2, 3\)"):
        t += minires.zeros(2, 3)
    n = minires.tensor([1, 2])
    with pytest.raises(TypeError, match="int64 tensor"):
        n /= minires.tensor([2, 2])
    with pytest.raises(TypeError, match="float"):
        n += 0.5
    assert t._version == 0 and n.tolist() == [1, 2]       # nothing was changed


# ------------------------------------------------------- case 2: a leaf that requires grad
def test_a_leaf_that_requires_grad_cannot_change_while_recording():
    w = minires.randn(3, requires_grad=True)
    before = w.numpy().copy()
    for update in (lambda: w.__iadd__(1), lambda: w.zero_(), lambda: w.mul_(2), lambda: w.copy_(minires.ones(3))):
        with pytest.raises(RuntimeError, match="leaf tensor that requires grad.*no_grad"):
            update()
    np.testing.assert_array_equal(w.numpy(), before)
    assert w._version == 0


# ------------------------------------------------------ case 3: an intermediate result
class ResidualBlock(nn.Module):
    """The tutorials' block: `out += shortcut` on the output of a batch norm."""

    def __init__(self, in_place):
        super().__init__()
        self.in_place = in_place
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False, dtype="float64")
        self.bn1 = nn.BatchNorm2d(4, dtype="float64")
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False, dtype="float64")
        self.bn2 = nn.BatchNorm2d(4, dtype="float64")
        self.shortcut = nn.Conv2d(3, 4, 1, bias=False, dtype="float64")

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.in_place:
            out += self.shortcut(x)
        else:
            out = out + self.shortcut(x)
        return F.relu(out)


def test_the_residual_block_with_in_place_add_gets_exactly_the_out_of_place_gradients():
    grads = []
    for in_place in (False, True):
        minires.manual_seed(0)
        block = ResidualBlock(in_place)
        x = minires.tensor(np.random.default_rng(2).standard_normal((2, 3, 5, 5)), requires_grad=True)
        G = minires.tensor(np.random.default_rng(3).standard_normal((2, 4, 5, 5)))
        block(x).backward(G)
        grads.append([x.grad.numpy()] + [p.grad.numpy() for p in block.parameters()])
    names = ["the input"] + [f"{name} of the block" for name, _ in block.named_parameters()]
    for name, a, b in zip(names, *grads):
        np.testing.assert_array_equal(a, b, err_msg=f"gradient of {name}")


@pytest.mark.parametrize("update", ["add_", "sub_", "mul_", "div_", "addcmul_", "addcdiv_", "lerp_", "clamp_", "sqrt_",
                                    "fill_", "copy_"])
def test_an_update_on_an_intermediate_result_is_differentiated_like_its_out_of_place_form(update):
    from minires.testing import gradcheck

    def in_place(a, b):
        y = a * 1.5 + 2                                   # an intermediate result (positive: sqrt_ is defined)
        calls = {"add_": lambda: y.add_(b, alpha=0.5), "sub_": lambda: y.sub_(b), "mul_": lambda: y.mul_(b),
                 "div_": lambda: y.div_(b * b + 1), "addcmul_": lambda: y.addcmul_(b, b, value=0.3),
                 "addcdiv_": lambda: y.addcdiv_(b, b * b + 1), "lerp_": lambda: y.lerp_(b, 0.3),
                 "clamp_": lambda: y.clamp_(1.5, 2.5), "sqrt_": lambda: y.sqrt_(), "fill_": lambda: y.fill_(0.5),
                 "copy_": lambda: y.copy_(b)}
        calls[update]()
        return y * b                                      # b used again after the update

    rng = np.random.default_rng(4)
    a = minires.tensor(rng.uniform(-0.6, 0.6, (3, 4)), requires_grad=True)   # clamp_: margin from 1.5 and 2.5
    b = minires.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    gradcheck(in_place, a, b)


def test_an_update_on_a_tensor_that_needs_no_grad_joins_the_graph():
    x = minires.zeros(3)
    w = minires.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x += w * w
    assert x.requires_grad and not x.is_leaf
    x.sum().backward()
    assert w.grad.tolist() == [2.0, 4.0, 6.0]


# ---------------------------------------------------------------- the version counter
def test_a_backward_that_would_read_a_changed_output_raises():
    x = minires.randn(4, requires_grad=True)
    y = F.relu(x)
    y += 1                                                # relu's backward reads its saved mask only: fine
    y.sum().backward()
    z = x.exp()
    z.mul_(2)
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation: the output of Exp is at version 1; "
                                           r"expected version 0"):
        z.sum().backward()


def test_a_parameter_changed_between_forward_and_backward_is_caught():
    layer = nn.Linear(3, 2)
    loss = layer(minires.randn(4, 3)).sum()
    with no_grad():
        layer.weight -= 0.1                               # an optimizer step taken too early
    with pytest.raises(RuntimeError, match="input 1 of Linear"):
        loss.backward()


def test_a_change_through_a_view_is_seen_by_its_base():
    x = minires.randn(2, 3, requires_grad=True)
    y = x.exp()
    view = y.reshape(6)
    assert view._version_counter is y._version_counter
    with no_grad():
        view.zero_()
    assert y._version == 1 and y.numpy().sum() == 0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_detach_shares_memory_and_version():
    x = minires.randn(3, requires_grad=True)
    y = x.exp()
    y.detach().zero_()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_init_and_load_state_dict_count_as_in_place_changes():
    layer = nn.Linear(3, 2)
    v = layer.weight._version
    nn.init.zeros_(layer.weight)
    assert layer.weight._version == v + 1
    layer.load_state_dict(nn.Linear(3, 2).state_dict())
    assert layer.weight._version == v + 2


# ------------------------------------------------------------------- .grad is a Tensor
def test_grad_is_a_tensor_of_the_leaf_shape_dtype_and_device(xp):
    w = leaf(xp, 2, 3)
    (w * w).sum().backward()
    assert isinstance(w.grad, minires.Tensor) and not w.grad.requires_grad
    assert (w.grad.shape, w.grad.dtype, w.grad.device) == (w.shape, w.dtype, w.device)
    np.testing.assert_allclose(w.grad.numpy(), 2 * w.numpy())
    assert abs(w.grad.norm().item() - 2 * np.linalg.norm(w.numpy())) < 1e-12


def test_gradients_accumulate_into_the_same_grad_tensor_in_place():
    w = minires.tensor([1.0, 2.0], requires_grad=True)
    (w * 3).sum().backward()
    g = w.grad
    (w * 3).sum().backward()
    assert w.grad is g and g.tolist() == [6.0, 6.0] and g._version == 1
    w.grad.zero_()
    assert g.tolist() == [0.0, 0.0]


def test_assigning_a_grad_checks_it():
    w = minires.zeros(2, 3, requires_grad=True)
    w.grad = minires.ones(2, 3)
    w.grad = None
    with pytest.raises(TypeError, match="must be a Tensor or None, got ndarray"):
        w.grad = np.ones((2, 3), np.float32)
    with pytest.raises(RuntimeError, match=r"expected shape \(2, 3\), float32.*got shape \(3,\)"):
        w.grad = minires.ones(3)


def test_numpy_reads_a_cpu_tensor():
    w = minires.tensor([3.0, 4.0])
    assert float(np.linalg.norm(w)) == 5.0
    assert np.asarray(w) is w.data


# ------------------------------------------------------------------------------- views
@pytest.mark.parametrize("update", [
    lambda a: a[0:2].mul_(3), lambda a: a.reshape(3).zero_(), lambda a: a.T.add_(1),
    lambda a: a[1:].copy_(minires.tensor([5.0, 5.0])), lambda a: a[0].fill_(1.0)],
    ids=["slice", "reshape", "T", "copy_ into a slice", "element"])
def test_an_update_through_a_view_while_recording_is_refused_not_miscomputed(update):
    x = minires.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a = x * 2
    with pytest.raises(RuntimeError, match="shares its memory with another one in the graph"):
        update(a)
    assert a.tolist() == [2.0, 4.0, 6.0]                      # nothing was written


def test_the_base_of_a_live_view_is_refused_too_and_a_dead_view_no_longer_counts():
    x = minires.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a = x * 2
    view = a[0:2]
    with pytest.raises(RuntimeError, match="shares its memory"):
        a.mul_(3)
    del view
    a.mul_(3)
    a.sum().backward()
    assert x.grad.tolist() == [6.0, 6.0, 6.0]


def test_a_view_of_a_leaf_that_requires_grad_cannot_change_while_recording():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="shares its memory"):
        x.reshape(2).add_(1)
    assert x.tolist() == [1.0, 2.0]


def test_updates_through_views_change_the_base_outside_the_graph():
    x = minires.zeros(3)
    x[0].fill_(9)                                              # x[0] of a vector is a view, as in PyTorch
    x[1:2].fill_(4)
    x.reshape(3, 1)[2].add_(1)
    assert x.tolist() == [9.0, 4.0, 1.0] and x._version == 3
    a = minires.tensor([1.0, 2.0], requires_grad=True) * 2
    a.detach().zero_()                                         # a detached copy is outside the graph: allowed
    assert a.tolist() == [0.0, 0.0]
