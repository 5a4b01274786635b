"""Containers: ``Sequential`` (a chain of layers) and ``ModuleList`` (a list of layers).

Both register their members as children named "0", "1", ..., so the members' state shows up
in ``state_dict()`` as ``0.weight``, ``1.running_mean``, ... (``layer1.0.conv1.weight`` in a
ResNet, whose stages are Sequentials).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable, Iterator, Optional, Union

from minires.nn.module import Module


def _index(index: int, length: int, kind: str) -> int:
    """A position in [0, length) from a possibly negative index; an IndexError when out of range."""
    if not isinstance(index, int) or isinstance(index, bool):
        raise TypeError(f"{kind} indices must be ints or slices, got {type(index).__name__}")
    if not -length <= index < length:
        raise IndexError(f"index {index} is out of range for a {kind} of length {length}")
    return index % length


class Sequential(Module):
    """Apply modules one after another: ``Sequential(conv, bn, relu)(x) == relu(bn(conv(x)))``.

    Build it from modules (named "0", "1", ...) or from an ``OrderedDict`` of name -> module.
    It indexes, slices (a slice is a new Sequential sharing the same modules and keeping their
    names), iterates and has a length, like a list.
    """

    def __init__(self, *modules: Any):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(modules):
                self.add_module(str(i), module)

    def forward(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index: Union[int, slice]) -> Module:
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[_index(index, len(items), "Sequential")][1]

    def __setitem__(self, index: int, module: Module) -> None:
        names = list(self._modules)
        setattr(self, names[_index(index, len(names), "Sequential")], module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> "Sequential":
        """Add ``module`` at the end (named by the current length)."""
        self.add_module(str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules whose state is registered (a plain Python list would hide it).

    It has no ``forward``: the owner decides how to call its members.
    """

    def __init__(self, modules: Optional[Iterable[Module]] = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, index: Union[int, slice]) -> Union[Module, "ModuleList"]:
        members = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(members[index])
        return members[_index(index, len(members), "ModuleList")]

    def __setitem__(self, index: int, module: Module) -> None:
        setattr(self, str(_index(index, len(self), "ModuleList")), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> "ModuleList":
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> "ModuleList":
        for module in modules:
            self.append(module)
        return self
