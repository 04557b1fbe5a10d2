"""Interop tests against real BGP speakers in network namespaces."""
