"""Shared test set-up: Hypothesis profiles and the backend fixtures every test runs on.

Profiles: on CI (``CI`` set) Hypothesis loads its built-in ``ci`` profile (derandomized, no
deadline); ours builds on it and only sets the number of examples. ``thorough`` runs many more:
``pytest --hypothesis-profile=thorough``; checks too long for every run carry the ``thorough``
marker and join with ``-m "thorough or not thorough"``.
"""
import os
import sys

import numpy
import pytest
from hypothesis import HealthCheck, settings

from minires import backend

sys.path.insert(0, os.path.dirname(__file__))   # shared test helpers: `import datafiles`

# The `xp` fixture is function-scoped but only names a module, so reusing it across examples is safe.
_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
_FAST = dict(max_examples=25, deadline=None, suppress_health_check=_QUIET)
settings.register_profile("minires", parent=settings.get_profile("default"), **_FAST)
settings.register_profile("minires-ci", parent=settings.get_profile("ci"), **_FAST)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=400,
                          deadline=None, suppress_health_check=_QUIET)
settings.load_profile("minires-ci" if os.environ.get("CI") else "minires")


def _backends():
    yield pytest.param("numpy", id="numpy")
    yield pytest.param("cupy", id="cupy", marks=pytest.mark.gpu)


@pytest.fixture(params=list(_backends()))
def xp(request):
    """The array module under test: every test that takes ``xp`` runs on NumPy and on CuPy."""
    if request.param == "cupy":
        if not backend.cuda_is_available():
            pytest.skip("CuPy with a CUDA device is not available on this machine")
        return backend.cupy
    return numpy


@pytest.fixture
def device(xp):
    """The minires device name that matches ``xp``."""
    return "cpu" if xp is numpy else "cuda"
