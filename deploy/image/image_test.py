"""The built image is real: a private containerd imports the OCI archive and runs it.

Outside the default suite (``tags = ["manual"]``, ``make image-test``): it needs root
and the archive from ``make image`` (built here if missing, which takes minutes on a
fresh cache). containerd is started by hand with its own config, root, state and
sockets in a temp dir and stopped at the end; no other containerd is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from scripts.install import ENTRYPOINTS

# Resolves through Bazel's runfiles symlinks to the source tree, where build/ lives.
REPO = pathlib.Path(__file__).resolve().parents[2]
ARCHIVE = pathlib.Path(
    os.environ.get("TABBY_IMAGE_ARCHIVE", REPO / "build" / "image" / "tabby-oci.tar")
)
IMAGE = "localhost/tabby:latest"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containerd needs root"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("containerd", "ctr", "runc")),
        reason="containerd, ctr and runc are needed (scripts/setup.sh installs them)",
    ),
]


def _version() -> str:
    """tabby-node's VERSION as the source says, without importing node's deps."""
    for line in (REPO / "node" / "main.py").read_text().splitlines():
        if line.startswith("VERSION = "):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise AssertionError("node/main.py has no VERSION")


@dataclass
class Containerd:
    sock: pathlib.Path
    namespace: str

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "-a", str(self.sock), "-n", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _unmount_under(path: pathlib.Path) -> None:
    """Unmounts leftovers (snapshot mounts of a crashed shim) before removing the tree."""
    prefix = str(path.resolve())
    mounts = [
        line.split()[1]
        for line in pathlib.Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1] == prefix or line.split()[1].startswith(prefix + "/")
    ]
    for m in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


def _remove_cgroups(namespace: str) -> None:
    """runc removes each container's cgroup; the per-namespace parents are ours to drop."""
    root = pathlib.Path("/sys/fs/cgroup")
    for parent in [*root.glob(f"*/{namespace}"), root / namespace]:
        with contextlib.suppress(OSError):
            parent.rmdir()


@pytest.fixture(scope="module")
def archive() -> pathlib.Path:
    if not ARCHIVE.exists():
        subprocess.run(["bash", str(REPO / "deploy" / "image" / "build.sh")], check=True)
    return ARCHIVE


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tabby-ctrd-"))
    sock = tmp / "containerd.sock"
    namespace = f"tabby-img-{secrets.token_hex(3)}"
    config = tmp / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{tmp}/root"\n'
        f'state = "{tmp}/state"\n'
        # No CRI: nothing here talks to it, and it would read the host's CNI config.
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        "[grpc]\n"
        f'  address = "{sock}"\n'
        "[ttrpc]\n"
        f'  address = "{sock}.ttrpc"\n'
        "[debug]\n"
        f'  address = "{tmp}/debug.sock"\n'
    )
    log = (tmp / "containerd.log").open("w")
    proc = subprocess.Popen(
        ["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        client = Containerd(sock=sock, namespace=namespace)
        deadline = time.monotonic() + 30
        while client.ctr("version", timeout=10).returncode != 0:
            assert proc.poll() is None, f"containerd exited: {(tmp / 'containerd.log').read_text()}"
            assert time.monotonic() < deadline, "containerd did not answer within 30 s"
            time.sleep(0.2)
        yield client
    finally:
        try:
            for task in client.ctr("tasks", "ls", "-q").stdout.split():
                client.ctr("tasks", "kill", "-s", "SIGKILL", task)
                client.ctr("tasks", "delete", "-f", task)
            for c in client.ctr("containers", "ls", "-q").stdout.split():
                client.ctr("containers", "delete", c)
            for image in client.ctr("images", "ls", "-q").stdout.split():
                client.ctr("images", "rm", "--sync", image)
            client.ctr("namespaces", "remove", namespace)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            log.close()
            _unmount_under(tmp)
            _remove_cgroups(namespace)
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def imported(containerd: Containerd, archive: pathlib.Path) -> Containerd:
    r = containerd.ctr("images", "import", "--base-name", "localhost/tabby", str(archive))
    assert r.returncode == 0, r.stderr
    return containerd


def test_containerd_imports_the_archive_as_localhost_tabby_latest(imported):
    names = imported.ctr("images", "ls", "-q").stdout.split()
    assert IMAGE in names


def _run(client: Containerd, *command: str) -> subprocess.CompletedProcess[str]:
    # ctr 1.6 replaces the image's ENTRYPOINT with the command, as a pod's `command:` does.
    return client.ctr("run", "--rm", IMAGE, f"tabby-img-{secrets.token_hex(3)}", *command)


def test_the_image_runs_tabby_node(imported):
    r = _run(imported, "tabby-node", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"tabby-node {_version()}"


@pytest.mark.parametrize("command", sorted(ENTRYPOINTS))
def test_every_installed_executable_starts_in_the_image(imported, command):
    if ENTRYPOINTS[command][1]:
        pytest.skip("the CNI shim speaks the CNI protocol, not --help")
    r = _run(imported, command, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout


def test_a_bad_flag_fails_clearly_in_the_container(imported):
    r = _run(imported, "tabby-node", "--no-such-flag")
    assert r.returncode != 0
    assert "unrecognized arguments: --no-such-flag" in r.stderr + r.stdout


def _archive_json(tar: tarfile.TarFile, name: str) -> dict:
    f = tar.extractfile(name)
    assert f is not None, name
    return json.load(f)


def test_the_archive_names_the_image_and_its_entrypoint(archive):
    with tarfile.open(archive) as tar:
        index = _archive_json(tar, "index.json")
        [entry] = index["manifests"]
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == "latest"
        assert entry["annotations"]["io.containerd.image.name"] == IMAGE
        algo, digest = entry["digest"].split(":")
        manifest = _archive_json(tar, f"blobs/{algo}/{digest}")
        algo, digest = manifest["config"]["digest"].split(":")
        config = _archive_json(tar, f"blobs/{algo}/{digest}")
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    assert config["config"]["Entrypoint"] == ["tabby-node"]
    assert any(
        e.startswith("PATH=/usr/local/sbin:/usr/local/bin:") for e in config["config"]["Env"]
    )
    assert config["config"]["Labels"]["org.opencontainers.image.version"] == _version()
    # Base (Debian + pip), Tabby's library, its launchers: a code change rebuilds two.
    assert len(manifest["layers"]) == 3


def test_the_archive_names_itself_for_importers_without_base_name(containerd, archive):
    # `kind load image-archive` runs `ctr images import` with no --base-name; the name
    # must come from the archive itself or the DaemonSet's image would not be found.
    other = Containerd(sock=containerd.sock, namespace=f"{containerd.namespace}-kind")
    try:
        r = other.ctr("images", "import", "--all-platforms", str(archive))
        assert r.returncode == 0, r.stderr
        assert IMAGE in other.ctr("images", "ls", "-q").stdout.split()
    finally:
        other.ctr("images", "rm", "--sync", IMAGE)
        other.ctr("namespaces", "remove", other.namespace)
