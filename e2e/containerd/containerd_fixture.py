"""A private containerd with its CRI plugin, for e2e tests of CNI plugins.

The CRI plugin is the CNI client kubelet relies on, so a test that runs pod
sandboxes through it exercises a CNI plugin exactly as a cluster does (CNI_ARGS
with K8S_POD_*, loopback from the same bin_dir, DEL called twice). Several helpers
share this machine, so each instance owns everything it touches: root, state, runc
state, sockets and the pod cgroup parent live under one temp dir or carry a random
name; containerd can run inside a network namespace that stands in for the node, so
the pod network never touches the host's root namespace. Teardown only ever kills
processes whose command line names our socket, and their descendants.

    with node_netns() as ns, Containerd(bin_dir, conf_dir, image_tar, netns=ns) as ctd:
        with CRIClient(ctd.socket) as cri: ...

(PYTEST_DONT_REWRITE: no test asserts here.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from types import TracebackType

import grpc
import pytest

from e2e.containerd.cri_client import CRIClient

log = logging.getLogger(__name__)

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
UMOCI = "/usr/bin/umoci"
BUSYBOX = "/usr/bin/busybox"  # busybox-static: the image needs no libc
CRI_NAMESPACE = "k8s.io"
PAUSE_BASE = "localhost/pause"
PAUSE_TAG = "tabby-e2e"
PAUSE_IMAGE = f"{PAUSE_BASE}:{PAUSE_TAG}"
NETNS_PREFIX = "tcd-"
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
# The child is killed if the thread that started it dies first (no orphans on a shared
# box). setpriv sets PR_SET_PDEATHSIG before exec; a Python preexec_fn would run Python
# in a forked child of a threaded (grpc) process, which can crash before exec.
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]
_SHIM_SOCKET_DIR = "/run/containerd/s/"


def missing_tools() -> list[str]:
    """Executables these tests need that the machine lacks (for a clear skip reason)."""
    tools = [CONTAINERD, CTR, UMOCI, BUSYBOX, "/usr/sbin/runc", "/usr/bin/nsenter"]
    return [t for t in tools if not os.access(t, os.X_OK)]


def _run(args: list[str], timeout: float = 60.0) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed rc={done.returncode}: {done.stderr.strip()}")
    return done.stdout


# --- the sandbox ("pause") image -----------------------------------------------------


def build_pause_image(work_dir: pathlib.Path) -> pathlib.Path:
    """Build a one-layer OCI image whose entrypoint sleeps forever; returns its tarball.

    There is no registry here, and a sandbox only needs a process that holds the
    namespaces: busybox-static's ``sleep`` does that in ~1 MiB.
    """
    layout = work_dir / "oci"
    bundle = work_dir / "bundle"
    ref = f"{layout}:{PAUSE_TAG}"
    _run([UMOCI, "init", "--layout", str(layout)])
    _run([UMOCI, "new", "--image", ref])
    _run([UMOCI, "unpack", "--image", ref, str(bundle)])
    bindir = bundle / "rootfs" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, bindir / "busybox")
    for applet in ("sh", "sleep"):
        (bindir / applet).symlink_to("busybox")
    _run([UMOCI, "repack", "--image", ref, str(bundle)])
    _run(
        [
            UMOCI,
            "config",
            "--image",
            ref,
            "--config.entrypoint",
            "/bin/sleep",
            "--config.cmd",
            "2147483647",
        ]
    )
    _run([UMOCI, "gc", "--layout", str(layout)])
    tarball = work_dir / "pause.tar"
    _run(["tar", "-C", str(layout), "-cf", str(tarball), "."])
    shutil.rmtree(bundle, ignore_errors=True)
    log.info("pause image built tar=%s ref=%s", tarball, PAUSE_IMAGE)
    return tarball


@pytest.fixture(scope="session")
def pause_image_tar(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The pause image tarball, built once per test session."""
    if missing := missing_tools():
        pytest.skip(f"containerd e2e needs {', '.join(missing)}")
    return build_pause_image(tmp_path_factory.mktemp("pause-image"))


# --- a network namespace standing in for the node -------------------------------------


