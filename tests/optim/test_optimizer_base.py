"""The Optimizer base class: parameter groups, the errors for every misuse, and the state dict
(PyTorch's shape, resuming mid-run bit for bit, the flat form for safetensors checkpoints)."""
import json

import numpy as np
import pytest

import minires
from minires import backend, nn, optim
from minires.optim import lr_scheduler


def param(*shape, device="cpu", seed=0):
    rng = np.random.default_rng(seed)
    return nn.Parameter(minires.tensor(rng.standard_normal(shape), device=device))


def small_model():
    return nn.Sequential(nn.Linear(3, 4, dtype="float64"), nn.BatchNorm1d(4, dtype="float64"),
                         nn.Linear(4, 2, dtype="float64"))


# ---------------------------------------------------------------------------------- parameter groups

def test_groups_take_the_defaults_they_leave_out():
    a, b, c = param(2), param(3), param(4)
    optimizer = optim.SGD([{"params": [a]}, {"params": [b, c], "lr": 0.01, "weight_decay": 5e-4}],
                          lr=0.1, momentum=0.9)
    first, second = optimizer.param_groups
    assert first["lr"] == 0.1 and first["weight_decay"] == 0 and first["momentum"] == 0.9
    assert second["lr"] == 0.01 and second["weight_decay"] == 5e-4 and second["momentum"] == 0.9
    assert first["params"] == [a] and second["params"][0] is b and second["params"][1] is c


def test_a_generator_and_a_single_tensor_in_a_group_are_accepted():
    model = small_model()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    assert len(optimizer.param_groups[0]["params"]) == len(list(model.parameters()))
    p = param(2)
    assert optim.Adam([{"params": p}]).param_groups[0]["params"] == [p]


def test_no_weight_decay_on_norm_weights_and_biases():
    """The docs' recipe: decay only the weights of layers that have 2 or more dimensions."""
    model = small_model()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = optim.SGD([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=0.1,
                          weight_decay=0.5)
    for p in model.parameters():
        p.grad = minires.zeros_like(p)
    before = [p.numpy().copy() for p in model.parameters()]
    optimizer.step()
    for (name, p), old in zip(model.named_parameters(), before):
        if p.ndim >= 2:
            np.testing.assert_allclose(p.numpy(), old * (1 - 0.1 * 0.5), err_msg=name)   # zero gradient: decay only
        else:
            np.testing.assert_array_equal(p.numpy(), old)


def test_add_param_group_later():
    a, b = param(2), param(3)
    optimizer = optim.Adam([a], lr=1e-3)
    optimizer.add_param_group({"params": [b], "lr": 1e-4})
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-4]
    assert optimizer.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="already in parameter group 0"):
        optimizer.add_param_group({"params": [a]})


