"""Hints from the numbers: what a wrong gradient's pattern says about the likely mistake.

The grader has, for one input of one configuration, the student's gradient S and the right one
E (the reference solution's, which agrees with finite differences wherever those are defined).
Each rule below looks at how S and E differ and names the mistake that leaves that pattern:

    S is None or all zeros              the gradient was never computed or returned
    S = c * E for one constant c        a missing (or extra) constant factor: the 1/N of a mean, a scale
    S - E constant over each channel    a missing (or extra) mean term
    S holds E's numbers, moved around   a transpose or a reshape in the wrong axis order
    errors only where windows overlap   a missing accumulation (``=`` where ``+=`` belongs)
    errors only at ties or zeros        a kink rule (max pooling's first maximum, ReLU'(0) = 0)

Across configurations, ``only_when`` names the one setting (groups > 1, stride > 1, ...) that
every failing configuration has and every passing one lacks.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Set

import numpy

#: Relative agreement for "the same number" in these patterns (float64 gradients, small shapes).
_TIGHT = 1e-7


def _scale(E: numpy.ndarray) -> float:
    return max(float(numpy.abs(E).max(initial=0.0)), 1e-300)


def differs(S: numpy.ndarray, E: numpy.ndarray, rtol: float = 1e-7) -> numpy.ndarray:
    """Where S and E disagree (boolean, E's shape), relative to E's largest entry."""
    return numpy.abs(S - E) > rtol * _scale(E) + 1e-12


def constant_ratio(S: numpy.ndarray, E: numpy.ndarray) -> Optional[float]:
    """c when S == c * E everywhere (c != 1), else None."""
    big = numpy.abs(E) > 1e-6 * _scale(E)
    if big.sum() < 2 or (numpy.abs(S[~big]) > 1e-5 * _scale(E)).any():   # where E is ~0, S must be too
        return None
    ratios = S[big] / E[big]
    c = float(numpy.median(ratios))
    if abs(c - 1) < 1e-6 or numpy.abs(ratios - c).max() > 1e-5 * max(abs(c), 1e-12):
        return None
    return c


def name_factor(c: float, factors: Dict[str, float]) -> str:
    """The named factor that c matches, e.g. 'N = 4 (the batch averaged by reduction="mean")'."""
    for description, value in factors.items():
        if abs(c - value) <= 1e-4 * abs(value):
            return description
    if abs(c + 1) < 1e-6:
        return "-1: the sign is flipped"
    return ""


def constant_per_channel(S: numpy.ndarray, E: numpy.ndarray, axes: Sequence[int]) -> bool:
    """True when S - E is not zero but the same for every value of a channel (axes: all but the channel)."""
    D = S - E
    if not differs(S, E).any():
        return False
    spread = D.max(axis=tuple(axes)) - D.min(axis=tuple(axes))
    return bool((spread <= _TIGHT * _scale(E) + 1e-12).all())


def moved_around(S: numpy.ndarray, E: numpy.ndarray) -> bool:
    """True when S holds exactly E's numbers in other places (a transpose or reshape mix-up)."""
    if S.shape != E.shape or not differs(S, E).any():
        return False
    return bool(numpy.allclose(numpy.sort(S, axis=None), numpy.sort(E, axis=None), rtol=1e-9, atol=1e-12))


def inside(wrong: numpy.ndarray, mask: Optional[numpy.ndarray]) -> bool:
    """True when every wrong element lies where ``mask`` is True (and some are wrong)."""
    return mask is not None and mask.shape == wrong.shape and wrong.any() and not (wrong & ~mask).any()


def only_when(failed: Sequence[bool], features: Sequence[Set[str]], described: Dict[str, str]) -> Optional[str]:
    """The feature that exactly the failing configurations have (the rarest one if several do)."""
    if not any(failed) or all(failed):
        return None
    candidates: List[tuple] = []
    for name in described:
        having = [name in f for f in features]
        if all(h for h, bad in zip(having, failed) if bad) and not any(bad for h, bad in zip(having, failed) if not h):
            candidates.append((sum(having), name))
    return min(candidates)[1] if candidates else None
