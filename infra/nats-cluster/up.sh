#!/usr/bin/env bash
# Runs the three-node cluster of this folder in the foreground (Ctrl-C stops all three).
#   MOEQ_NATS_PASS=secret infra/nats-cluster/up.sh [store-dir]
# then, in another shell:
#   MOEQ_NATS_USER=moeq MOEQ_NATS_PASS=secret ./moeq quantize <model> --out <dir> \
#     --nats nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${MOEQ_NATS_PASS:?set MOEQ_NATS_PASS (the password of user moeq)}"
export MOEQ_NATS_PASS
store="${1:-$(mktemp -d -t moeq-nats-cluster-XXXXXX)}"
bin="${MOEQ_NATS_SERVER:-nats-server}"
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait || true; }
trap stop EXIT INT TERM
for i in 1 2 3; do
  mkdir -p "$store/n$i"
  "$bin" -c "$here/n$i.conf" -js -sd "$store/n$i" 2>&1 | sed -u "s/^/[n$i] /" &
  pids+=($!)
done
echo "cluster moeq: seeds nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224 (JetStream in $store)"
wait
