"""The registry of ``python -m bench``'s sections, in the order they run and appear in ``BENCHMARKS.md``."""

from __future__ import annotations

from bench.diagnosis.section import DiagnosisSection
from bench.efficiency.section import EfficiencySection
from bench.flagship.section import FlagshipSection
from bench.orchestration.section import OrchestrationSection
from bench.pipeline.section import PipelineSection
from bench.section import Section
from bench.store.section import StoreSection
from bench.throughput.section import ThroughputSection

SECTIONS: dict[str, Section] = {
    section.name: section
    for section in (
        EfficiencySection(),
        ThroughputSection(),
        OrchestrationSection(),
        StoreSection(),
        PipelineSection(),
        DiagnosisSection(),
        FlagshipSection(),
    )
}
