"""See the graph behind a tensor: Graphviz DOT text always, SVG or PNG where Graphviz is installed.

    g = minires.viz.graph(loss, params=dict(model.named_parameters()))
    print(g)                  # DOT text: paste it into any Graphviz viewer
    g.save("graph.svg")       # or .png (needs Graphviz's `dot`), or .dot (needs nothing)
    g                         # in Jupyter: drawn inline

One box per operation (the Function's class name and the hyper-parameters it was given, such as a
convolution's stride and padding), one per leaf tensor (its name from ``params``, its shape and
dtype), one for the output; arrows run forward, from inputs to the operation that used them, and carry
the input's shape. A tensor used twice (the input of a residual block) has two arrows out of it.

When to call it. ``graph()`` copies the graph's structure at once; it keeps the leaf tensors, not the
Functions. So call it before ``backward()`` (which frees the graph as it goes), or after
``backward(retain_graph=True)``. Every drawing reads the leaves' ``.grad`` afresh, so a graph made
before ``loss.backward()`` shows each leaf's gradient norm when it is drawn again afterwards.

Only what gradients flow through is recorded: inputs that need no gradient (a batch of images
without ``requires_grad``, batch norm's running statistics) are not in the graph, and do not appear.
"""
from __future__ import annotations

import functools
import inspect
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from minires import backend
from minires.autograd import Function, _topological_order

if TYPE_CHECKING:
    from minires.tensor import Tensor

__all__ = ["graph", "Graph"]

_INSTALL = ("Graphviz's `dot` program is needed to draw SVG or PNG and was not found on PATH. "
            "Install Graphviz: `apt-get install graphviz` (Debian, Ubuntu), `brew install graphviz` "
            "(macOS), `conda install graphviz`, or see https://graphviz.org/download/. The DOT text "
            "needs nothing: `graph.source`, or `graph.save('graph.dot')`.")


@dataclass(frozen=True)
class _Node:
    id: str                      # op0, op1, ... (operations), t0, t1, ... (leaves), out
    kind: str                    # "op", "leaf" or "output"
    label: str                   # the text in the box (lines joined by "\n"), less the gradient norm
    tensor: Optional["Tensor"]   # a leaf: its .grad is read at each drawing


class Graph:
    """The structure of one computation graph; ``.source`` is its DOT text (see the module doc)."""

    def __init__(self, nodes: list, edges: list) -> None:
        self.nodes = nodes                     # _Node, in forward order
        self.edges = edges                     # (from id, to id, label)

    @property
    def source(self) -> str:
        """Graphviz DOT text, with each leaf's current gradient norm."""
        lines = ["digraph minires {",
                 '  node [fontname="Helvetica", fontsize=10];',
                 '  edge [fontname="Helvetica", fontsize=9];']
        for node in self.nodes:
            label = node.label
            grad = None if node.tensor is None else node.tensor.grad
            if grad is not None:
                label += f"\ngrad norm {_norm(grad.data):.4g}"
            lines.append(f'  {node.id} [label="{_escape(label)}", {_STYLE[node.kind]}];')
        lines += [f'  {a} -> {b} [label="{_escape(label)}"];' for a, b, label in self.edges]
        return "\n".join(lines + ["}"]) + "\n"

    def svg(self) -> str:
        """The drawing as SVG text (needs Graphviz)."""
        return _render(self.source, "svg").decode("utf-8")

    def png(self) -> bytes:
        """The drawing as PNG bytes (needs Graphviz)."""
        return _render(self.source, "png")

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write ``.dot``/``.gv`` (DOT text), ``.svg`` or ``.png`` by the name's suffix, all at once:
        a reader never sees half a file, and a failed render leaves nothing behind."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".dot", ".gv"):
            content = self.source.encode("utf-8")
        elif suffix in (".svg", ".png"):
            content = _render(self.source, suffix[1:])
        else:
            raise ValueError(f"graph.save: cannot tell the format of {str(path)!r}; expected a name ending "
                             f"in .dot, .gv, .svg or .png")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path

    def _repr_svg_(self) -> Optional[str]:
        """Jupyter draws the graph inline with this; without Graphviz it shows ``repr`` instead."""
        return self.svg() if shutil.which("dot") else None

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        ops = sum(node.kind == "op" for node in self.nodes)
        leaves = sum(node.kind == "leaf" for node in self.nodes)
        return f"<Graph: {ops} operations, {leaves} leaf tensors; print() it for DOT text>"


