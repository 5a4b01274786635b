"""The package's metadata: building or installing minires prints no deprecation warnings."""
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_packaging_metadata_raises_no_deprecation_warning(monkeypatch):
    # pip builds with the setuptools that [build-system] asks for (>= 77), not the one installed here
    pytest.importorskip("setuptools", minversion="77")
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(ROOT)                       # what `pip install .` reads, read the same way
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distribution = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    deprecations = [str(w.message) for w in caught if "Deprecat" in w.category.__name__]
    assert deprecations == []
    assert distribution.get_name() == "minires"
    assert distribution.metadata.license_expression == "MIT"
