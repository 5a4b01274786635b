"""DataLoader, default_collate, and the per-thread generator behind the background thread."""
import collections
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minires
from minires.data import ArrayDataset, DataLoader, Dataset, TensorDataset, default_collate
from minires.data import transforms as T
from minires.random import default_generator, using_generator


def cifar_like(n=50, size=8, seed=0, transform=None):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return ArrayDataset(images, rng.integers(0, 10, size=n), transform=transform)


def augmentation():
    return T.Compose([T.RandomCrop(8, padding=2), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])


def collect(loader):
    return [(images.numpy().copy(), targets.numpy().copy()) for images, targets in loader]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def loader_threads():
    return [t for t in threading.enumerate() if t.name == "minires-DataLoader"]


def wait_for_no_loader_threads(seconds=5.0):
    deadline = time.monotonic() + seconds
    while loader_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return loader_threads()


# ------------------------------------------------------------------------------ default_collate
def test_default_collate_stacks_like_pytorch():
    Point = collections.namedtuple("Point", "x y")
    examples = [(np.full((2, 3), i, np.float32), i, 0.5 * i, {"name": f"n{i}", "w": np.float32(i)}, Point(i, -i))
                for i in range(4)]
    images, ints, floats, dicts, points = default_collate(examples)
    assert images.shape == (4, 2, 3) and images.dtype == np.float32
    assert ints.dtype == np.int64 and floats.dtype == np.float64
    np.testing.assert_array_equal(floats.numpy(), [0, 0.5, 1, 1.5])
    assert dicts["name"] == ["n0", "n1", "n2", "n3"] and dicts["w"].dtype == np.float32
    assert isinstance(points, Point) and points.y.numpy().tolist() == [0, -1, -2, -3]
    stacked = default_collate([minires.tensor([1.0, 2.0]), minires.tensor([3.0, 4.0])])
    np.testing.assert_array_equal(stacked.numpy(), [[1, 2], [3, 4]])


def test_default_collate_errors():
    with pytest.raises(ValueError, match=r"one shape, got shapes \[\(2,\), \(3,\)\]"):
        default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(ValueError, match="same length"):
        default_collate([(1, 2), (1,)])
    with pytest.raises(TypeError, match="got object; pass DataLoader\\(collate_fn=...\\)"):
        default_collate([object()])


# ---------------------------------------------------------------------------------- batches
@given(n=st.integers(0, 40), batch_size=st.integers(1, 12), drop_last=st.booleans(), shuffle=st.booleans())
@example(n=0, batch_size=4, drop_last=False, shuffle=True)
@example(n=10, batch_size=3, drop_last=True, shuffle=False)
@example(n=10, batch_size=3, drop_last=False, shuffle=False)
def test_batches_cover_the_dataset_once_in_order(n, batch_size, drop_last, shuffle):
    ds = TensorDataset(np.arange(n))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                        generator=np.random.default_rng(n))
    batches = [b.numpy() for (b,) in loader]
    assert len(batches) == len(loader) == (n // batch_size if drop_last else -(-n // batch_size))
    assert all(len(b) == batch_size for b in batches[:-1])
    seen = np.concatenate(batches) if batches else np.zeros(0, np.int64)
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(len(seen)))
    assert len(set(seen.tolist())) == len(seen) == (len(loader) * batch_size if drop_last else n)


def test_loader_yields_float_nchw_images_and_int64_targets():
    loader = DataLoader(cifar_like(transform=augmentation()), batch_size=16, shuffle=True)
    images, targets = next(iter(loader))
    assert isinstance(images, minires.Tensor) and images.shape == (16, 3, 8, 8) and images.dtype == np.float32
    assert isinstance(targets, minires.Tensor) and targets.shape == (16,) and targets.dtype == np.int64
    assert images.device == "cpu"


