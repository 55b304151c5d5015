"""bench/device_check.sh and bench.device.check: the clear exit without CUDA, every part on the CPU, tiny."""

from __future__ import annotations

import json
import subprocess

import pytest

from bench.device.check import main
from bench.paths import REPO


def test_without_cuda_the_check_exits_2_with_one_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the device check needs a CUDA GPU")
    assert not (tmp_path / "d.json").exists()


def test_the_shell_script_exits_2_without_cuda(tmp_path):
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "device_check.sh"), str(tmp_path / "d.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: the device check needs a CUDA GPU")


@pytest.mark.slow
def test_every_part_runs_on_the_cpu(tmp_path, monkeypatch):
    # In this process (the shell script's test above starts the command line as a process): the packed
    # trials and the smoke study still run in processes of their own.
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "d.json"
    status = main(["--device", "cpu", "--tiny", "--out", str(out)])
    figures = json.loads(out.read_text())
    assert status == 0, {k: v for k, v in figures.items() if isinstance(v, dict) and "error" in v}
    assert figures["device"] == "cpu" and figures["tiny"]
    assert figures["fit_vs_bare"]["fit_over_bare"] > 0
    assert figures["fit_vs_bare"]["precision"] == "float32"
    assert figures["fit_vs_bare"]["interleaved"] and figures["fit_vs_bare"]["fit_over_bare_spread"]["min"] > 0
    assert figures["fit_vs_bare"]["syncs_per_step"] is None  # counted with CUDA's sync debug mode only
    packed = figures["packing"]
    assert set(packed) == {"2"}  # tiny: two processes at once (the full check also runs 1 and 4)
    assert len(packed["2"]["per_trial_images_per_s"]) == 2 and packed["2"]["aggregate_images_per_s"] > 0
    assert packed["2"]["gpu_utilisation_percent"] is None  # no GPU to sample
    assert figures["loader_only"]["auto_workers"] == 0  # CPU: in-process
    assert figures["loader_only"]["items_per_s"]["in_process"] > 0
    study = figures["smoke_study"]
    assert study["exit_status"] == 0, study["output_tail"]
    assert len(study["states"]) == 4 and set(study["states"]) <= {"COMPLETE", "PRUNED"}
    assert study["gpu_ids"] == [[]] * 4  # a CPU-only Ray: gpus_per_trial 0.25 becomes 0, with a warning
