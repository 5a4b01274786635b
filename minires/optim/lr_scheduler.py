"""Learning-rate schedules: each ``step()`` sets every parameter group's ``lr`` for the next step.

A scheduler wraps an optimizer. Building one records each group's starting rate as
``group["initial_lr"]`` (the base rate, $\\eta_0$) and sets the rate for step 0; after each
optimizer step (or each epoch: it is your choice of unit), ``scheduler.step()`` moves to the
next value. The formulas and the numbers are PyTorch's (``torch.optim.lr_scheduler``), down to
the recursive form of the cosine schedule. ``state_dict()`` is plain JSON values, so a
checkpoint can hold it as text.

    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = CosineAnnealingLR(optimizer, T_max=epochs)
    for epoch in range(epochs):
        train_one_epoch(model, optimizer)        # optimizer.step() for each batch
        scheduler.step()
"""
from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any, Dict, List, Optional, Sequence, Union

from minires.optim.optimizer import Optimizer

#: One value for every parameter group, or a list with one value per group.
FloatOrList = Union[float, Sequence[float]]


class LRScheduler:
    """Base class: subclasses write ``get_lr()``, the next rate of each group from the current one.

    ``last_epoch`` counts the steps taken (0 right after construction); ``get_last_lr()`` gives
    the rates the last step set. To resume a run, build the scheduler first (building one sets
    the groups' ``lr``), then load the optimizer's state dict and the scheduler's, as in PyTorch.
    """

    _is_initial = False       # True while the constructor sets the rate for step 0

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"a learning-rate scheduler wraps a minires.optim optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(f"resuming a schedule (last_epoch={last_epoch}) needs 'initial_lr' in every "
                               f"parameter group, and group {i} has none: load the optimizer's state dict first, "
                               f"or start the schedule with last_epoch=-1")
        self.base_lrs: List[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        """Take the constructor's step: ``last_epoch`` becomes 0 (or moves one on, when resuming)."""
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> List[float]:
        """The rate of each group at step ``last_epoch`` (called by ``step``, after it counts the step)."""
        raise NotImplementedError(f"{type(self).__name__} must define get_lr()")

    def step(self) -> None:
        """Move the schedule one step on and set each group's ``lr``; call it after ``optimizer.step()``."""
        self.last_epoch += 1
        self._set_lrs(self.get_lr())

    def _jump_to(self, epoch: int) -> None:
        """Set the rates for step ``epoch`` directly, from the closed form where there is one
        (how ``SequentialLR`` starts the next schedule at its milestone)."""
        self.last_epoch = epoch
        closed_form = getattr(self, "_closed_form_lr", None)
        self._set_lrs(closed_form() if closed_form is not None else self.get_lr())

    def _set_lrs(self, lrs: Sequence[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _current_lrs(self) -> List[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> List[float]:
        """The rates of the groups, as the last ``step()`` (or the constructor) set them."""
        return list(self._last_lr)

    def state_dict(self) -> Dict[str, Any]:
        """Everything the schedule knows except the optimizer: plain numbers, lists and strings."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Resume from ``state_dict()``, saved by a scheduler of the same kind."""
        expected, found = set(self.state_dict()), set(state_dict)
        if expected != found:
            raise ValueError(f"this state dict does not fit a {type(self).__name__}: it lacks "
                             f"{sorted(expected - found)} and has unexpected {sorted(found - expected)}; was it "
                             f"saved by another kind of scheduler?")
        self.__dict__.update(state_dict)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class StepLR(LRScheduler):
    r"""Multiply the rate by ``gamma`` every ``step_size`` steps: $\eta_t = \eta_0 \gamma^{\lfloor t / s \rfloor}$."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = _positive_int("StepLR step_size", step_size)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _closed_form_lr(self) -> List[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    r"""Multiply the rate by ``gamma`` at each milestone: $\eta_t = \eta_0 \gamma^{\#\{m_i \le t\}}$.

    A milestone listed twice multiplies by $\gamma^2$ there, as in PyTorch.
    """

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        milestones = list(milestones)
        if any(isinstance(m, bool) or not isinstance(m, int) for m in milestones) or milestones != sorted(milestones):
            raise ValueError(f"MultiStepLR milestones must be integers in increasing order, got {milestones}")
        self.milestones = milestones
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        times = self.milestones.count(self.last_epoch)
        if times == 0:
            return self._current_lrs()
        return [lr * self.gamma ** times for lr in self._current_lrs()]

    def _closed_form_lr(self) -> List[float]:
        return [base * self.gamma ** bisect_right(self.milestones, self.last_epoch) for base in self.base_lrs]


class LinearLR(LRScheduler):
    r"""Scale the rate by a factor that moves linearly from ``start_factor`` to ``end_factor``
    over ``total_iters`` steps, then stays (a warm-up, with the defaults' shape):

    $\eta_t = \eta_0 \left(f_s + (f_e - f_s) \frac{\min(t, T)}{T}\right)$.

    Each step multiplies the current rate by the ratio of consecutive factors, as PyTorch does:
    $\eta_t = \eta_{t-1} \left(1 + \frac{f_e - f_s}{T f_s + (t - 1)(f_e - f_s)}\right)$ for $1 \le t \le T$.
    """

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        if not 0 < start_factor <= 1:
            raise ValueError(f"LinearLR start_factor must be in (0, 1], got {start_factor}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR end_factor must be in [0, 1], got {end_factor}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = _positive_int("LinearLR total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._current_lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        change = self.end_factor - self.start_factor
        ratio = 1.0 + change / (self.total_iters * self.start_factor + (self.last_epoch - 1) * change)
        return [lr * ratio for lr in self._current_lrs()]

    def _closed_form_lr(self) -> List[float]:
        fraction = min(self.total_iters, self.last_epoch) / self.total_iters
        return [base * (self.start_factor + (self.end_factor - self.start_factor) * fraction)
                for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""Anneal the rate along half a cosine from $\eta_0$ down to ``eta_min`` over ``T_max`` steps:

    $\eta_t = \eta_{min} + \frac{1}{2}(\eta_0 - \eta_{min})\left(1 + \cos\frac{t \pi}{T_{max}}\right)$.

    Like PyTorch, each step applies the recursive form, which follows any change made to the
    rate from outside (and, past ``T_max``, climbs back up along the cosine):
    $\eta_t = \eta_{min} + (\eta_{t-1} - \eta_{min}) \frac{1 + \cos(t \pi / T_{max})}{1 + \cos((t - 1) \pi / T_{max})}$,
    except at $t = T_{max} + 1 \pmod{2 T_{max}}$, where the denominator is 0 and the step is
    $\eta_t = \eta_{t-1} + \frac{1}{2}(\eta_0 - \eta_{min})(1 - \cos(\pi / T_{max}))$.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = _positive_int("CosineAnnealingLR T_max", T_max)
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current_lrs()
        if (t - 1 - T) % (2 * T) == 0:
            return [lr + (base - eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for base, lr in zip(self.base_lrs, self._current_lrs())]
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return [ratio * (lr - eta_min) + eta_min for lr in self._current_lrs()]

    def _closed_form_lr(self) -> List[float]:
        return [self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after another, switching at each of ``milestones`` (in steps).

    Typical: ``LinearLR`` warm-up for ``w`` steps, then ``CosineAnnealingLR`` with
    ``milestones=[w]``. At a milestone the next schedule starts from its own step 0 (its base
    rate, from the closed form); build every scheduler on the same optimizer first.
    """

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler], milestones: Sequence[int],
                 last_epoch: int = -1) -> None:
        schedulers, milestones = list(schedulers), list(milestones)
        if not schedulers:
            raise ValueError("SequentialLR needs at least one scheduler, got none")
        for i, scheduler in enumerate(schedulers):
            if not isinstance(scheduler, LRScheduler):
                raise TypeError(f"SequentialLR schedulers[{i}] is a {type(scheduler).__name__}, not a scheduler")
            if scheduler.optimizer is not optimizer:
                raise ValueError(f"SequentialLR schedulers[{i}] ({type(scheduler).__name__}) wraps another optimizer; "
                                 f"build every scheduler on the optimizer given to SequentialLR")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR needs one milestone fewer than schedulers: got {len(schedulers)} "
                             f"scheduler(s) and {len(milestones)} milestone(s)")
        if milestones != sorted(milestones):
            raise ValueError(f"SequentialLR milestones must be in increasing order, got {milestones}")
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:            # undo what building the schedulers did ...
            group["lr"] = group["initial_lr"]
        for scheduler in schedulers:
            _undo_step(scheduler)
        first = schedulers[bisect_right(milestones, 0)]  # ... and start the one that runs at step 0
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def step(self) -> None:
        self.last_epoch += 1
        index = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            scheduler._jump_to(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> Dict[str, Any]:
        state = {key: value for key, value in self.__dict__.items() if key not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        state = dict(state_dict)
        inner = state.pop("_schedulers", None)
        if inner is None or len(inner) != len(self._schedulers):
            raise ValueError(f"this state dict does not fit a SequentialLR of {len(self._schedulers)} schedulers; "
                             f"build it with the same schedulers as the one that was saved")
        for scheduler, saved in zip(self._schedulers, inner):
            scheduler.load_state_dict(saved)
        self.__dict__.update(state)


def _undo_step(scheduler: LRScheduler) -> None:
    """Take back the step a scheduler's constructor counted (recursively, for nested schedules)."""
    if isinstance(scheduler, SequentialLR):
        for inner in scheduler._schedulers:
            _undo_step(inner)
    else:
        scheduler.last_epoch -= 1


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy (Smith & Topin, 2017): up from ``max_lr / div_factor`` to ``max_lr``,
    then down to ``initial_lr / final_div_factor``, over ``total_steps`` steps (one per batch).

    The first phase ends at step $p T - 1$ ($p$ = ``pct_start``, $T$ = ``total_steps``), the
    second at $T - 1$. Within a phase from $a$ to $b$ at fraction $x$ of its steps, the rate is
    $b + \frac{1}{2}(a - b)(1 + \cos \pi x)$ (``anneal_strategy="cos"``) or $a + (b - a) x$
    (``"linear"``). ``three_phase=True`` goes back down to the initial rate by step $2 p T - 2$
    and only then to the minimum. With ``cycle_momentum`` the momentum (SGD) or $\beta_1$
    (Adam) moves the opposite way, between ``max_momentum`` and ``base_momentum``.
    ``max_lr`` and the momenta may be lists, one value per parameter group.
    """

    def __init__(self, optimizer: Optimizer, max_lr: FloatOrList, total_steps: Optional[int] = None,
                 epochs: Optional[int] = None, steps_per_epoch: Optional[int] = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: FloatOrList = 0.85, max_momentum: FloatOrList = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"OneCycleLR wraps a minires.optim optimizer, got {type(optimizer).__name__}")
        if total_steps is not None:
            self.total_steps = _positive_int("OneCycleLR total_steps", total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (_positive_int("OneCycleLR epochs", epochs)
                                * _positive_int("OneCycleLR steps_per_epoch", steps_per_epoch))
        else:
            raise ValueError("OneCycleLR needs total_steps, or both epochs and steps_per_epoch")
        if not 0 <= pct_start <= 1:
            raise ValueError(f"OneCycleLR pct_start is a fraction in [0, 1], got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        up_end = float(pct_start * self.total_steps) - 1
        # Each phase: (last step, group key of the start rate, of the end rate, of the start and end momentum)
        if three_phase:
            self.phases = [[up_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                           [float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr", "base_momentum",
                            "max_momentum"],
                           [self.total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"]]
        else:
            self.phases = [[up_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                           [self.total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"]]
        if up_end == 0 or self.phases[-1][0] == self.phases[-2][0]:       # a phase that would divide by 0
            raise ValueError(f"OneCycleLR with total_steps={self.total_steps} and pct_start={pct_start} has a phase "
                             f"of zero steps; give it more steps, or another pct_start")
        groups = optimizer.param_groups
        if last_epoch == -1:
            for group, top in zip(groups, _per_group("max_lr", max_lr, optimizer)):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(f"OneCycleLR cycle_momentum=True needs an optimizer with momentum or betas, and "
                                 f"{type(optimizer).__name__} has neither; pass cycle_momentum=False")
            self.use_beta1 = "betas" in optimizer.defaults
            if last_epoch == -1:
                for group, top, low in zip(groups, _per_group("max_momentum", max_momentum, optimizer),
                                           _per_group("base_momentum", base_momentum, optimizer)):
                    self._set_momentum(group, top)
                    group["max_momentum"] = top
                    group["base_momentum"] = low
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, fraction: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)
        return (end - start) * fraction + start

    def _set_momentum(self, group: Dict[str, Any], momentum: float) -> None:
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum

    def get_lr(self) -> List[float]:
        t = self.last_epoch
        if t > self.total_steps:
            raise ValueError(f"OneCycleLR was stepped {t} times, but its schedule has total_steps="
                             f"{self.total_steps}; give it the full number of steps (epochs * batches per epoch)")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr_from, lr_to, momentum_from, momentum_to) in enumerate(self.phases):
                if t <= end or i == len(self.phases) - 1:
                    fraction = (t - start) / (end - start)
                    lrs.append(self._anneal(group[lr_from], group[lr_to], fraction))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[momentum_from], group[momentum_to], fraction))
                    break
                start = end
        return lrs


def _per_group(name: str, value: FloatOrList, optimizer: Optimizer) -> List[float]:
    """One value per parameter group: a list is checked against the number of groups."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(f"{name} has {len(value)} values but the optimizer has {len(optimizer.param_groups)} "
                             f"parameter groups; give one value per group, or a single number")
        return list(value)
    return [value] * len(optimizer.param_groups)

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "LinearLR", "CosineAnnealingLR", "SequentialLR", "OneCycleLR"]
