#!/usr/bin/env bash
# Regenerate crates/plugins/hot-symbols.txt: the functions the CNI plugins run in an
# ADD, CHECK and DEL (macvlan and macvtap with in-process host-local, host-local and
# static alone), recorded with valgrind's callgrind. scripts/link-ordered gathers them at
# the start of .text, which keeps a plugin's resident set small (bench/README.md).
# Run as root after dependency or toolchain updates: `bench/hot-symbols.sh`, then rebuild.
# Everything happens in namespaces named mvhot-<pid>-*, removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --workspace -q
bin="$target/release"
p="mvhot-$$"
work="$(mktemp -d)"
cleanup() {
    for n in host lan c1; do ip netns del "$p-$n" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
for n in host lan c1; do ip netns add "$p-$n"; done
mkdir -p "$work/dev"
ip link add eth0 netns "$p-host" type veth peer name up0 netns "$p-lan"
ip -n "$p-host" link set eth0 up
ip -n "$p-lan" link set up0 up

ipam='{"type":"host-local","subnet":"198.18.96.0/24","dataDir":"'"$work"'/data"}'
ranges='{"type":"host-local","ranges":[[{"subnet":"198.18.98.0/24"}],[{"subnet":"2001:db8:98::/64"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"'"$work"'/data"}'
conf_of() {
    case "$1" in
    macvlan-ranges) echo '{"cniVersion":"1.0.0","name":"mvhot","type":"macvlan","master":"eth0","mode":"bridge","mtu":1400,"ipam":'"$ranges"',"dns":{"nameservers":["198.18.0.53"]}}' ;;
    macvlan-l2) echo '{"cniVersion":"1.0.0","name":"mvhot","type":"macvlan","master":"eth0","mode":"bridge","ipam":{}}' ;;
    macvlan) echo '{"cniVersion":"1.0.0","name":"mvhot","type":"macvlan","master":"eth0","ipam":'"$ipam"'}' ;;
    macvtap) echo '{"cniVersion":"1.0.0","name":"mvhot","type":"macvtap","master":"eth0","devDir":"'"$work"'/dev","ipam":'"$ipam"'}' ;;
    host-local) echo '{"cniVersion":"1.0.0","name":"mvhot","ipam":'"$ipam"'}' ;;
    static) echo '{"cniVersion":"1.0.0","name":"mvhot","ipam":{"type":"static","addresses":[{"address":"198.18.97.2/24"}]}}' ;;
    esac
}
# ADD first: it is what a runtime waits on and what the peak RSS is measured on.
rank_of() { case "$1" in ADD) echo 1 ;; DEL) echo 2 ;; *) echo 3 ;; esac; }
n=0
for variant in macvlan macvlan-ranges macvlan-l2 macvtap host-local static; do
    case "$variant" in macvlan-*) plugin=macvlan ;; *) plugin="$variant" ;; esac
    conf="$(conf_of "$variant")"
    for cmd in ADD CHECK DEL; do
        n=$((n + 1))
        input="$conf"
        if [ "$cmd" = CHECK ]; then
            input="$(python3 -c 'import json,sys; c=json.loads(sys.argv[1]); c["prevResult"]=json.load(open(sys.argv[2])); print(json.dumps(c))' "$conf" "$work/result")"
        fi
        CNI_COMMAND=$cmd CNI_CONTAINERID="hot-$variant" CNI_NETNS="/run/netns/$p-c1" CNI_IFNAME=net0 \
            CNI_PATH="$bin" nsenter --net="/run/netns/$p-host" \
            valgrind -q --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.$plugin.$(rank_of "$cmd").$n" \
            "$bin/$plugin" <<<"$input" >"$work/out" || { echo "$variant $cmd failed: $(cat "$work/out")" >&2; exit 1; }
        [ "$cmd" = ADD ] && cp "$work/out" "$work/result"
    done
done
# Executed functions ("fn=" records) per plugin, ADD before DEL before CHECK, without
# valgrind's own names; written as "<plugin> <command> <name without its hash> <size in hex>": the hashes of Rust symbols change with the checkout's path (cargo's metadata), their
# names do not; the size tells apart the instances of one generic function.
# Sizes per binary: thin LTO inlines differently in each, so one function's size differs.
for b in macvlan macvtap host-local static; do nm -S --defined-only "$bin/$b" >"$work/sizes.$b"; done
python3 - "$work" >crates/plugins/hot-symbols.txt <<'PY'
import os, re, sys
unhash = lambda n: re.sub(r"\.llvm\.[0-9]+$", "", re.sub(r"17h[0-9a-f]+E(\.llvm\.[0-9]+)?$", "E", n))
work = sys.argv[1]
COMMANDS = {"1": "ADD", "2": "DEL", "3": "CHECK"}
profiles = sorted((f.split(".") for f in os.listdir(work) if f.startswith("cg.")),
                  key=lambda p: (p[1], int(p[2]), int(p[3])))
# Functions a native start runs that valgrind's does not see: glibc sets up the vDSO (which
# valgrind does not provide) and calls crtbegin's frame_dummy. Found by sampling the page
# faults of native runs (`perf record -e page-faults -d`).
NATIVE_ONLY = ("_dl_new_object", "_dl_setup_hash", "_dl_lookup_symbol_x", "__strcmp_avx2", "frame_dummy")
sizes, seen, out = {}, set(), {}
for _, plugin, rank, n in profiles:
    if plugin not in sizes:
        sizes[plugin] = {}
        for line in open(os.path.join(work, "sizes." + plugin)):
            f = line.split()
            if len(f) == 4:
                sizes[plugin][f[3]] = f[1].lstrip("0") or "0"
        out[plugin, "1"] = [f"{plugin} ADD {name} 0" for name in NATIVE_ONLY]
    size = sizes[plugin]
    names = {}
    for line in open(os.path.join(work, f"cg.{plugin}.{rank}.{n}")):
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if not m:
            continue
        kind, key, name = m.groups()
        if name:
            names[key] = re.sub(r"'\d+$", "", name)
        name = names.get(key)
        if kind != "fn" or not name or " " in name or name.startswith("0x") or name not in size:
            continue
        entry = f"{plugin} {unhash(name)} {size[name]}"
        if entry not in seen:
            seen.add(entry)
            out.setdefault((plugin, rank), []).append(f"{plugin} {COMMANDS[rank]} {unhash(name)} {size[name]}")
print("\n".join(line for key in sorted(out) for line in out[key]))
PY
echo "$(wc -l <crates/plugins/hot-symbols.txt) entries in crates/plugins/hot-symbols.txt"
