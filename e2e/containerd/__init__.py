"""containerd's CRI plugin as a real CNI client for end-to-end tests."""
