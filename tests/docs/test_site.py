"""The docs site builds with ``mkdocs build --strict``, and its derivation pages are linked both ways.

The build needs the ``docs`` tools (``pip install ".[docs]"``; the ``test`` extra includes them) and is
skipped, with the reason, where they are missing. The link checks need nothing but the checkout:
each derivation page names the source file, the Functions and the tests behind its formulas, and each
Function in ``minires/functional`` names its derivation page in its docstring.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minires.autograd import Function

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DERIVATIONS = sorted((DOCS / "derivations").glob("*.md"))
FUNCTIONAL = sorted(p.stem for p in (ROOT / "minires" / "functional").glob("*.py") if p.stem != "__init__")
POINTER = re.compile(r"Derivation: (docs/derivations/[\w-]+\.md)")


def test_the_site_builds_strict_without_a_warning(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            pytest.skip(f"the docs site needs {module}: pip install \".[docs]\"")
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                          str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    relu = (site / "derivations" / "relu" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in relu                          # $...$ handed to MathJax, not left as text
    api = (site / "api" / "functional" / "index.html").read_text(encoding="utf-8")
    assert "minires.functional.conv.Conv2d" in api and "docs/derivations/conv2d.md" in api


def test_the_nav_lists_every_page():
    nav = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - nav == set(), "pages missing from the nav in mkdocs.yml"
    assert nav - pages == set(), "the nav in mkdocs.yml names pages that do not exist"


def test_every_page_with_python_blocks_is_run_by_the_page_tests():
    spec = importlib.util.spec_from_file_location("docs_test_pages", Path(__file__).with_name("test_pages.py"))
    test_pages = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_pages)
    pages = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md"))
    with_code = [page for page in pages if "```python\n" in (ROOT / page).read_text()]
    assert [page for page in with_code if page not in test_pages.PAGES] == [], "add these to PAGES in tests/docs/test_pages.py"


def _backticked(text: str) -> list:
    return re.findall(r"`([^`\n]+)`", text)


@pytest.mark.parametrize("page", DERIVATIONS, ids=lambda p: p.name)
def test_each_derivation_page_names_the_code_and_the_tests_that_exist(page):
    words = _backticked(page.read_text())
    sources = [w for w in words if re.fullmatch(r"minires/[\w/]+\.py", w)]
    tests = [w for w in words if re.fullmatch(r"tests/[\w/]+\.py", w)]
    assert sources and tests, f"{page.name} must name its source file and its test file"
    for path in sources + tests:
        assert (ROOT / path).is_file(), f"{page.name} names {path}, which does not exist"
    source = "\n".join((ROOT / p).read_text() for p in sources)
    test_code = "\n".join((ROOT / p).read_text() for p in tests)
    methods = [w for w in words if re.fullmatch(r"[A-Z]\w*\.(forward|backward)", w)]
    functions = [w for w in words if re.fullmatch(r"(im2col|col2im|window_slices|sum_to_shape)", w)]
    assert methods or functions, f"{page.name} must name the Function (Class.backward) that implements it"
    for name in methods:
        cls, method = name.split(".")
        body = re.search(rf"^class {cls}\(.*?(?=^class |\Z)", source, re.DOTALL | re.MULTILINE)
        assert body and f"def {method}(" in body.group(0), f"{page.name} names {name}, not in {sources}"
    functional = "\n".join(p.read_text() for p in (ROOT / "minires" / "functional").glob("*.py"))
    for name in functions:
        assert f"def {name}(" in functional, f"{page.name} names {name}, not defined in minires/functional"
    named_tests = [w for w in words if re.fullmatch(r"test_\w+", w)]
    assert named_tests, f"{page.name} must name the tests that check it"
    for name in named_tests:
        assert f"def {name}(" in test_code, f"{page.name} names {name}, which is not in {tests}"


@pytest.mark.parametrize("module_name", FUNCTIONAL)
def test_each_function_points_to_its_derivation_page_and_is_named_there(module_name):
    module = importlib.import_module(f"minires.functional.{module_name}")
    functions = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                 if issubclass(cls, Function) and cls is not Function and cls.__module__ == module.__name__]
    pointers = POINTER.findall(module.__doc__ or "")
    assert pointers, f"the docstring of minires/functional/{module_name}.py must say 'Derivation: docs/derivations/...md'"
    for cls in functions:
        pages = POINTER.findall(cls.__doc__ or "")
        assert pages, f"{module_name}.{cls.__name__}'s docstring must say 'Derivation: docs/derivations/...md'"
        for page in pages:
            assert (ROOT / page).is_file(), f"{cls.__name__} points to {page}, which does not exist"
            assert f"`{cls.__name__}." in (ROOT / page).read_text(), f"{page} does not name {cls.__name__}"
