# The commands a newcomer runs. Each installs what it needs first (scripts/setup.sh).
PYTHON ?= python3
PREFIX ?= /usr/local
DEMO_DIR ?= /tmp/tabby-demo

.PHONY: all setup proto test lint install demo demo-down clean image image-test

all: test

setup:
	@bash scripts/setup.sh

# Python stubs in the source tree, for running outside Bazel (install, demo, editors).
# Bazel builds its own copy with the genrule in proto/BUILD.bazel.
proto: setup
	@$(PYTHON) -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. proto/*.proto e2e/containerd/*.proto

test: setup proto
	@rc=0; bazel test //... || rc=$$?; $(PYTHON) scripts/test_summary.py; exit $$rc

lint: setup proto
	@$(PYTHON) -m ruff check .
	@$(PYTHON) -m ruff format --check .

install: setup proto
	@$(PYTHON) scripts/install.py --prefix "$(PREFIX)"

demo: setup proto
	@$(PYTHON) scripts/install.py --prefix "$(DEMO_DIR)/install" >/dev/null
	@$(PYTHON) scripts/demo_cluster.py up --prefix "$(DEMO_DIR)/install" --state "$(DEMO_DIR)"

# The DaemonSet image as an OCI archive, build/image/tabby-oci.tar (no Docker engine;
# deploy/Containerfile is the same image for Docker users). image-test runs it in a
# private containerd.
image: setup proto
	@bash deploy/image/build.sh

image-test: image
	@$(PYTHON) -m pytest deploy/image/image_test.py

demo-down:
	@$(PYTHON) scripts/demo_cluster.py down --state "$(DEMO_DIR)"

clean:
	rm -f proto/*_pb2.py proto/*_pb2_grpc.py e2e/containerd/*_pb2*.py
	bazel clean
