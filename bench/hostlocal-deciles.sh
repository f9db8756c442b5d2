#!/usr/bin/env bash
# host-local alone (no link work): N sequential ADDs of ours and of the reference, alternating,
# each into its own dataDir, all held; prints the ADD p50 of each tenth and last/first.
# Shows the IPAM's own flatness, apart from the kernel's link-up cost that `macvnet bench
# cni --attachments` includes (bench/README.md). One empty namespace mvdec-<pid> stands in
# for the containers (host-local never enters it). Addresses from 198.18.0.0/16; the
# namespace and the temp dir are removed on exit.
#   bench/hostlocal-deciles.sh [N] [OURS_DIR] [REFERENCE_DIR]
set -euo pipefail
n="${1:-1000}"
ours="${2:-${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release}"
ref="${3:-/usr/lib/cni}"
work="$(mktemp -d)"
ns="mvdec-$$"
trap 'rm -rf "$work"; ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns add "$ns"
for side in ours ref; do
    dir=$ours; [ "$side" = ref ] && dir=$ref
    [ -x "$dir/host-local" ] || { echo "no host-local in $dir" >&2; exit 1; }
done
for side in ours ref; do
    echo '{"cniVersion":"1.0.0","name":"mvdec","ipam":{"type":"host-local","subnet":"198.18.0.0/16","dataDir":"'"$work/$side"'"}}' >"$work/$side.json"
done
# Timed with bash's own clock ($EPOCHREALTIME, no fork), so the figure is the plugin's run.
for ((i = 0; i < n; i++)); do
    for side in ours ref; do
        dir=$ours; [ "$side" = ref ] && dir=$ref
        s=${EPOCHREALTIME/[.,]/}
        CNI_COMMAND=ADD CNI_CONTAINERID="dec-$i" CNI_NETNS="/run/netns/$ns" CNI_IFNAME=eth0 \
            CNI_PATH="$dir" "$dir/host-local" <"$work/$side.json" >/dev/null
        e=${EPOCHREALTIME/[.,]/}
        echo "$side $((e - s))"
    done
done | awk -v n="$n" '
    { t[$1, c[$1]++] = $2 }
    END {
        for (side in c) {
            line = side ":"; first = 0
            for (d = 0; d < 10; d++) {
                lo = int(d * n / 10); hi = int((d + 1) * n / 10); m = 0
                for (i = lo; i < hi; i++) v[m++] = t[side, i]
                asort_n(v, m); p50 = v[int((m - 1) / 2)] / 1000
                if (d == 0) first = p50
                line = line sprintf(" %.2f", p50)
            }
            printf "%s ms (last/first %.2f)\n", line, p50 / first
        }
    }
    function asort_n(a, m,    i, j, x) { for (i = 1; i < m; i++) { x = a[i]; for (j = i - 1; j >= 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }'
