"""The data error that keeps its parts: a code, the problem and the fix.

The dataset raises it (it is a ``unet.errors.DataError``, one line: problem and fix); the dataset doctor
catches it and shows problem and fix apart, grouped by code, so both tools share one set of checks.
"""

from __future__ import annotations

from unet.errors import DataError


class DataProblem(DataError):
    """A ``DataError`` whose message is ``"<problem>; <fix>"`` on one line.

    Args:
        code: short stable name of the kind of problem ("unreadable", "size-mismatch" ...), used by
            the doctor's findings.
        problem: what is wrong, naming the file or folder.
        fix: what the user should do about it.
    """

    def __init__(self, code: str, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.code = code
        self.problem = problem
        self.fix = fix

    def __reduce__(self) -> tuple[type[DataProblem], tuple[str, str, str]]:
        # Exceptions pickle their args; ours differ from the message, so say how to rebuild it
        # (DataLoader workers and Ray ship exceptions between processes).
        return (type(self), (self.code, self.problem, self.fix))


def preview(items: list[str], *, limit: int = 5) -> str:
    """The first ``limit`` items, comma separated, with how many were left out: ``"a, b, c (+4 more)"``."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} (+{len(items) - limit} more)"