@contextlib.contextmanager
def node_netns(prefix: str = NETNS_PREFIX) -> Iterator[str]:
    """A named netns (lo up) for containerd and its CNI plugins; deleting it removes
    every bridge, veth host end and sysctl the plugins set there."""
    name = f"{prefix}{secrets.token_hex(3)}"
    _run(["ip", "netns", "add", name])
    try:
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def netns_path(name: str) -> str:
    return f"/var/run/netns/{name}"


# --- containerd -----------------------------------------------------------------------


def render_config(
    *,
    root: pathlib.Path,
    state: pathlib.Path,
    socket: pathlib.Path,
    runc_root: pathlib.Path,
    opt_dir: pathlib.Path,
    bin_dir: pathlib.Path,
    conf_dir: pathlib.Path,
    sandbox_image: str = PAUSE_IMAGE,
) -> str:
    """containerd config (version 2) keeping every path of ours under our temp dir.

    ``restrict_oom_score_adj``: root here lacks CAP_SYS_RESOURCE, so containerd may
    only raise a process's OOM score. ``netns_mounts_under_state_dir`` keeps the pod
    netns bind mounts under our state dir instead of the shared /var/run/netns.
    """
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt_dir}"

[{cri}]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        Root = "{runc_root}"
  [{cri}.cni]
    bin_dir = "{bin_dir}"
    conf_dir = "{conf_dir}"
    max_conf_num = 1
