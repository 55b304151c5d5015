"""The store, the report's tables, the Kubernetes commands and the workers' bookkeeping import without torch.

Every store worker, the wait-for-store init container and manifest rendering import these modules; with
torch (and albumentations, cv2) behind them each paid ~2.5 s before doing anything. A fresh interpreter
per check, since this test process has long imported torch.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT_MODULES = [
    "search.store.epochs",
    "search.store.heartbeat",
    "search.store.reaper",
    "search.store.claims",
    "search.report.data",
    "search.report.tables",
    "search.report.cli",
    "search.k8s.render",
    "search.k8s.store_wait",
    "search.k8s.cli",
    "search.processes",
    "unet.history",
]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_importing_does_not_import_torch(module: str) -> None:
    heavy = ("torch", "cv2", "albumentations")
    code = f"import sys, {module}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", f"importing {module} imports {done.stdout.strip()}"


def test_unet_keeps_its_two_call_api_without_paying_for_it_up_front() -> None:
    code = (
        "import sys, unet; assert 'torch' not in sys.modules; "
        "import unet.predict.cli; "
        "print(unet.predict.__module__, unet.load_model.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["unet.inference", "unet.inference"]
