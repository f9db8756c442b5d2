//! Test harness: a LAN namespace running dnsmasq on `up0` (far end of the veth uplink), a
//! host namespace whose `eth0` parents one macvlan per container namespace, our daemon
//! with its own socket and state dir in a temp dir, and the plugin run as a process.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use macvnet_netlink::testing::{add_macvlan_in, uplink_pair, TestNs};
use macvnet_netlink::Mode;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_macvnet-dhcp");
pub const NETWORK: &str = "dhcpnet";
pub const SERVER: &str = "198.18.0.1";

static N: AtomicU32 = AtomicU32::new(0);

/// Skip (with the reason on stderr) unless root with dnsmasq installed.
pub fn can_run(test: &str) -> bool {
    if !macvnet_netlink::testing::require_root(test) {
        return false;
    }
    if !Path::new("/usr/sbin/dnsmasq").exists() {
        eprintln!("SKIP {test}: dnsmasq not installed (scripts/deps installs dnsmasq-base)");
        return false;
    }
    true
}

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("mvt-{}-{n}-{tag}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (by pid) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn kill(&mut self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

pub struct Lab {
    pub tmp: TempDir,
    pub host: TestNs,
    pub lan: TestNs,
    pub containers: Vec<TestNs>,
    pub dnsmasq: Option<Proc>,
    pub daemon: Option<Proc>,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub leasefile: PathBuf,
    /// Extra dnsmasq arguments (T1/T2 options...).
    pub dnsmasq_extra: Vec<String>,
    /// Let dnsmasq ping an address before offering it (its default; it then handles one
    /// DISCOVER per ~3 s, so only single-client tests keep it).
    pub ping: bool,
    /// Run the daemon in the host namespace (where the containers' macvlan parent `eth0`
    /// is) instead of the test's own; then it records `eth0` as the leases' uplink.
    pub daemon_in_host: bool,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        let tmp = TempDir::new(tag);
        let (host, lan) = uplink_pair(tag).unwrap();
        let mut l = lan.handle().unwrap();
        let up0 = l.link_by_name("up0").unwrap();
        l.add_addr(up0.index, format!("{SERVER}/24").parse().unwrap())
            .unwrap();
        let socket = tmp.path().join("dhcp.sock");
        let state = tmp.path().join("state");
        let leasefile = tmp.path().join("dnsmasq.leases");
        Lab {
            tmp,
            host,
            lan,
            containers: Vec::new(),
            dnsmasq: None,
            daemon: None,
            socket,
            state,
            leasefile,
            dnsmasq_extra: Vec::new(),
            ping: false,
            daemon_in_host: false,
        }
    }

    /// [`Lab::new`] with dnsmasq and our daemon (no extra arguments) started.
    pub fn running(tag: &str) -> Lab {
        let mut lab = Lab::new(tag);
        lab.start_dnsmasq();
        lab.start_daemon(&[]);
        lab
    }

    /// Sends `sig` to our daemon and waits (bounded) for it to exit.
    pub fn kill_daemon(&mut self, sig: nix::sys::signal::Signal) {
        self.daemon.as_mut().unwrap().kill(sig);
    }

    /// dnsmasq in the LAN namespace, DHCP only, 2-minute leases (its minimum).
    pub fn start_dnsmasq(&mut self) {
        let mut cmd =
            macvnet_netlink::netns::command_in(&self.lan.ns, "/usr/sbin/dnsmasq").unwrap();
        cmd.args([
            "--keep-in-foreground",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=up0",
            "--bind-interfaces",
            "--user=root",
            "--group=root",
            "--pid-file",
            "--log-dhcp",
            "--log-facility=-",
            "--dhcp-authoritative",
            "--dhcp-range=198.18.0.50,198.18.0.150,255.255.255.0,2m",
        ]);
        cmd.arg(format!("--dhcp-leasefile={}", self.leasefile.display()));
        cmd.args(&self.dnsmasq_extra);
        if !self.ping {
            cmd.arg("--no-ping");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("dnsmasq.log"))
            .unwrap();
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().unwrap();
        self.dnsmasq = Some(Proc {
            child,
            name: "dnsmasq".into(),
        });
        // dnsmasq binds its DHCP socket right away; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        let p = self.dnsmasq.as_mut().unwrap();
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "dnsmasq exited: {}",
            self.dnsmasq_log()
        );
    }

    pub fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("dnsmasq.log")).unwrap_or_default()
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("daemon.log")).unwrap_or_default()
    }

    /// Our daemon with short timeouts, waiting until its socket answers.
    pub fn start_daemon(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("daemon.log"))
            .unwrap();
        let mut cmd = if self.daemon_in_host {
            macvnet_netlink::netns::command_in(&self.host.ns, BIN).unwrap()
        } else {
            Command::new(BIN)
        };
        cmd.arg("daemon")
            .arg("-socketpath")
            .arg(&self.socket)
            .arg(format!("-statedir={}", self.state.display()))
            .arg(format!(
                "-pidfile={}",
                self.tmp.path().join("dhcp.pid").display()
            ))
            .args(["-timeout", "3s", "-resendtimeout", "8s", "-resendmax", "4s"])
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().unwrap();
        self.daemon = Some(Proc {
            child,
            name: "daemon".into(),
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if macvnet_dhcp::proto::call(
                &self.socket,
                &macvnet_dhcp::proto::Call::Status,
                Duration::from_secs(2),
            )
            .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not come up: {}", self.daemon_log());
    }

    /// A container namespace with a bridge-mode macvlan `eth0` on the host's `eth0`.
    pub fn add_container(&mut self, tag: &str) -> usize {
        let c = TestNs::new(tag).unwrap();
        add_macvlan_in(&self.host, "eth0", &c, "eth0", Mode::Bridge, |_| {}).unwrap();
        self.containers.push(c);
        self.containers.len() - 1
    }

    /// [`Lab::add_container`], a successful ADD, and the leased address put on its link:
    /// (container, address).
    pub fn configured(&mut self, tag: &str) -> (usize, String) {
        let i = self.add_container(tag);
        let addr = self.add(i);
        self.configure(i, &addr);
        (i, addr)
    }

    pub fn netns_path(&self, i: usize) -> PathBuf {
        self.containers[i].ns.path()
    }

    pub fn container_id(&self, i: usize) -> String {
        format!("ctr{i}-{}", self.containers[i].name)
    }

    pub fn client_id(&self, i: usize) -> String {
        macvnet_dhcp::config::client_id(&self.container_id(i), NETWORK, "eth0")
    }

    pub fn conf(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "macvlan",
            "ipam": {"type": "dhcp", "daemonSocketPath": self.socket}
        })
        .to_string()
    }

    /// Run the plugin binary `bin` for `cmd` on container `i`: (exit ok, stdout JSON).
    pub fn plugin_with(&self, bin: &str, cmd: &str, i: usize, conf: &str) -> (bool, Value) {
        self.plugin_args(bin, cmd, i, conf, "")
    }

    /// [`Lab::plugin_with`] with CNI_ARGS.
    pub fn plugin_args(
        &self,
        bin: &str,
        cmd: &str,
        i: usize,
        conf: &str,
        args: &str,
    ) -> (bool, Value) {
        let mut c = Command::new(bin);
        c.env_clear();
        if !args.is_empty() {
            c.env("CNI_ARGS", args);
        }
        c.env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", self.container_id(i))
            .env("CNI_NETNS", self.netns_path(i))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/nonexistent");
        exchange(c, conf, &format!("{cmd} on {i}: stderr"))
    }

    pub fn plugin(&self, cmd: &str, i: usize) -> (bool, Value) {
        self.plugin_with(BIN, cmd, i, &self.conf())
    }

    /// ADD that must succeed; returns the address ("198.18.0.x/24").
    pub fn add(&self, i: usize) -> String {
        let (ok, v) = self.plugin("ADD", i);
        assert!(
            ok,
            "ADD {i} failed: {v}\ndaemon: {}\ndnsmasq: {}",
            self.daemon_log(),
            self.dnsmasq_log()
        );
        v["ips"][0]["address"].as_str().unwrap().to_string()
    }

    /// Put the leased address on the container's link, as the macvlan plugin does.
    pub fn configure(&self, i: usize, addr: &str) {
        let mut h = self.containers[i].handle().unwrap();
        let eth0 = h.link_by_name("eth0").unwrap();
        h.add_addr(eth0.index, addr.parse().unwrap()).unwrap();
    }

    /// (valid_life_time, preferred_life_time) of `addr` on the container's eth0.
    pub fn lifetimes(&self, i: usize, addr: &str) -> Option<(u64, u64)> {
        let a = self.addr_json(i, addr)?;
        Some((
            a["valid_life_time"].as_u64()?,
            a["preferred_life_time"].as_u64()?,
        ))
    }

    /// `ip -j addr` entry of `addr` on the container's eth0.
    pub fn addr_json(&self, i: usize, addr: &str) -> Option<Value> {
        let out = Command::new("ip")
            .args([
                "-j",
                "-n",
                &self.containers[i].name,
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let ip = addr.split('/').next()?;
        for link in v.as_array()? {
            for a in link["addr_info"].as_array()? {
                if a["local"] == ip {
                    return Some(a.clone());
                }
            }
        }
        None
    }

    /// The host name dnsmasq recorded for `ip` ("*" for none).
    pub fn server_hostname(&self, ip: &str) -> Option<String> {
        let ip = ip.split('/').next().unwrap_or(ip);
        std::fs::read_to_string(&self.leasefile)
            .ok()?
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&ip))
                    .then(|| f.get(3).map(|s| s.to_string()))
                    .flatten()
            })
    }

    /// dnsmasq's lease file: (expiry, mac, ip, client-id) per line.
    pub fn server_leases(&self) -> Vec<(u64, String, String, String)> {
        std::fs::read_to_string(&self.leasefile)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((
                    f.first()?.parse().ok()?,
                    f.get(1)?.to_string(),
                    f.get(2)?.to_string(),
                    f.get(4)?.to_string(),
                ))
            })
            .collect()
    }

    pub fn server_lease_of(&self, ip: &str) -> Option<(u64, String, String, String)> {
        let ip = ip.split('/').next().unwrap_or(ip);
        self.server_leases().into_iter().find(|l| l.2 == ip)
    }

    /// Wait (5 s at most) until dnsmasq has forgotten the lease of `addr`; panic with the
    /// server's leases and both logs otherwise.
    pub fn assert_released(&self, addr: &str) {
        assert!(
            wait_for(Duration::from_secs(5), || self
                .server_lease_of(addr)
                .is_none()),
            "dnsmasq still has {addr}: {:?}\n{}\n{}",
            self.server_leases(),
            self.daemon_log(),
            self.dnsmasq_log()
        );
    }

    /// Our persisted lease of container `i`.
    pub fn stored(&self, i: usize) -> Option<Value> {
        let p = self
            .state
            .join(macvnet_dhcp::store::file_name(&self.client_id(i)));
        serde_json::from_slice(&std::fs::read(p).ok()?).ok()
    }

    /// Files in the daemon's state dir (leases, intents, temp files).
    pub fn state_files(&self) -> Vec<String> {
        std::fs::read_dir(&self.state)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Turn container `i`'s saved lease into the intent a daemon killed between the
    /// server's ACK and saving the lease leaves (the daemon must be down).
    pub fn lease_to_intent(&self, i: usize) {
        let cid = self.client_id(i);
        let lease = self.stored(i).expect("a saved lease");
        let intent = serde_json::json!({
            "lease": lease,
            "requested": [{"address": lease["grant"]["address"].as_str().unwrap().split('/').next().unwrap(),
                           "serverId": SERVER, "xid": 7}],
            "createdAt": 0,
        });
        std::fs::remove_file(self.state.join(macvnet_dhcp::store::file_name(&cid))).unwrap();
        std::fs::write(
            self.state.join(macvnet_dhcp::store::intent_file_name(&cid)),
            serde_json::to_vec(&intent).unwrap(),
        )
        .unwrap();
    }

    /// Force a renewal through the daemon's hook.
    pub fn renew(&self, i: usize) -> Result<Value, String> {
        self.renew_step(i, None)
    }

    /// Force a given maintenance step through the daemon's hook.
    pub fn renew_step(
        &self,
        i: usize,
        step: Option<macvnet_dhcp::daemon::Step>,
    ) -> Result<Value, String> {
        let r = macvnet_dhcp::proto::call(
            &self.socket,
            &macvnet_dhcp::proto::Call::Renew {
                client_id: self.client_id(i),
                step,
            },
            Duration::from_secs(30),
        )
        .map_err(|e| e.to_string())?;
        match r.error {
            Some(e) => Err(e.to_string()),
            None => Ok(r.result),
        }
    }

    pub fn list(&self) -> Value {
        macvnet_dhcp::proto::call(
            &self.socket,
            &macvnet_dhcp::proto::Call::List,
            Duration::from_secs(10),
        )
        .unwrap()
        .result
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first (they may hold namespaces), then namespaces, then the temp dir.
        self.daemon.take();
        self.dnsmasq.take();
        self.containers.clear();
    }
}

/// Runs a CNI plugin command `c` with `conf` on stdin: (exit ok, stdout JSON or null). On
/// failure its stderr goes to ours after `label`.
pub fn exchange(mut c: Command, conf: &str, label: &str) -> (bool, Value) {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        eprintln!("{label} {}", String::from_utf8_lossy(&out.stderr));
    }
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
    )
}

/// Poll `f` until it returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// dnsmasq writes client IDs as colon-separated hex.
pub fn hex_client_id(cid: &str) -> String {
    std::iter::once(0u8)
        .chain(cid.bytes())
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
