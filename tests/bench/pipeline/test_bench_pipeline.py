"""bench.pipeline: the quick run end to end, and the report's line on the device check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.pipeline import section
from tests.bench.conftest import QuickRun


@pytest.mark.slow
@pytest.mark.db
def test_quick_pipeline_section(quick_run: QuickRun) -> None:
    # The pipeline section of the session's quick run (tests/bench/conftest.py).
    assert quick_run.status == 0
    figures = quick_run.section("pipeline")
    loader = figures["loader_items_per_s"]
    assert set(loader) == {
        "in_process",
        "workers_1_prefetch_2",
        "workers_1_prefetch_4",
        "workers_2_prefetch_2",
        "workers_2_prefetch_4",
        "in_process_geometry_on_device",
    }
    assert all(v > 0 for v in loader.values()) and figures["step_images_per_s"] > 0
    assert figures["loader_per_core_over_step"] == pytest.approx(
        loader["in_process"] / figures["step_images_per_s"], rel=0.01
    )
    assert figures["compile"] is None  # minutes on a CPU: only in the full run
    text = quick_run.report.read_text()
    assert "## Data pipeline (patch 32" in text and "not measured (quick run)" in text


def test_report_says_whether_a_device_check_ran(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(section, "DEVICE_CHECK", tmp_path / "device_check.json")
    assert "Device check: none was run" in section.device_check_line()
    (tmp_path / "device_check.json").write_text(
        json.dumps(
            {
                "date": "2026-11-29",
                "device_name": "NVIDIA H200",
                "fit_vs_bare": {"image_size": 256, "fit_over_bare": 0.97, "images_per_s": {}},
                "packing": {"1": {"aggregate_images_per_s": 900.0}, "2": {"aggregate_images_per_s": 1500.0}},
                "loader_only": {"items_per_s": {"in_process": 300.0}},
                "smoke_study": {"states": ["COMPLETE"] * 4},
            }
        )
    )
    line = section.device_check_line()
    assert "NVIDIA H200" in line and "0.97" in line and "'2': 1500.0" in line
