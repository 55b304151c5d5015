"""Every k8s/ overlay rendered with kubectl kustomize and every object validated offline.

Built-in kinds go through kubernetes-validate in strict mode (unknown fields are errors) at two fixed
Kubernetes versions: 1.31, the oldest the manifests need (podFailurePolicy is GA there), and the newest
the validator knows. The RayJob goes against KubeRay's own CRD schemas in ../shared/k8s-crds (made
strict the way the API server prunes: unknown fields are errors), its RayCluster spec against the
RayCluster schema, and its pod templates through kubernetes-validate as PodTemplates. Then the rules of
the issue are checked on what was rendered: resources, security contexts, the Secret, Job policies.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from k8s_support import (
    REPO,
    config_map,
    container,
    containers,
    dockerfile_env,
    dockerfile_instructions,
    find,
    pod_specs,
    secret_values,
)

from search.k8s import cli as k8s
from search.k8s.render import OVERLAYS, STUDY_MOUNT, RenderError, build_kustomization, render
from search.spec.schema import SpecError
from search.store import location as store
from unet.errors import ConfigError

CRDS = REPO.parent / "shared" / "k8s-crds" / "jsonschema"
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
WORKLOADS = ("Job", "CronJob", "Deployment", "StatefulSet", "RayJob")
IMAGE = "registry.example.com/team/unet-search:1.2.3"
# Every way the tests render: each overlay as it is, and with every option of render.
RENDERINGS = [pytest.param(name, {}, id=name) for name in OVERLAYS] + [
    pytest.param(
        "workers",
        {"study": "unet-arch", "workers": 5, "gpus": 2, "image": IMAGE, "namespace": "team-a"},
        id="workers-options",
    ),
    pytest.param("workers", {"gpus": 0}, id="workers-cpu"),
    pytest.param("ray", {"study": "unet-full", "workers": 3, "gpus": 4, "image": IMAGE}, id="ray-options"),
    pytest.param("ray", {"gpus": 0}, id="ray-cpu"),
    pytest.param("report", {"study": "unet-full", "image": IMAGE}, id="report-options"),
    pytest.param("report-cron", {"image": IMAGE, "namespace": "team-a"}, id="report-cron-options"),
    pytest.param("dashboard", {"image": IMAGE, "namespace": "team-a"}, id="dashboard-options"),
    pytest.param("store", {"namespace": "team-a"}, id="store-options"),
]


@cache
def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """A validator of KubeRay's schema of ``kind`` (v1), with unknown fields made errors as the API
    server's pruning and strict field validation make them."""
    schema = json.loads((CRDS / f"{kind.lower()}_v1.json").read_text())

    def strict(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema)
    return jsonschema.validators.validator_for(schema)(schema)


def validate_builtin(obj: dict[str, Any]) -> None:
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(
                f"{obj['kind']}/{obj['metadata']['name']} at {path} (Kubernetes {version}): {e.message}"
            )


def validate_ray(obj: dict[str, Any]) -> None:
    assert obj["apiVersion"] == "ray.io/v1" and obj["kind"] == "RayJob", "only RayJob is expected"
    crd_validator("RayJob").validate(obj)
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "x"}}
    crd_validator("RayCluster").validate({**cluster, "spec": obj["spec"]["rayClusterSpec"]})
    for where, pod in pod_specs(obj):
        template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}}
        template["template"] = {"spec": pod}
        try:
            validate_builtin(template)
        except pytest.fail.Exception as e:
            pytest.fail(f"{where}: {e}")
    # KubeRay's operator checks these when it admits the RayJob (not in the schema).
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"])
    spec = obj["spec"]
    assert (
        spec["ttlSecondsAfterFinished"] >= 0
        and spec["activeDeadlineSeconds"] > 0
        and spec["backoffLimit"] >= 0
    )
    for group in [spec["rayClusterSpec"]["headGroupSpec"], *spec["rayClusterSpec"]["workerGroupSpecs"]]:
        starts = group.get("rayStartParams", {})
        assert not (group.get("resources") and {"num-cpus", "num-gpus", "memory", "resources"} & set(starts))
    assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize(("overlay", "options"), RENDERINGS)
