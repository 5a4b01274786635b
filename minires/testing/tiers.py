"""The three tiers of a gradient check, on plain arrays: shared by ``gradcheck`` and ``check_backward``.

A check knows four things, whatever framework made them:

- ``arrays``: the inputs to differentiate, ``{position: float64 array}``, changed in place to perturb;
- ``forward()``: the output ``f(x)`` as an array, for the current values of ``arrays``;
- ``vjp(G)``: the backward pass with upstream gradient ``G``, ``{position: dL/dx}`` for ``L = <G, f(x)>``;
- ``G``: the fixed random upstream gradient.

Central differences ``(L(x + h v) - L(x - h v)) / 2h`` must agree with ``<dL/dx, v>``: along one
random direction through all inputs (tier 1), one input at a time (tier 2), and element by element
(tier 3, for small inputs and for any input that failed a cheaper tier). A failure raises
``GradcheckError`` with a message that names the operation, the input, the worst element, both
values, and, for a small output, that element's own Jacobian entries.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

import numpy

from minires import backend

#: The per-element diagnosis shows Jacobian entries when the output has at most this many elements
#: (one backward pass per output element).
MAX_JACOBIAN_OUTPUT = 64


class GradcheckError(AssertionError):
    """A backward pass disagrees with finite differences; the message says where and by how much."""


def _close(analytic: float, numeric: float, atol: float, rtol: float) -> bool:
    return abs(analytic - numeric) <= atol + rtol * abs(numeric)


def rel(analytic: float, numeric: float) -> float:
    """|a - n| / max(|a|, |n|): the relative error the messages print."""
    return abs(analytic - numeric) / max(abs(numeric), abs(analytic), 1e-300)


class Tiers:
    """One check: its arrays, forward, vjp and G, its tolerances, and the name its messages use."""

    def __init__(self, name: str, arrays: Dict[int, Any], forward: Callable[[], Any],
                 vjp: Callable[[Any], Dict[int, Any]], G: Any, eps: float, atol: float, rtol: float,
                 input_names: Optional[Dict[int, str]] = None, symbols: Optional[Dict[int, str]] = None):
        self.name, self.arrays, self.forward, self.vjp, self.G = name, arrays, forward, vjp, G
        self.eps, self.atol, self.rtol = eps, atol, rtol
        self.input_names = input_names or {i: f"input {i}" for i in arrays}
        self.symbols = symbols or {i: f"input{i}" for i in arrays}         # input i in a formula

    # -------------------------------------------------------------- L and its central differences
    def loss(self) -> float:
        """L(x) = <G, f(x)>."""
        return float((self.forward() * self.G).sum())

    def difference(self, directions: Dict[int, Any]) -> float:
        """(L(x + h v) - L(x - h v)) / 2h, v = ``directions`` (one array per input it moves)."""
        saved = {i: self.arrays[i].copy() for i in directions}
        for i, v in directions.items():
            self.arrays[i] += self.eps * v
        plus = self.loss()
        for i, v in directions.items():
            self.arrays[i][...] = saved[i] - self.eps * v
        minus = self.loss()
        for i in directions:
            self.arrays[i][...] = saved[i]
        return (plus - minus) / (2 * self.eps)

    def fail(self, message: str, jacobian: str = "") -> None:
        raise GradcheckError(f"gradcheck of {self.name} failed: {message} "
                             f"(eps={self.eps}, atol={self.atol}, rtol={self.rtol}). Both numbers are "
                             f"derivatives of L = <G, f(x)>, G a fixed random upstream gradient: each sums "
                             f"Jacobian entries weighted by G.{jacobian}")

    # -------------------------------------------------------------- the tiers
    def run(self, analytic: Dict[int, Any], random_like: Callable[[Any], Any], n_directions: int,
            elementwise: Optional[bool], max_elementwise: int) -> bool:
        checked = list(self.arrays)
        joint_failure = None
        for _ in range(n_directions):                                   # tier 1: all inputs at once
            directions = {i: random_like(self.arrays[i]) for i in checked}
            a = sum(float((analytic[i] * directions[i]).sum()) for i in checked)
            n = self.difference(directions)
            if not _close(a, n, self.atol * math.sqrt(len(checked)), self.rtol):
                joint_failure = (a, n)
                break
        for i in checked:                                               # tier 2: one input at a time
            v = random_like(self.arrays[i])
            a_i = float((analytic[i] * v).sum())
            n_i = self.difference({i: v})
            failed = not _close(a_i, n_i, self.atol, self.rtol)
            small = self.arrays[i].size <= max_elementwise
            if failed or (elementwise is None and small) or elementwise:
                self.elements(i, analytic[i])                          # tier 3: element by element
            if failed:
                self.fail(f"{self.input_names[i]} (shape {tuple(self.arrays[i].shape)}): along a random "
                          f"direction the analytic derivative is {a_i:.10g} but the numeric one is "
                          f"{n_i:.10g} (relative error {rel(a_i, n_i):.3g})")
        if joint_failure is not None:
            a, n = joint_failure
            self.fail(f"along a random direction through all inputs the analytic derivative is {a:.10g} "
                      f"but the numeric one is {n:.10g} (relative error {rel(a, n):.3g})")
        return True

    def elements(self, i: int, analytic: Any) -> None:
        """Perturb each element of input ``i`` alone and report the worst disagreement."""
        x = self.arrays[i]
        flat = x.reshape(-1)                                            # a view: writes reach x
        analytic_flat = backend.to_numpy(analytic).reshape(-1)
        worst, worst_excess = None, 0.0
        for k in range(flat.size):
            saved = float(flat[k])
            flat[k] = saved + self.eps
            plus = self.loss()
            flat[k] = saved - self.eps
            minus = self.loss()
            flat[k] = saved
            numeric = (plus - minus) / (2 * self.eps)
            a = float(analytic_flat[k])
            excess = abs(a - numeric) - (self.atol + self.rtol * abs(numeric))
            if excess > worst_excess:
                worst, worst_excess = (k, a, numeric), excess
        if worst is None:
            return
        k, a, numeric = worst
        index = tuple(int(j) for j in numpy.unravel_index(k, x.shape))
        self.fail(f"{self.input_names[i]} (shape {tuple(x.shape)}), worst element {index}: analytic {a:.10g}, "
                  f"numeric {numeric:.10g}, relative error {rel(a, numeric):.3g}",
                  self._jacobian_entry(i, k, index))

    def _jacobian_entry(self, i: int, k: int, index: tuple) -> str:
        """For a small output: the Jacobian column d f / d x[index], analytic against numeric, at
        the output element where they differ most (or the largest entry, when they all agree)."""
        G_shape = tuple(self.G.shape)
        size = int(numpy.prod(G_shape)) if G_shape else 1
        if size > MAX_JACOBIAN_OUTPUT:
            return ""
        flat = self.arrays[i].reshape(-1)
        saved = float(flat[k])
        flat[k] = saved + self.eps
        plus = backend.to_numpy(self.forward()).astype(numpy.float64).reshape(-1)
        flat[k] = saved - self.eps
        minus = backend.to_numpy(self.forward()).astype(numpy.float64).reshape(-1)
        flat[k] = saved
        numeric = (plus - minus) / (2 * self.eps)                       # d f / d x[k], all outputs
        xp = backend.get_array_module(self.arrays[i])
        analytic = numpy.empty(size)
        for m in range(size):                                           # row m of J via G = e_m
            unit = numpy.zeros(size)
            unit[m] = 1.0
            grads = self.vjp(xp.asarray(unit.reshape(G_shape)))
            analytic[m] = float(backend.to_numpy(grads[i]).reshape(-1)[k])
        gap = numpy.abs(analytic - numeric)
        m = int(gap.argmax()) if gap.max() > self.atol else int(numpy.abs(numeric).argmax())
        out_index = tuple(int(j) for j in numpy.unravel_index(m, G_shape)) if G_shape else ()
        return (f" The Jacobian entry d out{list(out_index)} / d {self.symbols[i]}{list(index)} "
                f"itself: analytic {analytic[m]:.10g}, numeric {numeric[m]:.10g}")
