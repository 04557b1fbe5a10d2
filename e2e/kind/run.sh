#!/usr/bin/env bash
# Tabby on a local kind cluster, end to end: build the image, create a 3-node cluster
# without a default CNI, load the image, deploy etcd and Tabby, wait for the rollout,
# then check that pods on different nodes can ping each other. See e2e/kind/README.md.
#
# Needs Docker (a running engine), kind and kubectl. Usage: e2e/kind/run.sh [options]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONFIG=$REPO/e2e/kind/kind-config.yaml
MANIFESTS=$REPO/deploy/manifests
IMAGE=localhost/tabby:latest
CLUSTER=${TABBY_KIND_CLUSTER:-tabby}
BUSYBOX=${TABBY_BUSYBOX_IMAGE:-busybox:1.36}
TIMEOUT=${TABBY_KIND_TIMEOUT:-300s}
TEST_NS=tabby-e2e
BUILD=docker # docker | archive | none
ARCHIVE=
DELETE=0

usage() {
  cat <<EOF
Usage: $0 [--cluster NAME] [--image-archive PATH | --no-build] [--delete] [--timeout DUR]

  --cluster NAME        kind cluster name (default: $CLUSTER; \$TABBY_KIND_CLUSTER)
  --image-archive PATH  load the OCI archive from 'make image' instead of docker build
  --no-build            use the $IMAGE already in the local Docker engine
  --delete              delete the cluster at the end (default: keep it to look around)
  --timeout DUR         how long each wait may take (default: $TIMEOUT)
EOF
}

log() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'run.sh: error: %s\n' "$*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case $1 in
  --cluster) CLUSTER=${2:?--cluster needs a name} && shift ;;
  --image-archive) BUILD=archive && ARCHIVE=${2:?--image-archive needs a path} && shift ;;
  --no-build) BUILD=none ;;
  --delete) DELETE=1 ;;
  --timeout) TIMEOUT=${2:?--timeout needs a duration} && shift ;;
  -h | --help) usage && exit 0 ;;
  *) usage >&2 && die "unknown option '$1'" ;;
  esac
  shift
done

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || die "'$tool' not found on PATH (see e2e/kind/README.md)"
done
[ "$BUILD" != archive ] || [ -r "$ARCHIVE" ] || die "image archive '$ARCHIVE' not readable"

KUBECTL=(kubectl --context "kind-$CLUSTER")

diagnose() {
  # On failure, what an operator would look at first.
  local rc=$?
  [ "$rc" -eq 0 ] && return 0
  printf '\nrun.sh: FAILED (exit %s); cluster state:\n' "$rc" >&2
  "${KUBECTL[@]}" get nodes -o wide >&2 || true
  "${KUBECTL[@]}" get pods -A -o wide >&2 || true
  "${KUBECTL[@]}" -n kube-system logs -l k8s-app=tabby-node --all-containers --tail=40 \
    --prefix >&2 || true
  printf 'The cluster is kept; delete it with: kind delete cluster --name %s\n' "$CLUSTER" >&2
  return "$rc"
}
trap diagnose EXIT

case $BUILD in
docker)
  log "build $IMAGE from deploy/Containerfile"
  docker build -f "$REPO/deploy/Containerfile" -t "$IMAGE" "$REPO"
  ;;
archive) log "using the OCI archive $ARCHIVE" ;;
none) docker image inspect "$IMAGE" >/dev/null || die "no $IMAGE in Docker; drop --no-build" ;;
esac

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "cluster '$CLUSTER' exists; reusing it"
else
  log "create kind cluster '$CLUSTER' (default CNI disabled)"
  kind create cluster --name "$CLUSTER" --config "$CONFIG"
fi

log "load $IMAGE into the cluster's nodes"
if [ "$BUILD" = archive ]; then
  kind load image-archive "$ARCHIVE" --name "$CLUSTER"
else
  kind load docker-image "$IMAGE" --name "$CLUSTER"
fi

log "deploy etcd and Tabby"
"${KUBECTL[@]}" apply -f "$MANIFESTS/etcd.yaml"
"${KUBECTL[@]}" -n kube-system rollout status daemonset/tabby-etcd --timeout="$TIMEOUT"
"${KUBECTL[@]}" apply -f "$MANIFESTS/tabby-etcd.yaml"
# A rerun after a rebuild must not keep pods running the previous image.
"${KUBECTL[@]}" -n kube-system rollout restart daemonset/tabby-node
"${KUBECTL[@]}" -n kube-system rollout status daemonset/tabby-node --timeout="$TIMEOUT"
log "wait for every node to be Ready (pod networking up)"
"${KUBECTL[@]}" wait --for=condition=Ready nodes --all --timeout="$TIMEOUT"

log "connectivity: one busybox pod per node, each pings every other"
"${KUBECTL[@]}" create namespace "$TEST_NS" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
"${KUBECTL[@]}" -n "$TEST_NS" apply -f - <<EOF
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: pinger
spec:
  selector:
    matchLabels: {app: pinger}
  template:
    metadata:
      labels: {app: pinger}
    spec:
      tolerations: [{operator: Exists, effect: NoSchedule}]
      terminationGracePeriodSeconds: 1
      containers:
        - name: busybox
          image: $BUSYBOX
          command: ["sleep", "3600"]
EOF
"${KUBECTL[@]}" -n "$TEST_NS" rollout status daemonset/pinger --timeout="$TIMEOUT"

mapfile -t PODS < <("${KUBECTL[@]}" -n "$TEST_NS" get pods -l app=pinger \
  -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}')
nodes=$("${KUBECTL[@]}" get nodes --no-headers | wc -l)
[ "${#PODS[@]}" -eq "$nodes" ] || die "expected $nodes pinger pods, got ${#PODS[@]}"

failures=0
for src in "${PODS[@]}"; do
  read -r src_pod src_node src_ip <<<"$src"
  case $src_ip in
  192.168.*) ;;
  *) echo "FAIL $src_pod on $src_node has IP '$src_ip', outside Tabby's pool 192.168.0.0/16" &&
    failures=$((failures + 1)) ;;
  esac
  for dst in "${PODS[@]}"; do
    read -r dst_pod dst_node dst_ip <<<"$dst"
    [ "$src_pod" != "$dst_pod" ] || continue
    if "${KUBECTL[@]}" -n "$TEST_NS" exec "$src_pod" -- ping -c 3 -W 2 "$dst_ip" >/dev/null; then
      echo "ok   $src_node ($src_ip) -> $dst_node ($dst_ip)"
    else
      echo "FAIL $src_node ($src_ip) -> $dst_node ($dst_ip)"
      failures=$((failures + 1))
    fi
  done
done
[ "$failures" -eq 0 ] || die "$failures connectivity checks failed"
log "all pods reach each other across ${nodes} nodes"

"${KUBECTL[@]}" delete namespace "$TEST_NS" --wait=false
if [ "$DELETE" -eq 1 ]; then
  log "delete cluster '$CLUSTER'"
  kind delete cluster --name "$CLUSTER"
else
  echo "The cluster is kept; delete it with: kind delete cluster --name $CLUSTER"
fi
