#!/usr/bin/env bash
# Cluster IPAM demo: three "hosts" (node names h0, h1, h2) share one pool kept in a 3-member
# etcd. IPAM only, on loopback: it shows the operations (member loss, `ipam gc --dead`, GC).
# For the same pool on real L2 (three host namespaces on one switch, children pinging each
# other) see the lab examples/cluster.toml (`macvnet lab run examples/cluster.toml`).
#
# It starts etcd on free loopback ports (data on /dev/shm, killed by pid at exit), ADDs 8
# containers per host through the `cluster` plugin, shows the pool, kills one etcd member and
# keeps allocating, declares h2 dead (`macvnet ipam gc --dead`), DELs the rest, and shows the
# pool empty again. No namespaces or links are created: IPAM needs none.
#
# Usage: examples/cluster.sh   (builds the binaries; needs etcd: scripts/deps; MACVNET=path
# uses that macvnet binary instead of building one)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v etcd >/dev/null || { echo "etcd missing: apt-get install etcd-server" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q -p macvnet-plugins --bin cluster
PLUGIN=$CARGO_TARGET_DIR/debug/cluster
if [ -z "${MACVNET:-}" ]; then
  cargo build -q -p macvnet --bin macvnet
  MACVNET=$CARGO_TARGET_DIR/debug/macvnet
fi

tag="mvdemo-$$"
work=/dev/shm/$tag
mkdir -p "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
clients=(); peers=(); initial=""
for i in 0 1 2; do
  clients+=("http://127.0.0.1:$(port)"); peers+=("http://127.0.0.1:$(port)")
  initial+="${initial:+,}m$i=${peers[$i]}"
done
for i in 0 1 2; do
  etcd --name "m$i" --data-dir "$work/m$i" \
    --listen-client-urls "${clients[$i]}" --advertise-client-urls "${clients[$i]}" \
    --listen-peer-urls "${peers[$i]}" --initial-advertise-peer-urls "${peers[$i]}" \
    --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token "$tag" \
    >"$work/m$i.log" 2>&1 &
  pids+=($!)
done
for c in "${clients[@]}"; do
  for _ in $(seq 100); do curl -sf "$c/health" | grep -q true && break; sleep 0.2; done
done
eps=$(printf '"%s",' "${clients[@]}"); eps="[${eps%,}]"

# One network config per host; only `node` (and the local hint dir) differ.
for n in 0 1 2; do
  cat >"$work/h$n.conflist" <<JSON
{"cniVersion": "1.1.0", "name": "demo", "plugins": [{"type": "macvlan", "master": "eth0",
 "ipam": {"type": "cluster", "range": "198.18.0.0/24", "rangeStart": "198.18.0.10",
          "exclude": ["198.18.0.100/30"], "gateway": "198.18.0.1",
          "routes": [{"dst": "0.0.0.0/0"}],
          "etcd": {"endpoints": $eps, "prefix": "/demo"},
          "node": "h$n", "dataDir": "$work/hint-h$n", "blocks": {"size": 4}}}]}
JSON
  # The plugin gets the single plugin object with the network name, as a runtime passes it.
  python3 -c "import json,sys; c=json.load(open(sys.argv[1])); p=c['plugins'][0]; p['name']=c['name']; p['cniVersion']=c['cniVersion']; print(json.dumps(p))" \
    "$work/h$n.conflist" >"$work/h$n.json"
done
cni() { # cni CMD NODE CID
  CNI_COMMAND=$1 CNI_CONTAINERID=$3 CNI_IFNAME=eth0 CNI_NETNS=/proc/1/ns/net CNI_NETNS_OVERRIDE=1 \
    CNI_PATH=/nonexistent "$PLUGIN" <"$work/$2.json"
}
have_ipam_cmd() { "$MACVNET" ipam --help >/dev/null 2>&1; }
show() {
  if have_ipam_cmd; then "$MACVNET" ipam show -c "$work/h0.conflist"; else echo "(macvnet ipam not wired in this build)"; fi
}

echo "== 8 ADDs per host, the three hosts at once"
for n in 0 1 2; do
  ( for k in $(seq 1 8); do
      ip=$(cni ADD "h$n" "h$n-c$k" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"])')
      echo "h$n-c$k $ip"
    done ) &
done | sort >"$work/adds"
cat "$work/adds" | column -c 100
dups=$(awk '{print $2}' "$work/adds" | sort | uniq -d)
[ -z "$dups" ] && echo "no address given twice" || { echo "DUPLICATES: $dups"; exit 1; }
show

echo; echo "== kill etcd member m0 (pid ${pids[0]}); allocation goes on"
kill -9 "${pids[0]}"
for n in 0 1 2; do cni ADD "h$n" "h$n-late" | grep -o '"address": "[^"]*"' | sed "s/^/h$n-late /"; done

echo; echo "== a retried ADD returns the same address"
cni ADD h0 h0-c1 | grep -o '"address": "[^"]*"'

echo; echo "== h2 is gone for good"
if have_ipam_cmd; then "$MACVNET" ipam gc -c "$work/h0.conflist" --node h2 --dead; fi
show

echo; echo "== DEL the rest (twice: DEL is idempotent), GC each host"
for n in 0 1; do
  for k in $(seq 1 8); do cni DEL "h$n" "h$n-c$k" >/dev/null; cni DEL "h$n" "h$n-c$k" >/dev/null; done
done
for n in 0 1 2; do cni DEL "h$n" "h$n-late" >/dev/null; done
for n in 0 1 2; do
  python3 -c "import json,sys; p=json.load(open(sys.argv[1])); p['cni.dev/valid-attachments']=[]; print(json.dumps(p))" "$work/h$n.json" \
  | CNI_COMMAND=GC CNI_PATH=/nonexistent "$PLUGIN"
done
show
