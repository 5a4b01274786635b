"""Weights in and out: safetensors round trips, atomic writes, clear errors for bad files, and
PyTorch checkpoints in both directions (those tests need torch and skip without it)."""
import importlib.util
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import minires
from minires import backend, io, nn


def build(lib):
    """The same small network in minires (lib = minires.nn) or PyTorch (lib = torch.nn)."""
    return lib.Sequential(
        lib.Conv2d(3, 4, 3, padding=1, bias=False), lib.BatchNorm2d(4), lib.ReLU(), lib.MaxPool2d(2),
        lib.Conv2d(4, 6, 3, stride=2, groups=2), lib.BatchNorm2d(6, momentum=None), lib.ReLU(),
        lib.AdaptiveAvgPool2d(1), lib.Flatten(), lib.Linear(6, 3))


def trained_net(seed=0):
    """A minires network whose running statistics and counts are not the initial ones."""
    minires.manual_seed(seed)
    net = build(nn)
    for _ in range(2):
        net(minires.randn(4, 3, 8, 8))
    return net


def inputs(seed=1):
    return np.random.default_rng(seed).standard_normal((2, 3, 8, 8)).astype(np.float32)


# ---------------------------------------------------------------------------- safetensors round trip
def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    net = trained_net(0)
    path = tmp_path / "net.safetensors"
    io.save(net, path)
    io.save(net.state_dict(), tmp_path / "sd.safetensors")            # a state dict saves the same bytes
    assert (tmp_path / "sd.safetensors").read_bytes() == path.read_bytes()
    loaded = io.load(path)
    assert list(loaded) == list(net.state_dict())                      # the key order survives
    assert all(isinstance(v, minires.Tensor) for v in loaded.values())
    count = loaded["1.num_batches_tracked"]
    assert count.dtype == np.int64 and count.shape == () and int(count) == 2
    other = trained_net(1)
    other.load_state_dict(loaded)
    for mode in (False, True):
        net.train(mode), other.train(mode)
        x = minires.tensor(inputs())
        np.testing.assert_array_equal(other(x).numpy(), net(x).numpy())


def test_load_to_a_device_and_float64_state(tmp_path, xp, device):
    net = trained_net().double()
    io.save(net, tmp_path / "w.safetensors")
    loaded = io.load(tmp_path / "w.safetensors", device=device)
    assert loaded["9.weight"].dtype == np.float64
    assert all(v.device == backend.normalize_device(device) for v in loaded.values())
    target = build(nn).to(device)
    target.load_state_dict(loaded)                                     # float64 -> the model's float32
    assert target[9].weight.dtype == np.float32


