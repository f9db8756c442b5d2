#!/usr/bin/env python3
"""Writes the bad-input corpus: one NNN-name.json per case (run by crates/plugins/tests/corpus.rs).
Edit the case list here and re-run, or edit the files directly. See README.md for the format."""
import copy, json, os

here = os.path.dirname(os.path.abspath(__file__))
IPAM = {"type": "host-local", "dataDir": "@DATA@", "subnet": "198.18.6.0/24"}
BASE = {
    "macvlan": {"cniVersion": "1.0.0", "name": "mvtcorpus", "type": "macvlan", "master": "eth0", "ipam": IPAM},
    "macvtap": {"cniVersion": "1.0.0", "name": "mvtcorpus", "type": "macvtap", "master": "eth0", "devDir": "@DEV@"},
    "host-local": {"cniVersion": "1.0.0", "name": "mvtcorpus", "type": "macvlan", "ipam": IPAM},
    "static": {"cniVersion": "1.0.0", "name": "mvtcorpus", "type": "macvlan",
               "ipam": {"type": "static", "addresses": [{"address": "198.18.6.5/24"}]}},
    "dhcp": {"cniVersion": "1.0.0", "name": "mvtcorpus", "type": "macvlan",
             "ipam": {"type": "dhcp", "daemonSocketPath": "@DATA@/no-daemon.sock"}},
}
cases = []

def case(name, plugin, code, stdin=None, env=None, msg=None, patch=None, ipam=None, drop=None, gen=None, exit=1, may_change=None):
    conf = copy.deepcopy(BASE[plugin])
    for k, v in (patch or {}).items():
        conf[k] = v
    for k, v in (ipam or {}).items():
        conf["ipam"][k] = v
    for k in (drop or []):
        conf.pop(k, None)
    c = {"plugin": plugin, "env": env or {}, "stdin": conf if stdin is None else stdin,
         "expect": {"exit": exit, "code": code}}
    if gen:
        c["stdin_gen"] = gen
    if msg:
        c["expect"]["msg_contains"] = msg
    if may_change:
        c["expect"]["may_change"] = may_change
    cases.append((name, c))

# Malformed and huge JSON (skel, every plugin).
case("truncated-json", "macvlan", 6, stdin='{"cniVersion": "1.0.0", "name": ')
case("truncated-json-host-local", "host-local", 6, stdin='{"cniVersion": "1.0.0"')
case("empty-stdin", "macvlan", 6, stdin="")
case("json-array", "macvtap", 6, stdin="[1, 2, 3]")
case("json-null", "static", 7, stdin="null")
case("binary-garbage", "macvlan", 6, stdin="\u0000\u00ff\u00fe garbage \u0001")
case("trailing-garbage", "macvlan", 6, stdin=json.dumps(BASE["macvlan"]) + " }}")
case("huge-stdin-5mib", "macvlan", 6, gen="pad:5242880", msg="larger than")
case("huge-stdin-host-local", "host-local", 6, gen="pad:5242880", msg="larger than")
case("deep-nesting", "macvlan", 6, gen="nest:100000")
case("deep-nesting-dhcp", "dhcp", 6, gen="nest:100000")
# Versions.
for p in ["macvlan", "macvtap", "host-local", "static", "dhcp"]:
    case(f"unknown-cniversion-{p}", p, 1, patch={"cniVersion": "9.9.9"})
case("cniversion-not-semver", "macvlan", 1, patch={"cniVersion": "one"})
case("cniversion-number", "macvlan", 6, patch={"cniVersion": 1.0})
case("check-before-0.4.0", "macvlan", 1, patch={"cniVersion": "0.3.1"}, env={"CNI_COMMAND": "CHECK"})
case("gc-before-1.1.0", "host-local", 1, env={"CNI_COMMAND": "GC"})
case("prevresult-version-mismatch", "macvlan", 999, env={"CNI_COMMAND": "CHECK"},
     patch={"prevResult": {"cniVersion": "0.2.0", "ip4": {"ip": "198.18.6.9/24"}}})
