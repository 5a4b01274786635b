"""The array-backed data sets: the bundled digits, MNIST/Fashion-MNIST from IDX files, CIFAR-10
from its binary batches. Every file is written here, tiny, in the real format; nothing is
downloaded (downloads are in test_download.py)."""
import gzip
import hashlib
import importlib.util
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minires.data
from minires.data.datasets import CIFAR10, MNIST, Digits, FashionMNIST, read_idx
from minires.data.datasets.cifar import read_cifar_batch
from minires.data.datasets.digits import to_uint8
from datafiles import IDX_CODES, cifar_bytes, idx_bytes, write_cifar, write_mnist

BUNDLED = os.path.join(os.path.dirname(minires.data.__file__), "bundled")
# ---------------------------------------------------------------------------- the bundled digits

def test_digits_split_sizes_shapes_and_values():
    train, test = Digits(train=True), Digits(train=False)
    assert (len(train), len(test)) == (1438, 359)
    assert train.images.shape == (1438, 8, 8, 1) and train.images.dtype == np.uint8
    assert train.targets.dtype == np.int64 and set(np.unique(test.targets)) == set(range(10))
    assert train.images.min() == 0 and train.images.max() == 255
    image, label = test[0]
    assert image.shape == (8, 8, 1) and isinstance(label, int)
    assert train.classes == [str(d) for d in range(10)] and train.class_to_idx["7"] == 7