def test_arrays_and_files_from_other_writers(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    st.save_file({"b": np.ones(2, np.float32), "a": np.zeros((), np.int64)}, str(tmp_path / "other.safetensors"))
    loaded = io.load(tmp_path / "other.safetensors")
    assert sorted(loaded) == ["a", "b"] and loaded["a"].dtype == np.int64
    io.save({"x": np.arange(6.0).reshape(2, 3)[:, ::2]}, tmp_path / "strided.safetensors")   # not contiguous
    np.testing.assert_array_equal(io.load(tmp_path / "strided.safetensors")["x"].numpy(), [[0, 2], [3, 5]])


def test_save_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="keys must be strings"):
        io.save({1: np.zeros(1)}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="Tensor or a NumPy/CuPy array"):
        io.save({"a": [1.0]}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="Module or a state dict"):
        io.save([np.zeros(1)], tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- atomic writes
def test_a_crash_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "net.safetensors"
    io.save(trained_net(0), path)
    old = path.read_bytes()

    def write_half_then_crash(f, data):
        f.write(data[:len(data) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(io, "_write_bytes", write_half_then_crash)
    with pytest.raises(OSError, match="No space left"):
        io.save(trained_net(1), path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["net.safetensors"]
    monkeypatch.undo()
    io.save(trained_net(1), path)                                      # and a later save goes through
    assert path.read_bytes() != old and os.listdir(tmp_path) == ["net.safetensors"]


# ---------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("keep", [5, 30, -4])
def test_truncated_file_is_a_clear_error(tmp_path, keep):
    path = tmp_path / "net.safetensors"
    io.save(trained_net(), path)
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(ValueError, match="truncated"):
        io.load(path)


def test_foreign_files_are_clear_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights, just some text that is long enough")
    with pytest.raises(ValueError, match="not a safetensors file"):
        io.load(text)
    archive = tmp_path / "model.pth"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(ValueError, match="import_torch_checkpoint"):
        io.load(archive)
    bad_json = tmp_path / "bad.safetensors"
    bad_json.write_bytes((12).to_bytes(8, "little") + b"{not json!!}")
    with pytest.raises(ValueError, match="not JSON"):
        io.load(bad_json)
    with pytest.raises(FileNotFoundError):
        io.load(tmp_path / "missing.safetensors")


def test_a_file_that_does_not_fit_the_model_is_a_clear_error(tmp_path):
    net = trained_net()
    sd = net.state_dict()
    sd["9.weight"] = minires.zeros(10, 6)                              # wrong shape
    sd["1.num_batches_tracked"] = minires.tensor(2.0)                  # wrong dtype
    del sd["9.bias"]                                                   # missing
    io.save(sd, tmp_path / "bad.safetensors")
    with pytest.raises(RuntimeError) as info:
        build(nn).load_state_dict(io.load(tmp_path / "bad.safetensors"))
    message = str(info.value)
    assert "size mismatch for 9.weight: checkpoint (10, 6), model (3, 6)" in message
    assert "dtype mismatch for 1.num_batches_tracked: checkpoint float32, model int64" in message
    assert 'missing key(s) in state_dict: "9.bias"' in message


def test_missing_safetensors_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r'pip install "minires\[io\]"'):
        io.save(trained_net(), tmp_path / "x.safetensors")
    with pytest.raises(ImportError, match=r'pip install "minires\[io\]"'):
        io.load(tmp_path / "x.safetensors")


def test_missing_torch_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="needs torch"):
        io.import_torch_checkpoint(tmp_path / "x.pth")
    with pytest.raises(ImportError, match="needs torch"):
        io.export_torch_checkpoint(trained_net(), tmp_path / "x.pth")


# ---------------------------------------------------------------------------- PyTorch checkpoints
def test_export_loads_into_the_same_torch_network_and_agrees(tmp_path):
    torch = pytest.importorskip("torch")
    net = trained_net()
    io.export_torch_checkpoint(net, tmp_path / "net.pth")
    state = torch.load(tmp_path / "net.pth", weights_only=True)
    assert list(state) == list(net.state_dict())
    assert state["5.num_batches_tracked"].dtype == torch.int64 and state["5.num_batches_tracked"].shape == ()
    twin = build(torch.nn)
    assert twin.load_state_dict(state, strict=True)
    for mode in (False, True):
        net.train(mode), twin.train(mode)
        with torch.no_grad():
            expected = twin(torch.from_numpy(inputs())).numpy()
        np.testing.assert_allclose(net(minires.tensor(inputs())).numpy(), expected, rtol=1e-5, atol=1e-5)
    # both took one more training step on the same batch: their running statistics still agree
    for key, value in net.state_dict().items():
        np.testing.assert_allclose(value.numpy(), twin.state_dict()[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


def test_import_a_torch_checkpoint_and_agree(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    twin = build(torch.nn)
    twin(torch.randn(4, 3, 8, 8))                                      # move the running statistics
    twin.eval()
    torch.save(twin.state_dict(), tmp_path / "twin.pth")
    arrays = io.import_torch_checkpoint(tmp_path / "twin.pth")
    assert list(arrays) == list(twin.state_dict()) and all(isinstance(a, np.ndarray) for a in arrays.values())
    net = build(nn).eval()
    net.load_state_dict(arrays)
    with torch.no_grad():
        expected = twin(torch.from_numpy(inputs())).numpy()
    np.testing.assert_allclose(net(minires.tensor(inputs())).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_torch_checkpoint_wrappers_and_old_checkpoints(tmp_path):
    torch = pytest.importorskip("torch")
    state = build(torch.nn).state_dict()
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "a.pth")
    torch.save({"model": state, "optimizer": {}}, tmp_path / "b.pth")
    for name in ("a.pth", "b.pth"):
        assert list(io.import_torch_checkpoint(tmp_path / name)) == list(state)
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}   # before PyTorch 0.4
    torch.save(old, tmp_path / "old.pth")
    arrays = io.import_torch_checkpoint(tmp_path / "old.pth")
    assert list(arrays) == list(state)                                 # filled in, in place
    assert arrays["1.num_batches_tracked"].dtype == np.int64 and int(arrays["1.num_batches_tracked"]) == 0
    build(nn).load_state_dict(arrays)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        io.import_torch_checkpoint(tmp_path / "list.pth")
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(ValueError, match="no state dict"):
        io.import_torch_checkpoint(tmp_path / "meta.pth")


def test_minires_to_torch_format_and_back_is_exact(tmp_path):
    pytest.importorskip("torch")
    net = trained_net()
    io.export_torch_checkpoint(net.state_dict(), tmp_path / "net.pth")
    back = io.import_torch_checkpoint(tmp_path / "net.pth")
    assert list(back) == list(net.state_dict())
    for key, value in net.state_dict().items():
        assert back[key].dtype == value.dtype
        np.testing.assert_array_equal(back[key], value.numpy(), err_msg=key)


# ---------------------------------------------------------------------------- transfer learning
class TinyClassifier(nn.Module):
    """A backbone and an ``fc`` head, like a ResNet, small enough for a unit test."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.avgpool(self.relu(self.bn1(self.conv1(x))))
        return self.fc(x.flatten(1))


def test_transfer_learning_recipe_trains_only_the_new_head(tmp_path):
    minires.manual_seed(0)
    io.save(TinyClassifier(), tmp_path / "pretrained.safetensors")
    model = TinyClassifier()
    model.load_state_dict(io.load(tmp_path / "pretrained.safetensors"))
    model.requires_grad_(False)                                        # freeze the backbone
    model.fc = nn.Linear(model.fc.in_features, 5)                      # a new head for 5 classes
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    backbone = {k: v.numpy().copy() for k, v in model.state_dict().items() if k.startswith("conv1")}
    x = minires.randn(8, 3, 6, 6)
    y = minires.tensor(np.arange(8) % 5)
    criterion = nn.CrossEntropyLoss()
    losses = []
    for _ in range(20):
        loss = criterion(model(x), y)
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            if p.requires_grad:
                p.data -= 0.5 * p.grad
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    assert model.conv1.weight.grad is None
    for key, value in backbone.items():
        np.testing.assert_array_equal(model.state_dict()[key].numpy(), value)


def test_the_documented_examples_run(tmp_path, monkeypatch):
    """Every ```python block of docs/weights.md runs, in order, in one namespace (```py blocks are
    illustrations that need a download). Blocks that use PyTorch checkpoints run where torch is installed."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "weights.md"
    blocks = [part.split("```")[0] for part in doc.read_text().split("```python\n")[1:]]
    assert len(blocks) == 3
    has_torch = importlib.util.find_spec("torch") is not None
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        if "torch_checkpoint" in block and not has_torch:
            continue
        exec(compile(block, str(doc), "exec"), namespace)              # noqa: S102 - our own docs
    assert namespace["model"].fc.out_features == 5
    assert os.path.exists("resnet18_5classes.safetensors")


def test_saving_a_nested_training_checkpoint_points_to_the_flat_form(tmp_path):
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="optimizer_state_to_arrays"):
        minires.save({"model": model.state_dict()}, tmp_path / "c.safetensors")
    assert not (tmp_path / "c.safetensors").exists()


# ---------------------------------------------------------------------------- every dtype, and what cannot be written
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                                   "uint16", "uint32", "uint64", "bool", ">f4", ">i8"])
@pytest.mark.parametrize("shape", [(), (0,), (2, 0, 3), (2, 3)])
def test_whatever_save_writes_load_reads_back(tmp_path, dtype, shape):
    array = (np.arange(int(np.prod(shape))) % 3).reshape(shape).astype(dtype)
    path = tmp_path / "w.safetensors"
    io.save({"": array, "a b/ü": array[()] if array.ndim else array}, path)
    loaded = io.load(path)
    assert list(loaded) == ["", "a b/ü"]
    for value in loaded.values():
        assert value.dtype == np.dtype(dtype).newbyteorder("=") and value.shape == shape
        np.testing.assert_array_equal(value.numpy(), array)


