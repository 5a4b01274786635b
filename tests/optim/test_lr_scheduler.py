"""Learning-rate schedules: their formulas by hand, resuming from a (JSON) state dict, every error."""
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minires
from minires import nn, optim
from minires.optim import lr_scheduler as L


def sgd(*lrs, **kwargs):
    groups = [{"params": [nn.Parameter(minires.zeros(2))], "lr": lr} for lr in lrs]
    return optim.SGD(groups, **kwargs)


def lrs_over(optimizer, scheduler, steps):
    """The first group's lr after construction and after each of ``steps`` steps."""
    out = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        out.append(optimizer.param_groups[0]["lr"])
    return out


def test_construction_records_initial_lr_and_takes_step_zero():
    optimizer = sgd(0.1, 0.01)
    scheduler = L.StepLR(optimizer, step_size=2)
    assert [g["initial_lr"] for g in optimizer.param_groups] == [0.1, 0.01] == scheduler.base_lrs
    assert scheduler.last_epoch == 0 and scheduler.get_last_lr() == [0.1, 0.01]
    scheduler.get_last_lr().append(5)                      # a copy
    assert scheduler.get_last_lr() == [0.1, 0.01]


def test_step_and_multistep_by_hand():
    optimizer = sgd(1.0)
    got = lrs_over(optimizer, L.StepLR(optimizer, step_size=3, gamma=0.5), 10)
    assert got == pytest.approx([0.5 ** (t // 3) for t in range(11)], rel=1e-15)
    optimizer = sgd(1.0)
    got = lrs_over(optimizer, L.MultiStepLR(optimizer, milestones=[2, 5, 5], gamma=0.1), 7)
    assert got == pytest.approx([1, 1, 0.1, 0.1, 0.1, 1e-3, 1e-3, 1e-3], rel=1e-14)


def test_linear_warmup_by_hand():
    optimizer = sgd(0.2)
    got = lrs_over(optimizer, L.LinearLR(optimizer, start_factor=0.25, end_factor=1.0, total_iters=3), 6)
    factors = [0.25 + 0.75 * min(t, 3) / 3 for t in range(7)]
    assert got == pytest.approx([0.2 * f for f in factors], rel=1e-14)


@given(T_max=st.integers(1, 60), eta_min=st.sampled_from([0.0, 1e-4, 0.01]), base=st.sampled_from([0.1, 1.0, 3.0]))
def test_cosine_recursion_agrees_with_the_closed_form(T_max, eta_min, base):
    optimizer = sgd(base)
    got = lrs_over(optimizer, L.CosineAnnealingLR(optimizer, T_max=T_max, eta_min=eta_min), 2 * T_max + 3)
    closed = [eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / T_max)) / 2 for t in range(2 * T_max + 4)]
    np.testing.assert_allclose(got, closed, rtol=1e-9, atol=1e-12 * base)
    assert got[T_max] == pytest.approx(eta_min, abs=1e-12 * base)


def test_one_cycle_landmarks_and_momentum():
    optimizer = sgd(0.5, momentum=0.9)
    scheduler = L.OneCycleLR(optimizer, max_lr=1.0, total_steps=100, pct_start=0.3, div_factor=20.0,
                             final_div_factor=50.0)
    lrs, momenta = [optimizer.param_groups[0]["lr"]], [optimizer.param_groups[0]["momentum"]]
    for _ in range(100):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
    assert lrs[0] == pytest.approx(1.0 / 20) and momenta[0] == pytest.approx(0.95)
    assert lrs[29] == pytest.approx(1.0) and momenta[29] == pytest.approx(0.85)      # peak at pct_start * T - 1
    assert lrs[99] == pytest.approx(1.0 / 20 / 50) and momenta[99] == pytest.approx(0.95)
    assert max(lrs) == lrs[29]
    with pytest.raises(ValueError, match="stepped 101 times, but its schedule has total_steps=100"):
        scheduler.step()


def test_one_cycle_drives_adams_beta1_and_keeps_beta2():
    optimizer = optim.Adam([nn.Parameter(minires.zeros(2))], betas=(0.9, 0.98))
    scheduler = L.OneCycleLR(optimizer, max_lr=0.01, total_steps=10, base_momentum=0.8, max_momentum=0.9)
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.98)
    optimizer.step()
    scheduler.step()
    beta1, beta2 = optimizer.param_groups[0]["betas"]
    assert 0.8 < beta1 < 0.9 and beta2 == 0.98


