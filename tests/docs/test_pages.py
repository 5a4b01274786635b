"""Pages of the guide run as written and print what they say they print.

The convention, for every page listed in ``PAGES``: its ```python blocks run in order in one
namespace (a page is one session); a ```python block followed directly by a ```text block
must print exactly that text. A page that needs an optional package (Pillow, say) names it in
``PAGES`` and is skipped, with the reason, where it is missing.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = {
    "README.md": (),
    "docs/autograd.md": (),
    "docs/training.md": (),
    "docs/data.md": (),
    "docs/datasets.md": (),
    "docs/optim.md": (),
    "docs/paper.md": (),
    "docs/viz.md": (),
    "docs/quickstart.md": (),
    "docs/models.md": (),
    "docs/gradcheck.md": ("hypothesis",),
    "docs/nn.md": (),
    "docs/weights.md": ("torch",),                  # its last blocks convert PyTorch checkpoints; test_io runs the rest
    "docs/derivations/arithmetic.md": (),
    "docs/derivations/relu.md": (),
    "docs/derivations/linear.md": (),
    "docs/derivations/reduction.md": (),
    "docs/derivations/shape.md": (),
    "docs/derivations/padding.md": (),
    "docs/exercises.md": (),
    # page: optional modules it needs
}

_BLOCK = re.compile(r"```(python|text)\n(.*?)```", re.DOTALL)


def blocks_of(page: Path) -> list:
    """``(code, expected_output_or_None)`` for each python block of ``page``, in order."""
    found = [(m.group(1), m.group(2), m.start(), m.end()) for m in _BLOCK.finditer(page.read_text())]
    pairs = []
    for i, (kind, body, _, end) in enumerate(found):
        if kind != "python":
            continue
        nxt = found[i + 1] if i + 1 < len(found) else None
        adjacent = nxt is not None and nxt[0] == "text" and page.read_text()[end:nxt[2]].strip() == ""
        pairs.append((body, nxt[1] if adjacent else None))
    return pairs


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_runs_and_prints_what_it_shows(name, tmp_path, monkeypatch):
    for module in PAGES[name]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{name} needs {module}, which is not installed")
    page = ROOT / name
    pairs = blocks_of(page)
    assert pairs, f"{name} has no python blocks"
    monkeypatch.chdir(tmp_path)                     # a page may write files: keep them out of the checkout
    namespace: dict = {"__name__": "__docs__"}
    for number, (code, expected) in enumerate(pairs, 1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{name} (python block {number})", "exec"), namespace)  # noqa: S102 - our own docs
        if expected is not None:
            assert printed.getvalue() == expected, f"{name}, block {number} printed something else"
