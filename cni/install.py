"""``tabby-install-cni``: put the plugin executables and a conflist where the runtime looks.

Runs on each node (the DaemonSet's init container, or by hand). Executables are
written atomically (temp file + fsync + rename) because the runtime may be running
the old one at that moment. The conflist uses Calico's keys and chains ``portmap`` the
way Calico's default does.

Two kinds of executables: by default, launchers for this machine's Python and the
installed tabby library (a host where Tabby is installed, and the tests). With
``--host-runtime`` (what the DaemonSet passes), a self-contained runtime goes beside
the bin directory and the launchers use it, so a node without Python runs the plugin
(``cni/hostinstall/runtime.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import py_compile
import sys

from cni import config
from cni.hostinstall import atomic, closure, elfdeps, runtime

CONFLIST_NAME = "10-tabby.conflist"
EXECUTABLES = ("tabby", "tabby-ipam")
# The runtime may call the plugin for a config older than what this plugin speaks;
# 1.0.0 is the newest containerd 1.6 / CRI-O 1.24 understand.
DEFAULT_CONFLIST_VERSION = "1.0.0"


def default_lib_dir() -> pathlib.Path:
    """The directory holding the ``cni`` package this module was loaded from."""
    # abspath, not resolve(): under Bazel the package is a tree of symlinks.
    return pathlib.Path(os.path.abspath(__file__)).parent.parent


def launcher(lib_dir: pathlib.Path, python: str) -> str:
    # -S: the shim imports only the standard library; it re-enables site itself
    # when it has to fall back to running the handler in-process.
    return (
        f"#!{python} -S\n"
        "import sys\n"
        f"sys.path.insert(0, {str(lib_dir)!r})\n"
        "from cni.shim import main\n"
        "sys.exit(main())\n"
    )


def _write_atomic(path: pathlib.Path, text: str, mode: int) -> None:
    atomic.write_file(path, text.encode(), mode)


# What the shim imports (fast path, then the slow path's VERSION and errors).
SHIM_MODULES = ("__init__.py", "shim.py", "config.py", "errors.py")


def precompile_shim(lib_dir: pathlib.Path) -> list[pathlib.Path]:
    """Byte-compile the shim's modules now; returns the .pyc files written.

    Without a current .pyc every exec compiles ``shim.py`` again (~2.5 ms of a ~8 ms
    call), e.g. where the runtime's environment sets PYTHONDONTWRITEBYTECODE or the
    library directory is read-only at run time. Best effort: a read-only directory now
    just leaves things as they were.
    """
    written = []
    for name in SHIM_MODULES:
        try:
            pyc = py_compile.compile(str(lib_dir / "cni" / name), doraise=True)
            written.append(pathlib.Path(pyc))
        except (OSError, py_compile.PyCompileError) as exc:
            print(f"tabby-install-cni: cannot precompile {name}: {exc}", file=sys.stderr)
    return written


def default_runtime_dir(bin_dir: pathlib.Path) -> pathlib.Path:
    """``/opt/cni/bin`` -> ``/opt/cni/tabby``: beside the bin dir, as the launchers expect."""
    return pathlib.Path(os.path.normpath(bin_dir / ".." / "tabby"))


def install_binaries(
    bin_dir: pathlib.Path,
    lib_dir: pathlib.Path | None = None,
    python: str | None = None,
    *,
    host_runtime: bool = False,
    runtime_dir: pathlib.Path | None = None,
) -> list[pathlib.Path]:
    """Write ``tabby`` and ``tabby-ipam``; with ``host_runtime``, self-contained ones."""
    lib_dir = lib_dir or default_lib_dir()
    if host_runtime:
        return runtime.install(
            bin_dir,
            runtime_dir or default_runtime_dir(bin_dir),
            pathlib.Path(os.path.abspath(lib_dir)),
            pathlib.Path(python or sys.executable),
        )
    bin_dir.mkdir(parents=True, exist_ok=True)
    precompile_shim(lib_dir)
    text = launcher(lib_dir, python or os.path.realpath(sys.executable))
    out = []
    for name in EXECUTABLES:
        path = bin_dir / name
        _write_atomic(path, text, 0o755)
        out.append(path)
    return out


def conflist(
    *,
    nodename: str = "",
    mtu: int = 0,
    etcd_endpoints: str = config.DEFAULT_ETCD_ENDPOINTS,
    service_socket: str = config.DEFAULT_SERVICE_SOCKET,
    policy_setup_timeout_seconds: int = 0,
    log_level: str = "info",
    cni_version: str = DEFAULT_CONFLIST_VERSION,
    network_name: str = "k8s-pod-network",
    ipv4: bool = True,
    ipv6: bool = False,
) -> dict:
    plugin: dict = {
        "type": "tabby",
        "log_level": log_level,
        "etcd_endpoints": etcd_endpoints,
        "mtu": mtu,
        "ipam": {
            "type": config.IPAM_TYPE,
            "assign_ipv4": "true" if ipv4 else "false",
            "assign_ipv6": "true" if ipv6 else "false",
        },
        "policy_setup_timeout_seconds": policy_setup_timeout_seconds,
        "cni_service_socket": service_socket,
    }
    if nodename:
        plugin["nodename"] = nodename
    return {
        "name": network_name,
        "cniVersion": cni_version,
        "plugins": [
            plugin,
            {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
        ],
    }


def write_conflist(conf_dir: pathlib.Path, doc: dict) -> pathlib.Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / CONFLIST_NAME
    _write_atomic(path, json.dumps(doc, indent=2) + "\n", 0o644)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tabby-install-cni", description=__doc__)
    p.add_argument("--bin-dir", required=True, type=pathlib.Path)
    p.add_argument("--conf-dir", required=True, type=pathlib.Path)
    p.add_argument("--lib-dir", type=pathlib.Path, help="where the tabby packages live")
    p.add_argument(
        "--host-runtime",
        nargs="?",
        const="",
        metavar="DIR",
        help="install a self-contained runtime (interpreter, libraries, shim) into DIR"
        " (default <bin-dir>/../tabby) for a host without Python, and launchers that use"
        " it; DIR must keep its place relative to --bin-dir on the host",
    )
    p.add_argument("--python", help="the interpreter to launch or copy (default: this one)")
    # Defaults from the environment the DaemonSet's init container sets (ConfigMap).
    env = os.environ
    p.add_argument(
        "--etcd-endpoints",
        default=env.get("TABBY_ETCD_ENDPOINTS") or config.DEFAULT_ETCD_ENDPOINTS,
        help="default: $TABBY_ETCD_ENDPOINTS, else %(default)s",
    )
    p.add_argument(
        "--nodename",
        default=env.get("NODENAME", ""),
        help="default: $NODENAME, else the host name at run time",
    )
    p.add_argument(
        "--mtu",
        type=int,
        default=env.get("CNI_MTU") or "0",  # a string: argparse applies type=int to it
        help="default: $CNI_MTU; 0: Felix's published MTU, else 1500",
    )
    p.add_argument("--service-socket", default=config.DEFAULT_SERVICE_SOCKET)
    p.add_argument("--policy-setup-timeout-seconds", type=int, default=0)
    p.add_argument("--log-level", default="info")
    p.add_argument("--cni-version", default=DEFAULT_CONFLIST_VERSION)
    p.add_argument("--ipv6", action="store_true", help="also assign an IPv6 address")
    args = p.parse_args(argv)
    if args.cni_version not in config.SUPPORTED_VERSIONS:
        p.error(f"--cni-version must be one of {', '.join(config.SUPPORTED_VERSIONS)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    try:
        paths = install_binaries(
            args.bin_dir,
            args.lib_dir,
            args.python,
            host_runtime=args.host_runtime is not None,
            runtime_dir=pathlib.Path(args.host_runtime) if args.host_runtime else None,
        )
    except (OSError, closure.ClosureError, elfdeps.ElfDepsError) as exc:
        print(f"tabby-install-cni: cannot install the plugin: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"installed {path}")
    doc = conflist(
        nodename=args.nodename,
        mtu=args.mtu,
        etcd_endpoints=args.etcd_endpoints,
        service_socket=args.service_socket,
        policy_setup_timeout_seconds=args.policy_setup_timeout_seconds,
        log_level=args.log_level,
        cni_version=args.cni_version,
        ipv6=args.ipv6,
    )
    print(f"wrote {write_conflist(args.conf_dir, doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