@pytest.mark.parametrize("value, match", [
    (np.zeros(2, np.complex128), "'bad' has dtype complex128"),
    (np.zeros(2, np.complex64), "'bad' has dtype complex64"),
    (np.array([None, 1], dtype=object), "'bad' has dtype object"),
    (np.zeros(2, "U3"), "'bad' has dtype <U3"),
    (np.zeros(2, "datetime64[s]"), "'bad' has dtype datetime64"),
    (np.zeros(2, [("a", "f4")]), "'bad' has dtype"),
])
def test_an_unwritable_dtype_is_refused_before_the_old_file_is_touched(tmp_path, value, match):
    path = tmp_path / "w.safetensors"
    io.save({"good": np.ones(2, np.float32)}, path)
    old = path.read_bytes()
    with pytest.raises(TypeError, match=match):
        io.save({"good": np.ones(2, np.float32), "bad": value}, path)
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["w.safetensors"]


def test_the_reserved_metadata_key_is_refused_naming_it(tmp_path):
    path = tmp_path / "w.safetensors"
    io.save({"good": np.ones(2)}, path)
    old = path.read_bytes()
    with pytest.raises(ValueError, match="'__metadata__' is reserved"):
        io.save({"__metadata__": np.zeros(2)}, path)
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["w.safetensors"]


