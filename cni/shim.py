"""The ``tabby`` and ``tabby-ipam`` executables the container runtime runs per pod.

Started with ``python3 -S``: it imports only the standard library, answers VERSION
itself and forwards every other command as one request to the warm node-local
service (``cni/service.py``) over a unix socket. With no service listening it runs
the same handler in-process (slower: it has to import the datastore client), so the
plugin works on a node where the service is not running yet.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

from cni import config, errors, protocol
from cni.errors import CNIError

# How long the shim waits for the service beyond the policy wait the config asks for.
BASE_TIMEOUT_SECONDS = 120.0


def _role(argv0: str) -> str:
    return protocol.ROLE_IPAM if "ipam" in os.path.basename(argv0) else protocol.ROLE_PLUGIN


def _error_version(raw: Mapping[str, object] | None) -> str:
    version = raw.get("cniVersion") if raw else None
    return version if version in config.SUPPORTED_VERSIONS else config.LATEST_VERSION  # type: ignore[return-value]


def _error_reply(err: CNIError, raw: Mapping[str, object] | None) -> protocol.Reply:
    return protocol.Reply(exit=err.code, stdout=json.dumps(err.to_json(_error_version(raw))))


def _version(stdin: str) -> protocol.Reply:
    """VERSION: the stdin config is optional and only chooses the output's cniVersion."""
    version = config.LATEST_VERSION
    try:
        raw = json.loads(stdin) if stdin.strip() else {}
        if isinstance(raw, dict) and raw.get("cniVersion") in config.SUPPORTED_VERSIONS:
            version = raw["cniVersion"]
    except ValueError:
        pass
    return protocol.Reply(exit=0, stdout=json.dumps(config.version_result(version)))


def _in_process(req: protocol.Request) -> protocol.Reply:
    # -S left site-packages off the path; the full handler needs them (etcd client, netlink).
    import site

    site.main()
    from cni import handler

    return handler.handle_once(req)


def run(role: str, env: Mapping[str, str], stdin: str) -> protocol.Reply:
    """Everything but the process I/O, so tests can drive it without exec."""
    command = env.get("CNI_COMMAND", "")
    if command == "VERSION":
        return _version(stdin)
    raw: dict[str, object] | None = None
    try:
        config.parse_invocation(env)
        raw = config.decode_config(stdin)
    except CNIError as err:
        return _error_reply(err, raw)
    sock_path = raw.get("cni_service_socket", config.DEFAULT_SERVICE_SOCKET)
    wait = raw.get("policy_setup_timeout_seconds", 0)
    timeout = BASE_TIMEOUT_SECONDS + (wait if isinstance(wait, int) else 0)
    req = protocol.Request(role=role, env=dict(env), stdin=stdin)
    if not isinstance(sock_path, str) or not sock_path:
        return _error_reply(
            CNIError(errors.INVALID_NETWORK_CONFIG, "field cni_service_socket must be a path"),
            raw,
        )
    try:
        return protocol.call(sock_path, req, timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        return _in_process(req)
    except protocol.ProtocolError as exc:
        err = CNIError(errors.TRY_AGAIN_LATER, "the tabby CNI service did not answer", str(exc))
        return _error_reply(err, raw)
    except OSError as exc:
        err = CNIError(
            errors.TRY_AGAIN_LATER, f"cannot reach the tabby CNI service at {sock_path}", str(exc)
        )
        return _error_reply(err, raw)


def main() -> int:
    try:
        stdin = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    except OSError:
        stdin = ""
    reply = run(_role(sys.argv[0]), os.environ, stdin)
    if reply.stdout:
        sys.stdout.write(reply.stdout)
        if not reply.stdout.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()
    return reply.exit


if __name__ == "__main__":
    sys.exit(main())
