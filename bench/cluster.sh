#!/usr/bin/env bash
# Benchmark of the cluster IPAM: ADD p50 through `cluster` (blocks on/off) vs host-local, and
# allocation throughput with 3 hosts x 16 workers with and without blocks. Starts its own etcd
# (3 members, or MEMBERS=1) on free loopback ports with data on /dev/shm, fsync on; kills it
# by pid at exit. Needs etcd (scripts/deps). Usage: bench/cluster.sh [N_LATENCY] [N_THROUGHPUT]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
TOTAL=${2:-3000}
MEMBERS=${MEMBERS:-3}
command -v etcd >/dev/null || { echo "etcd missing: apt-get install etcd-server" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q --release -p macvnet-cluster --example cluster_bench
cargo build -q --release -p macvnet-plugins --bin cluster
HL=()
cargo build -q --release -p macvnet-plugins --bin host-local 2>/dev/null && HL=(--host-local "$CARGO_TARGET_DIR/release/host-local")
[ -x /usr/lib/cni/host-local ] && HL+=(--reference /usr/lib/cni/host-local)

tag="mvbench-$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf /dev/shm/"$tag"-*
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
clients=(); peers=(); initial=""
for i in $(seq 0 $((MEMBERS - 1))); do
  clients+=("http://127.0.0.1:$(port)"); peers+=("http://127.0.0.1:$(port)")
  initial+="${initial:+,}m$i=${peers[$i]}"
done
for i in $(seq 0 $((MEMBERS - 1))); do
  etcd --name "m$i" --data-dir "/dev/shm/$tag-m$i" \
    --listen-client-urls "${clients[$i]}" --advertise-client-urls "${clients[$i]}" \
    --listen-peer-urls "${peers[$i]}" --initial-advertise-peer-urls "${peers[$i]}" \
    --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token "$tag" \
    >"/dev/shm/$tag-m$i.log" 2>&1 &
  pids+=($!)
done
for c in "${clients[@]}"; do
  for _ in $(seq 100); do curl -sf "$c/health" | grep -q true && break; sleep 0.2; done
done
eps=$(IFS=,; echo "${clients[*]}")
echo "# cluster IPAM bench: $(nproc) CPUs, $(uname -r), etcd $(etcd --version | head -1 | awk '{print $3}'), $MEMBERS members on /dev/shm"
"$CARGO_TARGET_DIR/release/examples/cluster_bench" --endpoints "$eps" \
  --cluster "$CARGO_TARGET_DIR/release/cluster" "${HL[@]}" --n "$N" --total "$TOTAL" \
  --dir "/dev/shm/$tag-data"
