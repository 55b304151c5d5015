"""Checks that every test run needs before its first test: the shared folder beside the checkout.

The data-pipeline and end-to-end tests train on real images (``../shared/data/dsb2018-nuclei``) and the
Kubernetes tests validate the RayJob against KubeRay's schemas (``../shared/k8s-crds``). Without them a
run would end in dozens of unrelated-looking failures, or, worse, skip them; it stops at once instead,
with one line that names the missing folder and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NEEDED = (SHARED / "data" / "dsb2018-nuclei" / "images", SHARED / "k8s-crds" / "jsonschema")


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [str(path) for path in NEEDED if not path.is_dir()]
    if missing:
        raise pytest.UsageError(
            f"the tests need ../shared beside the checkout; missing: {', '.join(missing)}: "
            "clone the repository into the folder that holds 'shared'"
        )
