"""The ``tabby`` and ``tabby-ipam`` executables the container runtime runs per pod.

Started with ``python3 -S``, and on its fast path it imports nothing but C modules
(``_socket``, ``_json``, ``posix``): Python's ``json``, ``socket`` and ``re`` alone
cost more than the rest of the call, and even ``os`` costs ~1 ms of the ~8 ms a call
spends in this process. It forwards each command as one request to the warm
node-local service (``cni/service.py``, wire format in ``cni/protocol.py``) and
prints the reply. VERSION, malformed input and error replies take the slow path
through ``cni.config`` (still standard library only). With no service listening it
runs the same handler in-process (slower: it has to import the datastore client and
netlink), so the plugin works on a node where the service is not running yet. The
self-contained host runtime (``cni/hostinstall``) has no such fallback (no pip packages
on the host): there it answers "try again later" until the service is up.
"""

from __future__ import annotations

import _json
import _socket
import posix  # already loaded by the interpreter's start-up; ``os`` is not, under -S
import sys

# How long the shim waits for the service beyond the policy wait the config asks for.
BASE_TIMEOUT_SECONDS = 120.0
DEFAULT_SERVICE_SOCKET = "/var/run/tabby/cni.sock"  # == config.DEFAULT_SERVICE_SOCKET
ENV_KEYS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
FAST_COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC")
_WS = " \t\r\n"


class _ScanContext:
    """What ``_json.make_scanner`` reads; the same choices ``json.loads`` makes."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}  # the C scanner caches object keys here

    @staticmethod
    def parse_constant(name: str) -> float:
        raise ValueError(f"invalid constant {name}")


_scan = _json.make_scanner(_ScanContext())
_quote = _json.encode_basestring_ascii


def loads(text: str) -> object:
    """``json.loads`` without importing ``json`` (and ``re``, ``enum`` with it)."""
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan(text, start)
    except (StopIteration, SystemError):
        # SystemError: the C scanner fails to build its error when json.decoder is not
        # imported; either way the input is not JSON.
        raise ValueError("not JSON") from None
    finally:
        _ScanContext.memo.clear()
    if text[end:].strip(_WS):
        raise ValueError("extra data after the JSON value")
    return value


def encode_request(role: str, env: dict[str, str], stdin: str) -> bytes:
    """The protocol's request (see ``protocol.encode_request``), built by hand."""
    pairs = ",".join(f"{_quote(k)}:{_quote(env[k])}" for k in ENV_KEYS if k in env)
    return f'{{"v":1,"role":{_quote(role)},"env":{{{pairs}}},"stdin":{_quote(stdin)}}}'.encode(
        "ascii"
    )


class Reply:
    __slots__ = ("exit", "stdout")

    def __init__(self, exit: int, stdout: str) -> None:
        self.exit = exit
        self.stdout = stdout

    def __eq__(self, other: object) -> bool:
        # Duck-typed so tests can compare with protocol.Reply without importing it here.
        return (self.exit, self.stdout) == (
            getattr(other, "exit", None),
            getattr(other, "stdout", None),
        )

    def __repr__(self) -> str:
        return f"Reply(exit={self.exit!r}, stdout={self.stdout!r})"


class BrokenOff(Exception):
    """The service accepted the request but did not answer it completely."""


