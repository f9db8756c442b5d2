#!/usr/bin/env bash
# The kernel floor behind the "ADD p50 per tenth of 1000 attachments" figure: bringing up a
# bridge-mode macvlan whose address is announced (arp_notify=1, as the CNI macvlan plugins
# set it) delivers the gratuitous ARP synchronously to every sibling on the same parent,
# inside the link-up call. This times `ip link set up` of one more child with arp_notify 0
# and 1 while the parent already has 0, 250, ... 1000 addressed children, each in its own
# namespace (as containers are). Root only; namespaces mvfan-<pid>-*, removed on exit;
# addresses from 198.18.128.0/17.
#   bench/fanout-floor.sh [MAX_SIBLINGS] [STEP] [SAMPLES]
set -euo pipefail
max="${1:-1000}" step="${2:-250}" samples="${3:-15}"
p="mvfan-$$"
made=0
cleanup() {
    for ((i = 0; i < made; i++)); do ip netns del "$p-s$i" 2>/dev/null || true; done
    for n in host lan probe; do ip netns del "$p-$n" 2>/dev/null || true; done
}
trap cleanup EXIT
for n in host lan probe; do ip netns add "$p-$n"; done
ip link add eth0 netns "$p-host" type veth peer name up0 netns "$p-lan"
ip -n "$p-host" link set eth0 up
ip -n "$p-lan" link set up0 up
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) / 1e6 }'; }
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
printf "%-9s %-22s %-22s\n" siblings "link up, arp_notify=0" "link up, arp_notify=1"
for ((target = 0; target <= max; target += step)); do
    while ((made < target)); do
        ns="$p-s$made"
        ip netns add "$ns"
        ip -n "$p-host" link add link eth0 name "s$made" netns "$ns" type macvlan mode bridge
        ip -n "$ns" addr add "198.18.$((128 + made / 250)).$((made % 250 + 1))/17" dev "s$made"
        ip -n "$ns" link set "s$made" up
        made=$((made + 1))
    done
    for notify in 0 1; do
        for ((k = 0; k < samples; k++)); do
            ip -n "$p-host" link add link eth0 name probe0 netns "$p-probe" type macvlan mode bridge
            ip netns exec "$p-probe" sh -c "echo $notify > /proc/sys/net/ipv4/conf/probe0/arp_notify"
            ip -n "$p-probe" addr add 198.18.255.250/17 dev probe0
            s=$(date +%s%N)
            ip -n "$p-probe" link set probe0 up
            e=$(date +%s%N)
            ms "$s" "$e"
            ip -n "$p-probe" link del probe0
        done | median >"/tmp/$p.$notify"
    done
    printf "%-9s %-22s %-22s\n" "$made" "$(cat /tmp/$p.0) ms" "$(cat /tmp/$p.1) ms"
    rm -f "/tmp/$p.0" "/tmp/$p.1"
done
