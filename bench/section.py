"""What every section of ``python -m bench`` is: a name, a run that returns its figures, and its markdown.

``python -m bench`` iterates the registry (:data:`bench.sections.SECTIONS`): for each section it calls
:meth:`Section.run`, writes the figures it returns to ``OUT/<name>.json`` and under ``sections.<name>``
of ``OUT/results.json``, and renders its part of ``BENCHMARKS.md`` from those figures alone with
:meth:`Section.markdown` (so a report can be rendered again from a results file). A section module keeps
its heavy imports (torch, Ray, SMAC) inside ``run``, so that listing or choosing sections costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# A section's figures: plain JSON data (NaN and inf are written as strings).
Figures = dict[str, Any]
# The run's ``meta`` of results.json: date, command, machine, versions (``bench.__main__.machine``).
Meta = dict[str, Any]


@dataclass(frozen=True)
class RunOptions:
    """What ``python -m bench``'s options give every section."""

    quick: bool  # tiny sizes for CI: seconds, figures meaningless
    out: Path  # the results folder (a section may keep a cache under it)
    workers: int  # processes a section may use for training and replays
    data: Path | None  # a dataset folder given with --data (None: the section's default)
    say: Callable[[str], None]  # progress lines (stderr)


@runtime_checkable
class Section(Protocol):
    """One benchmark section."""

    @property
    def name(self) -> str:
        """The ``--only`` name, the key in results.json and the stem of ``OUT/<name>.json``."""
        ...

    def run(self, options: RunOptions) -> Figures:
        """Measure; the figures written to the results files."""
        ...

    def markdown(self, figures: Figures, meta: Meta) -> str:
        """The section's part of ``BENCHMARKS.md``, from its figures and the run's ``meta``."""
        ...