def test_every_object_validates_offline(rendered, overlay, options):
    objects = rendered(overlay, **options)
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("ray.io/"):
            validate_ray(obj)
        else:
            validate_builtin(obj)
        if "namespace" in options:
            assert obj["metadata"]["namespace"] == options["namespace"]


def test_the_validation_catches_mistakes(rendered):
    """The validators reject what the API server would: an unknown field, a wrong type, in both kinds."""
    job = find(rendered("workers"), "Job")
    for broken in (
        {**job, "spec": {**job["spec"], "completion": 3}},
        {**job, "spec": {**job["spec"], "backoffLimit": "three"}},
    ):
        with pytest.raises(pytest.fail.Exception):
            validate_builtin(broken)
    rayjob = find(rendered("ray"), "RayJob")
    bad = copy.deepcopy(rayjob)
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplica"] = 2
    with pytest.raises(jsonschema.ValidationError):
        validate_ray(bad)
    bad = copy.deepcopy(rayjob)
    bad["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises((jsonschema.ValidationError, pytest.fail.Exception)):
        validate_ray(bad)


@pytest.mark.parametrize(("overlay", "options"), RENDERINGS)
def test_every_container_is_bounded_and_locked_down(rendered, overlay, options):
    objects = rendered(overlay, **options)
    pods = [(where, pod) for obj in objects if obj["kind"] in WORKLOADS for where, pod in pod_specs(obj)]
    assert pods
    for where, pod in pods:
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] > 0, where
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in containers(pod):
            at = f"{where} container {c['name']}"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{at}: {bound}"
            assert c["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, at
            # A read-only root needs a writable /tmp (caches, Ray's session files).
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]], at


@pytest.mark.parametrize(("overlay", "options"), RENDERINGS)
def test_credentials_come_only_from_the_store_secret(rendered, store_secret, overlay, options):
    keys = set(secret_values(store_secret()))
    objects = rendered(overlay, **options)
    assert not [o for o in objects if o["kind"] == "Secret"], "the Secret is applied on its own (k8s/secret)"
    for obj in objects:
        for where, pod in pod_specs(obj):
            for c in containers(pod):
                for env in c.get("env", []):
                    text = json.dumps(env)
                    if env["name"] in ("UNET_SEARCH_STORAGE", "POSTGRES_PASSWORD"):
                        ref = env["valueFrom"]["secretKeyRef"]
                        assert ref["name"] == "unet-search-store" and ref["key"] in keys, where
                    assert "://" not in env.get("value", "") and "password=" not in text.lower(), where
                # The store URL is never spelt out on a command line of ours.
                assert "postgresql" not in json.dumps([c.get("command"), c.get("args")]), where


@pytest.mark.parametrize(("overlay", "options"), RENDERINGS)
def test_every_reference_resolves_within_the_rendering(rendered, overlay, options):
    """Generated names carry a hash; every ConfigMap, key, volume and port a pod names exists."""
    objects = rendered(overlay, **options)
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    for obj in objects:
        for where, pod in pod_specs(obj):
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            templates = {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
            for volume in volumes.values():
                if "configMap" in volume:
                    assert volume["configMap"]["name"] in maps, where
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims, where
            for c in containers(pod):
                for mount in c.get("volumeMounts", []):
                    assert mount["name"] in volumes or mount["name"] in templates, f"{where}: {mount}"
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("configMapKeyRef")
                    if ref:
                        assert ref["key"] in maps.get(ref["name"], {}), f"{where}: {ref}"


def test_workers_job_is_indexed_and_treats_interrupts_as_no_failure(rendered):
    job = find(rendered("workers", workers=4), "Job", "unet-search-workers")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 4
    assert spec["backoffLimit"] >= 1 and spec["activeDeadlineSeconds"] > 0
    assert spec["podReplacementPolicy"] == "Failed"  # a new pod waits until the old one marked its trial
    actions = {
        (rule["action"], tuple(rule["onExitCodes"]["values"])): rule["onExitCodes"]["containerName"]
        for rule in spec["podFailurePolicy"]["rules"]
        if "onExitCodes" in rule
    }
    assert actions == {("Ignore", (130,)): "worker", ("FailJob", (2,)): "worker"}
    conditions = [r for r in spec["podFailurePolicy"]["rules"] if "onPodConditions" in r]
    assert (
        conditions[0]["action"] == "Ignore"
        and conditions[0]["onPodConditions"][0]["type"] == "DisruptionTarget"
    )
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] >= 60
    worker = container(pod, "worker")
    assert pod["containers"][0] is worker  # render patches containers/0
    assert worker["command"] + worker["args"] == [
        "python", "-m", "search.run", "--study", "$(STUDY)", "--backend", "local",
    ]  # fmt: skip
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container(pod, "wait-for-store")["command"][:4] == ["python", "-m", "search.k8s", "wait-store"]


