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
        let bin = etcd_bin()?;
        let scheme = if certs.is_some() { "https" } else { "http" };
        let tag = unique("etcd");
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("m{i}");
            members.push(Member {
                client: format!("{scheme}://127.0.0.1:{}", free_port()),
                peer: format!("http://127.0.0.1:{}", free_port()),
                data: PathBuf::from(format!("/dev/shm/{tag}-{name}")),
                log: PathBuf::from(format!("/dev/shm/{tag}-{name}.log")),
                name,
                child: None,
            });
        }
        let initial: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer))
            .collect();
        let initial = initial.join(",");
        let mut etcd = Etcd { members, tag };
        for m in &mut etcd.members {
            let log = std::fs::File::create(&m.log).unwrap();
            let mut cmd = Command::new(&bin);
            if let Some(c) = certs {
                cmd.args(["--cert-file", &c.path("server.crt")])
                    .args(["--key-file", &c.path("server.key")])
                    .args(["--trusted-ca-file", &c.ca()])
                    .arg("--client-cert-auth");
            }
            let child = cmd
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
                .stderr(log)
                .spawn()
                .unwrap();
            m.child = Some(child);
        }
        etcd.wait_healthy(Duration::from_secs(30), certs);
        Some(etcd)
    }

    fn wait_healthy(&self, limit: Duration, certs: Option<&Certs>) {
        let t0 = Instant::now();
        for m in &self.members {
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
