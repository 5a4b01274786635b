"""``Optimizer``: the base class of every update rule, with parameter groups and saved state.

An optimizer holds the parameters it updates in *parameter groups*: dicts with a ``"params"``
list and the hyper-parameters for those parameters (``lr``, ``weight_decay``, ...); a group
that leaves one out takes the optimizer's default. Per parameter it keeps whatever its rule
needs to remember (a momentum buffer, Adam's moving averages) in ``optimizer.state[param]``.

``step()`` walks the groups under ``no_grad()`` and calls the rule, ``update(param, grad,
state, group)``, once for each parameter that has a gradient. The rule changes the parameter
with its in-place methods (``param.sub_(...)``), so the parameter stays the same object (a
model holds it) and its version counter counts the step. Subclasses write only ``update``.

``state_dict()`` has PyTorch's shape: ``{"state": {index: {...}}, "param_groups": [{...,
"params": [index, ...]}]}``, parameters numbered in group order. For a safetensors checkpoint,
``optimizer_state_to_arrays`` splits it into a flat dict of arrays and a JSON-able rest.
"""
from __future__ import annotations

import difflib
import numbers
from collections import defaultdict
from typing import Any, Callable, DefaultDict, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy

from minires import backend
from minires.autograd import enable_grad, no_grad
from minires.backend import Array
from minires.tensor import Tensor

#: What an optimizer accepts: parameters, or dicts that each hold a group of them.
ParamsLike = Union[Iterable[Tensor], Iterable[Dict[str, Any]]]

#: Keys a parameter group may hold besides the optimizer's own hyper-parameters: ``params``,
#: and ``initial_lr``, which a learning-rate scheduler reads when it resumes (``last_epoch >= 0``).
_EXTRA_GROUP_KEYS = ("params", "initial_lr")