def test_sequential_warmup_then_cosine_by_hand():
    optimizer = sgd(0.1)
    warmup = L.LinearLR(optimizer, start_factor=0.1, total_iters=4)
    cosine = L.CosineAnnealingLR(optimizer, T_max=10)
    got = lrs_over(optimizer, L.SequentialLR(optimizer, [warmup, cosine], milestones=[4]), 14)
    expected = [0.1 * (0.1 + 0.9 * t / 4) for t in range(4)]
    expected += [0.1 * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(11)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


#: One scheduler of every kind, to be built on a given optimizer.
SCHEDULES = [
        lambda o: L.StepLR(o, step_size=3, gamma=0.5),
        lambda o: L.MultiStepLR(o, milestones=[2, 6], gamma=0.3),
        lambda o: L.LinearLR(o, start_factor=0.2, total_iters=5),
        lambda o: L.CosineAnnealingLR(o, T_max=7, eta_min=1e-3),
        lambda o: L.OneCycleLR(o, max_lr=[0.5, 0.05], total_steps=20, three_phase=True),
        lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.1, total_iters=3), L.CosineAnnealingLR(o, T_max=9)],
                                 milestones=[3]),
]


@pytest.mark.parametrize("index", range(6), ids=["step", "multistep", "linear", "cosine", "onecycle", "sequential"])
def test_resuming_from_a_json_state_dict_continues_exactly(index):
    make = SCHEDULES[index]
    optimizer = sgd(0.1, 0.02, momentum=0.9)
    scheduler = make(optimizer)
    lrs_over(optimizer, scheduler, 6)
    saved_optimizer = optimizer.state_dict()
    saved = json.loads(json.dumps(scheduler.state_dict()))                 # what a checkpoint keeps
    rest = lrs_over(optimizer, scheduler, 8)

    optimizer2 = sgd(0.1, 0.02, momentum=0.9)
    scheduler2 = make(optimizer2)                   # PyTorch's order: build the schedule, then load both
    optimizer2.load_state_dict(saved_optimizer)
    scheduler2.load_state_dict(saved)
    assert scheduler2.last_epoch == 6
    assert lrs_over(optimizer2, scheduler2, 8) == rest
    assert [g["momentum"] for g in optimizer2.param_groups] == [g["momentum"] for g in optimizer.param_groups]


def test_resuming_with_last_epoch_needs_initial_lr():
    with pytest.raises(KeyError, match="needs 'initial_lr' in every parameter group, and group 0 has none"):
        L.StepLR(sgd(0.1), step_size=2, last_epoch=4)
    optimizer = optim.SGD([{"params": [nn.Parameter(minires.zeros(2))], "lr": 0.025, "initial_lr": 0.1}])
    scheduler = L.StepLR(optimizer, step_size=2, gamma=0.5, last_epoch=4)
    assert scheduler.last_epoch == 5 and optimizer.param_groups[0]["lr"] == 0.025
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.0125                          # step 6: one more halving


def test_a_state_dict_of_another_kind_is_refused():
    optimizer = sgd(0.1)
    with pytest.raises(ValueError, match="does not fit a CosineAnnealingLR: it lacks \\['T_max', 'eta_min'\\]"):
        L.CosineAnnealingLR(optimizer, T_max=5).load_state_dict(L.StepLR(sgd(0.1), step_size=2).state_dict())
    sequential = L.SequentialLR(optimizer, [L.StepLR(optimizer, 2), L.StepLR(optimizer, 3)], milestones=[4])
    with pytest.raises(ValueError, match="does not fit a SequentialLR of 2 schedulers"):
        sequential.load_state_dict({"last_epoch": 3})