def call(path: str, request: bytes, timeout: float) -> Reply:
    """One request over the unix socket; FileNotFoundError/ConnectionRefusedError: no service."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        try:
            sock.sendall(request)
            sock.shutdown(_socket.SHUT_WR)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as exc:
            raise BrokenOff(f"service connection failed: {exc}") from None
        data = b"".join(chunks)
        if not data:
            raise BrokenOff("service closed the connection without a reply")
        try:
            msg = loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise BrokenOff("service reply is not JSON") from None
        if (
            not isinstance(msg, dict)
            or msg.get("v") != 1
            or type(msg.get("exit")) is not int
            or not isinstance(msg.get("stdout"), str)
        ):
            raise BrokenOff("service reply has the wrong shape")
        return Reply(msg["exit"], msg["stdout"])
    finally:
        sock.close()


def _role(argv0: str) -> str:
    return "ipam" if "ipam" in argv0.rsplit("/", 1)[-1] else "plugin"


def _error(code: int, msg: str, details: str, raw: object) -> Reply:
    import json

    from cni import config

    version = raw.get("cniVersion") if isinstance(raw, dict) else None
    if version not in config.SUPPORTED_VERSIONS:
        version = config.LATEST_VERSION
    out = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        out["details"] = details
    return Reply(code, json.dumps(out))


def _slow_path(env: dict[str, str], stdin: str) -> Reply | None:
    """VERSION and environment/config errors, with the full parser. None: carry on."""
    import json

    from cni import config
    from cni.errors import CNIError

    if env.get("CNI_COMMAND") == "VERSION":
        version = config.LATEST_VERSION
        try:
            raw = json.loads(stdin) if stdin.strip() else {}
            if isinstance(raw, dict) and raw.get("cniVersion") in config.SUPPORTED_VERSIONS:
                version = raw["cniVersion"]
        except ValueError:
            pass
        return Reply(0, json.dumps(config.version_result(version)))
    raw = None
    try:
        config.parse_invocation(env)
        raw = config.decode_config(stdin)
    except CNIError as err:
        return _error(err.code, err.msg, err.details, raw)
    return None


def _in_process(role: str, env: dict[str, str], stdin: str) -> Reply:
    # -S left site-packages off the path; the full handler needs them (netlink).
    import site

    site.main()
    from cni import handler, protocol

    reply = handler.handle_once(protocol.Request(role=role, env=env, stdin=stdin))
    return Reply(reply.exit, reply.stdout)


def cni_environ() -> dict[str, str]:
    """The CNI_* variables, decoded as ``os.environ`` would (without importing ``os``)."""
    out = {}
    for key in ENV_KEYS:
        value = posix.environ.get(key.encode())
        if value is not None:
            out[key] = value.decode("utf-8", "surrogateescape")
    return out


def _no_service(sock_path: str, exc: OSError, raw: object) -> Reply:
    """Error 11 where the handler cannot run in-process: the runtime retries the call."""
    reason = "no socket" if isinstance(exc, FileNotFoundError) else "nothing listening"
    return _error(
        11,
        f"the tabby CNI service is not running ({reason} at {sock_path}):"
        " the tabby-node pod on this node is not running (yet)",
        str(exc),
        raw,
    )


def run(role: str, environ: dict[str, str], stdin: str, *, fallback: bool = True) -> Reply:
    """Everything but the process I/O, so tests can drive it without exec.

    ``fallback``: with no service listening, run the handler in this process; False
    where only the standard library is at hand (the host runtime).
    """
    env = {k: environ[k] for k in ENV_KEYS if k in environ}
    raw: object = None
    if env.get("CNI_COMMAND") in FAST_COMMANDS:
        try:
            raw = loads(stdin)
        except ValueError:
            raw = None
    if not isinstance(raw, dict):
        slow = _slow_path(env, stdin)
        if slow is not None:
            return slow
        raw = loads(stdin)  # the slow path accepted it, so this cannot fail
    assert isinstance(raw, dict)
    sock_path = raw.get("cni_service_socket", DEFAULT_SERVICE_SOCKET)
    if not isinstance(sock_path, str) or not sock_path:
        return _error(7, "field cni_service_socket must be a path", "", raw)
    wait = raw.get("policy_setup_timeout_seconds", 0)
    timeout = BASE_TIMEOUT_SECONDS + (wait if type(wait) is int else 0)
    try:
        return call(sock_path, encode_request(role, env, stdin), timeout)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        if not fallback:
            return _no_service(sock_path, exc, raw)
        return _in_process(role, env, stdin)
    except BrokenOff as exc:
        return _error(11, "the tabby CNI service did not answer", str(exc), raw)
    except OSError as exc:
        return _error(11, f"cannot reach the tabby CNI service at {sock_path}", str(exc), raw)


def main(*, fallback: bool = True) -> int:
    """Run the command and end the process: it returns only if the output cannot be flushed.

    Once the reply is written and flushed nothing is left to clean up, so the process
    leaves with ``_exit``: the interpreter's finalisation is ~1 ms of a ~7 ms call.
    """
    try:
        stdin = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    except OSError:
        stdin = ""
    reply = run(_role(sys.argv[0]), cni_environ(), stdin, fallback=fallback)
    try:
        if reply.stdout:
            out = reply.stdout if reply.stdout.endswith("\n") else reply.stdout + "\n"
            sys.stdout.write(out)
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        return reply.exit  # let the interpreter report what it can on the way out
    posix._exit(reply.exit)
    return reply.exit  # not reached


if __name__ == "__main__":
    sys.exit(main())
