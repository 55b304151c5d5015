"""docs/architecture.md names every module of search/ and unet/, in the table row of its package.

A module is named when its row (the row whose first cell names it or a package above it) has it in
backticks: as its own name (``epochs`` in the ``store/`` row), as its path below that package
(``data/plan``, ``ray/``) or as its path below search/ or unet/ (``execution/testset``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURE = REPO / "docs" / "architecture.md"


def _rows(package: str) -> list[tuple[list[str], set[str]]]:
    """The rows of ``package``'s table: (the names of the first cell, every name in backticks in the row)."""
    text = ARCHITECTURE.read_text()
    start = text.index(f"**`{package}/`**")
    table = text[start:].split("\n\n", 2)[1]  # the heading line, then the table up to the blank line
    rows = []
    for line in table.splitlines()[2:]:  # after the header and the |---| line
        first = line.split("|")[1]
        rows.append((re.findall(r"`([^`]+)`", first), set(re.findall(r"`([^`]+)`", line))))
    return rows


def _modules(package: str) -> list[str]:
    """Every module and subpackage of ``package``, as a path below it (``store/epochs``, ``ray/``)."""
    root = REPO / package
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if "__pycache__" in relative:
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            found.append(relative + "/")
        elif path.suffix == ".py" and path.stem not in ("__init__", "__main__"):
            found.append(relative.removesuffix(".py"))
    return found


def _named(module: str, rows: list[tuple[list[str], set[str]]]) -> bool:
    bare = module.rstrip("/")
    for first, names in rows:
        if module in first or bare in first:
            return True
        for cell in first:
            if cell.endswith("/") and bare.startswith(cell):
                below = module.removeprefix(cell)
                if {below, below.rstrip("/"), bare.rsplit("/", 1)[-1], module, bare} & names:
                    return True
    return False


@pytest.mark.parametrize("package", ["search", "unet"])
def test_every_module_is_named_in_its_package_table(package: str) -> None:
    rows = _rows(package)
    missing = [module for module in _modules(package) if not _named(module, rows)]
    assert missing == [], f"docs/architecture.md does not name these modules of {package}/: {missing}"
