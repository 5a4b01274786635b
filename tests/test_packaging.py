"""The package's metadata: building or installing minires prints no deprecation warnings."""
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_packaging_metadata_raises_no_deprecation_warning(monkeypatch):
    pytest.importorskip("setuptools")
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(ROOT)                       # what `pip install .` reads, read the same way
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # a SetuptoolsDeprecationWarning fails the test
        distribution = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert distribution.get_name() == "minires"
    assert distribution.metadata.license_expression == "MIT"