def test_fast_path_and_example_by_example_path_agree():
    """Without a collate_fn an ArrayDataset builds each batch at once; with default_collate, image by
    image. A single random transform draws the same numbers per image either way."""
    for transform in (T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))]), T.RandomHorizontalFlip()):
        ds = cifar_like(transform=transform)
        fast = collect(DataLoader(ds, batch_size=7, shuffle=True, generator=np.random.default_rng(1)))
        slow = collect(DataLoader(ds, batch_size=7, shuffle=True, generator=np.random.default_rng(1),
                                  collate_fn=default_collate))
        assert_same_batches(fast, slow)


def test_a_custom_collate_fn_gets_the_examples():
    loader = DataLoader(TensorDataset(np.arange(5)), batch_size=2, collate_fn=lambda examples: len(examples))
    assert list(loader) == [2, 2, 1]


# ----------------------------------------------------------------------------- determinism
def test_the_same_seed_gives_the_same_epochs():
    ds = cifar_like(transform=augmentation())
    minires.manual_seed(0)
    first = collect(DataLoader(ds, batch_size=8, shuffle=True))
    minires.manual_seed(0)
    again = collect(DataLoader(ds, batch_size=8, shuffle=True))
    assert_same_batches(first, again)
    other = collect(DataLoader(ds, batch_size=8, shuffle=True))          # a new epoch: new numbers
    assert not np.array_equal(first[0][0], other[0][0])


@pytest.mark.parametrize("prefetch", [1, 2, 5])
def test_background_thread_gives_what_a_synchronous_run_gives(prefetch):
    """Whatever the main thread draws between batches does not change the batches of the epoch."""
    ds = cifar_like(transform=augmentation())
    minires.manual_seed(7)
    synchronous = collect(DataLoader(ds, batch_size=8, shuffle=True, prefetch=0))
    minires.manual_seed(7)
    threaded = []
    for images, targets in DataLoader(ds, batch_size=8, shuffle=True, prefetch=prefetch):
        minires.randn(3)                                                 # the training step draws too
        default_generator().random(5)
        threaded.append((images.numpy().copy(), targets.numpy().copy()))
    assert_same_batches(synchronous, threaded)


def test_the_generator_state_at_an_epoch_boundary_fixes_the_next_epoch():
    """What resuming from a checkpoint relies on: save the state after an epoch, restore it, get the same epoch."""
    ds = cifar_like(transform=augmentation())
    minires.manual_seed(3)
    loader = DataLoader(ds, batch_size=8, shuffle=True)
    collect(loader)
    saved = default_generator().bit_generator.state
    second = collect(loader)
    minires.manual_seed(99)
    default_generator().bit_generator.state = saved
    assert_same_batches(second, collect(loader))


def test_a_loader_generator_leaves_minires_generator_alone():
    minires.manual_seed(0)
    before = default_generator().bit_generator.state
    collect(DataLoader(cifar_like(), batch_size=8, shuffle=True, generator=np.random.default_rng(0)))
    assert default_generator().bit_generator.state == before


def test_using_generator_is_per_thread_and_nests():
    minires.manual_seed(0)
    outer, inner = np.random.default_rng(1), np.random.default_rng(2)
    seen_in_other_thread = []
    with using_generator(outer):
        assert default_generator() is outer
        other = threading.Thread(target=lambda: seen_in_other_thread.append(default_generator()))
        other.start()
        other.join()
        with using_generator(inner):
            assert default_generator() is inner
        assert default_generator() is outer
    assert seen_in_other_thread[0] is not outer
    assert default_generator() is not outer
    with pytest.raises(TypeError, match="default_rng"):
        with using_generator(5):
            pass


# ---------------------------------------------------------------------- the background thread
class Slow(Dataset):
    """Each example takes a little while; example `fail_at` raises."""

    def __init__(self, n=40, delay=0.002, fail_at=None):
        self.n, self.delay, self.fail_at = n, delay, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        time.sleep(self.delay * (index % 3))                            # uneven times: order must still hold
        if index == self.fail_at:
            raise KeyError(f"example {index} is missing")
        return np.full(2, index, np.float32), index