class Plain(optim.Optimizer):
    """An optimizer with neither momentum nor betas."""

    def __init__(self, params):
        super().__init__(params, dict(lr=0.1))

    def update(self, param, grad, state, group):
        param.sub_(grad, alpha=group["lr"])


@pytest.mark.parametrize("make, error, match", [
    (lambda o: L.StepLR(o, step_size=0), ValueError, "step_size must be a positive integer, got 0"),
    (lambda o: L.StepLR(o, step_size=2.5), ValueError, "positive integer"),
    (lambda o: L.StepLR("sgd", step_size=2), TypeError, "wraps a minires.optim optimizer, got str"),
    (lambda o: L.MultiStepLR(o, milestones=[5, 2]), ValueError, "increasing order"),
    (lambda o: L.LinearLR(o, start_factor=0.0), ValueError, r"start_factor must be in \(0, 1\]"),
    (lambda o: L.LinearLR(o, end_factor=1.5), ValueError, r"end_factor must be in \[0, 1\]"),
    (lambda o: L.LinearLR(o, total_iters=0), ValueError, "total_iters must be a positive integer"),
    (lambda o: L.CosineAnnealingLR(o, T_max=0), ValueError, "T_max must be a positive integer"),
    (lambda o: L.OneCycleLR(o, max_lr=0.1), ValueError, "needs total_steps, or both epochs and steps_per_epoch"),
    (lambda o: L.OneCycleLR(o, max_lr=0.1, total_steps=-3), ValueError, "total_steps must be a positive integer"),
    (lambda o: L.OneCycleLR(o, max_lr=0.1, epochs=2, steps_per_epoch=0), ValueError, "steps_per_epoch"),
    (lambda o: L.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1.5), ValueError, r"fraction in \[0, 1\]"),
    (lambda o: L.OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="exp"), ValueError, "'cos' or 'linear'"),
    (lambda o: L.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=0.1), ValueError, "a phase of zero steps"),
    (lambda o: L.OneCycleLR(o, max_lr=0.1, total_steps=2, pct_start=1.0), ValueError, "a phase of zero steps"),
    (lambda o: L.OneCycleLR(o, max_lr=[0.1, 0.2, 0.3], total_steps=10), ValueError,
     "max_lr has 3 values but the optimizer has 2 parameter groups"),
    (lambda o: L.OneCycleLR(Plain([nn.Parameter(minires.zeros(1))]), max_lr=0.1, total_steps=10), ValueError,
     "needs an optimizer with momentum or betas, and Plain has neither"),
    (lambda o: L.SequentialLR(o, [], milestones=[]), ValueError, "at least one scheduler"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 2), L.StepLR(o, 3)], milestones=[]), ValueError,
     "one milestone fewer than schedulers"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 2), L.StepLR(sgd(0.1), 3)], milestones=[3]), ValueError,
     r"schedulers\[1\] \(StepLR\) wraps another optimizer"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 2), "cosine"], milestones=[3]), TypeError, "not a scheduler"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 2), L.StepLR(o, 2), L.StepLR(o, 2)], milestones=[5, 3]), ValueError,
     "milestones must be in increasing order"),
])
def test_every_misuse_is_a_clear_error(make, error, match):
    with pytest.raises(error, match=match):
        make(sgd(0.1, 0.01, momentum=0.9))


def test_one_cycle_can_leave_momentum_alone():
    optimizer = sgd(0.1, momentum=0.9)
    L.OneCycleLR(optimizer, max_lr=0.1, total_steps=10, cycle_momentum=False)
    assert optimizer.param_groups[0]["momentum"] == 0.9
    plain = Plain([nn.Parameter(minires.zeros(1))])
    L.OneCycleLR(plain, max_lr=0.1, total_steps=10, cycle_momentum=False)     # no momentum needed then
    assert plain.param_groups[0]["lr"] == pytest.approx(0.1 / 25)
