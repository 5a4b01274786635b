"""Dataset, TensorDataset, Subset, random_split, ArrayDataset."""
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minires
from minires.data import ArrayDataset, Dataset, Subset, TensorDataset, random_split
from minires.data import transforms as T


def images_and_targets(n=10, h=4, w=5, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8), rng.integers(0, 3, size=n)


# --------------------------------------------------------------------------------------- Dataset
def test_the_base_class_names_what_a_subclass_must_define():
    class Empty(Dataset):
        pass

    with pytest.raises(NotImplementedError, match="Empty must define __getitem__"):
        Empty()[0]
    with pytest.raises(NotImplementedError, match="Empty must define __len__"):
        len(Empty())


# --------------------------------------------------------------------------------- TensorDataset
def test_tensor_dataset_gives_rows_of_each_tensor():
    x, y = np.arange(12.0).reshape(6, 2), np.arange(6)
    ds = TensorDataset(minires.tensor(x), y)
    assert len(ds) == 6
    row, label = ds[4]
    np.testing.assert_array_equal(row.numpy(), x[4])
    assert label == 4
    rows, labels = ds.get_batch(np.array([5, 0, 5]))
    assert isinstance(rows, minires.Tensor) and not rows.requires_grad
    np.testing.assert_array_equal(rows.numpy(), x[[5, 0, 5]])
    np.testing.assert_array_equal(labels, [5, 0, 5])


def test_tensor_dataset_errors():
    with pytest.raises(ValueError, match=r"same first dimension.*\[3, 4\]"):
        TensorDataset(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="at least one tensor"):
        TensorDataset()
    with pytest.raises(TypeError, match="got list; convert it with numpy.asarray"):
        TensorDataset([1, 2, 3])
    with pytest.raises(ValueError, match="0-d"):
        TensorDataset(np.array(1.0))


# ---------------------------------------------------------------------------------------- Subset
def test_subset_maps_indices_and_passes_the_fast_path_through():
    images, targets = images_and_targets()
    ds = ArrayDataset(images, targets)
    sub = Subset(ds, [7, 2, 2])
    assert len(sub) == 3
    np.testing.assert_array_equal(sub[0][0], images[7])
    assert sub[1][1] == targets[2]
    batch_images, batch_targets = sub.get_batch(np.array([0, 1]))
    np.testing.assert_array_equal(batch_images, images[[7, 2]])
    np.testing.assert_array_equal(batch_targets, targets[[7, 2]])


def test_subset_has_no_fast_path_when_the_inner_dataset_has_none():
    class Plain(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return i

    sub = Subset(Plain(), [3, 1])
    assert not hasattr(sub, "get_batch")
    assert [sub[0], sub[1]] == [3, 1]
    with pytest.raises(IndexError, match=r"\[0, 5\).*from 1 to 9"):
        Subset(Plain(), [1, 9])


# ---------------------------------------------------------------------------------- random_split
@pytest.mark.parametrize("n, fractions, expected", [
    (10, [0.3, 0.3, 0.4], [3, 3, 4]),
    (11, [0.5, 0.5], [6, 5]),
    (7, [0.25, 0.25, 0.25, 0.25], [2, 2, 2, 1]),           # 3 left over: one each to the first three
    (5, [1.0], [5]),
])
def test_random_split_fractions_follow_pytorch(n, fractions, expected):
    parts = random_split(list(range(n)), fractions, generator=np.random.default_rng(0))
    assert [len(p) for p in parts] == expected


@given(n=st.integers(0, 60), weights=st.lists(st.integers(1, 10), min_size=1, max_size=5), seed=st.integers(0, 99))
@example(n=7, weights=[1, 1, 1, 1], seed=0)
@example(n=0, weights=[1, 2], seed=0)
def test_random_split_is_a_partition(n, weights, seed):
    fractions = [w / sum(weights) for w in weights]
    if not np.isclose(sum(fractions), 1.0) or sum(fractions) > 1.0:
        fractions[-1] = 1.0 - sum(fractions[:-1])
    parts = random_split(range(n), fractions, generator=np.random.default_rng(seed))
    everything = np.concatenate([p.indices for p in parts])
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))
    for part, fraction in zip(parts, fractions):
        assert int(np.floor(n * fraction)) <= len(part) <= int(np.floor(n * fraction)) + 1


def test_random_split_counts_and_determinism():
    a = random_split(range(10), [4, 6], generator=np.random.default_rng(3))
    b = random_split(range(10), [4, 6], generator=np.random.default_rng(3))
    assert [len(p) for p in a] == [4, 6]
    np.testing.assert_array_equal(a[0].indices, b[0].indices)
    minires.manual_seed(5)
    c = random_split(range(10), [4, 6])
    minires.manual_seed(5)
    d = random_split(range(10), [4, 6])
    np.testing.assert_array_equal(c[1].indices, d[1].indices)


def test_random_split_errors():
    with pytest.raises(ValueError, match="add up to 9, but the dataset has 10"):
        random_split(range(10), [4, 5])
    with pytest.raises(ValueError, match="must add up to 1"):
        random_split(range(10), [0.5, 0.2])
    with pytest.raises(ValueError, match="non-negative"):
        random_split(range(10), [-1, 11])
    with pytest.raises(TypeError, match="default_rng"):
        random_split(range(10), [5, 5], generator=3)


# ---------------------------------------------------------------------------------- ArrayDataset
def test_array_dataset_items_and_attributes():
    images, targets = images_and_targets()
    ds = ArrayDataset(images, targets.astype(np.int32), classes=["a", "b", "c"])
    assert len(ds) == 10 and ds.classes == ["a", "b", "c"]
    assert ds.targets.dtype == np.int64
    image, target = ds[3]
    np.testing.assert_array_equal(image, images[3])
    assert target == targets[3] and isinstance(target, int)


def test_array_dataset_get_batch_transforms_the_whole_batch_like_each_image():
    images, targets = images_and_targets()
    transform = T.Compose([T.CenterCrop(3), T.ToTensor(), T.Normalize((0.5,), (0.25,))])
    ds = ArrayDataset(images, targets, transform=transform, target_transform=lambda y: y + 10)
    indices = np.array([9, 0, 4])
    batch_images, batch_targets = ds.get_batch(indices)
    assert batch_images.shape == (3, 3, 3, 3) and batch_images.dtype == np.float32
    np.testing.assert_array_equal(batch_images, np.stack([ds[i][0] for i in indices]))
    np.testing.assert_array_equal(batch_targets, targets[indices] + 10)
    assert ds[9][1] == targets[9] + 10


def test_array_dataset_errors_say_what_was_expected():
    images, targets = images_and_targets()
    with pytest.raises(ValueError, match=r"uint8 NumPy array of shape \(N, H, W, C\).*images\[\.\.\., None\]"):
        ArrayDataset(images[..., 0], targets)
    with pytest.raises(ValueError, match="got a float32 array"):
        ArrayDataset(images.astype(np.float32), targets)
    with pytest.raises(ValueError, match="10 integer labels"):
        ArrayDataset(images, targets[:5])
    with pytest.raises(ValueError, match="10 integer labels"):
        ArrayDataset(images, targets.astype(np.float64))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ArrayDataset(images, targets, classes=["a", "b"])


def test_array_dataset_repr():
    images, targets = images_and_targets(n=4)
    ds = ArrayDataset(images, targets, transform=T.ToTensor(), classes=["a", "b", "c"])
    assert repr(ds) == ("ArrayDataset\n    Number of examples: 4\n    Image shape (H, W, C): (4, 5, 3)\n"
                        "    Classes: 3\n    Transform: ToTensor()")
