"""Checks that every test run needs before its first test: the shared folder beside the checkout.

The data-pipeline and end-to-end tests train on real images (``../shared/data/dsb2018-nuclei``) and the
Kubernetes tests validate the RayJob against KubeRay's schemas (``../shared/k8s-crds``). Without them a
run would end in dozens of unrelated-looking failures, or, worse, skip them; it stops at once instead,
with one line that names the missing folder and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


FailWrites = Callable[[Path, int], None]


@pytest.fixture
def fail_writes_under(monkeypatch: pytest.MonkeyPatch) -> FailWrites:
    """``fail_writes_under(folder, errno.EROFS)``: creating files and folders under ``folder`` fails.

    A read-only mount (``EROFS``) or a full disk (``ENOSPC``) at the ``os`` level, whatever code is
    above it; the tests run as root, for whom a read-only mode bit means nothing.
    """
    real_open, real_mkdir = os.open, os.mkdir
    refused_folders: list[tuple[Path, int]] = []

    def refused(path: object) -> int | None:
        target = Path(os.fsdecode(path)).resolve()  # type: ignore[arg-type]
        return next((code for folder, code in refused_folders if target.is_relative_to(folder)), None)

    def fake_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        code = refused(path) if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) else None
        if code is not None:
            raise OSError(code, os.strerror(code), os.fsdecode(path))  # type: ignore[arg-type]
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    def fake_mkdir(path: object, *args: object, **kwargs: object) -> None:
        code = refused(path)
        if code is not None:
            raise OSError(code, os.strerror(code), os.fsdecode(path))  # type: ignore[arg-type]
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]

    def fail(folder: Path, code: int) -> None:
        refused_folders.append((folder.resolve(), code))
        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)

    return fail
