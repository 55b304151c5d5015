"""Helpers shared by the k8s/ tests: rendered objects, the workloads' pod specs, the Dockerfile."""

from __future__ import annotations

import base64
import shlex
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

Objects = list[dict[str, Any]]


def parse(text: str) -> Objects:
    """The objects of a multi-document YAML text."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def secret_values(secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's data, decoded."""
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def dockerfile_instructions(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip().removesuffix("\\") + " "
            continue
        word, _, rest = (pending + line).strip().partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    return instructions


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The image's environment from its ENV instructions (KEY=VALUE form)."""
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def find(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of ``kind`` (and ``name``, if given) among ``objects``."""
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    )
    return found[0]


def config_map(objects: Objects, name: str) -> dict[str, Any]:
    """The ConfigMap generated as ``name`` (kustomize appends a content hash to the name)."""
    found = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].rsplit("-", 1)[0] == name
    ]
    assert len(found) == 1, f"expected one ConfigMap {name}-<hash>"
    return found[0]


def pod_specs(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every pod spec in a workload object, with where it sits (for messages); [] for other kinds."""
    kind, spec, name = obj["kind"], obj.get("spec", {}), obj["metadata"]["name"]
    if kind in ("Job", "Deployment", "StatefulSet"):
        return [(f"{kind}/{name}", spec["template"]["spec"])]
    if kind == "CronJob":
        return [(f"CronJob/{name}", spec["jobTemplate"]["spec"]["template"]["spec"])]
    if kind == "RayJob":
        cluster = spec["rayClusterSpec"]
        found = [(f"RayJob/{name} head", cluster["headGroupSpec"]["template"]["spec"])]
        found += [
            (f"RayJob/{name} {g['groupName']}", g["template"]["spec"]) for g in cluster["workerGroupSpecs"]
        ]
        if "submitterPodTemplate" in spec:
            found.append((f"RayJob/{name} submitter", spec["submitterPodTemplate"]["spec"]))
        return found
    return []


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """A pod spec's init containers and containers."""
    return [*pod.get("initContainers", []), *pod["containers"]]


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in containers(pod) if c["name"] == name]
    return found
