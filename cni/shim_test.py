"""The shim's side of the protocol: VERSION locally, forwarding, and broken services."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import pytest

from cni import protocol, shim

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/var/run/netns/x",
    "CNI_IFNAME": "eth0",
    "SECRET": "not for the service",
}


def conf(sock: str) -> str:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "n",
            "type": "tabby",
            "cni_service_socket": sock,
            "ipam": {"type": "tabby-ipam"},
        }
    )


class OneShotServer:
    """Accepts one connection on a unix socket and answers with ``behaviour(request)``."""

    def __init__(self, path: str, behaviour) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.seen: list[protocol.Request] = []
        self.thread = threading.Thread(target=self._run, args=(behaviour,), daemon=True)
        self.thread.start()

    def _run(self, behaviour) -> None:
        conn, _ = self.sock.accept()
        with conn:
            req = protocol.decode_request(protocol.read_all(conn))
            self.seen.append(req)
            data = behaviour(req)
            if data:
                conn.sendall(data)

    def close(self) -> None:
        self.thread.join(5)
        self.sock.close()


def test_version_answered_without_any_service():
    reply = shim.run("plugin", {"CNI_COMMAND": "VERSION"}, '{"cniVersion": "0.4.0"}')
    assert reply.exit == 0
    assert json.loads(reply.stdout) == {
        "cniVersion": "0.4.0",
        "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }


def test_forwards_only_cni_env_and_prints_service_reply(tmp_path):
    path = str(tmp_path / "s.sock")
    srv = OneShotServer(path, lambda req: protocol.encode_reply(protocol.Reply(0, '{"ok":1}')))
    try:
        reply = shim.run("ipam", ENV, conf(path))
    finally:
        srv.close()
    assert reply == protocol.Reply(0, '{"ok":1}')
    (req,) = srv.seen
    assert req.role == "ipam" and "SECRET" not in req.env and req.env["CNI_CONTAINERID"] == "c1"


def test_service_that_breaks_off_is_try_again_later(tmp_path):
    path = str(tmp_path / "s.sock")
    srv = OneShotServer(path, lambda req: b"")
    try:
        reply = shim.run("plugin", ENV, conf(path))
    finally:
        srv.close()
    out = json.loads(reply.stdout)
    assert reply.exit == 11 and out["code"] == 11 and out["cniVersion"] == "1.0.0"


def test_env_errors_answered_by_the_shim(tmp_path):
    reply = shim.run("plugin", {**ENV, "CNI_IFNAME": ""}, conf(str(tmp_path / "none.sock")))
    assert reply.exit == 4 and "CNI_IFNAME" in json.loads(reply.stdout)["msg"]


def test_shim_imports_only_the_standard_library():
    code = (
        "import sys; before=set(sys.modules); import cni.shim; "
        "new=set(sys.modules)-before; "
        "bad=[m for m in new if m.split('.')[0] in "
        "('pyroute2','grpc','yaml','datastore','ipam','model','google')]; print(bad)"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, '.'); {code}"],
        capture_output=True,
        text=True,
        cwd=shim.__file__.rsplit("/cni/", 1)[0],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("bad", [b"{", b'{"v": 2, "exit": 0, "stdout": ""}', b'{"v":1,"exit":"0"}'])
def test_malformed_replies_rejected(bad):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_reply(bad)
