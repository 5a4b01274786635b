"""``Module``: the base class of every layer and every model.

A Module owns three kinds of state, each registered by plain attribute assignment in
``__init__`` and kept in an ordered dict, in the order it was assigned:

- parameters (``self.weight = Parameter(...)``): what the optimiser learns;
- buffers (``self.register_buffer("running_mean", ...)``): state that is saved but not
  learned, such as batch norm's running statistics;
- submodules (``self.conv1 = Conv2d(...)``): the tree that a model is made of.

Registered state is also an ordinary attribute, so ``model.conv1.weight`` is a plain
attribute read, and a typo is an ordinary ``AttributeError``.

``state_dict()`` walks that tree in PyTorch's order (per module: its parameters, then its
buffers, then each child in turn), so the keys are the dotted attribute paths
(``layer1.0.bn1.running_var``) and match torchvision's key for key.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Callable, Iterator, NamedTuple, Optional, Set, Tuple, Union

import numpy

from minires import backend
from minires.backend import DeviceLike
from minires.nn.parameter import DTypeLike, Parameter
from minires.nn.state import check_state_dict, copy_state_dict
from minires.tensor import Tensor


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns: the keys the model wanted but did not get, and the
    keys the state dict had but the model has no place for."""

    missing_keys: list
    unexpected_keys: list

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"


