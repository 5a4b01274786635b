"""nn.init: fans, gains, the distributions, in-place filling, the seeded generator."""
import math

import numpy as np
import pytest

import minires
from minires import backend, nn
from minires.nn import init


@pytest.fixture(autouse=True)
def seeded():
    """Every statistical check below draws from a seeded generator: no test here can flake."""
    minires.manual_seed(0)


@pytest.mark.parametrize("shape, fans", [
    ((10, 5), (5, 10)),                    # Linear (out, in)
    ((64, 3, 7, 7), (3 * 49, 64 * 49)),    # the ResNet stem conv
    ((8, 2, 3, 1), (6, 24)),               # a non-square kernel
    ((4, 6, 5), (30, 20)),                 # a 1-D conv weight
])
def test_fans_by_hand(shape, fans):
    assert init.calculate_fan_in_and_fan_out(minires.zeros(*shape)) == fans


def test_fans_need_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions.*got shape \\(5,\\)"):
        init.kaiming_normal_(minires.zeros(5))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(minires.zeros(()))


def test_gains():
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("conv2d") == init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01 ** 2))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == math.sqrt(2 / 6)
    with pytest.raises(ValueError, match="nonlinearity 'gelu'"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="negative slope"):
        init.calculate_gain("leaky_relu", True)


def test_kaiming_normal_fan_out_has_the_right_std():
    w = minires.zeros(256, 64, 3, 3)
    minires.manual_seed(0)
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    std = math.sqrt(2 / (256 * 9))                                 # torchvision's ResNet conv init
    n = w.numel()
    # the sample std of n normal values is within 4 standard errors (std / sqrt(2n)) of the truth
    assert abs(w.numpy().std() - std) < 4 * std / math.sqrt(2 * n)
    assert abs(w.numpy().mean()) < 4 * std / math.sqrt(n)
    w_in = init.kaiming_normal_(minires.zeros(256, 64, 3, 3), mode="fan_in", nonlinearity="relu")
    assert abs(w_in.numpy().std() - math.sqrt(2 / (64 * 9))) < 0.01 * math.sqrt(2 / (64 * 9))
    with pytest.raises(ValueError, match="fan_in' or 'fan_out"):
        init.kaiming_normal_(w, mode="fan")


def test_kaiming_and_xavier_uniform_bounds():
    w = init.kaiming_uniform_(minires.zeros(50, 40), a=math.sqrt(5))
    bound = 1 / math.sqrt(40)                                      # gain sqrt(1/3) * sqrt(3 / 40)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.95 * bound
    x = init.xavier_uniform_(minires.zeros(50, 40), gain=2.0)
    bound = 2.0 * math.sqrt(6 / 90)
    assert np.abs(x.numpy()).max() <= bound and np.abs(x.numpy()).max() > 0.95 * bound
    xn = init.xavier_normal_(minires.zeros(300, 200))
    assert abs(xn.numpy().std() - math.sqrt(2 / 500)) < 0.02 * math.sqrt(2 / 500)


def test_fills_in_place_keep_identity_dtype_and_device(xp, device):
    p = nn.Parameter(minires.zeros(3, 4, dtype="float64", device=device))
    array = p.data
    for fill in (init.ones_, init.zeros_, lambda t: init.constant_(t, 2.5), init.normal_, init.uniform_,
                 init.kaiming_uniform_, init.kaiming_normal_, init.xavier_normal_):
        assert fill(p) is p
        assert p.data is array and p.dtype == np.float64 and p.device == backend.normalize_device(device)
    init.constant_(p, 2.5)
    np.testing.assert_array_equal(p.numpy(), 2.5)
    u = init.uniform_(minires.zeros(1000), -2, -1).numpy()
    assert u.min() >= -2 and u.max() < -1
    n = init.normal_(minires.zeros(4000), 3.0, 0.5).numpy()
    assert abs(n.mean() - 3.0) < 0.05 and abs(n.std() - 0.5) < 0.05


def test_fill_records_no_graph():
    p = nn.Parameter(minires.zeros(2, 2))
    init.normal_(p)
    assert p.is_leaf and p.grad is None and p.requires_grad


def test_seeded_generator_makes_inits_reproducible():
    minires.manual_seed(7)
    a = init.kaiming_uniform_(minires.zeros(4, 4)).numpy().copy()
    minires.manual_seed(7)
    b = init.kaiming_uniform_(minires.zeros(4, 4)).numpy().copy()
    np.testing.assert_array_equal(a, b)
    c = init.normal_(minires.zeros(4), generator=np.random.default_rng(3)).numpy()
    np.testing.assert_array_equal(c, np.random.default_rng(3).normal(0.0, 1.0, size=4).astype(np.float32))


def test_zero_element_tensor_is_left_alone():
    empty = minires.zeros(0, 3)
    assert init.kaiming_normal_(empty) is empty and init.xavier_uniform_(empty) is empty


def test_non_tensor_is_refused():
    with pytest.raises(TypeError, match="Tensor or Parameter"):
        init.zeros_(np.zeros(3))
