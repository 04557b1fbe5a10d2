#!/usr/bin/env bash
# Installs what Tabby needs on a Debian 12 machine: Debian packages and pinned pip
# requirements. Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  bazel-bootstrap            # build and test (Bazel 4.2.3, offline with our shims)
  etcd-server etcd-client    # the datastore
  iproute2 iputils-ping nftables iptables tcpdump procps kmod
  bird2 gobgpd frr           # real BGP peers for interop tests and benchmarks
  containernetworking-plugins  # reference CNI plugins (bridge, host-local, loopback)
  containerd runc umoci busybox-static  # a real CNI client and a tiny image
  debootstrap buildah shellcheck  # make image / image-test, checks of the kind scripts
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" scripts/check_requirements.py requirements.txt; then
  echo "setup: installing pip requirements"
  "$PY" -m pip install -q --disable-pip-version-check -r requirements.txt
fi
