"""CNI error codes and the error value every command path raises.

Standard library only: the shim (``python3 -S``) imports this module.
Codes 1-99 are the spec's; 100 and above are Tabby's own (documented in docs/cni.md).
"""

from __future__ import annotations

# The CNI spec's well-known codes (SPEC.md, "Error codes").
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
PLUGIN_NOT_AVAILABLE_LIMITED = 51

# Tabby's codes (>= 100). Keep docs/cni.md in step.
IPAM_FAILURE = 100  # the allocator failed for a reason other than exhaustion
POOL_EXHAUSTED = 101  # no free address in the pools this pod may use
DATAPLANE_FAILURE = 102  # creating or configuring the veth / routes failed
DATASTORE_FAILURE = 103  # the datastore answered, but refused the write
POLICY_TIMEOUT = 104  # Felix did not report the endpoint ready in time
CHECK_FAILED = 105  # CHECK found the pod's network not as prevResult describes
INTERNAL_ERROR = 106  # a bug: an unexpected exception in the plugin


class CNIError(Exception):
    """A failure to report to the runtime as the spec's error JSON, with its exit code."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, object]:
        out: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"CNIError(code={self.code}, msg={self.msg!r}, details={self.details!r})"
