"""Markdown cells and tables for ``summary.md``: numbers, counts and missing values written one way."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd


def table(header: list[str], body: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in body),
    ]


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def link(path: Path | None, out_dir: Path) -> str:
    assert path is not None  # internal: only written plots are linked
    return path.resolve().relative_to(out_dir.resolve()).as_posix()


def total(column: pd.Series) -> int | None:
    values = column.dropna()
    return int(values.sum()) if len(values) else None


def is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def num(value: Any) -> str:
    return "-" if is_missing(value) else f"{float(value):.4f}"


def integer(value: Any) -> str:
    return "-" if is_missing(value) else str(int(value))


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def text(value: Any, *, missing: str = "-") -> str:
    return missing if is_missing(value) or value == "" else str(value)


def value(value: Any) -> str:
    if is_missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