def test_digits_split_is_stratified_and_covers_the_source_once():
    counts = {True: np.bincount(Digits(train=True).targets), False: np.bincount(Digits(train=False).targets)}
    total = counts[True] + counts[False]
    assert total.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]    # the UCI test set, per digit
    assert counts[False].tolist() == [(n + 2) // 5 for n in total]                  # a fifth of each digit, rounded


def test_digits_bundled_file_is_the_committed_one():
    # The pixel counts (0..16), labels and split, as make_digits.py wrote them from scikit-learn's copy.
    with np.load(os.path.join(BUNDLED, "digits.npz")) as f:
        digest = hashlib.sha256(f["images"].tobytes() + f["labels"].tobytes() + f["is_test"].tobytes()).hexdigest()
        assert f["images"].max() == 16 and f["images"][0, 0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]
    assert digest == "86ca085689a55d186b074cabb66f7cf0634839e231bb778cb55dac7798ac04e6"


def test_make_digits_rebuilds_the_committed_file(tmp_path):
    pytest.importorskip("sklearn", reason="regenerating digits.npz reads scikit-learn's copy of the digits")
    spec = importlib.util.spec_from_file_location("make_digits", os.path.join(BUNDLED, "make_digits.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    images, labels = script.read_csv(script.sklearn_csv())
    script.write_npz(tmp_path / "digits.npz", {"images": images, "labels": labels,
                                               "is_test": script.stratified_test_mask(labels)})
    with np.load(tmp_path / "digits.npz") as made, np.load(os.path.join(BUNDLED, "digits.npz")) as committed:
        assert made.files == committed.files
        for key in committed.files:
            assert made[key].dtype == committed[key].dtype and np.array_equal(made[key], committed[key])
    assert os.listdir(tmp_path) == ["digits.npz"]                              # no temporary file left


def test_digits_licence_ships_beside_the_data():
    with open(os.path.join(BUNDLED, "DIGITS-LICENSE.txt")) as f:
        text = f.read()
    assert "CC BY 4.0" in text and "Alpaydin" in text and "Kaynak" in text
    assert os.path.isfile(os.path.join(BUNDLED, "make_digits.py"))


def test_digit_counts_scale_to_grey_levels():
    counts = np.arange(17, dtype=np.uint8)
    levels = to_uint8(counts)
    assert levels.dtype == np.uint8 and levels[0] == 0 and levels[16] == 255 and levels[8] == 128
    assert (np.diff(levels.astype(int)) > 0).all()
    assert levels.tolist() == [round(v * 255 / 16) for v in range(17)]


def test_digits_transforms_and_batches():
    seen = []
    data = Digits(train=False, transform=lambda x: (seen.append(x.shape), x.astype(np.float32) / 255)[1],
                  target_transform=lambda t: t + 100)
    image, label = data[3]
    assert image.dtype == np.float32 and label == int(Digits(train=False).targets[3]) + 100
    images, labels = data.get_batch([0, 1, 2])
    assert seen[-1] == (3, 8, 8, 1) and images.shape == (3, 8, 8, 1) and (labels >= 100).all()


def test_digits_from_another_folder_and_its_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="digits.npz.*does not exist"):
        Digits(tmp_path)
    images = np.zeros((4, 8, 8), np.uint8) + 16
    np.savez(tmp_path / "digits.npz", images=images, labels=np.arange(4), is_test=np.array([0, 1, 0, 0], bool))
    assert len(Digits(tmp_path)) == 3 and Digits(tmp_path, train=False).images.max() == 255
    np.savez(tmp_path / "digits.npz", images=images)
    with pytest.raises(ValueError, match=r"lacks the arrays \['labels', 'is_test'\]"):
        Digits(tmp_path)


# ---------------------------------------------------------------------------- IDX files

_DTYPES = st.sampled_from(list(IDX_CODES))
_SHAPES = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


@given(dtype=_DTYPES, shape=_SHAPES, seed=st.integers(0, 2**16), compress=st.booleans())
def test_idx_round_trip(tmp_path_factory, dtype, shape, seed, compress):
    array = np.asarray(np.random.default_rng(seed).standard_normal(shape) * 100).astype(dtype)
    path = tmp_path_factory.mktemp("idx") / "file"
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == shape and np.array_equal(back, array)
    assert back.dtype.isnative


def test_idx_magic_numbers_of_mnist_files():
    assert idx_bytes(np.zeros((2, 28, 28), np.uint8))[:4] == (2051).to_bytes(4, "big")
    assert idx_bytes(np.zeros(2, np.uint8))[:4] == (2049).to_bytes(4, "big")


@pytest.mark.parametrize("data, message", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x00", "not an IDX file: it should start with two zero bytes"),
    (b"\x00\x00", "not an IDX file.*starts with 00 00"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x00", "type code is 0x07"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", r"truncated: its header announces 3 dimensions \(16 bytes"),
    (idx_bytes(np.zeros((3, 2, 2), np.uint8))[:-1], r"truncated: .*shape \(3, 2, 2\), which needs 28 bytes.*27"),
    (idx_bytes(np.zeros((3, 2, 2), np.uint8)) + b"\x00\x00", "has 2 bytes after the array of shape"),
    (gzip.compress(idx_bytes(np.zeros(50, np.uint8)))[:-6], "damaged gzip file"),
])
def test_idx_errors_name_the_file_and_the_problem(tmp_path, data, message):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as caught:
        read_idx(path)
    assert "broken-idx3-ubyte" in str(caught.value)


# ---------------------------------------------------------------------------- MNIST, Fashion-MNIST

@pytest.mark.parametrize("compress", [True, False], ids=["gzipped", "raw"])
def test_mnist_reads_torchvision_layout(tmp_path, compress):
    made = write_mnist(tmp_path, compress=compress)
    for train, prefix in ((True, "train"), (False, "t10k")):
        data = MNIST(tmp_path, train=train)
        images, labels = made[prefix]
        assert data.images.shape == (len(images), 28, 28, 1) and data.images.dtype == np.uint8
        np.testing.assert_array_equal(data.images[..., 0], images)
        np.testing.assert_array_equal(data.targets, labels.astype(np.int64))
        image, label = data[1]
        assert image.shape == (28, 28, 1) and label == int(labels[1])
    assert data.classes[3] == "3 - three" and data.class_to_idx["9 - nine"] == 9
    assert "Split: test" in repr(data)


def test_mnist_prefers_the_unpacked_file(tmp_path):
    write_mnist(tmp_path, compress=True)
    plain = np.full((5, 28, 28), 7, np.uint8)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(idx_bytes(plain))
    assert (MNIST(tmp_path).images == 7).all()


def test_fashion_mnist_has_its_own_folder_and_classes(tmp_path):
    made = write_mnist(tmp_path, name="FashionMNIST", seed=3)
    data = FashionMNIST(tmp_path, train=False)
    np.testing.assert_array_equal(data.images[..., 0], made["t10k"][0])
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    with pytest.raises(FileNotFoundError, match="MNIST/raw"):
        MNIST(tmp_path)


def test_mnist_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        MNIST(tmp_path)
    message = str(caught.value)
    assert "train-images-idx3-ubyte.gz" in message and "download=True" in message
    assert os.path.join(str(tmp_path), "MNIST", "raw") in message


def _replace(root, name, array):
    (root / "MNIST" / "raw" / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))