def test_batches_come_in_order_from_a_slow_dataset():
    targets = [t.numpy().tolist() for _, t in DataLoader(Slow(), batch_size=4, prefetch=3)]
    assert sum(targets, []) == list(range(40))


def test_an_error_in_the_thread_is_raised_in_the_caller_with_its_traceback():
    loader = DataLoader(Slow(fail_at=9), batch_size=4)
    got = []
    with pytest.raises(KeyError, match="example 9 is missing") as info:
        for _, targets in loader:
            got.append(targets.numpy().tolist())
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7]]                          # the good batches came first
    assert "__getitem__" in [entry.name for entry in info.traceback]
    assert wait_for_no_loader_threads() == []


def test_break_stops_the_thread():
    for _ in DataLoader(Slow(n=400), batch_size=2, prefetch=2):
        break
    assert wait_for_no_loader_threads() == []


def test_an_error_in_the_training_step_stops_the_thread():
    def train():
        for _ in DataLoader(Slow(n=400), batch_size=2):
            raise RuntimeError("the step failed")

    with pytest.raises(RuntimeError, match="the step failed"):
        train()
    assert wait_for_no_loader_threads() == []


def test_close_stops_a_held_iterator_and_ends_it():
    iterator = iter(DataLoader(Slow(n=400), batch_size=2))
    next(iterator)
    iterator.close()
    assert loader_threads() == []
    assert list(iterator) == []
    with iter(DataLoader(Slow(n=400), batch_size=2)) as held:
        next(held)
    assert loader_threads() == []


def test_the_interpreter_exits_while_a_loader_is_mid_epoch():
    script = textwrap.dedent("""
        import time
        import numpy as np
        from minires.data import DataLoader, Dataset

        class Endless(Dataset):
            def __len__(self):
                return 10 ** 6

            def __getitem__(self, i):
                time.sleep(0.001)
                return np.zeros(2, np.float32)

        iterator = iter(DataLoader(Endless(), batch_size=4))
        next(iterator)
        print("left")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "left\n", done.stderr


def test_an_empty_dataset_gives_no_batches():
    loader = DataLoader(TensorDataset(np.zeros((0, 3))), batch_size=4, shuffle=True)
    assert len(loader) == 0 and list(loader) == []


# ----------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1, got 0"),
    (dict(batch_size=2.5), ValueError, "batch_size must be an integer >= 1, got 2.5"),
    (dict(prefetch=-1), ValueError, "prefetch must be an integer >= 0"),
    (dict(shuffle="yes"), TypeError, "shuffle must be True or False"),
    (dict(drop_last=1), TypeError, "drop_last must be True or False"),
    (dict(shuffle=True, generator=0), TypeError, r"pass numpy.random.default_rng\(0\)"),
    (dict(collate_fn="stack"), TypeError, "collate_fn must be a function"),
])
def test_wrong_arguments_say_what_was_expected(kwargs, error, message):
    with pytest.raises(error, match=message):
        DataLoader(TensorDataset(np.zeros(4)), **kwargs)


def test_a_dataset_must_be_indexable():
    with pytest.raises(TypeError, match="__len__ and __getitem__, got int"):
        DataLoader(5)


def test_pytorch_loader_arguments_are_accepted_and_change_nothing():
    from minires.data import DataLoader, TensorDataset
    data = TensorDataset(np.arange(10.0).reshape(10, 1), np.arange(10))
    plain = [x.tolist() for x, _ in DataLoader(data, batch_size=4)]
    torchy = [x.tolist() for x, _ in DataLoader(data, batch_size=4, num_workers=2, pin_memory=True)]
    assert plain == torchy
    with pytest.raises(ValueError, match="num_workers must be an integer >= 0"):
        DataLoader(data, num_workers=-1)