class Module:
    """Base class of layers and models: subclass it, register state in ``__init__``, and
    write ``forward``. Call the module (``model(x)``), not ``forward``, to run it."""

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define forward(self, ...) "
                                  f"in the subclass to say what the module computes")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        ready = "_parameters" in self.__dict__                  # False until Module.__init__ has run
        if isinstance(value, (Parameter, Module)):
            if not ready:
                raise AttributeError(f"cannot assign {type(value).__name__} {name!r} before Module.__init__() "
                                     f"was called; call super().__init__() first in {type(self).__name__}.__init__")
            if not self._is_registered(name):
                self.__dict__.pop(name, None)                   # a plain attribute gives way
            if isinstance(value, Parameter):
                self.register_parameter(name, value)
            else:
                self.add_module(name, value)
        elif ready and name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} of "
                                f"{type(self).__name__}: a Parameter or None is expected; "
                                f"wrap it with nn.Parameter(...)")
            self.register_parameter(name, None)
        elif ready and name in self._buffers:
            self.register_buffer(name, value, persistent=name not in self._non_persistent_buffers)
        elif ready and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as submodule {name!r} of "
                                f"{type(self).__name__}: a Module or None is expected")
            self.add_module(name, None)
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent_buffers.discard(name)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        """Register ``param`` (or None, for an absent optional one such as a bias) as ``name``."""
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot register {type(param).__name__} as parameter {name!r}: a Parameter "
                            f"or None is expected; wrap it with nn.Parameter(...)")
        self._forget(name, keep=self._parameters)
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name: str, tensor: Optional[Tensor], persistent: bool = True) -> None:
        """Register ``tensor`` as state that is not learned (``persistent=False``: not saved either)."""
        self._check_name(name, "buffer")
        if tensor is not None and (not isinstance(tensor, Tensor) or isinstance(tensor, Parameter)):
            raise TypeError(f"cannot register {type(tensor).__name__} as buffer {name!r}: a Tensor (not a "
                            f"Parameter) or None is expected; build one with minires.tensor(...)")
        self._forget(name, keep=self._buffers)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module: Optional["Module"]) -> None:
        """Register ``module`` (or None) as the child ``name``."""
        self._check_name(name, "submodule")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"cannot add {type(module).__name__} as submodule {name!r}: a Module or None "
                            f"is expected")
        self._forget(name, keep=self._modules)
        self._modules[name] = module
        object.__setattr__(self, name, module)

    def _check_name(self, name: Any, kind: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot register the {kind} {name!r} before Module.__init__() was called; "
                                 f"call super().__init__() first in {type(self).__name__}.__init__")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"a {kind} name must be a non-empty string without '.', got {name!r}")
        if hasattr(self, name) and not self._is_registered(name):
            raise KeyError(f"cannot register the {kind} {name!r}: {type(self).__name__} already has an "
                           f"attribute of that name")

    def _is_registered(self, name: str) -> bool:
        return name in self._parameters or name in self._buffers or name in self._modules

    def _forget(self, name: str, keep: dict) -> None:
        """Drop ``name`` from every registry but ``keep`` (where re-assigning keeps its place in the order)."""
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not keep:
                registry.pop(name, None)
        self._non_persistent_buffers.discard(name)

    # ------------------------------------------------------------------ traversal
    def named_modules(self, memo: Optional[Set[int]] = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[Tuple[str, "Module"]]:
        """This module and every descendant, depth first, each as (dotted name, module); a module
        reachable along two paths comes once (at its first name) unless ``remove_duplicate=False``."""
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        """The direct children, each once, as (name, module)."""
        seen: set = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator["Module"]:
        for _, child in self.named_children():
            yield child

    def _named_members(self, registry: str, prefix: str, recurse: bool,
                       remove_duplicate: bool) -> Iterator[Tuple[str, Tensor]]:
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        seen: set = set()
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[Tuple[str, Parameter]]:
        """(dotted name, parameter) in registration order; a shared parameter comes once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[Tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def apply(self, fn: Callable[["Module"], Any]) -> "Module":
        """Call ``fn`` on every child (recursively), then on this module; e.g. to initialise weights."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode: bool = True) -> "Module":
        """Training mode (``mode=True``) or evaluation mode, for this module and all below it.

        It matters to batch norm (batch statistics vs running statistics). ``no_grad()`` does
        NOT change it: evaluation mode is chosen here and only here.
        """
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) expects a bool, got {type(mode).__name__}")
        object.__setattr__(self, "training", mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Turn gradients on or off for every parameter (``False`` freezes them)."""
        for param in self.parameters():
            param.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient (``.grad = None``; or zero it with ``set_to_none=False``)."""
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.zero_()

    # ------------------------------------------------------------------ devices and dtypes
    def to(self, target: Union[DeviceLike, DTypeLike] = None, *, device: DeviceLike = None,
           dtype: DTypeLike = None) -> "Module":
        """Move parameters and buffers to a device (``"cuda"``) and/or floating dtype (``"float64"``).

        This happens IN PLACE: each Parameter stays the same object (only its ``.data`` and
        ``.grad`` change), so an optimiser built before the move still holds the right ones.
        Integer buffers (``num_batches_tracked``) keep their dtype. Returns the module.
        """
        if target is not None:
            if isinstance(target, str) and (target == "cpu" or target.startswith("cuda")):
                device = target
            elif isinstance(target, str) and not _names_a_dtype(target):
                raise ValueError(f"Module.to() got {target!r}, which is neither a device nor a dtype; the devices "
                                 f"here are {', '.join(backend.available_devices())} ('cuda' is the current GPU), "
                                 f"the dtypes float32 and float64")
            else:
                dtype = target
        if dtype is not None:
            dtype = numpy.dtype(dtype)
            if not numpy.issubdtype(dtype, numpy.floating):
                raise TypeError(f"Module.to() converts floating-point state only; got dtype {dtype}. "
                                f"Use minires.float32 or minires.float64")
        if device is not None:
            device = backend.normalize_device(device)

        def convert(array: Any) -> Any:
            if array is None:
                return None
            if dtype is not None and numpy.issubdtype(array.dtype, numpy.floating) and array.dtype != dtype:
                array = array.astype(dtype)
            return array if device is None else backend.to_device(array, device)

        for tensor in list(self.parameters()) + list(self.buffers()):
            tensor.data = convert(tensor.data)
            if tensor.grad is not None:
                tensor.grad = Tensor(convert(tensor.grad.data))
        return self

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self, index: Optional[int] = None) -> "Module":
        return self.to("cuda" if index is None else f"cuda:{index}")

    def float(self) -> "Module":
        return self.to(numpy.float32)

    def double(self) -> "Module":
        return self.to(numpy.float64)

    # ------------------------------------------------------------------ state dict
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> "OrderedDict[str, Tensor]":
        """Every parameter and persistent buffer under its dotted name, in PyTorch's order.

        The values share memory with the module (detached views; ``keep_vars=True`` gives the
        Parameters themselves). Save it with ``minires.save``.
        """
        out: "OrderedDict[str, Tensor]" = OrderedDict()
        for name, param in self._parameters.items():
            if param is not None:
                out[prefix + name] = param if keep_vars else param.detach()
        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent_buffers:
                out[prefix + name] = buf if keep_vars else buf.detach()
        for name, child in self._modules.items():
            if child is not None:
                out.update(child.state_dict(prefix=f"{prefix}{name}.", keep_vars=keep_vars))
        return out

    def _upgrade_state_dict(self, state_dict: dict, prefix: str) -> None:
        """Fill in, in ``state_dict``, the keys this layer gained since older files were written.

        Called by ``load_state_dict`` for each module with its key prefix (PyTorch does this in
        ``_load_from_state_dict``). Nothing to fill in by default.
        """

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> IncompatibleKeys:
        """Copy values from ``state_dict`` (name -> Tensor or NumPy/CuPy array) into this module.

        Values are copied INTO the existing arrays (every Parameter keeps its identity), moved
        to the parameter's device and converted to its dtype (float64 -> float32 is fine; a
        float for an integer buffer, or the reverse, is an error). Everything is checked before
        anything is copied, so a failed load leaves the module as it was.

        A shape or dtype mismatch is always an error. Missing and unexpected keys are an error
        under ``strict=True``; with ``strict=False`` they are only returned, as
        ``IncompatibleKeys(missing_keys, unexpected_keys)``.
        """
        targets = self.state_dict(keep_vars=True)
        if isinstance(state_dict, Mapping):                  # each layer may fill in keys of older versions
            state_dict = dict(state_dict)
            for name, module in self.named_modules():
                module._upgrade_state_dict(state_dict, f"{name}." if name else "")
        missing, unexpected, errors, arrays = check_state_dict(targets, state_dict)
        if strict:
            if missing:
                errors.append("missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
            if unexpected:
                errors.append("unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected))
        if errors:
            hints = []
            if strict and (missing or unexpected):
                hints.append("To load only the keys that match, pass strict=False: it returns the missing and "
                             "unexpected keys instead of raising.")
            if any(e.startswith(("size mismatch", "dtype mismatch")) for e in errors):
                hints.append("A size or dtype mismatch is an error even with strict=False: drop those keys from "
                             "the state dict, or load into the original architecture and replace the layer "
                             "afterwards (e.g. model.fc = nn.Linear(512, 5)).")
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors) + "".join("\n" + h for h in hints))
        copy_state_dict(targets, arrays)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The text inside this module's parentheses in ``repr`` (e.g. a layer's sizes)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = []
        for name, child in self._modules.items():
            child_text = repr(child).replace("\n", "\n  ")       # indent the child's own lines
            child_lines.append(f"({name}): {child_text}")
        lines = extra_lines + child_lines
        if not lines:
            return f"{type(self).__name__}()"
        if len(extra_lines) == 1 and not child_lines:
            return f"{type(self).__name__}({extra_lines[0]})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _names_a_dtype(name: str) -> bool:
    """True when NumPy reads ``name`` as a dtype ("float64", "f4"); False for anything else."""
    try:
        numpy.dtype(name)
    except TypeError:
        return False
    return True
