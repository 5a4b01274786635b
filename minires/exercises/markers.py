"""Solution markers: the comment lines that fence an operation's backward body in the source.

In ``minires/functional/*.py`` each exercise's solution sits between two comment lines::

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION conv2d
        ...                                   # the reference solution
        # END SOLUTION

The markers are comments, so they change nothing when the package runs. ``minires exercises
new`` replaces what lies between them with a stub (``replace``); the markers stay in the student's
copy, so the student writes the answer in the same place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List

_BEGIN = re.compile(r"^(?P<indent>[ ]*)# BEGIN SOLUTION (?P<name>[a-z0-9_]+)[ ]*$")
_END = re.compile(r"^[ ]*# END SOLUTION[ ]*$")


class MarkerError(ValueError):
    """Solution markers that do not pair up (a BEGIN without an END, a nested or repeated one)."""


@dataclass(frozen=True)
class Region:
    """One marked body: lines ``begin`` and ``end`` (0-based) are the marker lines themselves."""
    name: str
    begin: int
    end: int
    indent: str


def find_regions(source: str, filename: str = "<source>") -> Dict[str, Region]:
    """Every marked region of ``source``, by exercise name."""
    regions: Dict[str, Region] = {}
    open_region = None
    for number, line in enumerate(source.split("\n")):
        begin = _BEGIN.match(line)
        if begin:
            if open_region is not None:
                raise MarkerError(f"{filename}:{number + 1}: '# BEGIN SOLUTION {begin['name']}' inside the "
                                  f"region {open_region[0]!r}; close it with '# END SOLUTION' first")
            open_region = (begin["name"], number, begin["indent"])
        elif _END.match(line):
            if open_region is None:
                raise MarkerError(f"{filename}:{number + 1}: '# END SOLUTION' without a '# BEGIN SOLUTION name' "
                                  f"above it")
            name, start, indent = open_region
            if name in regions:
                raise MarkerError(f"{filename}: the region {name!r} is marked twice; each exercise has one")
            regions[name] = Region(name, start, number, indent)
            open_region = None
    if open_region is not None:
        raise MarkerError(f"{filename}: '# BEGIN SOLUTION {open_region[0]}' (line {open_region[1] + 1}) has no "
                          f"'# END SOLUTION'")
    return regions


def replace(source: str, name: str, body: List[str], filename: str = "<source>") -> str:
    """``source`` with region ``name``'s body replaced by ``body`` (lines without indentation,
    indented here to the marker's level); the marker lines stay."""
    regions = find_regions(source, filename)
    if name not in regions:
        raise MarkerError(f"{filename} has no region {name!r}; it marks {sorted(regions)}")
    region = regions[name]
    lines = source.split("\n")
    new_body = [region.indent + line if line else "" for line in body]
    return "\n".join(lines[:region.begin + 1] + new_body + lines[region.end:])
