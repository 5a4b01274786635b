"""The strategies never give an invalid configuration, and the value makers keep their margins.

Every property is checked by counting or by the formula written out here, never by calling
the code the strategy used to build the example.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minires.testing.strategies import (
    KINK_MARGIN,
    ConvConfig,
    PoolConfig,
    arrays,
    away_from_zero,
    conv2d_configs,
    distinct_values,
    normal_array,
    pool2d_configs,
    seeds,
)


def floor_output(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@given(conv2d_configs())
def test_conv_configs_are_valid(config: ConvConfig):
    assert config.batch >= 1 and config.in_channels >= 1 and config.out_channels >= 1
    assert config.in_channels % config.groups == 0 and config.out_channels % config.groups == 0
    for a in range(2):
        size, k, s = config.in_size[a], config.kernel_size[a], config.stride[a]
        p, d, out = config.padding[a], config.dilation[a], config.out_size[a]
        assert size >= 1 and k >= 1 and s >= 1 and d >= 1
        assert 0 <= p <= k
        assert out >= 1
        assert out == floor_output(size, k, s, p, d)
    per_group = config.in_channels // config.groups
    assert config.weight_shape == (config.out_channels, per_group) + config.kernel_size
    assert config.out_shape == (config.batch, config.out_channels) + config.out_size
    assert set(config.kwargs()) == {"stride", "padding", "dilation", "groups"}


@given(pool2d_configs())
def test_pool_configs_are_valid(config: PoolConfig):
    assert config.x_shape == (config.batch, config.channels) + config.in_size
    for a in range(2):
        size, k, s = config.in_size[a], config.kernel_size[a], config.stride[a]
        p, d, out = config.padding[a], config.dilation[a], config.out_size[a]
        assert size >= 1 and k >= 1 and s >= 1 and d >= 1
        assert 0 <= p <= k // 2                                           # PyTorch: padding <= kernel / 2
        assert out >= 1
        floor = floor_output(size, k, s, p, d)
        if not config.ceil_mode:
            assert out == floor
        else:
            # ceil: one more window when the division left a remainder, unless that window
            # would start past the input and its left padding
            span = size + 2 * p - d * (k - 1) - 1
            extra = span % s != 0 and floor * s < size + p
            assert out == floor + (1 if extra else 0)
        # every window holds at least one real input pixel (max pooling would give -inf otherwise)
        for o in range(out):
            taps = [o * s + j * d for j in range(k)]
            assert any(p <= t < p + size for t in taps), (o, taps)


@given(pool2d_configs(ceil_mode=True, dilation=False, max_stride=3))
def test_pool_configs_honour_their_switches(config: PoolConfig):
    assert config.ceil_mode is True
    assert config.dilation == (1, 1)


def test_the_ceil_mode_rule_drops_a_window_that_would_start_in_the_right_padding():
    # PyTorch's own example of a dropped window: 5 pixels, kernel 2, stride 2, padding 1 ->
    # 3 outputs, not 4 (the fourth would start at padded position 6 = 5 + 1: past the input).
    from minires.functional.im2col import pool_output_size
    assert pool_output_size(5, 2, 2, 1, 1, ceil_mode=True) == 3
    assert pool_output_size(6, 3, 2, 0, 1, ceil_mode=True) == 3        # kept: starts inside
    assert pool_output_size(6, 3, 2, 0, 1, ceil_mode=False) == 2


@given(seeds(), st.integers(1, 4), st.integers(1, 6), st.sampled_from([1e-4, 1e-2, 0.5]))
def test_away_from_zero_keeps_its_margin(seed, rows, cols, margin):
    values = away_from_zero((rows, cols), seed, margin=margin)
    assert values.shape == (rows, cols) and values.dtype == np.float64
    assert np.abs(values).min() >= margin
    assert np.isfinite(values).all()


@given(seeds(), st.integers(1, 4), st.integers(1, 50), st.sampled_from([1e-4, 1e-2, 0.5]))
def test_distinct_values_keep_their_margin(seed, rows, cols, margin):
    values = distinct_values((rows, cols), seed, margin=margin)
    assert values.shape == (rows, cols)
    ordered = np.sort(values.reshape(-1))
    if ordered.size > 1:
        assert np.diff(ordered).min() >= margin * (1 - 1e-12)


def test_the_margins_hold_in_float32_too():
    values = distinct_values((7, 9), seed=1, dtype=np.float32)
    assert values.dtype == np.float32 and np.diff(np.sort(values.reshape(-1))).min() >= KINK_MARGIN
    values = away_from_zero((7, 9), seed=1, dtype=np.float32)
    assert values.dtype == np.float32 and np.abs(values).min() >= KINK_MARGIN


def test_the_kink_margin_is_about_a_hundred_finite_difference_steps():
    assert KINK_MARGIN >= 100 * 1e-6


def test_values_are_reproducible_from_the_seed():
    np.testing.assert_array_equal(normal_array((3, 4), 7), normal_array((3, 4), 7))
    assert not np.array_equal(normal_array((3, 4), 7), normal_array((3, 4), 8))
    np.testing.assert_array_equal(distinct_values((5,), 3), distinct_values((5,), 3))


@given(arrays((2, 3), kind="distinct"), arrays((4,), dtype=np.float32, kind="away_from_zero"))
def test_arrays_builds_each_kind(distinct, away):
    assert distinct.shape == (2, 3) and len(set(distinct.reshape(-1).tolist())) == 6
    assert away.dtype == np.float32 and np.abs(away).min() >= KINK_MARGIN


@given(st.data())
def test_arrays_refuses_an_unknown_kind(data):
    with pytest.raises(ValueError, match="kind must be one of"):
        data.draw(arrays((2,), kind="uniform"))
