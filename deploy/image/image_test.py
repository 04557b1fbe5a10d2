"""The built image is real: a private containerd imports the OCI archive and runs it.

Outside the default suite (``tags = ["manual"]``, ``make image-test``): it needs root
and the archive from ``make image`` (built here if missing, which takes minutes on a
fresh cache). containerd is started by hand with its own config, root, state and
sockets in a temp dir and stopped at the end; no other containerd is touched.

The Docker path is checked too, without Docker: buildah (Debian's) builds
deploy/Containerfile from a stand-in for debian:bookworm-slim made with debootstrap
(Docker Hub is not reachable here), and both images must hold the same things.
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
CACHE = pathlib.Path(os.environ.get("TABBY_IMAGE_CACHE", "/var/cache/tabby-image"))
HOST_CA = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")

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


# --- deploy/Containerfile, built by buildah, holds what `make image` holds -----------

# What debian:bookworm-slim configures beyond minbase: no docs, man pages or locales,
# and apt drops downloaded packages.
SLIM_DPKG = """path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
"""
SLIM_APT = 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n'


def _standin_slim() -> pathlib.Path:
    """An OCI layout tagged bookworm-slim, debootstrapped once and cached."""
    layout = CACHE / "standin-bookworm-slim"
    if (layout / "index.json").exists():
        return layout
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="standin-", dir=CACHE))
    try:
        root = tmp / "rootfs"
        mirror = "http://deb.debian.org/debian"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(root), mirror],
            check=True,
            capture_output=True,
        )
        (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_DPKG)
        (root / "etc/apt/apt.conf.d/docker-clean").write_text(SLIM_APT)
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "dev"):
            for p in (root / sub).glob("*"):
                if p.is_file() or p.is_symlink() or p.is_char_device() or p.is_block_device():
                    p.unlink()
        (root / "etc/resolv.conf").write_text("")
        oci = tmp / "oci"
        for cmd in (
            ["umoci", "init", "--layout", str(oci)],
            ["umoci", "new", "--image", f"{oci}:bookworm-slim"],
            ["umoci", "insert", "--image", f"{oci}:bookworm-slim", str(root), "/"],
            ["umoci", "config", "--image", f"{oci}:bookworm-slim", "--config.env",
             "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        ):  # fmt: skip
            subprocess.run(cmd, check=True, capture_output=True)
        oci.rename(layout)
    finally:
        _unmount_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    return layout


@pytest.fixture(scope="module")
def containerfile_archive() -> Iterator[pathlib.Path]:
    if shutil.which("buildah") is None:
        pytest.skip("buildah is needed to build deploy/Containerfile (scripts/setup.sh)")
    base = _standin_slim()
    work = pathlib.Path(tempfile.mkdtemp(prefix="tabby-buildah-"))
    buildah = [
        "buildah",
        "--root",
        str(work / "storage"),
        "--runroot",
        str(work / "run"),
        "--storage-driver",
        "overlay",
    ]
    # pip in the build stage must trust what the host trusts (a TLS-intercepting proxy).
    ca = ["--build-arg", "PIP_CERT=/tmp/host-ca.crt", "-v", f"{HOST_CA}:/tmp/host-ca.crt:ro"]
    try:
        r = subprocess.run(
            [*buildah, "bud", "--isolation", "chroot", "--layers=false",
             "--build-arg", f"DEBIAN=oci:{base}:bookworm-slim",
             *(ca if HOST_CA.exists() else []),
             "-f", str(REPO / "deploy" / "Containerfile"), "-t", "localhost/tabby-cf:latest",
             str(REPO)],
            capture_output=True,
            text=True,
            timeout=900,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        archive = work / "containerfile.tar"
        subprocess.run(
            [*buildah, "push", "localhost/tabby-cf:latest", f"oci-archive:{archive}:latest"],
            check=True,
            capture_output=True,
        )
        yield archive
    finally:
        subprocess.run([*buildah, "rm", "--all"], capture_output=True)
        subprocess.run([*buildah, "rmi", "--all", "--force"], capture_output=True)
        _unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)


# Printed inside each image: what a node would notice if the two builds differed.
INVENTORY = """
import importlib.metadata as md, json, os, subprocess, sys
print(json.dumps({
    "python": sys.version.split()[0],
    "dists": sorted(f"{d.metadata['Name']}=={d.version}" for d in md.distributions()),
    "bin": sorted(os.listdir('/usr/local/bin')),
    "tabby": sorted(os.listdir('/usr/local/lib/tabby')),
    "debs": subprocess.run(
        ['dpkg-query', '-W', '-f', '${Package}=${Version}\\n', 'python3', 'iproute2',
         'nftables', 'iptables', 'kmod', 'procps', 'ca-certificates'],
        capture_output=True, text=True).stdout.split(),
}))
"""


def _inventory(client: Containerd, image: str) -> dict:
    cid = f"tabby-img-{secrets.token_hex(3)}"
    r = client.ctr("run", "--rm", image, cid, "python3", "-c", INVENTORY)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_containerfile_image_runs_and_matches_make_image(imported, containerfile_archive):
    r = imported.ctr(
        "images", "import", "--base-name", "localhost/tabby-cf", str(containerfile_archive)
    )
    assert r.returncode == 0, r.stderr
    cf_image = "localhost/tabby-cf:latest"
    r = imported.ctr("run", "--rm", cf_image, f"tabby-img-{secrets.token_hex(3)}", "tabby-node",
                     "--version")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"tabby-node {_version()}"
    ours, theirs = _inventory(imported, IMAGE), _inventory(imported, cf_image)
    assert ours["debs"] and ours["dists"] and ours["bin"]
    assert ours == theirs
