"""The kind path, validated offline (kind and a Docker engine cannot run here).

The config must give Tabby the cluster it expects; run.sh must be valid shell and do
the steps in order. The script's flow is driven with stand-in docker/kind/kubectl
executables that record their arguments: that checks run.sh's own logic (order,
names, failure reporting), not Kubernetes; README.md says how to run it for real.
"""

from __future__ import annotations

import ipaddress
import pathlib
import shutil
import stat
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
HERE = REPO / "e2e" / "kind"
RUN_SH = HERE / "run.sh"


def load(path: pathlib.Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kind_config() -> dict:
    [cfg] = load(HERE / "kind-config.yaml")
    return cfg


def tabby_config() -> dict:
    docs = load(REPO / "deploy" / "manifests" / "tabby-etcd.yaml")
    [cm] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tabby-config"]
    return cm["data"]


def test_kind_config_is_a_three_node_cluster_without_default_cni():
    cfg = kind_config()
    assert cfg["kind"] == "Cluster"
    assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert cfg["networking"]["disableDefaultCNI"] is True
    roles = sorted(n["role"] for n in cfg["nodes"])
    assert roles == ["control-plane", "worker", "worker"]


def test_pod_subnet_is_tabbys_default_pool():
    assert kind_config()["networking"]["podSubnet"] == tabby_config()["default_ipv4_pool_cidr"]


def test_etcd_service_address_lies_in_the_service_subnet():
    # tabby-node reaches etcd through this fixed ClusterIP; outside the service range
    # the API server would reject the Service and every node would fail to start.
    services = ipaddress.ip_network(kind_config()["networking"]["serviceSubnet"])
    pods = ipaddress.ip_network(kind_config()["networking"]["podSubnet"])
    [svc] = [d for d in load(REPO / "deploy" / "manifests" / "etcd.yaml") if d["kind"] == "Service"]
    assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in services
    assert not services.overlaps(pods)
    endpoint = tabby_config()["etcd_endpoints"]
    assert endpoint == f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


def test_run_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(RUN_SH)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_run_script_passes_shellcheck():
    r = subprocess.run(["shellcheck", str(RUN_SH)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


# --- run.sh's flow, with recording stand-ins -------------------------------------

STUB = """#!/bin/bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
case "$(basename "$0") $*" in
  "kind get clusters"*) exit 0 ;;
  *"get pods -l app=pinger"*) printf '%s\\n' "$STUB_PODS" ;;
  *"get nodes --no-headers"*) printf 'n1\\nn2\\nn3\\n' ;;
  *"exec "*) case "$*" in *"$STUB_UNREACHABLE"*) exit 1 ;; esac ;;
  *"create namespace"*) echo "kind: Namespace" ;;
esac
case "$*" in *"-f -"*) cat > /dev/null ;; esac
exit 0
"""

PODS = "\n".join(
    [
        "p1 tabby-control-plane 192.168.10.2",
        "p2 tabby-worker 192.168.20.2",
        "p3 tabby-worker2 192.168.30.2",
    ]
)


@pytest.fixture
def stubs(tmp_path) -> pathlib.Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "kind", "kubectl"):
        path = bin_dir / tool
        path.write_text(STUB)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def run(stubs: pathlib.Path, *args: str, pods: str = PODS, unreachable: str = "none"):
    log = stubs.parent / "calls.log"
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "STUB_LOG": str(log),
        "STUB_PODS": pods,
        "STUB_UNREACHABLE": unreachable,
        "HOME": str(stubs.parent),
    }
    r = subprocess.run(
        ["bash", str(RUN_SH), *args], capture_output=True, text=True, env=env, timeout=60
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return r, calls


def index_of(calls: list[str], fragment: str) -> int:
    for i, call in enumerate(calls):
        if fragment in call:
            return i
    raise AssertionError(f"no call containing {fragment!r} in {calls}")


def test_flow_builds_creates_loads_deploys_then_pings_every_pair(stubs):
    r, calls = run(stubs, "--delete")
    assert r.returncode == 0, r.stderr + r.stdout
    steps = [
        f"docker build -f {REPO}/deploy/Containerfile -t localhost/tabby:latest {REPO}",
        f"kind create cluster --name tabby --config {HERE}/kind-config.yaml",
        "kind load docker-image localhost/tabby:latest --name tabby",
        f"apply -f {REPO}/deploy/manifests/etcd.yaml",
        f"apply -f {REPO}/deploy/manifests/tabby-etcd.yaml",
        "rollout status daemonset/tabby-node",
        "wait --for=condition=Ready nodes --all",
        "rollout status daemonset/pinger",
        "kind delete cluster --name tabby",
    ]
    positions = [index_of(calls, s) for s in steps]
    assert positions == sorted(positions), calls
    pings = [c for c in calls if " exec " in c]
    assert len(pings) == 6  # 3 pods, every ordered pair
    assert all("--context kind-tabby" in c for c in calls if c.startswith("kubectl"))
    assert "all pods reach each other across 3 nodes" in r.stdout


def test_an_unreachable_pod_fails_the_run_and_names_the_pair(stubs):
    r, _ = run(stubs, unreachable="192.168.30.2")
    assert r.returncode == 1
    assert "FAIL tabby-control-plane (192.168.10.2) -> tabby-worker2 (192.168.30.2)" in r.stdout
    assert "2 connectivity checks failed" in r.stderr
    assert "The cluster is kept" in r.stderr


def test_a_pod_outside_tabbys_pool_fails_the_run(stubs):
    pods = PODS.replace("192.168.20.2", "10.244.1.2")
    r, _ = run(stubs, pods=pods)
    assert r.returncode == 1
    assert "outside Tabby's pool 192.168.0.0/16" in r.stdout


def test_image_archive_from_make_image_replaces_docker_build(stubs, tmp_path):
    archive = tmp_path / "tabby-oci.tar"
    archive.write_bytes(b"")
    r, calls = run(stubs, "--image-archive", str(archive), "--cluster", "t2")
    assert r.returncode == 0, r.stderr
    assert not any(c.startswith("docker build") for c in calls)
    index_of(calls, f"kind load image-archive {archive} --name t2")


def test_missing_tool_is_named_before_anything_runs(tmp_path):
    # A PATH with only what the script needs before its tool check: no docker/kind.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    r = subprocess.run([shutil.which("bash"), str(RUN_SH)], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert "'docker' not found on PATH" in r.stderr


def test_unknown_option_is_rejected_with_usage(stubs):
    r, calls = run(stubs, "--frobnicate")
    assert r.returncode == 1
    assert "unknown option '--frobnicate'" in r.stderr
    assert "Usage:" in r.stderr
    assert calls == []