@pytest.mark.parametrize("make, match", [
    (lambda: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda: optim.SGD(param(2), lr=0.1), "single Tensor"),
    (lambda: optim.SGD({"params": [param(2)]}, lr=0.1), "one dict"),
    (lambda: optim.SGD([{"lr": 0.1}]), "needs a 'params' entry"),
    (lambda: optim.SGD([{"params": []}]), "empty 'params' list"),
    (lambda: optim.SGD([np.zeros(2)]), "holds a ndarray"),
    (lambda: optim.SGD([{"params": [param(2)]}, param(3)]), "dicts only"),
    (lambda: optim.SGD([{"params": {param(2)}}]), "not a set"),
    (lambda: optim.SGD([{"params": [param(2)], "weight_decy": 0.1}]), "did you mean 'weight_decay'"),
    (lambda: optim.SGD([param(2)], lr=-0.1), "lr must be >= 0, got -0.1 in parameter group 0"),
    (lambda: optim.SGD([param(2)], weight_decay=-1.0), "weight_decay must be >= 0"),
    (lambda: optim.SGD([param(2)], momentum=-0.5), "momentum must be >= 0"),
    (lambda: optim.SGD([param(2)], lr=float("nan")), "lr must be >= 0, got nan"),
    (lambda: optim.SGD([param(2)], nesterov=True), "Nesterov momentum needs a momentum > 0"),
    (lambda: optim.SGD([param(2)], momentum=0.9, dampening=0.1, nesterov=True), "zero dampening"),
    (lambda: optim.SGD([{"params": [param(2)], "nesterov": True}], momentum=0.0), "parameter group 0"),
    (lambda: optim.Adam([param(2)], lr=-1e-3), "lr must be >= 0"),
    (lambda: optim.Adam([param(2)], betas=(1.0, 0.999)), r"betas\[0\] must be in \[0, 1\), got 1.0"),
    (lambda: optim.Adam([param(2)], betas=(0.9, -0.1)), r"betas\[1\] must be in \[0, 1\)"),
    (lambda: optim.AdamW([{"params": [param(2)]}, {"params": [param(3)], "betas": (0.9, 1.5)}]),
     r"betas\[1\].*parameter group 1"),
    (lambda: optim.Adam([param(2)], betas=(0.9,)), "betas is a pair"),
    (lambda: optim.Adam([param(2)], eps=-1e-8), "eps must be >= 0"),
    (lambda: optim.Adam([param(2)], weight_decay=-0.1), "weight_decay must be >= 0"),
])
def test_every_misuse_is_a_clear_error(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_a_parameter_given_twice_is_refused():
    p, q = param(2), param(3)
    with pytest.raises(ValueError, match="holds the same parameter .* twice"):
        optim.SGD([p, q, p], lr=0.1)
    with pytest.raises(ValueError, match="already in parameter group 0"):
        optim.SGD([{"params": [p]}, {"params": [q, p]}], lr=0.1)


def test_a_non_leaf_is_refused():
    p = param(2)
    with pytest.raises(ValueError, match="leaf tensors"):
        optim.SGD([p * 2], lr=0.1)


def test_a_gradient_of_the_wrong_shape_is_refused():
    p = param(2, 3)
    optimizer = optim.SGD([p], lr=0.1)
    p.grad = minires.zeros(2, 3, dtype="float64")
    p.grad.data = np.zeros(6)                     # only possible by writing .data directly
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\) has a gradient of shape \(6,\)"):
        optimizer.step()


def test_repr_lists_the_groups():
    text = repr(optim.SGD([{"params": [param(2)]}, {"params": [param(3)], "lr": 0.5}], lr=0.1))
    assert text.startswith("SGD (") and "Parameter Group 1" in text and "lr: 0.5" in text


# ---------------------------------------------------------------------------------- state dicts

