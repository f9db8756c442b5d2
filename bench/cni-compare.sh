#!/bin/sh
# ADD/DEL p50/p99 and peak RSS: our macvlan plugin vs /usr/lib/cni/macvlan (host-local IPAM),
# alternating, inside test namespaces. Root only.
#   bench/cni-compare.sh [ITERATIONS]            default release build
#   STATIC=1 bench/cni-compare.sh [ITERATIONS]   also a static, size-optimized build of ours
set -eu
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p macvnet-plugins --bins --example cni-bench
echo "== default release build"
"$target/release/examples/cni-bench" "${1:-200}"
if [ "${STATIC:-0}" = 1 ]; then
    triple="$(rustc -vV | sed -n 's/^host: //p')"
    CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_LTO=fat \
    RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
        cargo build --release -q -p macvnet-plugins --bins --target "$triple" --target-dir "$target/static"
    echo "== static, opt-level=s, fat LTO"
    MACVNET_BENCH_DIR="$target/static/$triple/release" "$target/release/examples/cni-bench" "${1:-200}"
fi
