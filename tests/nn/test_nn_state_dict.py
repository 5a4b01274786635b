"""state_dict and load_state_dict: key order, views, strict and non-strict loading, the error messages."""
import numpy as np
import pytest

import minires
from minires import nn


def small_net() -> nn.Module:
    """Nested like a ResNet stem and stage, so the keys exercise every rule of the order."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, affine=False)),
        nn.Linear(4, 2),
    )


EXPECTED_KEYS = [
    "0.weight",
    "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
    "2.0.weight", "2.0.bias",
    "2.1.running_mean", "2.1.running_var", "2.1.num_batches_tracked",
    "3.weight", "3.bias",
]


def test_key_order_is_pytorchs():
    assert list(small_net().state_dict()) == EXPECTED_KEYS


def test_key_order_equals_torch_for_a_module_with_own_state_and_children():
    torch = pytest.importorskip("torch")

    def build(lib):
        class Mixed(lib.Module):
            def __init__(self):
                super().__init__()
                self.head = lib.Linear(2, 2)
                self.scale = lib.Parameter(lib.Linear(1, 1).weight.detach()[0])
                self.register_buffer("count", lib.Linear(1, 1).weight.detach()[0])
                self.register_buffer("scratch", lib.Linear(1, 1).weight.detach()[0], persistent=False)
                self.body = lib.Sequential(lib.BatchNorm2d(2), lib.Conv2d(2, 2, 1))
        return Mixed()

    assert list(build(nn).state_dict()) == list(build(torch.nn).state_dict()) == [
        "scale", "count", "head.weight", "head.bias", "body.0.weight", "body.0.bias", "body.0.running_mean",
        "body.0.running_var", "body.0.num_batches_tracked", "body.1.weight", "body.1.bias"]


def test_values_are_detached_views_and_keep_vars_gives_parameters():
    net = small_net()
    sd = net.state_dict()
    weight = sd["3.weight"]
    assert not weight.requires_grad and weight is not net[3].weight
    assert weight.data is net[3].weight.data                       # shares memory
    assert net.state_dict(keep_vars=True)["3.weight"] is net[3].weight
    assert sd["1.num_batches_tracked"].dtype == np.int64 and sd["1.num_batches_tracked"].shape == ()
    assert list(net[2].state_dict(prefix="stage.")) == ["stage.0.weight", "stage.0.bias", "stage.1.running_mean",
                                                        "stage.1.running_var", "stage.1.num_batches_tracked"]


def test_load_round_trip_copies_into_existing_arrays():
    minires.manual_seed(0)
    source, target = small_net(), small_net()
    arrays = [p.data for p in target.parameters()]
    params = list(target.parameters())
    result = target.load_state_dict(source.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    assert [id(p) for p in target.parameters()] == [id(p) for p in params]
    assert all(p.data is a for p, a in zip(target.parameters(), arrays))
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[key].numpy(), value.numpy(), err_msg=key)


def test_load_accepts_numpy_arrays_and_converts_dtype():
    net = small_net()
    sd = {k: v.numpy().astype(np.float64) if v.dtype == np.float32 else v.numpy() for k, v in
          small_net().state_dict().items()}
    net.load_state_dict(sd)
    assert net[3].weight.dtype == np.float32
    np.testing.assert_array_equal(net[3].weight.numpy(), sd["3.weight"].astype(np.float32))


def test_strict_lists_missing_and_unexpected_keys():
    net = small_net()
    sd = net.state_dict()
    del sd["3.bias"]
    sd["extra.weight"] = np.zeros(2, np.float32)
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    message = str(info.value)
    assert "for Sequential" in message
    assert 'missing key(s) in state_dict: "3.bias"' in message
    assert 'unexpected key(s) in state_dict: "extra.weight"' in message
    assert "strict=False" in message


def test_non_strict_returns_missing_and_unexpected_keys():
    net = small_net()
    before = net[3].bias.numpy().copy()
    result = net.load_state_dict({"3.weight": np.ones((2, 4), np.float32), "head.weight": np.ones(1)}, strict=False)
    assert result.unexpected_keys == ["head.weight"]
    assert result.missing_keys == [k for k in EXPECTED_KEYS      # a missing batch-norm count is filled
                                   if k != "3.weight" and not k.endswith("num_batches_tracked")]
    missing, unexpected = result                                     # a named tuple
    assert unexpected == ["head.weight"]
    np.testing.assert_array_equal(net[3].weight.numpy(), 1)
    np.testing.assert_array_equal(net[3].bias.numpy(), before)


def test_size_mismatch_is_explained_key_by_key_and_nothing_is_copied():
    net = small_net()
    sd = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    sd["3.weight"] = np.zeros((1000, 4), np.float32)
    sd["0.weight"] = np.zeros((4, 3, 5, 5), np.float32)
    sd["1.bias"] = np.full(4, 7.0, np.float32)                       # fits, but must not be copied
    for strict in (True, False):
        with pytest.raises(RuntimeError) as info:
            net.load_state_dict(sd, strict=strict)
        message = str(info.value)
        assert "size mismatch for 3.weight: checkpoint (1000, 4), model (2, 4)" in message
        assert "size mismatch for 0.weight: checkpoint (4, 3, 5, 5), model (4, 3, 3, 3)" in message
        assert "replace the layer" in message
    np.testing.assert_array_equal(net[1].bias.numpy(), 0)            # the failed load changed nothing


def test_dtype_kind_mismatch_and_non_arrays_are_errors():
    net = small_net()
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    sd["1.num_batches_tracked"] = np.array(3.5)
    sd["3.bias"] = np.array([1, 2])
    sd["3.weight"] = [[0.0] * 4] * 2
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    message = str(info.value)
    assert "dtype mismatch for 1.num_batches_tracked: checkpoint float64, model int64" in message
    assert "dtype mismatch for 3.bias: checkpoint int64, model float32" in message
    assert "value for 3.weight is a list" in message
    with pytest.raises(TypeError, match="mapping"):
        net.load_state_dict([("0.weight", np.zeros(1))])


def test_load_into_a_model_on_another_device(xp, device):
    source, target = small_net(), small_net().to(device)
    target.load_state_dict(source.state_dict())
    assert target[3].weight.device == minires.backend.normalize_device(device)
    np.testing.assert_array_equal(target[3].weight.numpy(), source[3].weight.numpy())
