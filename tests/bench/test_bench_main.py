"""``python -m bench``: the section registry and its interface, ``--only``, the report, and the whole quick
run end to end (CI mode; no thresholds on timings)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from bench.__main__ import main
from bench.paths import REPO
from bench.report import render
from bench.section import Section
from bench.sections import SECTIONS
from tests.bench.conftest import QuickRun

# The --only names before bench/ became one package per section: they must keep working; then the new ones.
NAMES = ["efficiency", "throughput", "orchestration", "store", "pipeline", "diagnosis", "flagship"]


def test_the_registry_keeps_every_section_name_in_order() -> None:
    assert list(SECTIONS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_section_implements_the_interface(name: str) -> None:
    section = SECTIONS[name]
    assert isinstance(section, Section)
    assert section.name == name
    assert list(inspect.signature(section.run).parameters) == ["options"]
    assert list(inspect.signature(section.markdown).parameters) == ["figures", "meta"]
    # Each section lives in its own package, beside the measurements it runs.
    assert type(section).__module__ == f"bench.{name}.section"


def test_choosing_sections_imports_no_measurement() -> None:
    # Listing or refusing sections must not pay for torch, Ray or Optuna: those load inside run().
    probe = "import sys, bench.__main__; print([m for m in ('torch', 'ray', 'optuna') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["--only", "stor"],
            "error: --only 'stor' is not a section (did you mean store?): choose from " + ", ".join(NAMES),
        ),
        (
            ["--only", "store", "gpu"],
            "error: --only 'gpu' is not a section: choose from " + ", ".join(NAMES),
        ),
    ],
)
def test_only_with_an_unknown_name_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    out = tmp_path / "results"
    assert main([*argv, "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [line]
    assert not out.exists()  # refused before anything ran


def test_the_command_line_exits_2_on_an_unknown_section(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: --only 'nope'")


META: dict[str, Any] = {
    "command": "python -m bench --only orchestration",
    "date": "2026-12-07 03:00:00 UTC",
    "seconds": 12.0,
    "quick": True,
    "cpu": "Test CPU",
    "cores": 2,
    "memory_gb": 8.0,
    "platform": "Linux",
    "versions": {"python": "3.11.7", "ray": "2.50.0"},
    "section_seconds": {"orchestration": 11.0, "store": 1.0},
}


def _backend(wall: float, steady: float) -> dict[str, Any]:
    return {
        "trials": 3,
        "wall_s": wall,
        "train_s": 0.3,
        "overhead_per_trial_s": 0.5,
        "steady_overhead_per_trial_s": steady,
        "startup_s": 1.0,
        "shutdown_s": 0.5,
    }


def test_the_report_gives_every_section_its_place_in_registry_order() -> None:
    orchestration = {
        "local": _backend(1.0, 0.05),
        "ray": _backend(9.0, 0.25),
        "ray_minus_local_steady_s": 0.2,
        "goal_s": 0.3,
        "goal_met": True,
    }
    results = {"meta": META, "sections": {"orchestration": orchestration, "store": {"error": "boom"}}}
    text = render(results)
    # The section's own table, its heading one level down, with the run's machine and versions.
    heading = "## Orchestration overhead per trial (2026-12-07 03:00:00 UTC, Test CPU, 2 CPUs, ray 2.50.0)"
    assert heading in text
    assert "| ray | 3 | 9.0 | 0.3 | 0.5 | 0.25 | 1.0 | 0.5 |" in text
    assert "(goal <= 0.3 s: met)" in text
    assert "## Store\n\nFailed: `boom`" in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Efficiency",
        "## Throughput",
        heading,
        "## Store",
        "## Pipeline",
        "## Diagnosis",
        "## Flagship",
    ]


@pytest.mark.slow
@pytest.mark.db
def test_quick_mode_end_to_end(quick_run: QuickRun) -> None:
    # The session's run of every section (tests/bench/conftest.py); each section's own figures are
    # checked by its tests (efficiency, pipeline, diagnosis) or here (throughput, store).
    assert quick_run.status == 0
    results = quick_run.results
    sections = results["sections"]
    assert list(sections) == NAMES  # every registered section ran, in order, and none failed
    for name, figures in sections.items():
        assert "error" not in figures, (name, figures)
        assert quick_run.section(name) == figures  # OUT/<name>.json holds the same figures
    meta = results["meta"]
    assert meta["quick"] and meta["command"] == "python -m bench --quick"
    assert list(meta["section_seconds"]) == NAMES
    assert meta["versions"]["optuna"] == optuna.__version__
    throughput = sections["throughput"]
    assert throughput["fit_gflops"] > 0 and throughput["matmul_gflops"] > 0
    for backend in ("sqlite", "postgresql", "mariadb"):
        store = sections["store"][backend]
        assert [w["workers"] for w in store["workers"]] == [2]  # quick: two processes at once
        assert all(w["errors"] == 0 for w in store["workers"]), store["workers"]
        assert [g["trials_in_study"] for g in store["growth"]] == [10, 100]
    # The report: the header, then every section's own part in the registry's order.
    text = quick_run.report.read_text()
    assert text.startswith("# Benchmarks\n") and "quick mode" in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert [h.split(" (")[0] for h in headings] == [
        "## Search efficiency",
        "## Training throughput",
        "## Orchestration overhead per trial",
        "## Store",
        "## Data pipeline",
        "## Diagnosis",
        "## Flagship: the Quickstart's study as shipped",
    ]
    # Strict JSON: NaN and inf are written as strings.
    json.loads(
        (quick_run.out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}")
    )