# ---------------------------------------------------------------------------- leftovers, permissions, links
def test_a_killed_saves_leftover_is_cleaned_and_does_not_confuse_later_saves(tmp_path):
    path = tmp_path / "w.safetensors"
    io.save({"x": np.ones(3)}, path)
    stale = tmp_path / ".w.safetensors.0123456789ab.tmp"        # what a save killed mid-write leaves
    stale.write_bytes(b"half a file")
    fresh = tmp_path / ".w.safetensors.ba9876543210.tmp"        # a save that may still be running
    fresh.write_bytes(b"a save in progress")
    other = tmp_path / ".other.safetensors.0123456789ab.tmp"    # another file's: not ours to remove
    other.write_bytes(b"x")
    hour_ago = os.path.getmtime(stale) - 2 * 60 * 60
    os.utime(stale, (hour_ago, hour_ago)), os.utime(other, (hour_ago, hour_ago))
    for step in range(3):
        io.save({"x": np.full(3, float(step))}, path)
        np.testing.assert_array_equal(io.load(path)["x"].numpy(), [step] * 3)
    assert sorted(os.listdir(tmp_path)) == sorted([fresh.name, other.name, "w.safetensors"])
    assert fresh.read_bytes() == b"a save in progress"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_overwriting_keeps_the_files_permission_bits(tmp_path):
    path = tmp_path / "w.safetensors"
    io.save({"x": np.ones(3)}, path)
    os.chmod(path, 0o640)
    io.save({"x": np.zeros(3)}, path)
    assert os.stat(path).st_mode & 0o777 == 0o640
    os.chmod(path, 0o604)
    io.atomic_write(path, b"other writers go through the same door")
    assert os.stat(path).st_mode & 0o777 == 0o604


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_saving_through_a_symbolic_link_keeps_the_link(tmp_path):
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "w.safetensors"
    io.save({"x": np.ones(3)}, target)
    link = tmp_path / "latest.safetensors"
    link.symlink_to(target)
    io.save({"x": np.zeros(3)}, link)
    assert link.is_symlink()
    np.testing.assert_array_equal(io.load(target)["x"].numpy(), np.zeros(3))


# ---------------------------------------------------------------------------- damaged metadata
def _write_header(path, header):
    import json
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + bytes(8))


@pytest.mark.parametrize("metadata, match", [
    (["not", "a", "map"], "'__metadata__' must map text to text"),
    ({"minires.keys": ["x"]}, "'__metadata__' must map text to text"),
    ({"minires.keys": "[x, not json"}, "'minires.keys' must be a JSON list"),
    ({"minires.keys": "{\"x\": 1}"}, "'minires.keys' must be a JSON list"),
    ({"minires.keys": "[1]"}, "'minires.keys' must be a JSON list"),
])
def test_damaged_metadata_is_a_clear_error_naming_the_file(tmp_path, metadata, match):
    path = tmp_path / "damaged.safetensors"
    _write_header(path, {"__metadata__": metadata, "x": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})
    for read in (io.load, io.load_metadata):
        with pytest.raises(ValueError, match=match) as error:
            read(path)
        assert "damaged.safetensors" in str(error.value) and "damaged metadata" in str(error.value)
