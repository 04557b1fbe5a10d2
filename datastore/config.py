"""Where is etcd? One answer for every Tabby command, in a fixed order of precedence.

``--etcd-endpoints`` beats ``TABBY_ETCD_ENDPOINTS``, which beats ``etcdEndpoints`` in
the config file (``TABBY_CONFIG``, else ``/etc/tabby/tabby.yaml``), which beats the
local default. Each is a comma-separated list (the YAML key may also be a list).
"""

from __future__ import annotations

import os

import yaml

from datastore.api import DatastoreError

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
DEFAULT_CONFIG_FILE = "/etc/tabby/tabby.yaml"
ENV_ENDPOINTS = "TABBY_ETCD_ENDPOINTS"
ENV_CONFIG = "TABBY_CONFIG"


class ConfigError(DatastoreError):
    """The config file exists but cannot be used; the message names the file and key."""


def split_endpoints(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _from_file(path: str, must_exist: bool) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(f"config file {path} (from ${ENV_CONFIG}) does not exist") from None
        return []
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"config file {path} cannot be read: {e}") from e
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    value = doc.get("etcdEndpoints")
    if value is None:
        return []
    if isinstance(value, str):
        return split_endpoints(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [e for v in value for e in split_endpoints(v)]
    raise ConfigError(f"config file {path}: etcdEndpoints must be a string or a list of strings")


def resolve_endpoints(cli_value: str | None) -> list[str]:
    """The etcd endpoints to use, from the first source that names any."""
    if cli_value and split_endpoints(cli_value):
        return split_endpoints(cli_value)
    env = os.environ.get(ENV_ENDPOINTS, "")
    if split_endpoints(env):
        return split_endpoints(env)
    explicit = os.environ.get(ENV_CONFIG)
    from_file = _from_file(explicit or DEFAULT_CONFIG_FILE, must_exist=bool(explicit))
    if from_file:
        return from_file
    return [DEFAULT_ENDPOINT]