"""


class Containerd:
    """One private containerd process; context manager that always cleans up.

    ``bin_dir``/``conf_dir`` are the caller's CNI dirs (the CRI plugin reads a
    single bin_dir and the first conflist in conf_dir). ``netns`` names a network
    namespace to run in (the "node"); None runs in the caller's namespace.
    """

    def __init__(
        self,
        bin_dir: pathlib.Path,
        conf_dir: pathlib.Path,
        image_tar: pathlib.Path,
        netns: str | None = None,
    ) -> None:
        self.bin_dir = bin_dir
        self.conf_dir = conf_dir
        self.image_tar = image_tar
        self.netns = netns
        self.dir = pathlib.Path()
        self.socket = ""
        # runc (cgroupfs driver) puts each sandbox under this parent; ours alone.
        self.cgroup_parent = f"/tabby-ctd-{secrets.token_hex(4)}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = pathlib.Path()

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Containerd:
        # Short path: the socket path must fit sun_path (108 bytes).
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="tabby-ctd-"))
        try:
            self._start()
            self._import_image()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        sock = self.dir / "containerd.sock"
        self.socket = str(sock)
        config = self.dir / "config.toml"
        config.write_text(
            render_config(
                root=self.dir / "root",
                state=self.dir / "state",
                socket=sock,
                runc_root=self.dir / "runc",
                opt_dir=self.dir / "opt",
                bin_dir=self.bin_dir,
                conf_dir=self.conf_dir,
            )
        )
        args = [CONTAINERD, "--config", str(config), "--log-level", "info"]
        if self.netns:
            # Only the network namespace: mounts (snapshots, netns bind mounts) stay
            # visible to the test so it can inspect and clean them.
            args = ["/usr/bin/nsenter", f"--net={netns_path(self.netns)}", "--", *args]
        self._log_path = self.dir / "containerd.log"
        logfile = open(self._log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                _DIE_WITH_PARENT + args,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                start_new_session=True,
            )
        finally:
            logfile.close()
        log.info("containerd starting pid=%d socket=%s netns=%s", self._proc.pid, sock, self.netns)
        self._wait_ready(_START_TIMEOUT_S)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"containerd exited early; log tail:\n{self.log_tail()}")
            if os.path.exists(self.socket):
                try:
                    with CRIClient(self.socket, timeout_s=2.0) as cri:
                        version = cri.version()
                    log.info(
                        "containerd ready runtime=%s version=%s api=%s",
                        version.runtime_name,
                        version.runtime_version,
                        version.runtime_api_version,
                    )
                    return
                except grpc.RpcError as e:  # CRI plugin still initialising
                    last = e
            time.sleep(0.05)
        raise RuntimeError(
            f"containerd not ready after {timeout:.0f}s ({last}); log tail:\n{self.log_tail()}"
        )

    def _import_image(self) -> None:
        _run(
            [
                CTR,
                "-a",
                self.socket,
                "-n",
                CRI_NAMESPACE,
                "images",
                "import",
                "--base-name",
                PAUSE_BASE,
                str(self.image_tar),
            ]
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self._log_path.read_bytes().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- teardown ----------------------------------------------------------------------

    def close(self) -> None:
        """Remove leftover sandboxes, stop containerd, then kill, unmount and delete
        whatever of ours survived (also after a failed test)."""
        if self._proc is not None and self._proc.poll() is None:
            self._remove_all_sandboxes()
        self._stop_daemon()
        shims = self.our_shims()
        for pid in shims:
            for child in _descendants(pid):
                _kill(child)
            _kill(pid)
        self._remove_shim_sockets()
        if self.dir != pathlib.Path():
            _unmount_under(self.dir)
            _remove_cgroup(self.cgroup_parent)
            shutil.rmtree(self.dir, ignore_errors=True)
            log.info("containerd cleaned dir=%s shims_killed=%d", self.dir, len(shims))
            self.dir = pathlib.Path()

    def kill_daemon(self) -> None:
        """SIGKILL containerd alone, as a crash would: shims and sandboxes live on."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=_STOP_TIMEOUT_S)

    def _remove_all_sandboxes(self) -> None:
        """What kubelet does on drain: stop (CNI DEL) and remove every sandbox."""
        try:
            with CRIClient(self.socket, timeout_s=_STOP_TIMEOUT_S) as cri:
                for sandbox_id in cri.list_pod_sandbox_ids():
                    with contextlib.suppress(grpc.RpcError):
                        cri.stop_pod_sandbox(sandbox_id)
                    with contextlib.suppress(grpc.RpcError):
                        cri.remove_pod_sandbox(sandbox_id)
        except grpc.RpcError as e:
            log.warning("containerd sandbox cleanup failed error=%s", e)

    def _stop_daemon(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=_STOP_TIMEOUT_S)
        log.info("containerd stopped pid=%d rc=%s", proc.pid, proc.returncode)

    def our_shims(self) -> list[int]:
        """Shims whose command line names our socket (never another containerd's)."""
        if not self.socket:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                argv = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if not argv or b"containerd-shim" not in argv[0]:
                continue
            with contextlib.suppress(ValueError, IndexError):
                if argv[argv.index(b"-address") + 1].decode() == self.socket:
                    found.append(int(entry))
        return found

    def _remove_shim_sockets(self) -> None:
        """A killed shim leaves its socket in /run/containerd/s; the bundle names it."""
        tasks = self.dir / "state" / "io.containerd.runtime.v2.task"
        if self.dir == pathlib.Path() or not tasks.is_dir():
            return
        for address_file in tasks.glob("*/*/address"):
            with contextlib.suppress(OSError):
                address = address_file.read_text().strip().removeprefix("unix://")
                if address.startswith(_SHIM_SOCKET_DIR):
                    pathlib.Path(address).unlink(missing_ok=True)


def _descendants(pid: int) -> list[int]:
    """All descendants of ``pid`` (children first found via /proc/*/task/*/children)."""
    out: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        for children in pathlib.Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for child in children.read_text().split():
                    out.append(int(child))
                    stack.append(int(child))
    return out


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
        log.info("killed leftover pid=%d", pid)


def _unmount_under(root: pathlib.Path) -> None:
    """Lazily unmount every mount point below ``root``, deepest first."""
    prefix = str(root) + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_cgroup(parent: str, timeout_s: float = 10.0) -> None:
    """rmdir our cgroup parent (and empty children) in every mounted hierarchy.

    A cgroup stays busy (EBUSY) until the processes just killed in it have fully
    exited, which takes a moment under load: retry, bounded, until it is gone.
    """
    base = pathlib.Path("/sys/fs/cgroup")
    hierarchies = [base] + [p for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
    deadline = time.monotonic() + timeout_s
    for hierarchy in hierarchies:
        top = hierarchy / parent.lstrip("/")
        while top.is_dir():
            for d in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if d.is_dir():
                    with contextlib.suppress(OSError):
                        d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
            if not top.is_dir() or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if top.is_dir():
            log.warning("cgroup still busy, left behind path=%s", top)