def test_rayjob_runs_the_study_on_the_ray_backend_and_cleans_up(rendered):
    objects = rendered("ray", study="unet-full", workers=3, gpus=2)
    rayjob = find(objects, "RayJob", "unet-search")
    spec = rayjob["spec"]
    assert spec["entrypoint"] == "python -m search.run --study $STUDY --backend ray"
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert spec["activeDeadlineSeconds"] > 0 and spec["backoffLimit"] >= 0
    (group,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 3
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert spec["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    # $STUDY is expanded by the submitter's shell or the head's: both must hold the same study.
    params = config_map(objects, "unet-search-params")
    assert params["data"]["STUDY"] == "unet-full"
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    submitter = spec["submitterPodTemplate"]["spec"]["containers"][0]
    for c in (head, submitter):
        (study,) = [e for e in c["env"] if e["name"] == "STUDY"]
        assert study["valueFrom"]["configMapKeyRef"] == {"name": params["metadata"]["name"], "key": "STUDY"}
    # The image's Ray is the cluster's Ray.
    ray_version = [
        rest for word, rest in dockerfile_instructions() if word == "ARG" and "RAY_VERSION" in rest
    ]
    assert ray_version == [f"RAY_VERSION={spec['rayClusterSpec']['rayVersion']}"]


def test_store_is_a_postgres_statefulset_with_a_volume_and_a_service(rendered):
    objects = rendered("store")
    sts, service = find(objects, "StatefulSet", "unet-search-db"), find(objects, "Service", "unet-search-db")
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    postgres = container(sts["spec"]["template"]["spec"], "postgres")
    assert service["spec"]["ports"][0]["targetPort"] in [p["name"] for p in postgres["ports"]]
    env = {e["name"]: e for e in postgres["env"]}
    # The example Secret's URL names this database, user and service.
    url = [
        line for line in (REPO / "k8s/secret/secret.env.example").read_text().splitlines() if "://" in line
    ]
    user, database = env["POSTGRES_USER"]["value"], env["POSTGRES_DB"]["value"]
    assert f"//{user}:" in url[0] and url[0].endswith(f"@{service['metadata']['name']}:5432/{database}")


def test_dashboard_serves_the_store_on_a_cluster_ip_service(rendered):
    objects = rendered("dashboard")
    deployment, service = find(objects, "Deployment"), find(objects, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    dashboard = container(pod["spec"], "dashboard")
    assert service["spec"]["ports"][0]["targetPort"] in [p["name"] for p in dashboard["ports"]]
    assert dashboard["command"] == ["python", "-m", "search.dashboard"]  # the store URL from the Secret
    assert dashboard["args"] == ["--host", "0.0.0.0", "--port", str(dashboard["ports"][0]["containerPort"])]
    probe = dashboard["readinessProbe"]["httpGet"]
    assert probe["port"] == dashboard["ports"][0]["name"]


def test_report_job_and_cronjob_share_one_spec(rendered):
    job = find(rendered("report", study="unet-full"), "Job", "unet-search-report")
    cron_objects = rendered("report-cron", study="unet-full")
    assert not [o for o in cron_objects if o["kind"] == "Job"]
    cron = find(cron_objects, "CronJob", "unet-search-report")
    assert cron["spec"]["jobTemplate"]["spec"] == job["spec"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert job["spec"]["backoffLimit"] >= 0 and job["spec"]["activeDeadlineSeconds"] > 0
    pod = job["spec"]["template"]["spec"]
    report = container(pod, "report")
    assert report["command"] == ["python", "-m", "search.report"]
    args = report["args"]
    assert args[args.index("--study") + 1] == "$(STUDY_NAME)"
    out = args[args.index("--out") + 1]
    (mount,) = [m for m in report["volumeMounts"] if out.startswith(m["mountPath"] + "/")]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == "unet-search-reports"
    find(cron_objects, "PersistentVolumeClaim", "unet-search-reports")


def test_render_replaces_the_image_of_every_unet_search_container(rendered):
    for overlay in ("workers", "ray", "dashboard", "report", "report-cron"):
        for obj in rendered(overlay, image=IMAGE):
            for where, pod in pod_specs(obj):
                assert {c["image"] for c in containers(pod)} == {IMAGE}, where
    plain = [c["image"] for o in rendered("workers") for _, pod in pod_specs(o) for c in containers(pod)]
    assert set(plain) == {"unet-search:0.1.0"}


@pytest.mark.parametrize("overlay", ["workers", "ray"])
def test_render_without_gpus_asks_for_none(rendered, overlay):
    assert "nvidia.com/gpu" not in json.dumps(rendered(overlay, gpus=0))


@pytest.mark.parametrize("overlay", ["workers", "ray", "report", "report-cron"])
def test_render_mounts_a_study_file_of_your_own(rendered, tmp_path, overlay):
    study = tmp_path / "my-study.yaml"
    study.write_text(
        (REPO / "studies" / "unet-smoke.yaml").read_text().replace("name: unet-smoke", "name: my-study")
    )
    objects = rendered(overlay, study=str(study))
    params = config_map(objects, "unet-search-params")["data"]
    assert params == {"STUDY": f"{STUDY_MOUNT}/my-study.yaml", "STUDY_NAME": "my-study"}
    files = config_map(objects, "unet-search-studies")
    assert files["data"] == {"my-study.yaml": study.read_text()}
    readers = 0
    for obj in objects:
        for where, pod in pod_specs(obj):
            volumes = {v["name"]: v for v in pod["volumes"]}
            for c in containers(pod):
                if any(e["name"] == "STUDY" for e in c.get("env", [])) and "submitter" not in where:
                    readers += 1
                    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == STUDY_MOUNT]
                    assert volumes[mount["name"]]["configMap"]["name"] == files["metadata"]["name"], where
    assert readers or overlay.startswith("report")  # the report reads STUDY_NAME only


@pytest.mark.parametrize(
    ("overlay", "options", "error", "message"),
    [
        ("workerz", {}, ConfigError, "Did you mean 'workers'"),
        ("dashboard", {"workers": 2}, ConfigError, "--workers does not apply to the dashboard overlay"),
        ("store", {"image": IMAGE}, ConfigError, "--image does not apply to the store overlay"),
        ("report", {"gpus": 1}, ConfigError, "only to workers, ray"),
        ("workers", {"workers": 0}, ConfigError, "--workers must be >= 1 but got 0"),
        ("ray", {"gpus": -1}, ConfigError, "--gpus must be >= 0 but got -1"),
        ("workers", {"image": "registry/unet search"}, ConfigError, "'registry/unet search' is not an image"),
        ("workers", {"namespace": "Team_A"}, ConfigError, "'Team_A' is not a Kubernetes namespace"),
        ("workers", {"study": "unet-lrr"}, SpecError, "Did you mean 'unet-lr'"),
        ("workers", {"study": "/nonexistent/s.yaml"}, SpecError, "'/nonexistent/s.yaml' does not exist"),
    ],
)
def test_render_refuses_bad_input_in_one_line(overlay, options, error, message):
    with pytest.raises(error) as raised:
        build_kustomization(overlay, **options)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_render_refuses_a_study_file_not_named_after_its_file(tmp_path):
    study = tmp_path / "copy.yaml"
    study.write_text((REPO / "studies" / "unet-smoke.yaml").read_text())
    with pytest.raises(SpecError, match="name 'unet-smoke' must match the file name 'copy'"):
        build_kustomization("workers", study=str(study))


def test_render_says_when_kubectl_is_missing(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RenderError, match="kubectl not found: install kubectl"):
        render("store")


def test_rendering_runs_the_kubectl_of_the_test_extra_not_the_paths(kubectl):
    # The machine's kubectl may be older (Debian 12's kubernetes-client is 1.20); the test extra's is 1.37.
    assert shutil.which("kubectl") == kubectl
    done = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True)
    version = json.loads(done.stdout)["clientVersion"]
    assert (int(version["major"]), int(version["minor"].rstrip("+"))) >= (1, 37)


def test_the_secret_is_made_from_a_git_ignored_file(store_secret):
    secret = store_secret()
    assert secret["metadata"]["name"] == "unet-search-store"
    validate_builtin(secret)
    values = secret_values(secret)
    assert set(values) == {"UNET_SEARCH_STORAGE", "POSTGRES_PASSWORD"}
    assert all("CHANGE-ME" in value for value in values.values())  # placeholders only
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", "k8s/secret/secret.env"], cwd=REPO, check=False
    )
    assert ignored.returncode == 0, "k8s/secret/secret.env must be git-ignored"


def test_dockerfile_runs_search_run_as_a_non_root_user(rendered):
    instructions = dockerfile_instructions()
    words = dict(instructions)
    assert words["FROM"].startswith("python:3.11")
    assert json.loads(words["ENTRYPOINT"]) == ["python", "-m", "search.run"]
    user = words["USER"].split(":")
    assert all(part.isdigit() and int(part) > 0 for part in user)  # numeric: runAsNonRoot can check it
    for obj in rendered("workers"):
        for where, pod in pod_specs(obj):
            assert str(pod["securityContext"]["runAsUser"]) == user[0], where
    assert "constraints/cpu.txt" not in (REPO / "Dockerfile").read_text().split("FROM", 1)[1].replace(
        "No constraints/cpu.txt", ""
    )
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "k8s/secret/secret.env" in ignored and ".venv" in ignored
    for word, rest in instructions:
        if word == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert (REPO / source).exists() and source.rstrip("/") not in ignored, source
    # A read-only root: every cache and config directory the image names lies in the /tmp emptyDir.
    env = dockerfile_env(instructions)
    for cache_dir in ("XDG_CACHE_HOME", "MPLCONFIGDIR", "TORCH_HOME", "TRITON_CACHE_DIR"):
        assert env[cache_dir].startswith("/tmp/"), cache_dir


def test_every_overlay_is_a_kustomization_the_renderer_knows():
    overlays = {p.parent.name for p in (REPO / "k8s" / "overlays").glob("*/kustomization.yaml")}
    assert overlays == set(OVERLAYS)
    assert Path(REPO / "k8s" / "base" / "kustomization.yaml").is_file()


def test_cli_prints_the_rendering_or_one_line_of_error(kubectl, capsys, monkeypatch):
    assert k8s.main(["render", "store", "--namespace", "team-a"]) == 0
    out = capsys.readouterr().out
    assert "kind: StatefulSet" in out and "namespace: team-a" in out
    assert k8s.main(["render", "workers", "--workers", "0"]) == 2
    assert capsys.readouterr().err == "error: --workers must be >= 1 but got 0\n"
    monkeypatch.delenv(k8s.STORAGE_ENV, raising=False)
    assert k8s.main(["wait-store"]) == 2
    assert "set $UNET_SEARCH_STORAGE" in capsys.readouterr().err
    assert k8s.STORAGE_ENV == store.STORAGE_ENV == "UNET_SEARCH_STORAGE"  # filled from the Secret
