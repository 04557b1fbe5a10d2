"""The shim <-> service protocol: one JSON request and one JSON reply per unix connection.

Request (the shim writes it, then half-closes)::

    {"v": 1, "role": "plugin" | "ipam", "env": {"CNI_COMMAND": ...}, "stdin": "<config>"}

Reply (the service writes it, then closes)::

    {"v": 1, "exit": 0, "stdout": "<what the plugin prints>"}

The service answers with exactly what the executable would print, so the shim stays a
pipe and both paths (service, in-process fallback) share one handler. Standard library
only: the shim imports this under ``python3 -S``.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

VERSION = 1
ROLE_PLUGIN = "plugin"
ROLE_IPAM = "ipam"
MAX_MESSAGE = 4 << 20  # a config or result larger than this is a bug, not a pod
# Only these variables cross the socket: the service must not see the shim's whole env.
ENV_KEYS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")


class ProtocolError(Exception):
    """A malformed message, or the peer went away mid-message."""


@dataclass(frozen=True)
class Request:
    role: str
    env: dict[str, str]
    stdin: str


@dataclass(frozen=True)
class Reply:
    exit: int
    stdout: str


def encode_request(req: Request) -> bytes:
    env = {k: v for k, v in req.env.items() if k in ENV_KEYS}
    return json.dumps({"v": VERSION, "role": req.role, "env": env, "stdin": req.stdin}).encode()


def decode_request(data: bytes) -> Request:
    msg = _decode(data)
    role, env, stdin = msg.get("role"), msg.get("env"), msg.get("stdin")
    if role not in (ROLE_PLUGIN, ROLE_IPAM):
        raise ProtocolError(f"unknown role {role!r}")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ProtocolError("env must map strings to strings")
    if not isinstance(stdin, str):
        raise ProtocolError("stdin must be a string")
    return Request(role=role, env={k: v for k, v in env.items() if k in ENV_KEYS}, stdin=stdin)


def encode_reply(reply: Reply) -> bytes:
    return json.dumps({"v": VERSION, "exit": reply.exit, "stdout": reply.stdout}).encode()


def decode_reply(data: bytes) -> Reply:
    msg = _decode(data)
    code, stdout = msg.get("exit"), msg.get("stdout")
    if isinstance(code, bool) or not isinstance(code, int) or not isinstance(stdout, str):
        raise ProtocolError("reply needs an integer exit and a string stdout")
    return Reply(exit=code, stdout=stdout)


def _decode(data: bytes) -> dict:
    try:
        msg = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message must be a JSON object")
    if msg.get("v") != VERSION:
        raise ProtocolError(f"protocol version {msg.get('v')!r}, this side speaks {VERSION}")
    return msg


def read_all(sock: socket.socket) -> bytes:
    """Read until the peer half-closes; refuse anything larger than MAX_MESSAGE."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_MESSAGE:
            raise ProtocolError(f"message larger than {MAX_MESSAGE} bytes")
        chunks.append(chunk)


def call(path: str, req: Request, timeout: float) -> Reply:
    """Send one request to the service at ``path``.

    Raises ``FileNotFoundError`` / ``ConnectionRefusedError`` when no service listens
    (the caller falls back to running in-process) and ``ProtocolError`` when the
    service accepted the request but broke off before answering (it may have done part
    of the work, so the caller must not silently redo it).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        try:
            sock.sendall(encode_request(req))
            sock.shutdown(socket.SHUT_WR)
            data = read_all(sock)
        except OSError as exc:
            raise ProtocolError(f"service connection failed: {exc}") from None
        if not data:
            raise ProtocolError("service closed the connection without a reply")
        return decode_reply(data)
    finally:
        sock.close()