case("prevresult-wrong-type", "macvlan", 999, env={"CNI_COMMAND": "CHECK"}, patch={"prevResult": "yes"})
# Missing fields / wrong types of common keys.
case("name-missing", "macvlan", 7, drop=["name"])
case("name-number", "macvlan", 6, patch={"name": 42})
case("name-path-traversal", "host-local", 7, patch={"name": "../../../tmp/mvt-escape"})
case("name-slash", "host-local", 7, patch={"name": "a/b"})
case("ipam-type-number", "macvlan", 6, ipam={"type": 7})
case("dns-wrong-type", "macvlan", 6, patch={"dns": 5})
case("capabilities-wrong-type", "macvlan", 6, patch={"capabilities": "all"})
case("runtimeconfig-wrong-type", "macvlan", 6, patch={"runtimeConfig": {"mac": 5}})
# Environment.
case("command-unknown", "macvlan", 4, env={"CNI_COMMAND": "EXPLODE"})
case("command-missing-prints-about", "macvlan", None, env={"CNI_COMMAND": None}, exit=0)
case("netns-missing", "macvtap", 4, env={"CNI_NETNS": None})
case("cni-path-missing", "macvlan", 4, env={"CNI_PATH": None})
case("containerid-missing", "host-local", 4, env={"CNI_CONTAINERID": None})
case("containerid-invalid-chars", "macvlan", 4, env={"CNI_CONTAINERID": "bad id!"})
case("containerid-path-traversal", "host-local", 4, env={"CNI_CONTAINERID": "../../etc/passwd"})
case("containerid-leading-dot", "host-local", 4, env={"CNI_CONTAINERID": ".hidden"})
case("ifname-missing", "macvlan", 4, env={"CNI_IFNAME": None})
case("ifname-too-long", "macvlan", 4, env={"CNI_IFNAME": "abcdefghijklmnopq"})
case("ifname-slash", "macvtap", 4, env={"CNI_IFNAME": "a/b"})
case("ifname-dotdot", "host-local", 4, env={"CNI_IFNAME": ".."})
case("ifname-space", "macvlan", 4, env={"CNI_IFNAME": "net 1"})
case("cni-args-malformed", "macvlan", 4, env={"CNI_ARGS": "NOEQUALS"})
case("cni-args-unknown-key", "macvlan", 4, env={"CNI_ARGS": "FOO=bar"})
case("cni-args-bad-mac", "macvtap", 4, env={"CNI_ARGS": "MAC=zz:11:22:33:44:55"})
case("cni-args-bad-ip", "host-local", 999, env={"CNI_ARGS": "IP=198.18.6.300"})
# Netns.
case("netns-nonexistent", "macvlan", 3, env={"CNI_NETNS": "@GONE@"})
case("netns-regular-file", "macvlan", 3, env={"CNI_NETNS": "@NOTNS@"})
case("netns-directory", "macvtap", 3, env={"CNI_NETNS": "@DATA@"})
case("netns-pid-namespace", "macvlan", 3, env={"CNI_NETNS": "/proc/self/ns/pid"})
case("netns-relative-traversal", "macvlan", 3, env={"CNI_NETNS": "../../../../proc/self/ns/nope"})
# macvlan keys.
case("master-missing", "macvlan", 7, patch={"master": "nosuch0"})
case("master-number", "macvlan", 6, patch={"master": 3})
case("master-path-traversal", "macvlan", 7, patch={"master": "../eth0"})
case("mtu-too-large", "macvlan", 7, patch={"mtu": 9000})
case("mtu-huge", "macvlan", 6, patch={"mtu": 1e30})
case("mtu-negative", "macvlan", 7, patch={"mtu": -1})
case("mtu-string", "macvlan", 6, patch={"mtu": "big"})
case("mtu-float", "macvlan", 6, patch={"mtu": 1400.5})
case("mode-invalid", "macvlan", 7, patch={"mode": "bridgy"})
case("mode-number", "macvlan", 6, patch={"mode": 4})
case("mac-invalid", "macvlan", 7, patch={"mac": "02:00:00:00:00"})
case("mac-multicast", "macvlan", 7, patch={"mac": "01:00:5e:00:00:01"})
case("mac-runtimeconfig-invalid", "macvlan", 7, patch={"runtimeConfig": {"mac": "nope"}})
case("sourcemacs-without-source-mode", "macvlan", 7, patch={"sourceMacs": ["02:00:00:00:00:01"]})
case("linkincontainer-missing-master", "macvlan", 7, patch={"linkInContainer": True})
# IPAM delegation.
case("ipam-missing-on-path", "macvlan", 999, ipam={"type": "nosuch-ipam"})
case("ipam-answers-garbage", "macvlan", 6, ipam={"type": "fake-garbage"})
case("ipam-answers-nothing", "macvlan", 6, ipam={"type": "fake-empty"})
case("ipam-answers-error", "macvlan", 11, ipam={"type": "fake-error11"}, msg="fake")
case("ipam-answers-huge", "macvtap", 6, patch={"ipam": {"type": "fake-huge"}})
case("ipam-type-path-traversal", "macvlan", 999, ipam={"type": "../../../bin/true"})
# host-local.
case("hl-subnet-invalid", "host-local", 999, ipam={"subnet": "198.18.6.0/99"})
case("hl-subnet-missing", "host-local", 999, ipam={"subnet": None})
case("hl-range-start-outside", "host-local", 999, ipam={"rangeStart": "198.18.9.1"})
case("hl-gateway-invalid", "host-local", 999, ipam={"gateway": "198.18.6.999"})
case("hl-ranges-overlap", "host-local", 999, ipam={"subnet": None, "ranges": [[{"subnet": "198.18.6.0/24"}], [{"subnet": "198.18.6.0/25"}]]})
case("hl-datadir-number", "host-local", 999, ipam={"dataDir": 5})
# The reference too allocates range set 0 before failing on the leftover requested IP, releases
# the address but keeps the allocation cursor: only that file may appear.
case("hl-requested-ip-outside", "host-local", 999, env={"CNI_ARGS": "IP=198.19.0.9"},
     msg="failed to allocate all requested IPs", may_change=["data mvtcorpus/last_reserved_ip.0"])
