"""Render an overlay of ``k8s/`` for one study: ``python -m search.k8s render OVERLAY ...``.

:func:`render` writes a kustomization on top of ``k8s/overlays/OVERLAY`` in a temporary directory, with
the study, the number of worker pods, the GPUs per pod and the image chosen, and returns what
``kubectl kustomize`` makes of it: the one-line way to choose them, with the overlays as the single
source of every manifest. A study file of your own (a path instead of a shipped name) goes into the
ConfigMap ``unet-search-studies``, which the pods mount at :data:`STUDY_MOUNT`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from search.spec.files import study_files
from search.spec.schema import STUDIES_DIR, SpecError
from unet.errors import ConfigError
from unet.registry import look_up

logger = logging.getLogger(__name__)

K8S_DIR = Path(__file__).resolve().parents[2] / "k8s"
# Where the pods mount the ConfigMap unet-search-studies (k8s/overlays/*/: volume "studies").
STUDY_MOUNT = "/etc/unet-search/studies"


@dataclass(frozen=True)
class Overlay:
    """What ``render`` may change in one overlay of ``k8s/overlays``."""

    study: bool  # runs or reads one study: --study sets the ConfigMap unet-search-params
    image: bool  # runs the unet-search image: --image replaces it
    scaled: tuple[str, str] | None = None  # (kind, name) of the object --workers and --gpus patch


OVERLAYS: dict[str, Overlay] = {
    "store": Overlay(study=False, image=False),
    "workers": Overlay(study=True, image=True, scaled=("Job", "unet-search-workers")),
    "ray": Overlay(study=True, image=True, scaled=("RayJob", "unet-search")),
    "dashboard": Overlay(study=False, image=True),
    "report": Overlay(study=True, image=True),
    "report-cron": Overlay(study=True, image=True),
}
# JSON-pointer paths of the worker count(s) and of the worker container's GPU limit, by scaled kind.
_SCALE_PATHS = {
    "Job": (("/spec/completions", "/spec/parallelism"), "/spec/template/spec/containers/0"),
    "RayJob": (
        tuple(
            f"/spec/rayClusterSpec/workerGroupSpecs/0/{k}" for k in ("replicas", "minReplicas", "maxReplicas")
        ),
        "/spec/rayClusterSpec/workerGroupSpecs/0/template/spec/containers/0",
    ),
}
_GPU_LIMIT = "/resources/limits/nvidia.com~1gpu"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# [registry[:port]/]path[:tag][@digest]; a ":digits" is a port only when a "/" follows.
_IMAGE = re.compile(
    r"(?P<name>[a-z0-9][^\s@:/]*(?::\d+(?=/))?(?:/[^\s@:/]+)*)"
    r"(?::(?P<tag>\w[\w.-]{0,127}))?(?:@(?P<digest>[a-z0-9]+:[0-9a-f]{32,}))?"
)


class RenderError(Exception):
    """``kubectl kustomize`` is missing or failed; the one-line message says what to do."""


def render(
    overlay: str,
    *,
    study: str | None = None,
    workers: int | None = None,
    gpus: int | None = None,
    image: str | None = None,
    namespace: str | None = None,
    k8s_dir: Path = K8S_DIR,
) -> str:
    """Return the manifests of ``k8s_dir/overlays/OVERLAY`` with the given choices, as YAML.

    Args:
        overlay: one of :data:`OVERLAYS`.
        study: a shipped study's name or the path of a study file (its name must be its file's stem).
        workers: worker pods (the Indexed Job's completions and parallelism, or the Ray GPU workers).
        gpus: GPUs per worker pod (``nvidia.com/gpu``); 0 runs on CPUs.
        image: the unet-search image, e.g. ``registry.example.com/unet-search:0.1.0``.
        namespace: the namespace of every object (default: the one kubectl applies to).
        k8s_dir: the folder with ``base/`` and ``overlays/``.

    Raises:
        ConfigError: an unknown overlay, an option the overlay does not take, or a bad value.
        SpecError: the study is not a shipped study nor a study file named after its file.
        RenderError: kubectl is missing or ``kubectl kustomize`` failed.
    """
    kustomization, files = build_kustomization(
        overlay, study=study, workers=workers, gpus=gpus, image=image, namespace=namespace, k8s_dir=k8s_dir
    )
    with tempfile.TemporaryDirectory(prefix="unet-search-k8s-") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        # kustomize takes resources by relative path only.
        kustomization["resources"] = [os.path.relpath(k8s_dir / "overlays" / overlay, tmp)]
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        return kubectl_kustomize(Path(tmp))


def build_kustomization(
    overlay: str,
    *,
    study: str | None = None,
    workers: int | None = None,
    gpus: int | None = None,
    image: str | None = None,
    namespace: str | None = None,
    k8s_dir: Path = K8S_DIR,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The kustomization ``render`` puts on top of the overlay (without ``resources``), and the files
    it reads (name -> text). Raises as :func:`render` does for bad input."""
    spec = look_up(OVERLAYS, overlay, what="overlay")
    if not (k8s_dir / "overlays" / overlay / "kustomization.yaml").is_file():
        raise RenderError(
            f"{k8s_dir / 'overlays' / overlay} has no kustomization.yaml: run from a checkout of unet-search"
        )
    _check_applies(overlay, spec, study=study, workers=workers, gpus=gpus, image=image)
    kustomization: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    files: dict[str, str] = {}
    if namespace is not None:
        if not _DNS_LABEL.fullmatch(namespace):
            raise ConfigError(
                f"--namespace {namespace!r} is not a Kubernetes namespace name: use lower-case letters, "
                f"digits and '-', at most 63 characters"
            )
        kustomization["namespace"] = namespace
    if image is not None:
        kustomization["images"] = [image_entry(image)]
    if study is not None:
        kustomization["configMapGenerator"], files = _study_generators(study)
    if spec.scaled is not None and (workers is not None or gpus is not None):
        kustomization["patches"] = [_scale_patch(spec.scaled, workers=workers, gpus=gpus)]
    return kustomization, files


def _check_applies(
    overlay: str,
    spec: Overlay,
    *,
    study: str | None,
    workers: int | None,
    gpus: int | None,
    image: str | None,
) -> None:
    given = {"--study": study, "--workers": workers, "--gpus": gpus, "--image": image}
    for option, value in given.items():
        if value is not None and not _takes(spec, option):
            takes = [name for name, other in OVERLAYS.items() if _takes(other, option)]
            raise ConfigError(f"{option} does not apply to the {overlay} overlay, only to {', '.join(takes)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1 but got {workers}")
    if gpus is not None and gpus < 0:
        raise ConfigError(f"--gpus must be >= 0 but got {gpus} (0 runs on CPUs)")


def _takes(spec: Overlay, option: str) -> bool:
    return {"--study": spec.study, "--image": spec.image}.get(option, spec.scaled is not None)


def image_entry(image: str) -> dict[str, str]:
    """The kustomize ``images`` entry that replaces the placeholder ``unet-search`` image by ``image``.

    Raises:
        ConfigError: ``image`` is not an image reference (``[registry[:port]/]path[:tag][@digest]``).
    """
    match = _IMAGE.fullmatch(image)
    if match is None:
        raise ConfigError(
            f"--image {image!r} is not an image reference: "
            f"write it like registry.example.com/unet-search:0.1.0"
        )
    entry = {"name": "unet-search", "newName": match["name"]}
    if match["tag"]:
        entry["newTag"] = match["tag"]
    if match["digest"]:
        entry["digest"] = match["digest"]
    return entry


def _study_generators(study: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """ConfigMap generators (merged into the base's) that select ``study``, and the files they read."""
    if study.endswith((".yaml", ".yml")) or "/" in study:
        path = Path(study).expanduser()
        name = _study_file_name(path)
        key = f"{name}.yaml"
        generators = [
            _merge("unet-search-params", literals=[f"STUDY={STUDY_MOUNT}/{key}", f"STUDY_NAME={name}"]),
            _merge("unet-search-studies", files=[key]),
        ]
        return generators, {key: path.read_text()}
    try:
        look_up(study_files(STUDIES_DIR), study, what="study")
    except ConfigError as e:
        raise SpecError(f"{e} (or give the path of a study file)") from e
    return [_merge("unet-search-params", literals=[f"STUDY={study}", f"STUDY_NAME={study}"])], {}


def _study_file_name(path: Path) -> str:
    """The study's name, from a file that must exist and carry its file's stem as ``name``.

    The file is checked fully in the pods (by ``search.run``), where its data paths exist.
    """
    if not path.is_file():
        raise SpecError(
            f"study file {str(path)!r} does not exist: give a .yaml file or a shipped study's name"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"study file {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from e
    name = raw.get("name") if isinstance(raw, dict) else None
    if name != path.stem:
        raise SpecError(
            f"name {name!r} must match the file name {path.stem!r}: "
            f"rename the file or set name: {path.stem} ({path})"
        )
    return name


def _merge(name: str, **sources: list[str]) -> dict[str, Any]:
    return {"name": name, "behavior": "merge", **sources}


def _scale_patch(target: tuple[str, str], *, workers: int | None, gpus: int | None) -> dict[str, Any]:
    """A JSON patch setting the worker count and the worker container's GPU limit of ``target``."""
    kind, name = target
    count_paths, container = _SCALE_PATHS[kind]
    ops: list[dict[str, Any]] = []
    if workers is not None:
        ops += [{"op": "replace", "path": path, "value": workers} for path in count_paths]
    if gpus:
        ops.append({"op": "replace", "path": container + _GPU_LIMIT, "value": gpus})
    elif gpus == 0:
        ops.append({"op": "remove", "path": container + _GPU_LIMIT})
    return {"target": {"kind": kind, "name": name}, "patch": yaml.safe_dump(ops, sort_keys=False)}


def kubectl_kustomize(directory: Path) -> str:
    """Return ``kubectl kustomize DIRECTORY``'s output.

    Raises:
        RenderError: kubectl is not installed, or kustomize failed (its first error line is quoted).
    """
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RenderError(
            "kubectl not found: install kubectl >= 1.27 (its `kubectl kustomize` is kustomize v5) and retry"
        )
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["no message"]
        raise RenderError(f"kubectl kustomize {directory} failed: {lines[-1].strip()}")
    return done.stdout
