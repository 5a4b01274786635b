"""Transforms: values, both layouts, one image vs a batch, determinism, errors, reprs.

The geometric transforms (crops, resizes) have their own file, test_transforms_geometry.py;
the helpers shared by both live here.
"""
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minires
from minires.data import transforms as T


def raw_batch(n=4, h=6, w=7, c=3, seed=0):
    """A uint8 (N, H, W, C) batch of distinct-looking random images."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def tensor_batch(n=4, h=6, w=7, c=3, seed=0):
    """A float32 (N, C, H, W) batch."""
    return T.ToTensor()(raw_batch(n, h, w, c, seed))


def per_image_equals_batch(make, batch, seed=0):
    """A batch transform gives what the same transform gives image by image, from the same draws."""
    whole = make(np.random.default_rng(seed))(batch)
    one_by_one = make(np.random.default_rng(seed))
    np.testing.assert_array_equal(whole, np.stack([one_by_one(image) for image in batch]))
    return whole


def layouts_agree(make, raw, seed=0, atol=0.0):
    """ToTensor after the transform == the transform after ToTensor (same draws), up to ``atol``."""
    before = T.ToTensor()(make(np.random.default_rng(seed))(raw))
    after = make(np.random.default_rng(seed))(T.ToTensor()(raw))
    np.testing.assert_allclose(before, after, rtol=0, atol=atol)


shapes = st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3]))


# ------------------------------------------------------------------------------------ ToTensor
def test_to_tensor_moves_channels_first_and_scales():
    raw = raw_batch()
    out = T.ToTensor()(raw)
    assert out.shape == (4, 3, 6, 7) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, raw.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    np.testing.assert_array_equal(T.ToTensor()(raw[2]), out[2])
    edges = T.ToTensor()(np.array([[[0], [255]]], dtype=np.uint8))
    np.testing.assert_array_equal(edges, [[[0.0, 1.0]]])


def test_to_tensor_refuses_what_is_already_converted():
    with pytest.raises(ValueError, match="already float32 of shape \\(3, 6, 7\\), i.e. converted"):
        T.ToTensor()(tensor_batch()[0])
    with pytest.raises(ValueError, match=r"image\[\.\.\., None\]"):
        T.ToTensor()(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="got a int64 array"):
        T.ToTensor()(np.zeros((4, 4, 3), np.int64))
    with pytest.raises(TypeError, match=r"NumPy arrays, got Tensor; a minires Tensor becomes one with .numpy\(\)"):
        T.ToTensor()(minires.zeros(4, 4, 3))


# ----------------------------------------------------------------------------------- Normalize
def test_normalize_per_channel():
    x = tensor_batch()
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    out = T.Normalize(mean, std)(x)
    assert out.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(out[:, c], (x[:, c] - mean[c]) / std[c], rtol=1e-6)
    np.testing.assert_array_equal(T.Normalize(mean, std)(x[1]), out[1])
    np.testing.assert_allclose(T.Normalize((0.5,), (0.5,))(x), 2 * x - 1, atol=1e-6)   # one value for all channels
    assert T.Normalize(mean, std)(x.astype(np.float64)).dtype == np.float64


def test_normalize_errors():
    with pytest.raises(ValueError, match="put ToTensor\\(\\) before Normalize"):
        T.Normalize((0.5,), (0.5,))(raw_batch())
    with pytest.raises(ValueError, match="2 means and stds but the images have 3 channels"):
        T.Normalize((0.5, 0.5), (0.5, 0.5))(tensor_batch())
    with pytest.raises(ValueError, match="must be positive"):
        T.Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="2 means and 1 stds"):
        T.Normalize((0.5, 0.5), (0.5,))


# ------------------------------------------------------------------------ RandomHorizontalFlip
def test_flip_with_p_1_and_p_0():
    raw = raw_batch()
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(raw), raw[:, :, ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0.0)(raw), raw)
    x = tensor_batch()
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(x[0]), x[0, ..., ::-1])


@given(shape=shapes, p=st.sampled_from([0.0, 0.3, 0.5, 1.0]), seed=st.integers(0, 2 ** 16))
@example(shape=(5, 2, 3, 3), p=0.5, seed=0)
def test_flip_batch_equals_per_image_and_layouts_agree(shape, p, seed):
    raw = raw_batch(*shape, seed=seed)
    make = lambda g: T.RandomHorizontalFlip(p, generator=g)  # noqa: E731
    out = per_image_equals_batch(make, raw, seed)
    for image, original in zip(out, raw):                  # each image is itself or its mirror
        assert np.array_equal(image, original) or np.array_equal(image, original[:, ::-1])
    layouts_agree(make, raw, seed)


def test_flip_draws_each_image_separately():
    raw = raw_batch(n=200, h=1, w=2, c=1)
    raw[:, 0, 0, 0], raw[:, 0, 1, 0] = 0, 1
    flipped = T.RandomHorizontalFlip(generator=np.random.default_rng(0))(raw)[:, 0, 0, 0]
    assert 70 < flipped.sum() < 130                         # about half, not all or nothing


def test_flip_uses_minires_generator_when_none_is_given():
    raw = raw_batch(n=32)
    minires.manual_seed(4)
    a = T.RandomHorizontalFlip()(raw)
    minires.manual_seed(4)
    b = T.RandomHorizontalFlip()(raw)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"probability in \[0, 1\], got 1.5"):
        T.RandomHorizontalFlip(1.5)
    with pytest.raises(TypeError, match="numpy.random.default_rng"):
        T.RandomHorizontalFlip(generator=0)


# ------------------------------------------------------------------------------------ Compose
def test_compose_applies_in_order_and_prints_like_torchvision():
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize((0.4914, 0.4822, 0.4465), (0.247, 0.2435, 0.2616))])
    assert repr(transform) == (
        "Compose(\n    RandomCrop(size=(32, 32), padding=4)\n    RandomHorizontalFlip(p=0.5)\n    ToTensor()\n"
        "    Normalize(mean=[0.4914, 0.4822, 0.4465], std=[0.247, 0.2435, 0.2616])\n)")
    out = transform(raw_batch(n=2, h=32, w=32))
    assert out.shape == (2, 3, 32, 32) and out.dtype == np.float32
    assert T.Compose([lambda x: x + 1, lambda x: x * 2])(1) == 4


def test_compose_catches_a_class_given_for_an_instance():
    with pytest.raises(TypeError, match="the class ToTensor: write ToTensor\\(...\\) instead of ToTensor"):
        T.Compose([T.ToTensor, T.Normalize((0.5,), (0.5,))])
    with pytest.raises(TypeError, match="callables"):
        T.Compose([3])
