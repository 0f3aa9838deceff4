"""infra/: the compose file is valid for `docker-compose config`, every Kubernetes manifest
validates against the Kubernetes schemas (offline, the `kubernetes-validate` package), and
the Honk Deployments have probes, resources and a termination grace longer than the worker's
graceful shutdown. (There is no Docker engine here, so the image itself is not built.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from conftest import ROOT

INFRA = ROOT / "infra"
MANIFESTS = sorted(p for p in (INFRA / "k8s").glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def worker_shutdown_grace_s() -> int:
    """The worker's graceful shutdown, read from where it is configured."""
    source = (ROOT / "workers" / "main.py").read_text()
    [seconds] = re.findall(r"graceful_shutdown_timeout=timedelta\(seconds=(\d+)\)", source)
    return int(seconds)


@pytest.mark.skipif(
    not shutil.which("docker-compose"), reason="docker-compose is not installed (`make test` installs it)"
)
def test_compose_file_is_valid_and_complete() -> None:
    done = subprocess.run(
        ["docker-compose", "-f", "infra/compose.yaml", "--env-file", "infra/honk.env.example", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    for name in (
        "postgresql",
        "temporal",
        "temporal-ui",
        "minio",
        "otel-collector",
        "jaeger",
        "prometheus",
        "honk-setup",
        "honk-worker",
        "honk-worker-android",
        "honk-chat",
        "honk-codec",
    ):
        assert name in services, name
    assert services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"] == "http://localhost:8235"
    assert services["honk-setup"]["command"] == ["setup"]
    for worker in ("honk-worker", "honk-worker-android", "honk-chat"):
        assert services[worker]["depends_on"]["honk-setup"]["condition"] == "service_completed_successfully"
    grace = worker_shutdown_grace_s()
    for worker in ("honk-worker", "honk-worker-android"):
        assert int(services[worker]["stop_grace_period"].rstrip("s")) > grace
        assert "seccomp=unconfined" in services[worker]["security_opt"]  # the sandbox's namespaces
    for stateful in ("postgresql", "minio", "prometheus", "honk-worker"):
        sources = {v["source"] if isinstance(v, dict) else v.split(":")[0] for v in services[stateful]["volumes"]}
        assert sources & set(config["volumes"]), f"{stateful} keeps its state in a named volume"
    for checked in ("postgresql", "temporal", "minio", "prometheus"):
        assert "healthcheck" in services[checked], checked


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_validates_against_the_kubernetes_schemas(path: Path) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_honk_deployments_have_probes_resources_and_a_long_enough_grace() -> None:
    grace = worker_shutdown_grace_s()
    deployments = [doc for path in MANIFESTS for doc in documents(path) if doc["kind"] == "Deployment"]
    names = {d["metadata"]["name"] for d in deployments}
    assert {"honk-worker", "honk-worker-build-android", "honk-chat", "honk-codec"} <= names
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > grace, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["path"] in ("/metrics", "/healthz"), (name, probe)
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
            assert sources == {"honk-config", "honk-secrets"}, name
        if deployment["metadata"]["labels"].get("app.kubernetes.io/component") == "worker":
            # The sandbox's needs: its own user namespace, a mountable /proc, namespace syscalls.
            assert pod["hostUsers"] is False and pod["securityContext"]["seccompProfile"]["type"] == "Unconfined"
            assert pod["containers"][0]["securityContext"]["procMount"] == "Unmasked"
            assert pod["containers"][0]["args"][:2] == ["worker", "--queue"]


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    listed = set(yaml.safe_load((INFRA / "k8s" / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in MANIFESTS} - {"secret.example.yaml"}
