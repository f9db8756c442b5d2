//! `lab up` and `lab down`: create the namespaces and links of a topology, and remove them.

use std::os::fd::AsFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use macvnet_dhcp::client::{self as dhcp, Identity, Timing};
use macvnet_dhcp::config::{code, LeaseOptions};

use ipnet::IpNet;
use macvnet_netlink as nl;
use nl::{Handle, LinkChange, MacvlanSpec, Mode, NetnsRef, RouteSpec};

use super::state::{self, AllocState, ClusterState, DaemonState, LabState, LeaseState, NsState};
use super::topo::{Child, ClusterDef, DhcpServe, Iface, Topology, Uplink};
use super::LabError;

/// Prefix of every physical lab namespace: `mvlab-<pid>-<logical>`.
pub const NS_PREFIX: &str = "mvlab-";

/// Physical namespace name for a logical one, carrying our pid so runs never collide.
pub fn physical_name(pid: u32, logical: &str) -> String {
    format!("{NS_PREFIX}{pid}-{logical}")
}

/// Create a host shim: a bridge-mode macvlan `name` on `parent` in the handle's namespace, with
/// `address` and a route per entry of `routes` through it. Returns the shim's ifindex.
pub fn add_shim(
    h: &mut Handle,
    parent: &str,
    name: &str,
    address: IpNet,
    routes: &[IpNet],
) -> nl::Result<u32> {
    let p = h.link_by_name(parent)?;
    let spec = MacvlanSpec {
        name: name.to_string(),
        parent: p.index,
        mode: Some(Mode::Bridge),
        up: true,
        ..Default::default()
    };
    h.add_macvlan(&spec)?;
    let shim = h.link_by_name(name)?;
    h.add_addr(shim.index, address)?;
    for r in routes {
        h.add_route(&RouteSpec::dev(*r, shim.index))?;
    }
    Ok(shim.index)
}

/// The DHCP server `dhcp = {...}` uplinks run (Debian package dnsmasq-base).
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// `etcd` for labs with `[etcd]` (Debian package etcd-server), from PATH.
pub fn etcd_bin() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// Where the `cluster` IPAM plugin may be: next to this macvnet binary (a cargo build puts
/// every bin of the workspace there), then the usual CNI plugin dirs.
pub fn cluster_plugin_candidates() -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        v.push(dir.join("cluster"));
    }
    v.push("/opt/cni/bin/cluster".into());
    v.push("/usr/lib/cni/cluster".into());
    v
}

/// The lab's etcd client port (and peer port + 1) on the `[etcd]` address.
pub const ETCD_PORT: u16 = 2379;

fn etcd_url(ip: std::net::IpAddr, port: u16) -> String {
    format!("http://{}", std::net::SocketAddr::new(ip, port))
}

/// Per-host copy of the lab's network config: node and dataDir name the host.
fn node_conf(cs: &ClusterState, host: &str) -> serde_json::Value {
    let mut conf = cs.conf.clone();
    conf["ipam"]["node"] = host.into();
    conf["ipam"]["dataDir"] = Path::new(&cs.data_dir)
        .join(host)
        .display()
        .to_string()
        .into();
    conf
}

/// How long one plugin call may take before it is killed (its own etcd timeout is shorter).
const PLUGIN_LIMIT: Duration = Duration::from_secs(30);

/// Run the `cluster` plugin in `host` (physical namespace) for one CNI command; the result
/// JSON on success, the reason otherwise.
fn run_plugin(
    cs: &ClusterState,
    cmd: &str,
    host: &NetnsRef,
    container_id: &str,
    ifname: &str,
    container_ns: &NetnsRef,
    conf: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    use std::io::{Read, Write};
    let mut c = nl::netns::command_in(host, &cs.plugin).map_err(|e| e.to_string())?;
    c.env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_IFNAME", ifname)
        .env("CNI_NETNS", container_ns.path())
        .env(
            "CNI_PATH",
            Path::new(&cs.plugin).parent().unwrap_or(Path::new("/")),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if container_ns == host {
        // A child in its parent's own namespace: CNI_NETNS is the plugin's namespace on purpose.
        c.env("CNI_NETNS_OVERRIDE", "1");
    }
    let mut child = c
        .spawn()
        .map_err(|e| format!("starting {}: {e}", cs.plugin))?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(conf.to_string().as_bytes());
    }
    let deadline = Instant::now() + PLUGIN_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd} did not finish in {PLUGIN_LIMIT:?}; killed"));
            }
            Err(e) => return Err(format!("waiting for {cmd}: {e}")),
        }
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    if status.success() {
        Ok(v)
    } else {
        Err(format!(
            "{cmd} failed ({status}): {} {}",
            out.trim(),
            err.trim()
        ))
    }
}