def test_mnist_count_mismatch_names_both_files(tmp_path):
    write_mnist(tmp_path)
    _replace(tmp_path, "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz' holds 5 images but .*"
                                         r"train-labels-idx1-ubyte.gz' holds 4 labels"):
        MNIST(tmp_path)


def test_mnist_swapped_or_wrong_files_are_refused(tmp_path):
    write_mnist(tmp_path)
    _replace(tmp_path, "train-images-idx3-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match=r"should hold uint8 images of shape \(N, H, W\).*is it a label file"):
        MNIST(tmp_path)
    write_mnist(tmp_path)
    _replace(tmp_path, "train-labels-idx1-ubyte", np.array([1, 2, 3, 4, 10], np.uint8))
    with pytest.raises(ValueError, match="holds the label 10, but MNIST has only 10 classes"):
        MNIST(tmp_path)


# ---------------------------------------------------------------------------- CIFAR-10

def test_cifar_records_become_hwc_images(tmp_path):
    train_images, train_labels, test_images, test_labels = write_cifar(tmp_path)
    train, test = CIFAR10(tmp_path), CIFAR10(tmp_path, train=False)
    assert train.images.shape == (10, 32, 32, 3) and train.images.flags.c_contiguous
    np.testing.assert_array_equal(train.images, train_images)             # batches 1..5, in order
    np.testing.assert_array_equal(train.targets, train_labels)
    np.testing.assert_array_equal(test.images, test_images)
    assert test.targets.dtype == np.int64 and test.classes[0] == "airplane" and test.classes[9] == "truck"


def test_cifar_record_layout_is_label_then_rgb_planes(tmp_path):
    record = np.arange(3073, dtype=np.int64) % 251                      # a distinct-ish byte per position
    record[0] = 6
    path = tmp_path / "one.bin"
    path.write_bytes(record.astype(np.uint8).tobytes())
    images, labels = read_cifar_batch(path)
    assert labels.tolist() == [6] and images.shape == (1, 32, 32, 3)
    for h, w, c in [(0, 0, 0), (0, 1, 0), (1, 0, 0), (5, 7, 1), (31, 31, 2)]:
        assert images[0, h, w, c] == record[1 + c * 1024 + h * 32 + w]


def test_cifar_damaged_batches_are_refused(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(FileNotFoundError, match=r"incomplete or damaged \(test_batch.bin"):
        CIFAR10(tmp_path, train=False)
    path.write_bytes(cifar_bytes(np.zeros((1, 32, 32, 3), np.uint8), np.array([10])))
    with pytest.raises(ValueError, match="label 10.*CIFAR-100"):
        CIFAR10(tmp_path, train=False)
    path.write_bytes(b"\x00" * 3072)
    with pytest.raises(ValueError, match="not a positive multiple of the 3073-byte record"):
        read_cifar_batch(path)


def test_cifar_missing_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-bin' does not exist. Pass download=True.*"
                                                r"https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"):
        CIFAR10(tmp_path)


def test_cifar_python_version_alone_is_named(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x04pickle")
    with pytest.raises(FileNotFoundError, match=r"torchvision's Python version .*binary version.*download=True"):
        CIFAR10(tmp_path)
