//! Test etcd clusters: real `etcd` processes on loopback ports, data on /dev/shm, killed by
//! pid when the guard drops. Tests skip when `etcd` is missing or we are not root-free-able.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// `etcd` on PATH (Debian's etcd-server), or None with the reason printed.
pub fn etcd_bin() -> Option<PathBuf> {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join("etcd");
        if p.exists() {
            return Some(p);
        }
    }
    eprintln!("SKIP: etcd not installed (apt-get install etcd-server; scripts/deps)");
    None
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A unique name `mvt-<pid>-<n>-<tag>`.
pub fn unique(tag: &str) -> String {
    format!(
        "mvt-{}-{}-{tag}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

pub struct Member {
    pub cmd: Vec<std::ffi::OsString>,
    pub name: String,
    pub client: String,
    pub peer: String,
    pub data: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

/// A running etcd cluster; dropping it kills every member by pid and removes its data.
pub struct Etcd {
    pub members: Vec<Member>,
    pub tag: String,
    /// The namespace the members run in (None: the caller's, on loopback).
    pub netns: Option<macvnet_netlink::NetnsRef>,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
pub struct Certs {
    pub dir: TempDir,
}

impl Certs {
    pub fn ca(&self) -> String {
        self.path("ca.crt")
    }
    pub fn path(&self, f: &str) -> String {
        self.dir.0.join(f).to_string_lossy().into_owned()
    }

    /// None (with the reason printed) when openssl is missing or fails.
    pub fn make() -> Option<Certs> {
        let dir = TempDir::new("certs");
        let script = r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=mvt-test-ca
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $who.key -out $who.csr -subj /CN=mvt-$who
done
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
for who in server client; do
  openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $who.crt -days 2 -extfile $who.ext
done
"#;
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&dir.0)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Certs { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIP: openssl failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("SKIP: openssl not runnable: {e}");
                None
            }
        }
    }
}

impl Etcd {
    pub fn start(n: usize) -> Option<Etcd> {
        Self::start_with(n, None)
    }

    /// Members with https client URLs requiring client certificates.
    pub fn start_with(n: usize, certs: Option<&Certs>) -> Option<Etcd> {
        Self::start_on(n, certs, None)
    }

    /// One member per address of `at`, inside namespace `at.0` (fixed ports 2379/2380: each
    /// member has its own address there), so other namespaces on that L2 segment reach them.
    pub fn start_in(ns: &macvnet_netlink::NetnsRef, ips: &[std::net::Ipv4Addr]) -> Option<Etcd> {
        Self::start_on(ips.len(), None, Some((ns, ips)))
    }

    fn start_on(
        n: usize,
        certs: Option<&Certs>,
        at: Option<(&macvnet_netlink::NetnsRef, &[std::net::Ipv4Addr])>,
    ) -> Option<Etcd> {
        let bin = etcd_bin()?;
        let scheme = if certs.is_some() { "https" } else { "http" };
        let tag = unique("etcd");
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("m{i}");
            let (client, peer) = match at.and_then(|(_, ips)| ips.get(i)) {
                Some(ip) => (format!("{scheme}://{ip}:2379"), format!("http://{ip}:2380")),
                None => (
                    format!("{scheme}://127.0.0.1:{}", free_port()),
                    format!("http://127.0.0.1:{}", free_port()),
                ),
            };
            members.push(Member {
                client,
                peer,
                data: PathBuf::from(format!("/dev/shm/{tag}-{name}")),
                log: PathBuf::from(format!("/dev/shm/{tag}-{name}.log")),
                name,
                child: None,
                cmd: Vec::new(),
            });
        }
        let initial: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer))
            .collect();
        let initial = initial.join(",");
        let mut etcd = Etcd {
            members,
            tag,
            netns: at.map(|(ns, _)| ns.clone()),
        };
        for m in &mut etcd.members {
            let log = std::fs::File::create(&m.log).unwrap();
            let mut cmd = match &etcd.netns {
                Some(ns) => macvnet_netlink::netns::command_in(ns, &bin.to_string_lossy()).unwrap(),
                None => Command::new(&bin),
            };
            if let Some(c) = certs {
                cmd.args(["--cert-file", &c.path("server.crt")])
                    .args(["--key-file", &c.path("server.key")])
                    .args(["--trusted-ca-file", &c.ca()])
                    .arg("--client-cert-auth");
            }
            let spawn_cmd = cmd
                .args(["--name", &m.name])
                .arg("--data-dir")
                .arg(&m.data)
                .args(["--listen-client-urls", &m.client])
                .args(["--advertise-client-urls", &m.client])
                .args(["--listen-peer-urls", &m.peer])
                .args(["--initial-advertise-peer-urls", &m.peer])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &etcd.tag])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            m.cmd = std::iter::once(spawn_cmd.get_program().to_os_string())
                .chain(spawn_cmd.get_args().map(|a| a.to_os_string()))
                .collect();
            m.child = Some(spawn_cmd.spawn().unwrap());
        }
        etcd.wait_healthy(Duration::from_secs(30), certs);
        Some(etcd)
    }

    /// Run `f` where the members are reachable: in their namespace, or right here.
    pub fn reach<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.netns {
            Some(ns) => macvnet_netlink::netns::run_in(ns, f).unwrap(),
            None => f(),
        }
    }

    fn wait_healthy(&self, limit: Duration, certs: Option<&Certs>) {
        self.reach(|| self.wait_healthy_here(limit, certs))
    }

    fn wait_healthy_here(&self, limit: Duration, certs: Option<&Certs>) {
        let t0 = Instant::now();
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let client = macvnet_cluster::etcd::Client::new(&macvnet_cluster::etcd::ClientConfig {
                endpoints: vec![m.client.clone()],
                tls: macvnet_cluster::etcd::TlsFiles {
                    ca: certs.map(Certs::ca),
                    cert: certs.map(|c| c.path("client.crt")),
                    key: certs.map(|c| c.path("client.key")),
                },
                dial_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(2),
            })
            .unwrap();
            loop {
                let ok = client.ping(Instant::now() + Duration::from_secs(2)).is_ok();
                if ok {
                    break;
                }
                assert!(
                    t0.elapsed() < limit,
                    "etcd member {} not healthy in {limit:?}; log: {}",
                    m.name,
                    std::fs::read_to_string(&m.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    /// Index of the current leader, from a live member's status.
    pub fn leader(&self) -> Option<usize> {
        self.reach(|| self.leader_here())
    }

    fn leader_here(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for m in &self.members {
            let v: Option<serde_json::Value> =
                ureq::post(&format!("{}/v3/maintenance/status", m.client))
                    .send("{}")
                    .ok()
                    .and_then(|mut r| r.body_mut().read_to_string().ok())
                    .and_then(|s| serde_json::from_str(&s).ok());
            let id = v
                .as_ref()
                .and_then(|v| v.pointer("/header/member_id"))
                .and_then(|x| x.as_str())
                .map(str::to_string);
            if leader.is_none() {
                leader = v
                    .as_ref()
                    .and_then(|v| v.get("leader"))
                    .and_then(|x| x.as_str())
                    .map(str::to_string);
            }
            ids.push(id);
        }
        let leader = leader?;
        ids.iter()
            .position(|id| id.as_deref() == Some(leader.as_str()))
    }

    /// Start a killed member again on its data (same flags; etcd ignores the initial-cluster
    /// ones once the data dir exists) and wait until it answers.
    pub fn restart(&mut self, i: usize) {
        let m = self.members.get_mut(i).unwrap();
        assert!(m.child.is_none());
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&m.log)
            .unwrap();
        let (prog, args) = m.cmd.split_first().unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => macvnet_netlink::netns::command_in(ns, &prog.to_string_lossy()).unwrap(),
            None => Command::new(prog),
        };
        m.child = Some(
            cmd.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        self.wait_healthy(Duration::from_secs(30), None);
    }

    /// SIGKILL member `i` (by pid) and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(m) = self.members.get_mut(i) {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        for m in &self.members {
            let _ = std::fs::remove_dir_all(&m.data);
            let _ = std::fs::remove_file(&m.log);
        }
    }
}

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network config for the cluster plugin.
pub fn conf(
    network: &str,
    range: &str,
    endpoints: &[String],
    node: &str,
    data_dir: &Path,
    blocks: serde_json::Value,
    timeout_ms: u64,
) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.1.0",
        "name": network,
        "type": "macvlan",
        "ipam": {
            "type": "cluster",
            "range": range,
            "gateway": null,
            "etcd": {"endpoints": endpoints, "prefix": "/mvt", "timeoutMs": timeout_ms,
                     "dialTimeoutMs": 1000, "requestTimeoutMs": 5000},
            "node": node,
            "dataDir": data_dir,
            "blocks": blocks,
        }
    })
}

