#!/bin/sh
# ADD/DEL p50/p99 and peak RSS: our macvlan plugin vs /usr/lib/cni/macvlan (host-local IPAM),
# alternating, inside test namespaces. Root only. Usage: bench/cni-compare.sh [ITERATIONS]
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q -p macvnet-plugins --bins --example cni-bench
dir="${CARGO_TARGET_DIR:-target}/release"
exec "$dir/examples/cni-bench" "${1:-200}"
