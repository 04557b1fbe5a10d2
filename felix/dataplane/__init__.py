"""Felix dataplane managers."""
