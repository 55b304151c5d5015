"""Why did this U-Net's loss not decrease? A label, the numbers and a change to try, for every trial.

``diagnose`` (in :mod:`search.diagnosis.diagnose`) is a pure function of a trial's recorded history and
settings; :mod:`search.report.next_step` turns a study's diagnoses into its single most useful next step.
"""

from __future__ import annotations

from search.diagnosis.diagnose import diagnose
from search.diagnosis.labels import CAUSES, DIAGNOSES, Diagnosis
from search.diagnosis.peers import Peers

__all__ = ["CAUSES", "DIAGNOSES", "Diagnosis", "Peers", "diagnose"]
