#!/usr/bin/env bash
# make demo: start a private etcd, load the example resources with tabbyctl, show them.
# Leaves etcd running; `make demo-down` (this script with "down") stops it and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-/tmp/tabby-demo}
ETCD_PORT=${ETCD_PORT:-23790}
ENDPOINT="http://127.0.0.1:${ETCD_PORT}"
TABBYCTL="$DEMO_DIR/install/bin/tabbyctl --etcd-endpoints $ENDPOINT"
PIDFILE="$DEMO_DIR/etcd.pid"

down() {
  if [ -f "$PIDFILE" ]; then
    kill "$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE"
  fi
  rm -rf "$DEMO_DIR/etcd"
  echo "demo stopped"
}

if [ "${1:-}" = "down" ]; then
  down
  exit 0
fi

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "demo etcd already running (pid $(cat "$PIDFILE")); reusing it"
else
  mkdir -p "$DEMO_DIR"
  etcd --name tabby-demo --data-dir "$DEMO_DIR/etcd" \
    --listen-client-urls "$ENDPOINT" --advertise-client-urls "$ENDPOINT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "tabby-demo=http://127.0.0.1:$((ETCD_PORT + 1))" \
    >"$DEMO_DIR/etcd.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 50); do
    ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINT" endpoint health >/dev/null 2>&1 && break
    sleep 0.2
  done
  echo "etcd running at $ENDPOINT (log: $DEMO_DIR/etcd.log)"
fi

for f in examples/*.yaml; do
  case "$f" in *invalid*) continue ;; esac
  $TABBYCTL apply -f "$f"
done
echo
echo "An invalid pool is refused, naming the field:"
$TABBYCTL apply -f examples/invalid-pool.yaml || true
for kind in ippools nodes bgpconfigurations bgppeers felixconfigurations; do
  echo
  echo "\$ tabbyctl get $kind -o wide"
  $TABBYCTL get "$kind" -o wide
done
echo
echo "Demo running. Try: $TABBYCTL get ippools -o yaml"
echo "Tear down with: make demo-down"