/// What a lab child asks its DHCP server for.
fn lease_options() -> LeaseOptions {
    LeaseOptions {
        request: vec![code::SUBNET_MASK, code::ROUTER],
        ..Default::default()
    }
}

struct Builder<'a> {
    t: &'a Topology,
    st: LabState,
}

impl Builder<'_> {
    fn nl<T>(&self, step: impl FnOnce() -> String, r: nl::Result<T>) -> Result<T, LabError> {
        r.map_err(|source| LabError::Netlink {
            name: self.t.name.clone(),
            step: step(),
            source,
        })
    }

    fn ns(&self, logical: &str) -> Result<NetnsRef, LabError> {
        self.st
            .physical(logical)
            .map(|p| NetnsRef::Named(p.to_string()))
            .ok_or_else(|| LabError::Partial {
                name: self.t.name.clone(),
            })
    }

    fn handle(&self, logical: &str) -> Result<Handle, LabError> {
        let ns = self.ns(logical)?;
        self.nl(
            || format!("opening netlink in netns {logical}"),
            Handle::open(&ns),
        )
    }

    fn set(
        &self,
        h: &mut Handle,
        ns: &str,
        name: &str,
        change: LinkChange<'_>,
    ) -> Result<(), LabError> {
        let idx = self
            .nl(|| format!("finding {name} in {ns}"), h.link_by_name(name))?
            .index;
        self.nl(
            || format!("changing {name} in {ns}"),
            h.set_link(idx, &change),
        )
    }

    fn addr(&self, h: &mut Handle, ns: &str, name: &str, a: Option<IpNet>) -> Result<(), LabError> {
        let Some(a) = a else { return Ok(()) };
        let idx = self
            .nl(|| format!("finding {name} in {ns}"), h.link_by_name(name))?
            .index;
        self.nl(
            || format!("adding {a} to {name} in {ns}"),
            h.add_addr(idx, a),
        )
    }

    /// One end of an uplink: its MAC and address when given, then up.
    fn finish_end(&self, h: &mut Handle, ns: &str, end: &Iface) -> Result<(), LabError> {
        if let Some(mac) = end.mac {
            self.set(
                h,
                ns,
                &end.name,
                LinkChange {
                    mac: Some(mac),
                    ..Default::default()
                },
            )?;
        }
        self.addr(h, ns, &end.name, end.address)?;
        self.set(
            h,
            ns,
            &end.name,
            LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )
    }

    fn namespaces(&mut self) -> Result<(), LabError> {
        for n in &self.t.netns {
            let physical = physical_name(self.st.pid, &n.name);
            // Record first: a crash right after `add` must still be cleanable.
            self.st.namespaces.push(NsState {
                logical: n.name.clone(),
                physical: physical.clone(),
            });
            state::save(&self.st)?;
            let ns = self.nl(
                || format!("creating netns {physical}"),
                nl::netns::add(&physical),
            )?;
            // IPv6 addresses are usable at once (no DAD wait); links created later inherit it.
            if let Err(e) = nl::sysctl::write(&ns, "net/ipv6/conf/default/accept_dad", "0") {
                tracing::debug!(netns = %physical, error = %e, "disabling DAD (no IPv6?)");
            }
            if n.lo_up {
                let mut h = self.handle(&n.name)?;
                self.set(
                    &mut h,
                    &n.name,
                    "lo",
                    LinkChange {
                        up: Some(true),
                        ..Default::default()
                    },
                )?;
            }
        }
        Ok(())
    }

    fn uplink(&self, u: &Uplink) -> Result<(), LabError> {
        let (lan_ns, host_ns) = (&u.lan.netns, &u.parent.netns);
        let mut lan = self.handle(lan_ns)?;
        let host_fd = self.nl(
            || format!("opening netns {host_ns}"),
            self.ns(host_ns)?.open(),
        )?;
        let shared = self
            .t
            .uplinks
            .get(u.segment)
            .is_some_and(|o| !std::ptr::eq(o, u));
        match &u.switch {
            Some(sw) => {
                // The lan name is a bridge standing for the external switch; the veth is its
                // port. Uplinks sharing the switch of an earlier one only add their port.
                if !shared {
                    self.nl(
                        || format!("creating bridge {} in {lan_ns}", u.lan.name),
                        lan.add_bridge(&u.lan.name),
                    )?;
                }
                let step = || format!("creating veth {} / {}", sw.port, u.parent.name);
                self.nl(
                    step,
                    lan.add_veth(&sw.port, &u.parent.name, Some(host_fd.as_fd())),
                )?;
                let br = self.nl(
                    || format!("finding {}", u.lan.name),
                    lan.link_by_name(&u.lan.name),
                )?;
                let port = self.nl(
                    || format!("finding {}", sw.port),
                    lan.link_by_name(&sw.port),
                )?;
                let change = LinkChange {
                    controller: Some(br.index),
                    up: Some(true),
                    ..Default::default()
                };
                self.nl(
                    || format!("enslaving {} to {}", sw.port, u.lan.name),
                    lan.set_link(port.index, &change),
                )?;
                let step = || format!("setting hairpin on {}", sw.port);
                self.nl(step, lan.set_hairpin(port.index, sw.hairpin))?;
            }
            None => {
                let step = || format!("creating veth {} / {}", u.lan.name, u.parent.name);
                self.nl(
                    step,
                    lan.add_veth(&u.lan.name, &u.parent.name, Some(host_fd.as_fd())),
                )?;
            }
        }
        self.finish_end(&mut lan, lan_ns, &u.lan)?;

        let mut host = self.handle(host_ns)?;
        self.finish_end(&mut host, host_ns, &u.parent)?;
        if let Some(shim) = &u.shim {
            let step = || {
                format!(
                    "adding shim {} on {} in {host_ns}",
                    shim.name, u.parent.name
                )
            };
            self.nl(
                step,
                add_shim(
                    &mut host,
                    &u.parent.name,
                    &shim.name,
                    shim.address,
                    &shim.routes,
                ),
            )?;
        }
        Ok(())
    }

    /// dnsmasq on the lan end of `u`, recorded in the state as soon as it is spawned.
    fn dnsmasq(&mut self, u: &Uplink, d: &DhcpServe) -> Result<(), LabError> {
        let lab = self.t.name.clone();
        let ns = self.ns(&u.lan.netns)?;
        let dir = state::state_dir();
        let file = |ext: &str| dir.join(format!("{lab}.{}.dnsmasq.{ext}", u.lan.name));
        let (leasefile, pidfile, logfile) = (file("leases"), file("pid"), file("log"));
        let mask = u
            .lan
            .address
            .map(|a| a.netmask().to_string())
            .unwrap_or_default();
        let mut cmd = self.nl(
            || format!("preparing dnsmasq in {}", u.lan.netns),
            nl::netns::command_in(&ns, DNSMASQ),
        )?;
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--no-ping",
            "--bind-interfaces",
            "--user=root",
            "--group=root",
            "--log-facility=-",
            "--dhcp-authoritative",
        ])
        .arg(format!("--interface={}", u.lan.name))
        .arg(format!(
            "--dhcp-range={},{},{mask},{}",
            d.start, d.end, d.lease
        ))
        .arg(format!("--dhcp-leasefile={}", leasefile.display()))
        .arg(format!("--pid-file={}", pidfile.display()));
        let log = std::fs::File::create(&logfile).map_err(|e| LabError::Dnsmasq {
            name: lab.clone(),
            detail: format!("creating {}: {e}", logfile.display()),
        })?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let mut child = cmd.spawn().map_err(|e| LabError::Dnsmasq {
            name: lab.clone(),
            detail: format!("starting {DNSMASQ} (package dnsmasq-base): {e}"),
        })?;
        let pid = i32::try_from(child.id()).unwrap_or(0);
        self.st.daemons.push(DaemonState {
            pid,
            netns: ns.label(),
            leasefile: leasefile.display().to_string(),
            datadir: None,
        });
        state::save(&self.st)?;
        // It binds its socket at once; an early exit (bad option, address in use) shows here.
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(&logfile).unwrap_or_default();
            return Err(LabError::Dnsmasq {
                name: lab,
                detail: format!("exited at start ({status}): {}", text.trim()),
            });
        }
        Ok(())
    }

    /// Lease an address for child `name` from inside its namespace, record it, put it on.
    fn lease(&mut self, netns: &str, name: &str) -> Result<(), LabError> {
        let ns = self.ns(netns)?;
        let client_id = format!("mvlab/{}/{netns}/{name}", self.t.name);
        let opts = lease_options();
        let timing = Timing {
            timeout: Duration::from_secs(3),
            resend_max: Duration::from_secs(4),
            resend_timeout: Duration::from_secs(30),
            broadcast: false,
        };
        let who = Identity {
            client_id: &client_id,
            options: &opts,
        };
        let step = || format!("leasing an address for {name} in {netns}");
        let res = self.nl(
            step,
            nl::netns::run_in(&ns, || {
                let i = dhcp::iface(name, true)?;
                dhcp::acquire(&i, who, &timing, None)
            }),
        )?;
        let grant = res.map_err(|source| LabError::Dhcp {
            name: self.t.name.clone(),
            step: step(),
            source: Box::new(source),
        })?;
        let address = IpNet::V4(grant.address);
        self.st.leases.push(LeaseState {
            netns: netns.to_string(),
            child: name.to_string(),
            address,
            server: grant.server_id,
            client_id,
        });
        state::save(&self.st)?;
        let mut h = self.handle(netns)?;
        self.addr(&mut h, netns, name, Some(address))
    }

    /// etcd on the `[etcd]` address, recorded in the state as soon as it is spawned; returns
    /// once it answers.
    fn etcd(&mut self, c: &ClusterDef, bin: &Path) -> Result<String, LabError> {
        let lab = self.t.name.clone();
        let fail = |detail: String| LabError::Etcd {
            name: lab.clone(),
            detail,
        };
        let ns = self.ns(&c.etcd_netns)?;
        let dir = state::state_dir();
        let data = dir.join(format!("{lab}.etcd"));
        let logfile = dir.join(format!("{lab}.etcd.log"));
        // Left by a crashed run (the state dir is ours): etcd must start a new cluster.
        let _ = std::fs::remove_dir_all(&data);
        let client = etcd_url(c.etcd_address, ETCD_PORT);
        let peer = etcd_url(c.etcd_address, ETCD_PORT + 1);
        let mut cmd = self.nl(
            || format!("preparing etcd in {}", c.etcd_netns),
            nl::netns::command_in(&ns, &bin.display().to_string()),
        )?;
        cmd.args(["--name", &lab])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{lab}={peer}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &physical_name(self.st.pid, &lab)]);
        let log = std::fs::File::create(&logfile)
            .map_err(|e| fail(format!("creating {}: {e}", logfile.display())))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("starting {}: {e}", bin.display())))?;
        self.st.daemons.push(DaemonState {
            pid: i32::try_from(child.id()).unwrap_or(0),
            netns: ns.label(),
            leasefile: String::new(),
            datadir: Some(data.display().to_string()),
        });
        state::save(&self.st)?;
        let cfg = macvnet_cluster::etcd::ClientConfig {
            endpoints: vec![client.clone()],
            tls: Default::default(),
            dial_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
        };
        let api = macvnet_cluster::etcd::Client::new(&cfg).map_err(|e| fail(e.to_string()))?;
        // Bounded: a single member on tmpfs is up within a second or two.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let pinged = nl::netns::run_in(&ns, || {
                api.ping(Instant::now() + Duration::from_secs(2)).is_ok()
            });
            if pinged.unwrap_or(false) {
                return Ok(client);
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let text = std::fs::read_to_string(&logfile).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                let why = exited.map_or("not answering after 20 s".to_string(), |s| {
                    format!("exited at start ({s})")
                });
                return Err(fail(format!(
                    "{why} on {client}; log {}: {}",
                    logfile.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Allocate child `c`'s address with the `cluster` plugin run in its host namespace (the
    /// node), record it, put it on the link.
    fn allocate(&mut self, c: &Child, host: &str) -> Result<(), LabError> {
        let lab = self.t.name.clone();
        let cs = self
            .st
            .cluster
            .clone()
            .ok_or_else(|| LabError::Partial { name: lab.clone() })?;
        let container_id = format!(
            "{}-{}-{}",
            physical_name(self.st.pid, &lab),
            c.netns,
            c.name
        );
        self.st.allocations.push(AllocState {
            netns: c.netns.clone(),
            child: c.name.clone(),
            host: host.to_string(),
            container_id: container_id.clone(),
            address: None,
        });
        state::save(&self.st)?;
        let (host_ns, child_ns) = (self.ns(host)?, self.ns(&c.netns)?);
        let fail = |detail: String| LabError::Cluster {
            name: lab.clone(),
            detail: format!("{} in {} (node {host}): {detail}", c.name, c.netns),
        };
        let v = run_plugin(
            &cs,
            "ADD",
            &host_ns,
            &container_id,
            &c.name,
            &child_ns,
            &node_conf(&cs, host),
        )
        .map_err(fail)?;
        let address: IpNet = v["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| fail(format!("no address in the result {v}")))?;
        if let Some(a) = self.st.allocations.last_mut() {
            a.address = Some(address);
        }
        state::save(&self.st)?;
        let mut h = self.handle(&c.netns)?;
        self.addr(&mut h, &c.netns, &c.name, Some(address))
    }

    fn children(&mut self) -> Result<(), LabError> {
        for c in &self.t.children {
            let Some(u) = self.t.uplinks.get(c.uplink) else {
                continue;
            };
            let host_ns = &u.parent.netns;
            let mut host = self.handle(host_ns)?;
            let parent = self.nl(
                || format!("finding parent {}", u.parent.name),
                host.link_by_name(&u.parent.name),
            )?;
            // Created directly inside the child's namespace (IFLA_NET_NS_FD), like the CNI plugin.
            let netns = if c.netns == *host_ns {
                None
            } else {
                let fd = self.nl(
                    || format!("opening netns {}", c.netns),
                    self.ns(&c.netns)?.open(),
                )?;
                Some(Arc::new(fd))
            };
            let spec = MacvlanSpec {
                name: c.name.clone(),
                parent: parent.index,
                tap: c.tap,
                mode: Some(c.mode),
                nopromisc: c.nopromisc,
                mac: c.mac,
                source_macs: c.source_macs.clone(),
                netns,
                up: true,
                ..Default::default()
            };
            let kind = if c.tap { "macvtap" } else { "macvlan" };
            let step = || {
                format!(
                    "creating {kind} {} ({}) on {} into {}",
                    c.name, c.mode, u.parent.name, c.netns
                )
            };
            self.nl(step, host.add_macvlan(&spec))?;
            let mut h = self.handle(&c.netns)?;
            self.addr(&mut h, &c.netns, &c.name, c.address)?;
            self.set(
                &mut h,
                &c.netns,
                &c.name,
                LinkChange {
                    up: Some(true),
                    ..Default::default()
                },
            )?;
            if c.dhcp {
                self.lease(&c.netns, &c.name)?;
            }
            if c.cluster {
                let host = host_ns.clone();
                self.allocate(c, &host)?;
            }
        }
        Ok(())
    }
}

/// Live lab namespaces of a state (those still under /run/netns).
pub fn live_namespaces(st: &LabState) -> Vec<String> {
    let present = nl::netns::list().unwrap_or_default();
    st.namespaces
        .iter()
        .filter(|n| present.contains(&n.physical))
        .map(|n| n.physical.clone())
        .collect()
}

/// Bring a lab up. On failure the state file stays, listing what may exist, for `down`.
pub fn up(t: &Topology, file: &str) -> Result<LabState, LabError> {
    if let Some(old) = state::load(&t.name)? {
        let live = live_namespaces(&old);
        if !live.is_empty() {
            return Err(LabError::AlreadyUp {
                name: t.name.clone(),
                namespaces: live.join(", "),
            });
        }
        tracing::info!(lab = %t.name, "removing stale state (no live namespaces)");
    }
    let cluster_bins = match &t.cluster {
        None => None,
        Some(_) => {
            let etcd = etcd_bin().ok_or_else(|| LabError::Etcd {
                name: t.name.clone(),
                detail: "etcd not found in PATH: a lab with [etcd] runs it (apt-get install etcd-server)"
                    .into(),
            })?;
            let candidates = cluster_plugin_candidates();
            let plugin = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
                let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
                LabError::Cluster {
                    name: t.name.clone(),
                    detail: format!(
                        "the cluster plugin is not in {} (cargo build --release --workspace builds it \
                         next to macvnet)",
                        tried.join(", ")
                    ),
                }
            })?;
            Some((etcd, plugin.clone()))
        }
    };
    if t.uplinks.iter().any(|u| u.dhcp.is_some()) && !Path::new(DNSMASQ).exists() {
        return Err(LabError::Dnsmasq {
            name: t.name.clone(),
            detail: format!(
                "{DNSMASQ} not found: a dhcp uplink needs dnsmasq (install the package dnsmasq-base)"
            ),
        });
    }
    let st = LabState {
        name: t.name.clone(),
        file: file.to_string(),
        pid: std::process::id(),
        ..Default::default()
    };
    state::save(&st)?;
    let mut b = Builder { t, st };
    b.namespaces()?;
    for u in &t.uplinks {
        b.uplink(u)?;
        if let Some(d) = &u.dhcp {
            b.dnsmasq(u, d)?;
        }
    }
    if let (Some(c), Some((etcd, plugin))) = (&t.cluster, &cluster_bins) {
        let endpoint = b.etcd(c, etcd)?;
        let mut ipam = serde_json::json!({
            "type": "cluster",
            "range": c.range.to_string(),
            "exclude": c.exclude.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            "etcd": {"endpoints": [endpoint], "prefix": "/macvnet-lab", "timeoutMs": 10000},
            "blocks": if c.blocks == 0 { serde_json::json!(false) } else { serde_json::json!({"size": c.blocks}) },
        });
        if let Some(g) = c.gateway {
            ipam["gateway"] = g.to_string().into();
        }
        b.st.cluster = Some(ClusterState {
            plugin: plugin.display().to_string(),
            conf: serde_json::json!({
                "cniVersion": "1.1.0",
                "name": t.name,
                "type": "macvlan",
                "ipam": ipam,
            }),
            etcd_netns: b.st.physical(&c.etcd_netns).unwrap_or_default().to_string(),
            data_dir: state::state_dir()
                .join(format!("{}.cluster", t.name))
                .display()
                .to_string(),
        });
        state::save(&b.st)?;
    }
    b.children()?;
    b.st.complete = true;
    state::save(&b.st)?;
    Ok(b.st)
}

/// What `down` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct DownReport {
    pub lab: String,
    /// Namespaces deleted.
    pub removed: Vec<String>,
    /// Nothing was up.
    pub nothing_to_do: bool,
    /// Address records etcd still held after `down` DELeted every cluster child (0 is right).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_records_left: Option<usize>,
}

/// Remove exactly what the state lists (namespaces take their links with them). Idempotent.
pub fn down(lab: &str) -> Result<DownReport, LabError> {
    let Some(st) = state::load(lab)? else {
        return Ok(DownReport {
            lab: lab.to_string(),
            removed: vec![],
            nothing_to_do: true,
            cluster_records_left: None,
        });
    };
    let live = live_namespaces(&st);
    release_leases(&st);
    let cluster_records_left = release_cluster(&st);
    let mut first_err = None;
    for d in &st.daemons {
        if let Err(detail) = stop_daemon(d) {
            tracing::warn!(pid = d.pid, error = %detail, "stopping dnsmasq");
            first_err.get_or_insert(LabError::Dnsmasq {
                name: lab.to_string(),
                detail,
            });
        }
    }
    for n in st.namespaces.iter().rev() {
        // Never delete anything a lab could not have created, whatever the state file says.
        if !n.physical.starts_with(NS_PREFIX) {
            tracing::warn!(netns = %n.physical, "state lists a namespace that is not a lab's; leaving it");
            continue;
        }
        if let Err(source) = nl::netns::del(&n.physical, true) {
            tracing::warn!(netns = %n.physical, error = %source, "deleting lab namespace");
            first_err.get_or_insert(LabError::Netlink {
                name: lab.to_string(),
                step: format!("deleting netns {}", n.physical),
                source,
            });
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    state::remove(lab)?;
    Ok(DownReport {
        lab: lab.to_string(),
        nothing_to_do: live.is_empty(),
        removed: live,
        cluster_records_left,
    })
}

/// DHCPRELEASE every recorded lease (best effort: the server forgets them at expiry anyway).
fn release_leases(st: &LabState) {
    let opts = lease_options();
    for l in &st.leases {
        let (Some(phys), ipnet::IpNet::V4(addr)) = (st.physical(&l.netns), l.address) else {
            continue;
        };
        let ns = NetnsRef::Named(phys.to_string());
        let who = Identity {
            client_id: &l.client_id,
            options: &opts,
        };
        let r = nl::netns::run_in(&ns, || {
            let i = dhcp::iface(&l.child, false)?;
            dhcp::release(&i, who, addr.addr(), l.server)
        });
        if let Err(e) = r
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::debug!(child = %l.child, error = %e, "releasing lease");
        }
    }
}

/// DEL every recorded cluster attachment in its host namespace (etcd still runs), then drop
/// the plugin's data dirs. Best effort: a failed DEL is logged. Returns how many address
/// records etcd still holds afterwards (None: no cluster, or etcd unreadable).
fn release_cluster(st: &LabState) -> Option<usize> {
    let cs = st.cluster.as_ref()?;
    for a in &st.allocations {
        let (Some(host), Some(child)) = (st.physical(&a.host), st.physical(&a.netns)) else {
            continue;
        };
        let (host, child) = (
            NetnsRef::Named(host.to_string()),
            NetnsRef::Named(child.to_string()),
        );
        if let Err(e) = run_plugin(
            cs,
            "DEL",
            &host,
            &a.container_id,
            &a.child,
            &child,
            &node_conf(cs, &a.host),
        ) {
            tracing::warn!(child = %a.child, error = %e, "releasing the cluster address");
        }
    }
    let dir = Path::new(&cs.data_dir);
    if dir.starts_with(state::state_dir()) {
        let _ = std::fs::remove_dir_all(dir);
    }
    let conf = node_conf(cs, "lab");
    let ipam = macvnet_cluster::Config::parse(conf.to_string().as_bytes())
        .ok()
        .and_then(|c| macvnet_cluster::Ipam::new(c).ok())?;
    let etcd_ns = NetnsRef::Named(cs.etcd_netns.clone());
    let left = nl::netns::run_in(&etcd_ns, || ipam.records().map(|r| r.len()));
    match left {
        Ok(Ok(n)) => {
            if n > 0 {
                tracing::warn!(records = n, "cluster addresses left in etcd after DEL");
            }
            Some(n)
        }
        other => {
            tracing::debug!(result = ?other.map(|r| r.map_err(|e| e.to_string())), "reading etcd after DEL");
            None
        }
    }
}

/// Whether `pid` runs (not a zombie).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the parenthesised command name.
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Kill a daemon `up` started, by pid, after checking it is still that dnsmasq or etcd (its
/// command line names our lease file or data dir), so a reused pid is never hit. Waits
/// (bounded) for it to go.
fn stop_daemon(d: &DaemonState) -> Result<(), String> {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag};
    use nix::unistd::Pid;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", d.pid)).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    // etcd's data is thrown away: SIGKILL at once (a `lab run` child also inherits blocked
    // SIGTERM).
    let (program, mark, signal) = match &d.datadir {
        Some(dir) => ("etcd", dir.as_str(), Signal::SIGKILL),
        None => ("dnsmasq", d.leasefile.as_str(), Signal::SIGTERM),
    };
    let ours = d.pid > 1 && !mark.is_empty() && cmdline.contains(program) && cmdline.contains(mark);
    if ours && running(d.pid) {
        let pid = Pid::from_raw(d.pid);
        let _ = kill(pid, signal);
        let mut deadline = Instant::now() + Duration::from_secs(3);
        let mut killed = false;
        // Bounded: SIGKILL after 3 s, give up after 5 s.
        loop {
            // Reap it when it is our child (`lab run`); otherwise init does.
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            if !running(d.pid) {
                break;
            }
            if Instant::now() >= deadline {
                if killed {
                    return Err(format!("pid {} did not exit after SIGKILL", d.pid));
                }
                let _ = kill(pid, Signal::SIGKILL);
                killed = true;
                deadline = Instant::now() + Duration::from_secs(2);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Some(dir) = &d.datadir {
        let dir = Path::new(dir);
        if dir.starts_with(state::state_dir()) {
            let _ = std::fs::remove_dir_all(dir);
            let _ = std::fs::remove_file(dir.with_extension("etcd.log"));
        }
        return Ok(());
    }
    let lease = Path::new(&d.leasefile);
    for ext in ["leases", "pid", "log"] {
        let f = lease.with_extension(ext);
        if f.starts_with(state::state_dir()) {
            let _ = std::fs::remove_file(f);
        }
    }
    Ok(())
}
