"""Endpoint resolution order: flag, environment, config file, default."""

from __future__ import annotations

from pathlib import Path

import pytest

from datastore import config
from datastore.config import ConfigError, resolve_endpoints


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(config.ENV_ENDPOINTS, raising=False)
    monkeypatch.delenv(config.ENV_CONFIG, raising=False)
    # Never read the machine's real /etc/tabby/tabby.yaml in a test.
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", str(tmp_path / "absent.yaml"))


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tabby.yaml"
    path.write_text(text)
    return str(path)


def test_default_is_local_etcd() -> None:
    assert resolve_endpoints(None) == ["http://127.0.0.1:2379"]


def test_cli_value_wins_over_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(config.ENV_ENDPOINTS, "http://env:2379")
    monkeypatch.setenv(config.ENV_CONFIG, _write(tmp_path, "etcdEndpoints: http://file:2379\n"))
    assert resolve_endpoints("http://a:2379, http://b:2379") == ["http://a:2379", "http://b:2379"]


def test_env_wins_over_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(config.ENV_ENDPOINTS, "http://env1:2379,http://env2:2379")
    monkeypatch.setenv(config.ENV_CONFIG, _write(tmp_path, "etcdEndpoints: http://file:2379\n"))
    assert resolve_endpoints(None) == ["http://env1:2379", "http://env2:2379"]


def test_file_from_tabby_config_string_or_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(
        config.ENV_CONFIG, _write(tmp_path, "etcdEndpoints: http://f1:1,http://f2:2")
    )
    assert resolve_endpoints("") == ["http://f1:1", "http://f2:2"]
    monkeypatch.setenv(config.ENV_CONFIG, _write(tmp_path, "etcdEndpoints: [http://f3:3]\n"))
    assert resolve_endpoints(None) == ["http://f3:3"]


def test_default_config_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(
        config, "DEFAULT_CONFIG_FILE", _write(tmp_path, "etcdEndpoints: http://d:9")
    )
    assert resolve_endpoints(None) == ["http://d:9"]


def test_file_without_key_falls_back_to_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(config.ENV_CONFIG, _write(tmp_path, "logLevel: info\n"))
    assert resolve_endpoints(None) == ["http://127.0.0.1:2379"]


def test_missing_explicit_config_file_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(config.ENV_CONFIG, str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"nope.yaml \(from \$TABBY_CONFIG\) does not exist"):
        resolve_endpoints(None)


def test_malformed_config_names_file_and_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(config.ENV_CONFIG, _write(tmp_path, "etcdEndpoints: {a: 1}\n"))
    with pytest.raises(ConfigError, match="etcdEndpoints must be a string"):
        resolve_endpoints(None)
    monkeypatch.setenv(config.ENV_CONFIG, _write(tmp_path, "etcdEndpoints: [unclosed\n"))
    with pytest.raises(ConfigError, match="cannot be read"):
        resolve_endpoints(None)