class Optimizer:
    """Base class of the optimizers: parameter groups, per-parameter state, ``step``.

    ``params`` is an iterable of parameters (one group) or of dicts (one group each, e.g.
    ``[{"params": backbone, "lr": 1e-4}, {"params": head}]``); ``defaults`` names every
    hyper-parameter of the rule with the value a group gets when it leaves it out.
    """

    def __init__(self, params: ParamsLike, defaults: Dict[str, Any]) -> None:
        self.defaults: Dict[str, Any] = dict(defaults)
        self.param_groups: List[Dict[str, Any]] = []
        self.state: DefaultDict[Tensor, Dict[str, Any]] = defaultdict(dict)
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__} expects an iterable of parameters or of dicts, got a single "
                            f"Tensor; pass model.parameters() or [tensor]")
        if isinstance(params, Mapping):
            raise TypeError(f"{type(self).__name__} expects an iterable of parameters or of dicts, got one dict; "
                            f"pass a list of parameter groups, e.g. [{{'params': ..., 'lr': ...}}]")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list: there is nothing to optimize "
                             f"(did a generator such as model.parameters() get used up already?)")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines + [")"])

    # ------------------------------------------------------------------ parameter groups
    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a group of parameters, e.g. a layer unfrozen part-way through training.

        Keys the group leaves out take the optimizer's defaults. A parameter may belong to
        one group only.
        """
        if not isinstance(param_group, Mapping):
            raise TypeError(f"a parameter group is a dict with a 'params' entry, got {type(param_group).__name__}; "
                            f"pass either parameters only, or dicts only, e.g. [{{'params': model.parameters()}}]")
        if "params" not in param_group:
            raise ValueError(f"a parameter group needs a 'params' entry, this one has only {sorted(param_group)}; "
                             f"e.g. {{'params': model.fc.parameters(), 'lr': 0.01}}")
        unknown = [key for key in param_group if key not in self.defaults and key not in _EXTRA_GROUP_KEYS]
        if unknown:
            known = list(self.defaults) + list(_EXTRA_GROUP_KEYS)
            hints = [difflib.get_close_matches(key, known, n=1) for key in unknown]
            hint = "".join(f"; did you mean {close[0]!r} for {key!r}?" for key, close in zip(unknown, hints) if close)
            raise ValueError(f"unknown option(s) {unknown} in a parameter group of {type(self).__name__}, which "
                             f"knows {known}{hint}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("a parameter group's 'params' must be ordered (a list or a generator), not a set: a "
                            "set's order changes from run to run, and the saved state is matched by order")
        params = list(params)
        if not params:
            raise ValueError(f"parameter group {len(self.param_groups)} has an empty 'params' list; leave the group "
                             f"out, or check the filter that chose its parameters")
        seen: set = set()
        for param in params:
            if not isinstance(param, Tensor):
                raise TypeError(f"an optimizer updates Tensors (Parameters), but a group's 'params' holds a "
                                f"{type(param).__name__}")
            if not param.is_leaf:
                raise ValueError("an optimizer can only update leaf tensors (Parameters), not the result of an "
                                 "operation; wrap the values in nn.Parameter(...)")
            if id(param) in seen:
                raise ValueError(f"parameter group {len(self.param_groups)} holds the same parameter (shape "
                                 f"{param.shape}) twice; each parameter must appear once")
            seen.add(id(param))
        for index, group in enumerate(self.param_groups):
            if any(id(p) in seen for p in group["params"]):
                raise ValueError(f"some parameters of the new group are already in parameter group {index}; a "
                                 f"parameter may belong to one group only (split the parameters between groups)")
        group = {**self.defaults, **param_group, "params": params}
        self._check_group(group, len(self.param_groups))
        self.param_groups.append(group)

    def _check_group(self, group: Dict[str, Any], index: int) -> None:
        """Refuse hyper-parameters the rule cannot use; subclasses add their own checks."""
        for key in ("lr", "weight_decay"):
            if key in group and not group[key] >= 0:
                raise ValueError(f"{type(self).__name__}: {key} must be >= 0, got {group[key]} in parameter group "
                                 f"{index}")

    # ------------------------------------------------------------------ gradients and the step
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every gradient before the next backward pass (which would add to it).

        ``set_to_none=True`` sets ``.grad = None`` (no memory, and the next step skips a
        parameter whose gradient never came); ``False`` zeroes each gradient Tensor in place.
        """
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.zero_()

    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """Update every parameter that has a gradient, once; returns ``closure()``'s loss, if given.

        ``closure`` (optional, as in PyTorch) re-evaluates the model: it zeroes the gradients,
        computes the loss, calls ``loss.backward()`` and returns the loss.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for param in group["params"]:
                    if param.grad is None:
                        continue
                    grad = param.grad.data
                    if tuple(grad.shape) != param.shape:
                        raise RuntimeError(f"a parameter of shape {param.shape} has a gradient of shape "
                                           f"{tuple(grad.shape)}; a gradient must have its parameter's shape")
                    state = self.state.get(param, {})
                    self.update(param, grad, state, group)
                    if state:                        # only parameters whose rule remembers something
                        self.state[param] = state
        return loss

    def update(self, param: Tensor, grad: Array, state: Dict[str, Any], group: Dict[str, Any]) -> None:
        """The update rule for one parameter; each optimizer writes its own.

        ``grad`` is the gradient's array; ``state`` is this parameter's memory between steps
        (empty at the first step); ``group`` holds its hyper-parameters. Change ``param`` with
        its in-place methods (``param.sub_(direction, alpha=lr)``), never by rebinding it.
        """
        raise NotImplementedError(f"{type(self).__name__} has no update rule: define update(self, param, grad, "
                                  f"state, group) in the subclass")

    # ------------------------------------------------------------------ saving and resuming
    def state_dict(self) -> Dict[str, Any]:
        """The optimizer's state in PyTorch's shape, as a snapshot (arrays are copies).

        ``{"state": {index: {"momentum_buffer": array, ...}}, "param_groups": [{"lr": ...,
        "params": [index, ...]}, ...]}``: parameters are numbered 0, 1, ... in group order;
        only parameters with state appear under ``"state"``.
        """
        index_of: Dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {key: value for key, value in group.items() if key != "params"}
            packed["params"] = [index_of.setdefault(id(p), len(index_of)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for param, entry in self.state.items():
            if entry and id(param) in index_of:
                state[index_of[id(param)]] = {key: value.copy() if backend.is_array(value) else value
                                              for key, value in entry.items()}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Take up the state that ``state_dict()`` saved, to resume exactly where it stopped.

        The optimizer must have been built with the same parameters in the same groups (same
        counts, same shapes). Arrays are copied onto each parameter's device and dtype; the
        groups' hyper-parameters (the learning rate a scheduler set included) are restored.
        """
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"state", "param_groups"}:
            found = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
            raise ValueError(f"an optimizer state dict has the keys 'state' and 'param_groups', got {found}; "
                             f"pass what optimizer.state_dict() returned")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"the state dict has {len(saved_groups)} parameter group(s) but this "
                             f"{type(self).__name__} has {len(self.param_groups)}; build the optimizer with the "
                             f"same groups as the one that was saved")
        param_of: Dict[int, Tensor] = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"parameter group {i} of the state dict has {len(saved['params'])} parameter(s) "
                                 f"but this optimizer's group {i} has {len(group['params'])}; was it saved for "
                                 f"another model, or with other groups?")
            missing = [key for key in self.defaults if key not in saved]
            if missing:
                raise ValueError(f"parameter group {i} of the state dict has no {missing}: it was saved by another "
                                 f"kind of optimizer, not {type(self).__name__}")
            param_of.update(zip(saved["params"], group["params"]))
        state: DefaultDict[Tensor, Dict[str, Any]] = defaultdict(dict)
        for index, entry in state_dict["state"].items():
            if index not in param_of:
                raise ValueError(f"the state dict has state for parameter {index!r}, which none of its groups "
                                 f"holds; parameters are numbered 0..{len(param_of) - 1}")
            param = param_of[index]
            state[param] = {key: _state_value_for(param, key, value) for key, value in entry.items()}
        groups = []
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            restored = {key: value for key, value in saved.items() if key != "params"}
            restored["params"] = group["params"]
            self._check_group(restored, i)
            groups.append(restored)
        self.state, self.param_groups = state, groups


