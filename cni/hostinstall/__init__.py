"""A self-contained runtime for the CNI shim on a host that has no Python of ours."""