def graph(tensor: "Tensor", params: Optional[dict] = None) -> Graph:
    """The computation graph that made ``tensor``, walked without recursion.

    ``params`` names leaf tensors, e.g. ``dict(model.named_parameters())`` (plus ``{"x": x}`` for an
    input); unnamed leaves are called ``tensor``. Call it before ``backward()`` or after
    ``backward(retain_graph=True)``: a plain backward frees the graph.
    """
    names = {id(t): name for name, t in (params or {}).items()}
    nodes: list = []
    edges: list = []
    if tensor._creator is None:                # a leaf: the graph is that tensor alone
        nodes.append(_Node("t0", "leaf", _leaf_label(tensor, names), tensor))
        return Graph(nodes, edges)
    order = _topological_order(tensor)         # forward order: inputs' creators first
    op_ids = {id(fn): f"op{i}" for i, fn in enumerate(order)}
    leaf_ids: dict = {}
    for fn in order:
        if fn._released:
            raise RuntimeError(
                f"graph(): the {type(fn).__name__} in this graph was freed by a backward pass, and with it "
                f"the links to its inputs. Call minires.viz.graph(...) before backward() (drawing it again "
                f"afterwards shows the gradients), or run backward(retain_graph=True).")
        for parent, shape in zip(fn._parents, fn._input_shapes):
            if parent is None:                 # an input that needs no gradient: not recorded
                continue
            if isinstance(parent, Function):
                source = op_ids[id(parent)]
            else:
                if id(parent) not in leaf_ids:
                    leaf_ids[id(parent)] = f"t{len(leaf_ids)}"
                    nodes.append(_Node(leaf_ids[id(parent)], "leaf", _leaf_label(parent, names), parent))
                source = leaf_ids[id(parent)]
            edges.append((source, op_ids[id(fn)], _shape(shape)))
        nodes.append(_Node(op_ids[id(fn)], "op", _op_label(fn), None))
    nodes.append(_Node("out", "output", f"output\n{_shape(tensor.shape)} {tensor.dtype}", None))
    edges.append((op_ids[id(tensor._creator)], "out", _shape(tensor.shape)))
    return Graph(nodes, edges)


_STYLE = {
    "op": 'shape=box, style="rounded,filled", fillcolor="#e8e8e8"',
    "leaf": 'shape=box, style=filled, fillcolor="#cfe2f3"',
    "output": 'shape=box, style=filled, fillcolor="#d9ead3"',
}


def _leaf_label(t: "Tensor", names: dict) -> str:
    return f"{names.get(id(t), 'tensor')}\n{_shape(t.shape)} {t.dtype}"


def _op_label(fn: Function) -> str:
    """The class name, then each constructor argument that differs from its default."""
    shown = []
    for name, default in _hyper_parameters(type(fn)):
        value = getattr(fn, name, default)
        if backend.is_array(value):
            continue
        same = value == default or (isinstance(value, tuple) and value and all(v == default for v in value))
        if not same:
            shown.append(f"{name}={value}")
    return "\n".join([type(fn).__name__] + ([", ".join(shown)] if shown else []))


@functools.lru_cache(maxsize=None)
def _hyper_parameters(cls: type) -> tuple:
    """(name, default) of each argument of ``cls.__init__``: Functions keep them under those names."""
    if cls.__init__ is object.__init__:
        return ()
    return tuple((p.name, p.default) for p in inspect.signature(cls.__init__).parameters.values()
                 if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _norm(array: Any) -> float:
    return float(backend.get_array_module(array).linalg.norm(array.ravel()))


def _shape(shape: tuple) -> str:
    return str(tuple(shape))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _render(source: str, fmt: str) -> bytes:
    """Run Graphviz's ``dot -T<fmt>`` on the DOT text."""
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(_INSTALL)
    done = subprocess.run([dot, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"Graphviz's dot failed to draw {fmt} (exit {done.returncode}): "
                           f"{done.stderr.decode('utf-8', 'replace').strip()}")
    return done.stdout
