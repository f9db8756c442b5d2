#!/usr/bin/env python3
"""Writes the starting corpus of each fuzz target under fuzz/corpus/<target>/ (seed-*)."""
import json, os, struct, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")

def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

ml = {"cniVersion": "1.0.0", "name": "n", "type": "macvlan", "master": "eth0", "mode": "bridge",
      "mtu": 1400, "mac": "02:00:00:00:00:01",
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.0.0/24", "gateway": "198.18.0.1"}],
               [{"subnet": "2001:db8::/64"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/tmp/x"},
      "runtimeConfig": {"mac": "02:00:00:00:00:02", "ips": ["198.18.0.5/24"]},
      "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.5/24"}]},
      "args": {"cni": {"ips": ["198.18.0.9"]}}}
mt = {"cniVersion": "1.1.0", "name": "n", "type": "macvtap", "deviceID": "mvtap0", "owner": 107,
      "group": 107, "promiscMode": True, "devDir": "/run/x/dev", "bcqueuelen": 10, "mode": "passthru"}
st = {"cniVersion": "0.4.0", "name": "n", "type": "static",
      "ipam": {"type": "static", "addresses": [{"address": "198.18.0.5/24", "gateway": "198.18.0.1"}],
               "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}], "dns": {"nameservers": ["198.18.0.1"]}}}
dh = {"cniVersion": "1.0.0", "name": "n", "type": "macvlan", "ipam": {"type": "dhcp",
      "daemonSocketPath": "/run/cni/dhcp.sock", "provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}],
      "request": [{"option": "classless-static-routes"}, {"skipDefault": True}], "priority": 5}}
gc = {"cniVersion": "1.1.0", "name": "n", "type": "macvlan",
      "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]}
for i, c in enumerate([ml, mt, st, dh, gc]):
    put("netconf", f"conf{i}", json.dumps(c))
    put("plugin_conf", f"conf{i}", b"IgnoreUnknown=1;MAC=02:00:00:00:00:03;IP=198.18.0.7\0" + json.dumps(c).encode())
put("netconf", "args", "IgnoreUnknown=true;K8S_POD_NAME=a;IP=198.18.0.1,2001:db8::1")
put("netconf", "version", '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.4.0"]}')
put("netconf", "error", '{"cniVersion":"1.0.0","code":7,"msg":"m","details":"d"}')

r100 = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "mtu": 1500,
        "sandbox": "/run/netns/x", "socketPath": "/s", "pciID": "0000:00:01.0"}],
        "ips": [{"address": "198.18.0.5/24", "gateway": "198.18.0.1", "interface": 0},
                {"address": "2001:db8::5/64"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1", "mtu": 1400, "advmss": 1360, "priority": 5,
                    "table": 100, "scope": 0}],
        "dns": {"nameservers": ["198.18.0.1"], "domain": "d", "search": ["s"], "options": ["o"]}}
r040 = {"cniVersion": "0.4.0", "interfaces": [{"name": "eth0"}],
        "ips": [{"version": "4", "address": "198.18.0.5/24", "interface": 0}], "routes": [{"dst": "0.0.0.0/0"}]}
r020 = {"cniVersion": "0.2.0", "ip4": {"ip": "198.18.0.5/24", "gateway": "198.18.0.1",
        "routes": [{"dst": "0.0.0.0/0"}]}, "ip6": {"ip": "2001:db8::5/64"}, "dns": {}}
for n, r in [("r100", r100), ("r040", r040), ("r020", r020)]:
    put("result", n, json.dumps(r))
put("result", "nover", json.dumps({"ips": [{"address": "198.18.0.5/24"}]}))

put("hostlocal_store", "plain", b"198.18.0.3\0ctr-1\r\neth0\0ctr-2\r\neth0\0ctr-old\0\0garbage\xff")
put("hostlocal_store", "v6last", b"2001:db8::1\0fuzz-a\r\neth0")
put("hostlocal_store", "empty", b"")

def dhcp(msgtype, opts):
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, 0x12345678, 0, 0x8000,
                      bytes(4), bytes([198, 18, 0, 5]), bytes([198, 18, 0, 1]), bytes(4),
                      bytes([2, 0, 0, 0, 0, 1]) + bytes(10), bytes(64), bytes(128))
    body = bytes([99, 130, 83, 99, 53, 1, msgtype])
    for code, val in opts:
        body += bytes([code, len(val)]) + val
    return hdr + body + bytes([255])
ip = lambda *a: bytes(a)
ack = dhcp(5, [(54, ip(198, 18, 0, 1)), (51, struct.pack("!I", 3600)), (58, struct.pack("!I", 1800)),
               (59, struct.pack("!I", 3150)), (1, ip(255, 255, 255, 0)), (3, ip(198, 18, 0, 1)),
               (6, ip(198, 18, 0, 1)), (15, b"example"),
               (121, bytes([24, 198, 19, 0, 198, 18, 0, 1, 0, 198, 18, 0, 1])),
               (33, ip(198, 19, 0, 0, 198, 18, 0, 1))])
put("dhcp_packet", "ack", ack)
put("dhcp_packet", "offer", dhcp(2, [(54, ip(198, 18, 0, 1)), (51, struct.pack("!I", 60))]))
put("dhcp_packet", "nak", dhcp(6, [(54, ip(198, 18, 0, 1)), (56, b"no")]))

# encoding/gob's documented Point{22, 33} stream, and with a string field.
put("gob", "point", bytes([0x1f, 0xff, 0x81, 0x03, 0x01, 0x01, 0x05]) + b"Point" + bytes([0x01, 0xff,
    0x82, 0x00, 0x01, 0x02, 0x01, 0x01]) + b"X" + bytes([0x01, 0x04, 0x00, 0x01, 0x01]) + b"Y" + bytes([0x01,
    0x04, 0x00, 0x00, 0x00, 0x07, 0xff, 0x82, 0x01, 0x2c, 0x01, 0x42, 0x00]))