def _state_value_for(param: Tensor, key: str, value: Any) -> Any:
    """A saved state entry, ready for ``param``: an array is copied to its device and
    floating dtype (and must have its shape); a number is kept as it is."""
    if isinstance(value, Tensor):
        value = value.data
    if not backend.is_array(value):
        return value
    if tuple(value.shape) != param.shape:
        raise ValueError(f"the saved state {key!r} has shape {tuple(value.shape)} but its parameter has shape "
                         f"{param.shape}; the state dict was saved for another model")
    value = backend.to_device(value, param.device)
    if numpy.issubdtype(value.dtype, numpy.floating):
        return value.astype(param.dtype, copy=True)
    return value.copy()


# ---------------------------------------------------------------------------- checkpoints

def optimizer_state_to_arrays(state_dict: Mapping[str, Any]) -> Tuple[Dict[str, Array], Dict[str, Any]]:
    """Split an optimizer's ``state_dict()`` into ``(arrays, meta)`` for a safetensors checkpoint.

    ``arrays`` is a flat dict ``{"state.<index>.<name>": array}`` (for ``minires.save``);
    ``meta`` holds everything else as plain JSON values (for ``json.dump``): the parameter
    groups, and each parameter's numbers (Adam's ``step``) and array names.
    ``optimizer_state_from_arrays(arrays, meta)`` puts them back together::

        arrays, meta = optimizer_state_to_arrays(optimizer.state_dict())
        minires.save(arrays, "optimizer.safetensors")
        ...
        optimizer.load_state_dict(optimizer_state_from_arrays(minires.load("optimizer.safetensors"), meta))
    """
    arrays: Dict[str, Array] = {}
    state_meta: Dict[str, Any] = {}
    for index, entry in state_dict["state"].items():
        numbers_, names = {}, []
        for name, value in entry.items():
            if isinstance(value, Tensor):
                value = value.data
            if backend.is_array(value):
                arrays[f"state.{index}.{name}"] = value
                names.append(name)
            else:
                numbers_[name] = _plain(value, f"state[{index}][{name!r}]")
        state_meta[str(index)] = {"numbers": numbers_, "arrays": names}
    groups = [{key: _plain(value, f"param_groups[{i}][{key!r}]") for key, value in group.items()}
              for i, group in enumerate(state_dict["param_groups"])]
    return arrays, {"state": state_meta, "param_groups": groups}


def optimizer_state_from_arrays(arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> Dict[str, Any]:
    """The inverse of ``optimizer_state_to_arrays``: a state dict for ``load_state_dict``.

    ``arrays`` may hold arrays or Tensors (``minires.load`` gives Tensors). JSON has no
    tuples, so list-valued hyper-parameters (``betas``) come back as tuples.
    """
    state: Dict[int, Dict[str, Any]] = {}
    for index, entry in meta["state"].items():
        values = dict(entry["numbers"])
        for name in entry["arrays"]:
            key = f"state.{index}.{name}"
            if key not in arrays:
                raise KeyError(f"the optimizer checkpoint has no array {key!r}; were the arrays and the meta saved "
                               f"together?")
            value = arrays[key]
            values[name] = value.data if isinstance(value, Tensor) else value
        state[int(index)] = values
    groups = [{key: tuple(value) if isinstance(value, list) and key != "params" else value
               for key, value in group.items()} for group in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _plain(value: Any, where: str) -> Any:
    """``value`` as a plain JSON value (bool, int, float, str, None or a list of them)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item, where) for item in value]
    raise TypeError(f"the optimizer state {where} is a {type(value).__name__}, which a checkpoint's JSON cannot "
                    f"hold; keep state as arrays or numbers")
