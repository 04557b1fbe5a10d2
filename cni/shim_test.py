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


def test_unknown_command_and_bad_json_answered_by_the_shim(tmp_path):
    sock = str(tmp_path / "none.sock")
    reply = shim.run("plugin", {**ENV, "CNI_COMMAND": "BOUNCE"}, conf(sock))
    assert reply.exit == 4 and "BOUNCE" in json.loads(reply.stdout)["msg"]
    reply = shim.run("plugin", ENV, "{oops")
    assert reply.exit == 6 and json.loads(reply.stdout)["code"] == 6


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


@pytest.mark.parametrize("text", ["{not json", "", "[1,", '{"a": 1} trailing'])
def test_lean_json_reader_rejects_what_json_rejects(text):
    import json as stdjson

    with pytest.raises(ValueError):
        stdjson.loads(text)
    with pytest.raises(ValueError):
        shim.loads(text)


def test_lean_json_reader_and_request_encoder_agree_with_json():
    import json as stdjson

    text = ' \n{"a": [1, 2.5, "x\\u00e9\\n", null, true, {"b": -3e2}]}\n'
    assert shim.loads(text) == stdjson.loads(text)
    env = {**ENV, "CNI_ARGS": 'K="quoted";\\x'}
    req = protocol.decode_request(shim.encode_request("plugin", env, 'é{"x":1}\n'))
    assert req.env == {k: v for k, v in env.items() if k.startswith("CNI_")}
    assert req.stdin == 'é{"x":1}\n'


def test_shim_fast_path_loads_no_python_module_of_the_standard_library():
    # Under -S the interpreter has not loaded ``os``; the shim must not either (~1 ms).
    code = (
        "import sys; before=set(sys.modules); import cni.shim; "
        "print(sorted(set(sys.modules)-before))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, '.'); {code}"],
        capture_output=True,
        text=True,
        cwd=shim.__file__.rsplit("/cni/", 1)[0],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['__future__', '_json', '_socket', 'cni', 'cni.shim']"


def test_cni_environ_reads_only_cni_variables(monkeypatch):
    monkeypatch.setenv("CNI_COMMAND", "ADD")
    monkeypatch.setenv("CNI_ARGS", "K8S_POD_NAME=caf\u00e9")
    monkeypatch.setenv("NOT_CNI", "x")
    monkeypatch.delenv("CNI_PATH", raising=False)
    env = shim.cni_environ()
    assert env["CNI_COMMAND"] == "ADD" and env["CNI_ARGS"] == "K8S_POD_NAME=caf\u00e9"
    assert "NOT_CNI" not in env and "CNI_PATH" not in env
