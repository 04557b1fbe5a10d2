"""The manifests a user applies: schema-valid offline, and wired the way Tabby needs.

No API server here, so `kubernetes-validate` (bundled OpenAPI schemas) checks each
document, and the cross-references a typo would silently break are checked by hand.
"""

from __future__ import annotations

import pathlib

import kubernetes_validate
import pytest
import yaml

from scripts.install import ENTRYPOINTS

MANIFESTS = pathlib.Path(__file__).resolve().parent / "manifests"
K8S_VERSION = "1.31"


def documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("name", sorted(p.name for p in MANIFESTS.glob("*.yaml")))
def test_every_document_is_valid_for_kubernetes(name):
    for doc in documents(name):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_bad_manifest_is_caught_by_the_validator():
    ds = by_kind(documents("tabby-etcd.yaml"), "DaemonSet")[0]
    ds["spec"]["template"]["spec"]["hostNetwrk"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSION, strict=True)


@pytest.fixture()
def node_daemonset() -> dict:
    return by_kind(documents("tabby-etcd.yaml"), "DaemonSet")[0]["spec"]["template"]["spec"]


def test_node_runs_on_the_host_network_privileged_everywhere(node_daemonset):
    assert node_daemonset["hostNetwork"] is True
    for container in node_daemonset["containers"] + node_daemonset["initContainers"]:
        assert container["securityContext"]["privileged"] is True
    assert {"operator": "Exists", "effect": "NoSchedule"} in node_daemonset["tolerations"]


def test_init_container_installs_cni_into_the_hosts_cni_dirs(node_daemonset):
    init = node_daemonset["initContainers"][0]
    assert init["command"][0] == "tabby-install-cni"
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    volumes = {v["name"]: v["hostPath"]["path"] for v in node_daemonset["volumes"]}
    flags = dict(a.split("=", 1) for a in init["command"][1:])
    assert volumes[next(n for n, p in mounts.items() if p == flags["--bin-dir"])] == "/opt/cni/bin"
    assert volumes[next(n for n, p in mounts.items() if p == flags["--conf-dir"])] == (
        "/etc/cni/net.d"
    )


def test_probes_and_requests_are_set(node_daemonset):
    node = node_daemonset["containers"][0]
    assert node["livenessProbe"]["httpGet"]["path"] == "/liveness"
    assert node["readinessProbe"]["httpGet"]["path"] == "/readiness"
    assert node["resources"]["requests"]["cpu"]


def test_config_map_keys_and_service_accounts_referenced_exist(node_daemonset):
    docs = documents("tabby-etcd.yaml")
    config = by_kind(docs, "ConfigMap")[0]
    for container in node_daemonset["containers"] + node_daemonset["initContainers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                assert ref["name"] == config["metadata"]["name"]
                assert ref["key"] in config["data"], env["name"]
    accounts = {d["metadata"]["name"] for d in by_kind(docs, "ServiceAccount")}
    assert node_daemonset["serviceAccountName"] in accounts
    bound = {s["name"] for d in by_kind(docs, "ClusterRoleBinding") for s in d["subjects"]}
    assert accounts <= bound


def test_commands_in_the_image_are_executables_make_install_provides(node_daemonset):
    commands = [c["command"][0] for c in node_daemonset["containers"]]
    commands += [c["command"][0] for c in node_daemonset["initContainers"]]
    missing = [c for c in commands if c not in ENTRYPOINTS]
    assert not missing, f"not installed by scripts/install.py: {missing}"
