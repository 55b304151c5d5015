"""Fixtures for the k8s/ tests: overlays rendered with kubectl kustomize, and the store Secret.

Rendering needs kubectl (its built-in kustomize v5); a missing kubectl fails the tests with the fix,
it never skips them. No cluster is used or needed.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from k8s_support import Objects, parse

from search.k8s.render import K8S_DIR, kubectl_kustomize, render

SECRET_EXAMPLE = K8S_DIR / "secret" / "secret.env.example"


@pytest.fixture(scope="session")
def kubectl() -> str:
    """The path of kubectl, whose `kubectl kustomize` is kustomize v5 or newer."""
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not installed: install kubectl >= 1.27 (it includes kustomize v5)", pytrace=False
        )
    done = subprocess.run([path, "version", "--client", "-o", "json"], capture_output=True, text=True)
    version = json.loads(done.stdout)["kustomizeVersion"]
    if int(version.lstrip("v").split(".")[0]) < 5:
        pytest.fail(
            f"kubectl's kustomize is {version}: install kubectl >= 1.27 (kustomize v5)", pytrace=False
        )
    return path


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> Callable[..., Objects]:
    """``rendered(overlay, **options)``: the objects of ``python -m search.k8s render OVERLAY --option ...``;
    without options, of plain ``kubectl kustomize k8s/overlays/OVERLAY``. Each rendering is made once per
    session (kubectl takes a while); every call gets its own copy."""
    made: dict[tuple[str, tuple[tuple[str, Any], ...]], Objects] = {}

    def build(overlay: str, **options: Any) -> Objects:
        key = (overlay, tuple(sorted(options.items())))
        if key not in made:
            text = (
                render(overlay, **options) if options else kubectl_kustomize(K8S_DIR / "overlays" / overlay)
            )
            made[key] = parse(text)
        return copy.deepcopy(made[key])

    return build


@pytest.fixture(scope="session")
def store_secret(kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, Any]]:
    """``store_secret(UNET_SEARCH_STORAGE=url, ...)``: the Secret k8s/secret makes from the example file
    with those values filled in, as a user does (from a copy of k8s/secret, so secret.env stays absent)."""
    made: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}

    def build(**values: str) -> dict[str, Any]:
        key = tuple(sorted(values.items()))
        if key not in made:
            folder = tmp_path_factory.mktemp("secret")
            shutil.copy(K8S_DIR / "secret" / "kustomization.yaml", folder)
            lines = []
            for line in SECRET_EXAMPLE.read_text().splitlines():
                name = line.split("=", 1)[0]
                lines.append(
                    f"{name}={values[name]}" if not line.startswith("#") and name in values else line
                )
            (folder / "secret.env").write_text("\n".join(lines) + "\n")
            (made[key],) = parse(kubectl_kustomize(folder))
        return copy.deepcopy(made[key])

    return build
