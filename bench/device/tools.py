"""Helpers of the device check (``bench.device.check``): GPU utilisation sampling, and a command run in a
session of its own."""

from __future__ import annotations

import signal
import statistics
import subprocess
import threading
from pathlib import Path

import torch

from search.processes import end_session


class UtilisationSampler:
    """Samples GPU utilisation (nvidia-smi, else torch.cuda.utilization) every 0.5 s while in use."""

    def __init__(self, device: torch.device) -> None:
        self.device, self._stop = device, threading.Event()
        self.samples: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> UtilisationSampler:
        if self.device.type == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            value = gpu_utilisation(self.device)
            if value is not None:
                self.samples.append(value)

    def summary(self) -> dict[str, float] | None:
        if not self.samples:
            return None
        return {"mean": round(statistics.mean(self.samples), 1), "max": max(self.samples)}


def gpu_utilisation(device: torch.device) -> float | None:
    index = device.index or 0
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", f"--id={index}"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return float(out.stdout.strip().splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # no pynvml/amdsmi: no figure rather than a failed check
        return None


def run_in_own_session(
    command: list[str], *, cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int, str]:
    """Run ``command`` in a session of its own; past ``timeout``, SIGTERM it (the driver then marks its
    trials interrupted and stops its Ray), and 30 s later SIGKILL whatever of the session is left, so
    that no Ray process outlives the check."""
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        output += f"\n[device_check] stopped after {timeout:.0f} s"
    end_session(proc.pid)  # Ray daemons the driver left behind
    return (proc.returncode if proc.returncode is not None else -1), output
