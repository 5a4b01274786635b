"""minires.optim against PyTorch: optimizer trajectories and learning-rate schedules, step by step.

The reference numbers come from ``tests/fixtures/make_optim_fixtures.py`` (torch 2.13.0, float64),
which documents the layout of both files. Torch is not needed here.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import minires
from minires import backend, nn, optim
from minires.optim import lr_scheduler

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "optim"
OPTIMIZERS = np.load(FIXTURES / "optimizers.npz", allow_pickle=False)
SCHEDULERS = np.load(FIXTURES / "schedulers.npz", allow_pickle=False)

# float64 throughout; the update rules are written with other (equally exact) groupings of the
# arithmetic than PyTorch's kernels, so the trajectories agree to rounding, not bit for bit.
PARAM_RTOL, PARAM_ATOL = 1e-12, 1e-13


def case_names(fixture):
    return [str(fixture[f"case{k}/name"]) for k in range(int(fixture["meta/num_cases"]))]


def case_prefix(fixture, name):
    return f"case{case_names(fixture).index(name)}/"


def build_optimizer(prefix, device):
    """The case's optimizer over fresh parameters (on ``device``) made from the fixture's start values."""
    f = OPTIMIZERS
    params = [nn.Parameter(minires.tensor(f[f"init/param{i}"], device=device))
              for i in range(int(f["meta/num_params"]))]
    groups = [{**group, "params": [params[i] for i in group["params"]]}
              for group in json.loads(str(f[prefix + "groups"]))]
    optimizer = getattr(optim, str(f[prefix + "optimizer"]))(groups, **json.loads(str(f[prefix + "kwargs"])))
    return params, optimizer


def set_grads(params, prefix, step, device):
    f = OPTIMIZERS
    for i, p in enumerate(params):
        has = f[prefix + "has_grad"][step, i]
        p.grad = minires.tensor(f[f"grads/param{i}"][step], device=device) if has else None


@pytest.mark.parametrize("name", case_names(OPTIMIZERS))
def test_optimizer_follows_pytorch_for_30_steps(name, xp, device):
    prefix = case_prefix(OPTIMIZERS, name)
    params, optimizer = build_optimizer(prefix, device)
    for t in range(int(OPTIMIZERS["meta/num_steps"])):
        set_grads(params, prefix, t, device)
        optimizer.step()
        for i, p in enumerate(params):
            assert isinstance(p.data, xp.ndarray)
            np.testing.assert_allclose(backend.to_numpy(p.data), OPTIMIZERS[prefix + f"param{i}"][t + 1],
                                       rtol=PARAM_RTOL, atol=PARAM_ATOL, err_msg=f"{name}, parameter {i}, step {t + 1}")
    for i, p in enumerate(params):
        saved = {key.split("/")[-1]: OPTIMIZERS[key] for key in OPTIMIZERS.files
                 if key.startswith(prefix + f"state{i}/")}
        assert set(optimizer.state[p]) == set(saved), f"{name}: the state of parameter {i} has other entries"
        for key, expected in saved.items():
            got = optimizer.state[p][key]
            if key == "step":
                assert got == int(expected)
            else:
                np.testing.assert_allclose(backend.to_numpy(got), expected, rtol=PARAM_RTOL, atol=PARAM_ATOL,
                                           err_msg=f"{name}, state {key!r} of parameter {i}")


def test_the_fixtures_cover_every_option():
    """Every option of every optimizer is exercised by some case (so a rule cannot hide untested)."""
    seen = {}
    for k in range(int(OPTIMIZERS["meta/num_cases"])):
        kwargs = json.loads(str(OPTIMIZERS[f"case{k}/kwargs"]))
        seen.setdefault(str(OPTIMIZERS[f"case{k}/optimizer"]), set()).update(kwargs)
    assert seen["SGD"] >= {"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"}
    assert seen["Adam"] >= {"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"}
    assert seen["AdamW"] >= {"lr", "weight_decay", "amsgrad"}
    assert not OPTIMIZERS[case_prefix(OPTIMIZERS, "adam_gaps") + "has_grad"].all()


# ------------------------------------------------------------------------------------------ schedules

def build_schedule(prefix):
    f = SCHEDULERS
    groups = [{"params": [nn.Parameter(minires.zeros(2, dtype="float64"))], "lr": float(lr)}
              for lr in f[prefix + "group_lrs"]]
    optimizer = getattr(optim, str(f[prefix + "optimizer"]))(groups, **json.loads(str(f[prefix + "optimizer_kwargs"])))
    kind, kwargs = str(f[prefix + "scheduler"]), json.loads(str(f[prefix + "kwargs"]))
    if kind == "SequentialLR":
        inner = [getattr(lr_scheduler, cls)(optimizer, **kw) for cls, kw in kwargs["schedulers"]]
        return optimizer, lr_scheduler.SequentialLR(optimizer, inner, milestones=kwargs["milestones"])
    return optimizer, getattr(lr_scheduler, kind)(optimizer, **kwargs)


def momentum_of(group):
    return group["betas"][0] if "betas" in group else group["momentum"]


@pytest.mark.parametrize("name", case_names(SCHEDULERS))
def test_schedule_follows_pytorch(name):
    prefix = case_prefix(SCHEDULERS, name)
    optimizer, scheduler = build_schedule(prefix)
    expected_lr, expected_momentum = SCHEDULERS[prefix + "lr"], SCHEDULERS[prefix + "momentum"]
    for t in range(len(expected_lr)):
        if t > 0:
            optimizer.step()
            scheduler.step()
        lrs = [group["lr"] for group in optimizer.param_groups]
        # the same formulas in the same order as PyTorch's: equal to the last bit on one machine
        np.testing.assert_allclose(lrs, expected_lr[t], rtol=1e-14, atol=0, err_msg=f"{name}, lr after {t} steps")
        np.testing.assert_allclose(scheduler.get_last_lr(), expected_lr[t], rtol=1e-14, atol=0)
        np.testing.assert_allclose([momentum_of(g) for g in optimizer.param_groups], expected_momentum[t],
                                   rtol=1e-14, atol=0, err_msg=f"{name}, momentum after {t} steps")
    assert scheduler.last_epoch == len(expected_lr) - 1


def test_the_schedule_fixtures_cover_every_class():
    kinds = {str(SCHEDULERS[f"case{k}/scheduler"]) for k in range(int(SCHEDULERS["meta/num_cases"]))}
    assert kinds == {"StepLR", "MultiStepLR", "CosineAnnealingLR", "LinearLR", "OneCycleLR", "SequentialLR"}
