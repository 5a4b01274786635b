"""Module, piece by piece: registration, traversal, modes, gradients, devices and dtypes, repr."""
import numpy as np
import pytest

import minires
from minires import backend, nn


class Block(nn.Module):
    def __init__(self, channels: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    """A small nested model: a stem, a Sequential of blocks, a head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.Sequential(Block(), Block())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


# ------------------------------------------------------------------ registration
def test_attribute_assignment_registers_parameters_modules_and_buffers():
    m = nn.Module()
    m.w = nn.Parameter(minires.zeros(3))
    m.child = nn.Linear(2, 2)
    m.register_buffer("stat", minires.ones(3))
    m.plain = minires.zeros(2)                      # a plain Tensor is not registered
    assert list(m._parameters) == ["w"]
    assert list(m._modules) == ["child"]
    assert list(m._buffers) == ["stat"]
    assert m.w is m._parameters["w"] and m.child is m._modules["child"] and m.stat is m._buffers["stat"]
    assert [n for n, _ in m.named_parameters()] == ["w", "child.weight", "child.bias"]
    assert list(m.state_dict()) == ["w", "stat", "child.weight", "child.bias"]


def test_reassignment_and_deletion_keep_registries_consistent():
    m = nn.Module()
    m.register_buffer("stat", minires.ones(3))
    new = minires.zeros(3)
    m.stat = new                                     # assigning to a buffer name replaces the buffer
    assert m._buffers["stat"] is new
    m.w = nn.Parameter(minires.zeros(1))
    m.w = None                                       # a parameter may become None (absent), not a Tensor
    assert m._parameters["w"] is None and list(m.parameters()) == []
    with pytest.raises(TypeError, match="Parameter or None"):
        m.w = minires.zeros(1)
    m.x = 3
    m.x = nn.Identity()                              # a plain attribute gives way to a module
    assert m._modules["x"] is m.x
    del m.x
    assert "x" not in m._modules and not hasattr(m, "x")


def test_replacing_a_member_keeps_its_place_in_the_order():
    net = Net()
    keys = list(net.state_dict())
    net.stem = nn.Conv2d(3, 4, 3, padding=1)               # replace a child: same place in the order
    net.fc.weight = nn.Parameter(minires.zeros(5, 4))      # replace a parameter: same place
    assert list(net.state_dict()) == keys
    assert net.state_dict(keep_vars=True)["fc.weight"] is net.fc.weight


def test_non_persistent_buffers_are_state_but_not_saved():
    m = nn.Module()
    m.register_buffer("kept", minires.zeros(1))
    m.register_buffer("scratch", minires.zeros(1), persistent=False)
    assert [n for n, _ in m.named_buffers()] == ["kept", "scratch"]
    assert list(m.state_dict()) == ["kept"]
    m.scratch = minires.ones(2)                      # re-assigning keeps it non-persistent
    assert list(m.state_dict()) == ["kept"] and m._buffers["scratch"] is m.scratch


def test_deepcopy_gives_an_independent_consistent_module():
    import copy

    net = Net()
    clone = copy.deepcopy(net)
    assert clone.fc.weight is clone._modules["fc"]._parameters["weight"]
    assert clone.fc.weight is not net.fc.weight
    clone.fc.weight.data[...] = 0
    assert np.any(net.fc.weight.numpy() != 0)
    assert list(clone.state_dict()) == list(net.state_dict())


def test_typos_are_ordinary_attribute_errors():
    with pytest.raises(AttributeError):
        nn.Linear(2, 3).wieght  # noqa: B018 - the typo is the point


def test_registration_errors_are_clear():
    class Forgot(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(minires.zeros(1))   # no super().__init__()

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Forgot()
    m = nn.Module()
    with pytest.raises(KeyError, match="'.'"):
        m.register_parameter("a.b", None)
    with pytest.raises(TypeError, match="Parameter or None"):
        m.register_parameter("w", minires.zeros(1))
    with pytest.raises(TypeError, match="a Tensor"):
        m.register_buffer("b", np.zeros(1))
    with pytest.raises(KeyError, match="already has an attribute"):
        m.register_buffer("training", minires.zeros(1))
    with pytest.raises(TypeError, match="Module or None"):
        m.add_module("c", 3)


def test_parameter_is_a_tensor_that_requires_grad():
    p = nn.Parameter(minires.zeros(2, 3))
    assert isinstance(p, minires.Tensor) and p.requires_grad and p.shape == (2, 3)
    assert not nn.Parameter(np.zeros(2), requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor(")
    with pytest.raises(TypeError, match="Tensor or a NumPy/CuPy array"):
        nn.Parameter([1.0, 2.0])


# ------------------------------------------------------------------ traversal
def test_named_parameters_order_prefix_recurse_and_dedup():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["stem.weight", "stem.bias",
                     "blocks.0.conv.weight", "blocks.0.bn.weight", "blocks.0.bn.bias",
                     "blocks.1.conv.weight", "blocks.1.bn.weight", "blocks.1.bn.bias",
                     "fc.weight", "fc.bias"]
    assert [n for n, _ in net.named_parameters(recurse=False)] == []
    assert [n for n, _ in net.fc.named_parameters(prefix="head")] == ["head.weight", "head.bias"]
    net.blocks[1].conv.weight = net.blocks[0].conv.weight          # tie two weights
    assert len(list(net.parameters())) == 9
    assert [n for n, _ in net.named_parameters(remove_duplicate=False)].count("blocks.1.conv.weight") == 1


def test_a_shared_module_is_visited_once():
    shared = nn.Linear(2, 2)
    m = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in m.named_modules()] == ["", "0", "1"]
    assert len(list(m.parameters())) == 2
    assert list(m.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]   # as PyTorch


def test_modules_children_and_buffers():
    net = Net()
    assert [n for n, _ in net.named_children()] == ["stem", "blocks", "pool", "fc"]
    assert list(net.children()) == [net.stem, net.blocks, net.pool, net.fc]
    assert [n for n, _ in net.named_modules()] == [
        "", "stem", "blocks", "blocks.0", "blocks.0.conv", "blocks.0.bn", "blocks.0.relu",
        "blocks.1", "blocks.1.conv", "blocks.1.bn", "blocks.1.relu", "pool", "fc"]
    assert next(iter(net.modules())) is net
    assert [n for n, _ in net.named_buffers()] == [
        f"blocks.{i}.bn.{b}" for i in (0, 1) for b in ("running_mean", "running_var", "num_batches_tracked")]
    assert len(list(net.buffers(recurse=False))) == 0


def test_apply_visits_children_then_self():
    order = []
    Net().apply(lambda m: order.append(type(m).__name__))
    assert order[-1] == "Net" and order[:4] == ["Conv2d", "Conv2d", "BatchNorm2d", "ReLU"]


# ------------------------------------------------------------------ modes and gradients
def test_train_and_eval_propagate_and_return_self():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.blocks.eval()
    assert net.training and not net.blocks[0].bn.training
    with pytest.raises(TypeError, match="bool"):
        net.train("no")


def test_zero_grad_and_requires_grad():
    net = Net()
    loss = net(minires.randn(2, 3, 4, 4)).sum()
    net.blocks[0].conv.weight.grad = minires.ones(*net.blocks[0].conv.weight.shape)
    net.fc.weight.grad = minires.ones(5, 4)
    net.zero_grad(set_to_none=False)
    assert (net.fc.weight.grad == 0).all()
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert loss.requires_grad
    assert net.requires_grad_(False) is net
    assert not any(p.requires_grad for p in net.parameters())
    assert not net(minires.randn(2, 3, 4, 4)).requires_grad


def test_module_without_forward_says_so():
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(minires.zeros(1))


# ------------------------------------------------------------------ devices and dtypes
def test_to_dtype_in_place_keeps_identity_and_integer_buffers():
    net = Net()
    params = list(net.parameters())
    arrays_before = [p.data.copy() for p in params]
    net.fc.weight.grad = minires.ones(5, 4)
    assert net.to(minires.float64) is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == np.float64 for p in params)
    assert net.fc.weight.grad.dtype == np.float64
    assert net.blocks[0].bn.running_var.dtype == np.float64
    assert net.blocks[0].bn.num_batches_tracked.dtype == np.int64
    for p, before in zip(params, arrays_before):
        np.testing.assert_array_equal(p.data, before.astype(np.float64))
    assert net(minires.randn(1, 3, 4, 4, dtype="float64")).dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in params)
    with pytest.raises(TypeError, match="floating-point"):
        net.to(dtype="int32")


def test_to_device(xp, device):
    net = Net()
    params = list(net.parameters())
    net.to(device)
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.device == backend.normalize_device(device) for p in params)
    assert all(b.device == backend.normalize_device(device) for b in net.buffers())
    out = net(minires.randn(2, 3, 4, 4, device=device))
    assert out.device == backend.normalize_device(device)
    net.cpu()
    assert all(isinstance(p.data, np.ndarray) for p in params)


# ------------------------------------------------------------------ repr
def test_repr_is_nested_like_pytorch():
    text = repr(Net())
    assert text.startswith("Net(\n  (stem): Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n")
    assert "  (blocks): Sequential(\n    (0): Block(\n      (conv): Conv2d(4, 4, kernel_size=(3, 3), " in text
    assert "(bn): BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)" in text
    assert "(relu): ReLU()" in text
    assert "(pool): AdaptiveAvgPool2d(output_size=1)" in text
    assert text.endswith("  (fc): Linear(in_features=4, out_features=5, bias=True)\n)")
    assert repr(nn.Identity()) == "Identity()"


def test_repr_matches_torch_for_the_same_layers():
    torch = pytest.importorskip("torch")

    def layers(lib):
        return lib.Sequential(
            lib.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False), lib.BatchNorm2d(64),
            lib.ReLU(inplace=True), lib.MaxPool2d(kernel_size=3, stride=2, padding=1),
            lib.Conv2d(8, 16, 3, dilation=2, groups=4), lib.AvgPool2d(2), lib.AdaptiveAvgPool2d((1, 1)),
            lib.Flatten(), lib.Linear(512, 10, bias=False), lib.Identity(), lib.BatchNorm1d(3, momentum=None),
            lib.CrossEntropyLoss())

    assert repr(layers(nn)) == repr(layers(torch.nn))
