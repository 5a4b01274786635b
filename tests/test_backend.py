"""The NumPy/CuPy seam: array modules, device names, transfers and the scatter-add."""
import numpy as np
import pytest

from minires import backend


def test_the_array_module_of_an_array(xp):
    assert backend.get_array_module(xp.ones(2)) is xp
    assert backend.get_array_module(3.0) is np                           # Python scalars: NumPy
    assert backend.is_array(xp.ones(2)) and backend.is_array(xp.asarray(1.0))
    assert not backend.is_array([1.0]) and not backend.is_array(1.0)


def test_device_names_are_canonical():
    assert backend.normalize_device(None) == "cpu"
    assert backend.normalize_device("cpu") == "cpu"
    assert backend.normalize_device(" CPU ") == "cpu"
    for bad in ("gpu", "tpu:0", "cpu:0"):
        with pytest.raises(ValueError, match=r"expected a device 'cpu', 'cuda' or 'cuda:N', got"):
            backend.normalize_device(bad)


@pytest.mark.skipif(backend.cuda_is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_says_why():
    assert backend.cuda_is_available() is False
    with pytest.raises(RuntimeError, match="'cuda:1'"):
        backend.normalize_device("cuda:1")


@pytest.mark.gpu
def test_cuda_names_on_a_gpu_machine():
    if not backend.cuda_is_available():
        pytest.skip("CuPy with a CUDA device is not available on this machine")
    assert backend.normalize_device("cuda").startswith("cuda:")
    with pytest.raises(ValueError, match="expected a device like 'cuda:0'"):
        backend.normalize_device("cuda:x")
    with pytest.raises(ValueError, match="does not exist"):
        backend.normalize_device("cuda:999")


def test_device_of_and_transfers(xp, device):
    a = xp.arange(6.0).reshape(2, 3)
    assert backend.device_of(a) == backend.normalize_device(device)
    assert backend.to_device(a, device) is a                             # already there: no copy
    on_cpu = backend.to_device(a, "cpu")
    assert isinstance(on_cpu, np.ndarray) and backend.device_of(on_cpu) == "cpu"
    np.testing.assert_array_equal(on_cpu, np.arange(6.0).reshape(2, 3))
    back = backend.to_device(on_cpu, device)
    assert backend.get_array_module(back) is xp
    host = backend.to_numpy(a)
    assert isinstance(host, np.ndarray) and host.dtype == a.dtype


def test_to_numpy_does_not_copy_on_the_cpu():
    a = np.ones(3)
    assert backend.to_numpy(a) is a


def test_device_context_is_usable_everywhere(xp):
    with backend.device_context(xp.ones(1)):
        pass
    with backend.device_context(np.ones(1)) as entered:
        assert entered is None


@pytest.mark.parametrize("index", [
    (np.array([0, 2, 0, 0]),),                                          # repeats add up
    (np.array([1, 1]), np.array([2, 2])),
    (slice(None), np.array([3, 3, 0])),
    (slice(1, None),),
])
def test_scatter_add_accumulates_repeated_indices(xp, index):
    rng = np.random.default_rng(0)
    target = np.zeros((3, 4))
    picked = target[index]
    values = rng.standard_normal(picked.shape)
    expected = target.copy()
    positions = np.arange(target.size).reshape(target.shape)[index]
    for position, value in zip(positions.reshape(-1), values.reshape(-1)):  # one addition per pick
        expected.reshape(-1)[position] += value
    device_target = xp.zeros((3, 4))
    device_index = tuple(xp.asarray(i) if isinstance(i, np.ndarray) else i for i in index)
    backend.scatter_add(device_target, device_index, xp.asarray(values))
    np.testing.assert_allclose(backend.to_numpy(device_target), expected, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------- CuPy installed but broken
class _BrokenCuPy:
    """A meta-path finder under which ``import cupy`` fails as it does when a CUDA library is missing."""

    def find_spec(self, name, path=None, target=None):
        if name in ("cupy", "cupyx"):
            raise ImportError("libcudart.so.12: cannot open shared object file: No such file or directory")
        return None


def test_a_cupy_that_fails_to_import_says_why_when_a_gpu_is_asked_for(monkeypatch):
    import sys
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.delitem(sys.modules, "cupyx", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenCuPy()] + sys.meta_path)
    cupy, cupyx, error = backend._import_cupy()
    assert cupy is None and cupyx is None and "libcudart.so.12" in str(error)
    monkeypatch.setattr(backend, "cupy", None)
    monkeypatch.setattr(backend, "_CUPY_IMPORT_ERROR", error)
    with pytest.raises(RuntimeError, match="installed but failed to import: ImportError: libcudart.so.12") as info:
        backend.normalize_device("cuda")
    assert "not installed" not in str(info.value) and info.value.__cause__ is error
    assert not backend.cuda_is_available()


def test_a_missing_cupy_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(backend, "cupy", None)
    monkeypatch.setattr(backend, "_CUPY_IMPORT_ERROR", None)
    with pytest.raises(RuntimeError, match=r"not installed: pip install 'minires\[gpu\]'"):
        backend.normalize_device("cuda:0")
