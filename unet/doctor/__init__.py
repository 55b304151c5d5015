"""The dataset doctor: checks a dataset folder the way training would read it, and reports.

It runs the same readers and checks as ``unet.data.folder_datasets`` (through ``unet.data``), but never
raises for a data problem: each becomes a finding with its fix, so one run lists every problem before
any training starts. It also makes the data plan (``unet.data.plan``: the patch size) and warns about
what would distort scores. Run it as ``python -m unet.doctor DIR [--val DIR] [--num-classes K]
[--patch-size P] [--json]``; the exit status is 0 when the folder is usable and 2 when it is not.

Modules: ``report`` (the ``Report`` and its text), ``inspect`` (reading the folder), ``findings`` (what
the doctor warns about), ``cli`` (through ``unet.folder_source``, as training reads the folder).
"""

from __future__ import annotations

from unet.doctor.findings import IMBALANCE_THRESHOLD
from unet.doctor.inspect import inspect_folder
from unet.doctor.report import Finding, Report

__all__ = ["IMBALANCE_THRESHOLD", "Finding", "Report", "inspect_folder"]
