"""Tabby's CNI plugin: a lean shim the runtime executes and a warm node-local service."""