def train(optimizer, params, steps, seed, scheduler=None):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        for p in params:
            p.grad = minires.tensor(rng.standard_normal(p.shape), device=p.device)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def test_state_dict_has_pytorchs_shape():
    a, b, c = param(2), param(3), param(4)
    optimizer = optim.Adam([{"params": [a, b]}, {"params": [c], "lr": 0.1}], amsgrad=True)
    a.grad = minires.zeros_like(a)
    c.grad = minires.zeros_like(c)
    optimizer.step()
    state = optimizer.state_dict()
    assert list(state) == ["state", "param_groups"]
    assert list(state["state"]) == [0, 2]                       # b has no state yet
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert state["state"][0]["step"] == 1
    assert [g["params"] for g in state["param_groups"]] == [[0, 1], [2]]
    assert state["param_groups"][1]["lr"] == 0.1 and state["param_groups"][0]["betas"] == (0.9, 0.999)
    state["state"][0]["exp_avg"] += 1                           # a snapshot: the optimizer is unaffected
    assert not optimizer.state[a]["exp_avg"].any()
    plain = optim.SGD([a], lr=0.1)
    plain.step()
    assert plain.state_dict()["state"] == {} and len(plain.state) == 0       # plain SGD remembers nothing


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    lambda ps: optim.Adam(ps, lr=1e-2, amsgrad=True),
    lambda ps: optim.AdamW([{"params": ps[:1]}, {"params": ps[1:], "lr": 1e-3, "weight_decay": 0.0}]),
], ids=["sgd", "adam", "adamw-groups"])
def test_resuming_mid_run_gives_the_same_numbers_bit_for_bit(xp, device, make):
    params = [param(3, 2, device=device, seed=1), param(5, device=device, seed=2)]
    optimizer = make(params)
    scheduler = lr_scheduler.CosineAnnealingLR(optimizer, T_max=12)
    train(optimizer, params, 5, seed=10, scheduler=scheduler)
    saved_params = [p.numpy().copy() for p in params]
    saved_optimizer, saved_scheduler = optimizer.state_dict(), json.loads(json.dumps(scheduler.state_dict()))
    train(optimizer, params, 7, seed=11, scheduler=scheduler)                    # the run that never stopped

    resumed = [nn.Parameter(minires.tensor(v, device=device)) for v in saved_params]
    optimizer2 = make(resumed)
    scheduler2 = lr_scheduler.CosineAnnealingLR(optimizer2, T_max=12)
    optimizer2.load_state_dict(saved_optimizer)
    scheduler2.load_state_dict(saved_scheduler)
    train(optimizer2, resumed, 7, seed=11, scheduler=scheduler2)
    for p, q in zip(params, resumed):
        np.testing.assert_array_equal(q.numpy(), p.numpy())
        assert isinstance(q.data, xp.ndarray)
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_the_flat_form_goes_through_a_safetensors_file(tmp_path, device):
    pytest.importorskip("safetensors")
    params = [param(3, 2, device=device, seed=1), param(5, device=device, seed=2)]
    optimizer = optim.Adam(params, amsgrad=True)
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=20)
    train(optimizer, params, 4, seed=3, scheduler=scheduler)
    arrays, meta = optim.optimizer_state_to_arrays(optimizer.state_dict())
    assert set(arrays) == {f"state.{i}.{name}" for i in (0, 1)
                           for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")}
    minires.save(arrays, tmp_path / "optimizer.safetensors")
    (tmp_path / "optimizer.json").write_text(json.dumps(meta))

    optimizer2 = optim.Adam(params, amsgrad=True)
    loaded = optim.optimizer_state_from_arrays(minires.load(tmp_path / "optimizer.safetensors", device=device),
                                               json.loads((tmp_path / "optimizer.json").read_text()))
    optimizer2.load_state_dict(loaded)
    original, restored = optimizer.state_dict(), optimizer2.state_dict()
    assert restored["param_groups"] == original["param_groups"]       # betas back as a tuple, lrs exact
    for index, entry in original["state"].items():
        assert restored["state"][index]["step"] == entry["step"] == 4
        for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            np.testing.assert_array_equal(backend.to_numpy(restored["state"][index][name]),
                                          backend.to_numpy(entry[name]))


def test_the_flat_form_refuses_what_json_cannot_hold_and_missing_arrays():
    p = param(2)
    optimizer = optim.SGD([p], lr=0.1, momentum=0.9)
    train(optimizer, [p], 1, seed=0)
    state = optimizer.state_dict()
    state["param_groups"][0]["lr"] = object()
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['lr'\] is a object"):
        optim.optimizer_state_to_arrays(state)
    arrays, meta = optim.optimizer_state_to_arrays(optimizer.state_dict())
    with pytest.raises(KeyError, match="no array 'state.0.momentum_buffer'"):
        optim.optimizer_state_from_arrays({}, meta)


def test_loading_casts_to_the_parameters_dtype_and_copies():
    p = nn.Parameter(minires.zeros(3, dtype="float32"))
    optimizer = optim.SGD([p], lr=0.1, momentum=0.9)
    buffer = np.arange(3.0)
    optimizer.load_state_dict({"state": {0: {"momentum_buffer": buffer}},
                               "param_groups": [{**optimizer.state_dict()["param_groups"][0], "lr": 0.5}]})
    assert optimizer.state[p]["momentum_buffer"].dtype == np.float32
    buffer += 1
    np.testing.assert_array_equal(optimizer.state[p]["momentum_buffer"], [0.0, 1.0, 2.0])
    assert optimizer.param_groups[0]["lr"] == 0.5 and optimizer.param_groups[0]["params"] == [p]


def test_loading_a_state_dict_that_does_not_fit_is_a_clear_error():
    a, b, c = param(2), param(3), param(4)
    two_groups = optim.SGD([{"params": [a]}, {"params": [b, c]}], lr=0.1, momentum=0.9)
    train(two_groups, [a, b, c], 1, seed=0)
    state = two_groups.state_dict()
    with pytest.raises(ValueError, match="has 2 parameter group\\(s\\) but this SGD has 1"):
        optim.SGD([a, b, c], lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="group 1 of the state dict has 2 parameter\\(s\\) but .* has 1"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="shape \\(4,\\) but its parameter has shape \\(2,\\)"):
        optim.SGD([{"params": [a]}, {"params": [b, param(2)]}], lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="saved by another kind of optimizer, not Adam"):
        optim.Adam([{"params": [a]}, {"params": [b, c]}]).load_state_dict(state)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        two_groups.load_state_dict({"state": {}})
    bad = {"state": {7: {"momentum_buffer": np.zeros(2)}}, "param_groups": state["param_groups"]}
    with pytest.raises(ValueError, match="parameter 7, which none of its groups holds"):
        two_groups.load_state_dict(bad)