/// An HTTP proxy in front of one etcd endpoint. While `drops` > 0, a transaction that writes
/// (`request_put`) is forwarded and applied, and then the client's connection is closed
/// instead of replying: a committed transaction whose reply was lost.
pub struct LossyProxy {
    pub url: String,
    pub drops: std::sync::Arc<AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl LossyProxy {
    pub fn start(upstream: &str) -> LossyProxy {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, st, up) = (drops.clone(), stop.clone(), upstream.to_string());
        let handle = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (d, up) = (d.clone(), up.clone());
                std::thread::spawn(move || {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(3)))
                        .unwrap();
                    let mut out = stream.try_clone().unwrap();
                    let mut rd = BufReader::new(stream);
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .into();
                    loop {
                        let mut line = String::new();
                        if rd.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                        let mut len = 0usize;
                        loop {
                            let mut h = String::new();
                            if rd.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    len = v.trim().parse().unwrap_or(0);
                                }
                            }
                        }
                        let mut body = vec![0u8; len];
                        if rd.read_exact(&mut body).is_err() {
                            return;
                        }
                        let body = String::from_utf8_lossy(&body).into_owned();
                        let mut resp = agent
                            .post(&format!("{up}{path}"))
                            .header("content-type", "application/json")
                            .send(&body)
                            .unwrap();
                        let status = resp.status().as_u16();
                        let text = resp.body_mut().read_to_string().unwrap();
                        let lose = path == "/v3/kv/txn"
                            && body.contains("request_put")
                            && d.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                n.checked_sub(1)
                            })
                            .is_ok();
                        if lose {
                            let _ = out.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        let msg = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if out.write_all(msg.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        LossyProxy {
            url,
            drops,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