case("hl-subnet-exhausted", "host-local", 999, ipam={"subnet": "198.18.6.0/31"})
# static.
case("static-address-invalid", "static", 999, ipam={"addresses": [{"address": "198.18.6.5"}]})
case("static-addresses-wrong-type", "static", 999, ipam={"addresses": "198.18.6.5/24"})
case("static-route-invalid", "static", 999, ipam={"routes": [{"dst": "nowhere"}]})
case("static-gateway-invalid", "static", 999, ipam={"addresses": [{"address": "198.18.6.5/24", "gateway": "x"}]})
# macvtap.
case("macvtap-mode-invalid", "macvtap", 7, patch={"mode": "tapme"})
case("macvtap-owner-string", "macvtap", 6, patch={"owner": "qemu"})
case("macvtap-deviceid-missing", "macvtap", 7, patch={"deviceID": "nosuchtap0"}, drop=["master"])
case("macvtap-devdir-relative", "macvtap", 7, patch={"devDir": "dev"})
case("macvtap-devdir-not-dir", "macvtap", 999, patch={"devDir": "@NOTNS@"})
case("macvtap-master-missing", "macvtap", 7, patch={"master": "nosuch0"})
case("macvtap-bcqueuelen-negative", "macvtap", 6, patch={"bcqueuelen": -5})
case("macvtap-mtu-too-large", "macvtap", 7, patch={"mtu": 65536})
# dhcp.
case("dhcp-no-daemon", "dhcp", 11)
case("dhcp-socket-path-number", "dhcp", 7, ipam={"daemonSocketPath": 5})
case("dhcp-provide-unknown-option", "dhcp", 11, ipam={"provide": [{"option": "no-such-option", "value": "x"}]})

for f in os.listdir(here):
    if f.endswith(".json") and f[:3].isdigit():
        os.remove(os.path.join(here, f))
for i, (name, c) in enumerate(cases, 1):
    with open(os.path.join(here, f"{i:03d}-{name}.json"), "w") as f:
        json.dump(c, f, indent=1)
        f.write("\n")
print(len(cases), "cases")
