#![allow(clippy::unwrap_used)]
//! A real CNI client drives the plugins: Podman 4 with its CNI backend.
//!
//! Podman runs inside a test namespace (entered with `nsenter --net`, not
//! `ip netns exec`, whose /sys remount breaks cgroups) whose veth `eth0` is the
//! macvlan master. Everything Podman keeps (root, runroot, tmpdir, locks,
//! network config, host-local dataDir) lives in a temp dir; the only shared
//! place is libcni's result cache in /var/lib/cni/results, where we check and
//! remove our entries. Busybox containers get addresses (one dynamic, one with
//! --ip/--mac-address), ping each other, survive `network reload`,
//! `disconnect` and `connect`; a third ends on its own and conmon's exit
//! command tears it down. After removal nothing of ours is left: links,
//! leases, cache entries, netns mounts, cgroups, runc state, processes.
//!
//! Dual-stack (198.18.0.0/15 and 2001:db8::/32 ranges). Run with our plugins
//! (the package's `macvlan`/`host-local` bins) for conflist versions 1.0.0
//! and 0.4.0 (podman 4.3's libcni speaks up to 1.0.0), and, as a control, with
//! the reference plugins in /usr/lib/cni.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use macvnet_netlink as nl;
use nl::testing::{uplink_pair, TestNs};
use serde_json::Value;

const REFERENCE_DIR: &str = "/usr/lib/cni";
/// libcni's cache; Podman 4.3 has no setting to move it.
const CNI_RESULTS_DIR: &str = "/var/lib/cni/results";
/// runc's state root when Podman runs as root. Not moved with
/// `--runtime-flag root=`: conmon's exit command (`podman container cleanup`)
/// does not carry runtime flags and would then miss the container.
const RUNC_STATE_DIR: &str = "/run/runc";
/// Bound for one podman invocation.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for asynchronous teardown (conmon's exit command) to finish.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Containers end on their own after this even if the test is killed.
const CONTAINER_LIFETIME_SECS: u32 = 90;
/// Lifetime of the container that ends (and is cleaned up) on its own.
const SHORT_LIFETIME_SECS: u32 = 5;

/// A conflist version and its two ranges; distinct per test so parallel runs
/// are easy to tell apart.
struct Variant {
    cni_version: &'static str,
    v4: &'static str,
    v6: &'static str,
}

#[test]
fn podman_cni_with_our_plugins() {
    let test = "podman_cni_with_our_plugins";
    if let Some(dir) = our_plugin_dir(test) {
        let variant = Variant {
            cni_version: "1.0.0",
            v4: "198.19.61.0/24",
            v6: "2001:db8:61::/64",
        };
        exercise(test, "ours", &dir, &variant);
    }
}

#[test]
fn podman_cni_with_our_plugins_cni_0_4_0() {
    let test = "podman_cni_with_our_plugins_cni_0_4_0";
    if let Some(dir) = our_plugin_dir(test) {
        let variant = Variant {
            cni_version: "0.4.0",
            v4: "198.19.63.0/24",
            v6: "2001:db8:63::/64",
        };
        exercise(test, "ours040", &dir, &variant);
    }
}

#[test]
fn podman_cni_with_reference_plugins() {
    let variant = Variant {
        cni_version: "1.0.0",
        v4: "198.19.62.0/24",
        v6: "2001:db8:62::/64",
    };
    exercise(
        "podman_cni_with_reference_plugins",
        "ref",
        Path::new(REFERENCE_DIR),
        &variant,
    );
}

/// The dir of this package's `macvlan` and `host-local` bins (cargo sets
/// CARGO_BIN_EXE_* for integration tests); None, after printing why, before
/// the package has them.
fn our_plugin_dir(test: &str) -> Option<PathBuf> {
    let (Some(macvlan), Some(host_local)) = (
        option_env!("CARGO_BIN_EXE_macvlan"),
        option_env!("CARGO_BIN_EXE_host-local"),
    ) else {
        eprintln!("SKIP {test}: the macvnet-plugins package has no macvlan/host-local bins yet");
        return None;
    };
    let dir = Path::new(macvlan).parent().unwrap().to_path_buf();
    assert_eq!(
        Path::new(host_local).parent(),
        Some(dir.as_path()),
        "macvlan and host-local must share one plugin dir"
    );
    Some(dir)
}

/// Both ranges of the network under test.
#[derive(Clone, Copy)]
struct Subnets {
    v4: ipnet::Ipv4Net,
    v6: ipnet::Ipv6Net,
}

/// The whole flow against the plugins in `plugin_dir`.
fn exercise(test: &str, tag: &str, plugin_dir: &Path, variant: &Variant) {
    let tools = match prerequisites(plugin_dir) {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIP {test}: {reason}");
            return;
        }
    };
    let started = Instant::now();
    let subnet = Subnets {
        v4: variant.v4.parse().unwrap(),
        v6: variant.v6.parse().unwrap(),
    };
    let mut env = PodmanEnv::new(tag, tools, plugin_dir, variant.cni_version, subnet);
    let net = env.net.clone();

    // Podman parsed our conflist as a macvlan network on the test ns's eth0.
    let out = env.podman_ok(&["network", "inspect", &net]);
    let info: Value = serde_json::from_str(&out).unwrap();
    let info = &info[0];
    assert_eq!(info["driver"], "macvlan", "network inspect: {info}");
    assert_eq!(info["network_interface"], "eth0", "network inspect: {info}");
    assert_eq!(
        (&info["subnets"][0]["subnet"], &info["subnets"][1]["subnet"]),
        (&Value::from(variant.v4), &Value::from(variant.v6)),
        "network inspect: {info}"
    );
    assert_eq!(info["ipv6_enabled"], true, "network inspect: {info}");

    // c exits on its own soon: conmon's exit command (`podman container
    // cleanup --rm`, another process) then issues the DEL.
    let c = env.run_container("c", SHORT_LIFETIME_SECS, &[]);
    check_attachment(&env, &c, subnet);
    let a = env.run_container("a", CONTAINER_LIFETIME_SECS, &[]);
    // b asks for its address and MAC; podman passes them as CNI_ARGS IP= and MAC=.
    let b_ip = subnet.v4.hosts().nth(49).unwrap().to_string();
    let b_mac = "02:00:c6:13:3d:32";
    let b = env.run_container(
        "b",
        CONTAINER_LIFETIME_SECS,
        &["--ip", &b_ip, "--mac-address", b_mac],
    );
    let a_index = check_attachment(&env, &a, subnet);
    check_attachment(&env, &b, subnet);
    assert_ne!(
        (a.ip, a.ip6),
        (b.ip, b.ip6),
        "both containers got the same address"
    );
    assert_eq!(
        (b.ip.to_string(), b.mac.as_str()),
        (b_ip, b_mac),
        "b ignored --ip/--mac-address"
    );
    ping(&env, &a, &b);
    ping(&env, &b, &a);

    // reload = DEL, then ADD with the old IP= and MAC=: a new link, same address and MAC.
    env.podman_ok(&["network", "reload", &a.id]);
    let a2 = env.inspect(&a.name, &a.id);
    let a2_index = check_attachment(&env, &a2, subnet);
    assert_ne!(a2_index, a_index, "reload did not recreate a's eth0");
    assert_eq!(
        (a2.ip, a2.ip6, &a2.mac),
        (a.ip, a.ip6, &a.mac),
        "reload changed a's addresses or MAC"
    );
    ping(&env, &a2, &b);

    // disconnect = DEL alone: the container keeps its netns, loses eth0, lease and cache entry.
    env.podman_ok(&["network", "disconnect", &net, &b.id]);
    check_detached(&env, &b);
    // connect = ADD again (dynamic address now: disconnect dropped b's static one).
    env.podman_ok(&["network", "connect", &net, &b.id]);
    let b2 = env.inspect(&b.name, &b.id);
    check_attachment(&env, &b2, subnet);
    ping(&env, &b2, &a2);

    let still = wait_until(
        SETTLE_TIMEOUT + Duration::from_secs(SHORT_LIFETIME_SECS.into()),
        || {
            let listed = env.podman_ok(&["ps", "-a", "-q", "--no-trunc"]);
            listed
                .lines()
                .filter(|l| *l == c.id)
                .map(String::from)
                .collect()
        },
    );
    assert!(still.is_empty(), "c did not end and get removed on its own");
    check_released(&env, &c);

    env.podman_ok(&["rm", "-f", "-t", "0", &a.id, &b.id]);
    check_nothing_left(&env, &[&a, &b, &c]);

    // `network rm` of a CNI network deletes its conflist.
    env.podman_ok(&["network", "rm", &net]);
    assert!(
        !env.conflist.exists(),
        "podman network rm left {}",
        env.conflist.display()
    );
    eprintln!(
        "{test}: passed in {:.1}s with plugins from {}",
        started.elapsed().as_secs_f64(),
        plugin_dir.display()
    );
}

/// busybox ping from one container to the other's addresses, IPv4 and IPv6
/// (2 of 2 answered each).
fn ping(env: &PodmanEnv, from: &Container, to: &Container) {
    for target in [to.ip.to_string(), to.ip6.to_string()] {
        let out = env.podman(&[
            "exec", &from.id, "ping", "-A", "-c", "2", "-w", "5", &target,
        ]);
        assert!(
            out.ok && out.stdout.contains("2 packets received"),
            "ping {} -> {} {target}: {}\n{}",
            from.name,
            to.name,
            out.stdout,
            out.stderr
        );
    }
}

/// What podman, the containers and libcni report for one attachment agrees
/// with the kernel and with the host-local store. Returns eth0's ifindex.
fn check_attachment(env: &PodmanEnv, c: &Container, subnet: Subnets) -> u32 {
    assert!(
        subnet.v4.contains(&c.ip) && subnet.v6.contains(&c.ip6),
        "{} got {} and {} outside {} and {}",
        c.name,
        c.ip,
        c.ip6,
        subnet.v4,
        subnet.v6
    );

    // The kernel view of the container's eth0.
    let mut h = nl::Handle::open(&nl::NetnsRef::Path(c.sandbox.clone())).unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    assert_eq!(eth0.kind, nl::LinkKind::Macvlan, "{}: {eth0:?}", c.name);
    assert_eq!(
        eth0.macvlan.as_ref().map(|m| m.mode),
        Some(nl::Mode::Bridge),
        "{}: {eth0:?}",
        c.name
    );
    assert!(eth0.up, "{}: eth0 is down", c.name);
    assert!(
        eth0.link_netnsid.is_some(),
        "{}: master not in another ns: {eth0:?}",
        c.name
    );
    assert_eq!(
        eth0.mac.map(|m| m.to_string()),
        Some(c.mac.clone()),
        "{}",
        c.name
    );
    let addrs = h.addrs(Some(eth0.index)).unwrap();
    let want = [
        ipnet::IpNet::V4(ipnet::Ipv4Net::new(c.ip, subnet.v4.prefix_len()).unwrap()),
        ipnet::IpNet::V6(ipnet::Ipv6Net::new(c.ip6, subnet.v6.prefix_len()).unwrap()),
    ];
    for w in want {
        // Settled: the reference plugin waits out DAD before returning.
        assert!(
            addrs
                .iter()
                .any(|a| a.addr == w && !a.tentative && !a.dad_failed),
            "{}: kernel has {addrs:?}, podman says {w} (settled)",
            c.name
        );
    }

    // host-local's leases: files named by the address holding the container id.
    for ip in [c.ip.to_string(), c.ip6.to_string()] {
        let lease = env.ipam_dir.join(&env.net).join(ip);
        let held = fs::read_to_string(&lease).unwrap_or_default();
        assert!(
            held.starts_with(&c.id),
            "{}: lease {} holds {held:?}",
            c.name,
            lease.display()
        );
    }

    // libcni cached the plugin's result under <net>-<id>-<ifname>.
    let cache = Path::new(CNI_RESULTS_DIR).join(format!("{}-{}-eth0", env.net, c.id));
    let cached: Value = serde_json::from_str(&fs::read_to_string(&cache).unwrap()).unwrap();
    // In the conflist's version: libcni stores what the plugin printed.
    assert_eq!(
        cached["result"]["cniVersion"],
        env.cni_version,
        "{}: cache {}",
        c.name,
        cache.display()
    );
    let ips = cached["result"]["ips"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for w in want {
        assert!(
            ips.iter().any(|ip| ip["address"] == w.to_string()),
            "{}: cache {} has no {w}: {cached}",
            c.name,
            cache.display()
        );
    }
    eth0.index
}

/// After `podman network disconnect`: the container's netns has only lo, and
/// its lease and cache entry are gone.
fn check_detached(env: &PodmanEnv, c: &Container) {
    let mut h = nl::Handle::open(&nl::NetnsRef::Path(c.sandbox.clone())).unwrap();
    let names: Vec<String> = h.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["lo"], "{}: links after disconnect", c.name);
    check_released(env, c);
}

/// The container's leases and libcni cache entry are gone.
fn check_released(env: &PodmanEnv, c: &Container) {
    for ip in [c.ip.to_string(), c.ip6.to_string()] {
        let lease = env.ipam_dir.join(&env.net).join(ip);
        let held = fs::read_to_string(&lease).unwrap_or_default();
        assert!(
            !held.starts_with(&c.id),
            "{}: lease {} kept",
            c.name,
            lease.display()
        );
    }
    let cache = format!("{}-{}-eth0", env.net, c.id);
    assert!(
        !env.our_cache_entries().contains(&cache),
        "{}: cache entry {cache} kept",
        c.name
    );
}

/// After `podman rm`: no containers, links, leases, cache entries, netns
/// mounts, cgroups, runc state or processes of ours remain.
fn check_nothing_left(env: &PodmanEnv, cs: &[&Container]) {
    let listed = env.podman_ok(&["ps", "-a", "-q", "--no-trunc"]);
    assert!(listed.trim().is_empty(), "podman still lists {listed:?}");

    let mut h = env.host.handle().unwrap();
    let names: Vec<String> = h.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["lo", "eth0"], "links left in {}", env.host.name);

    let store = env.ipam_dir.join(&env.net);
    let leases: Vec<String> = list_dir(&store)
        .into_iter()
        .filter(|n| !common::is_store_bookkeeping(n))
        .collect();
    assert!(
        leases.is_empty(),
        "host-local leases left in {}: {leases:?}",
        store.display()
    );

    // conmon's exit command may still be tearing down for a moment.
    let leftovers = wait_until(SETTLE_TIMEOUT, || {
        let mut left = Vec::new();
        let cached = env.our_cache_entries();
        if !cached.is_empty() {
            left.push(format!("cache entries {cached:?}"));
        }
        for c in cs {
            if c.sandbox.exists() {
                left.push(format!("netns {}", c.sandbox.display()));
            }
            for pid in [c.pid, c.conmon_pid] {
                if process_alive(pid) {
                    left.push(format!("{} process {pid}", c.name));
                }
            }
            let state = Path::new(RUNC_STATE_DIR).join(&c.id);
            if state.exists() {
                left.push(format!("runc state {}", state.display()));
            }
            left.extend(
                container_cgroups(&c.id)
                    .iter()
                    .map(|p| format!("cgroup {}", p.display())),
            );
        }
        let procs = env.our_processes();
        if !procs.is_empty() {
            left.push(format!("processes with our CONTAINERS_CONF {procs:?}"));
        }
        left
    });
    assert!(leftovers.is_empty(), "left after podman rm: {leftovers:?}");
}

struct Tools {
    podman: PathBuf,
    nsenter: PathBuf,
    busybox: PathBuf,
}

/// Err(reason to skip) when something the test needs is missing.
fn prerequisites(plugin_dir: &Path) -> Result<Tools, String> {
    if !nl::testing::is_root() {
        return Err("needs root (network namespaces, podman as root)".into());
    }
    let podman = which("podman").ok_or("podman not installed (scripts/deps)")?;
    which("runc").ok_or("runc not installed (scripts/deps)")?;
    which("conmon").ok_or("conmon not installed (scripts/deps)")?;
    let nsenter = which("nsenter").ok_or("nsenter (util-linux) not installed")?;
    let version = Command::new(&podman)
        .arg("--version")
        .output()
        .map_err(|e| format!("running podman --version: {e}"))?;
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    // "podman version 4.3.1"; the CNI backend is gone in podman 5.
    if !version
        .split_whitespace()
        .nth(2)
        .is_some_and(|v| v.starts_with("4."))
    {
        return Err(format!(
            "needs podman 4 (CNI backend), found {:?}",
            version.trim()
        ));
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| is_static_elf(p))
        .ok_or("no statically linked busybox (install busybox-static)")?;
    for plugin in ["macvlan", "host-local"] {
        if !plugin_dir.join(plugin).is_file() {
            return Err(format!("no {plugin} plugin in {}", plugin_dir.display()));
        }
    }
    Ok(Tools {
        podman,
        nsenter,
        busybox,
    })
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// An ELF with no PT_INTERP program header needs no loader inside the rootfs.
fn is_static_elf(path: &Path) -> bool {
    let Ok(b) = fs::read(path) else { return false };
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap()) as usize)
    };
    // ELF64 little-endian only (what Debian amd64/arm64 ship).
    if b.get(0..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        // PT_INTERP = 3
        b.get(at..at + 4).is_some_and(|t| t != [3, 0, 0, 0])
    })
}

struct Container {
    name: String,
    id: String,
    pid: u32,
    conmon_pid: u32,
    sandbox: PathBuf,
    ip: std::net::Ipv4Addr,
    ip6: std::net::Ipv6Addr,
    mac: String,
}

struct CmdOutput {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Everything one podman "installation" needs, under one temp dir; cleans up
/// on drop whether the test passed or not. Fields drop after `drop()`, so the
/// namespaces outlive the podman teardown.
struct PodmanEnv {
    tools: Tools,
    dir: PathBuf,
    rootfs: PathBuf,
    conf: PathBuf,
    storage_conf: PathBuf,
    conflist: PathBuf,
    ipam_dir: PathBuf,
    net: String,
    cni_version: String,
    /// Container ids to force-remove, sandboxes to unmount, pids to kill.
    started: Vec<(String, Option<PathBuf>, Vec<u32>)>,
    host: TestNs,
    _lan: TestNs,
    steps: std::cell::Cell<u32>,
}

impl PodmanEnv {
    fn new(
        tag: &str,
        tools: Tools,
        plugin_dir: &Path,
        cni_version: &str,
        subnet: Subnets,
    ) -> PodmanEnv {
        let (host, lan) = uplink_pair(&format!("podman-{tag}")).unwrap();
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("mvt-{pid}-podman-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let net = format!("mvt-{pid}-{tag}");
        let env = PodmanEnv {
            rootfs: dir.join("rootfs"),
            conf: dir.join("containers.conf"),
            storage_conf: dir.join("storage.conf"),
            conflist: dir.join("net.d").join(format!("{net}.conflist")),
            ipam_dir: dir.join("ipam"),
            net,
            cni_version: cni_version.to_string(),
            started: Vec::new(),
            tools,
            dir,
            host,
            _lan: lan,
            steps: std::cell::Cell::new(0),
        };
        env.build_rootfs();
        env.write_configs(plugin_dir, cni_version, subnet);
        env
    }

    fn build_rootfs(&self) {
        let bin = self.rootfs.join("bin");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
            fs::create_dir_all(self.rootfs.join(d)).unwrap();
        }
        fs::copy(&self.tools.busybox, bin.join("busybox")).unwrap();
        let list = Command::new(&self.tools.busybox)
            .arg("--list")
            .output()
            .unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
            }
        }
        fs::write(
            self.rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n",
        )
        .unwrap();
        fs::write(self.rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    }

    fn write_configs(&self, plugin_dir: &Path, cni_version: &str, subnet: Subnets) {
        let d = |p: &str| self.dir.join(p).display().to_string();
        fs::create_dir_all(self.conflist.parent().unwrap()).unwrap();
        // lock_type "file" keeps locks in tmp_dir: the default shm segment
        // (/dev/shm/libpod_lock) is shared with every other podman on the host,
        // and a fresh root's first run frees all of its locks.
        let conf = format!(
            "[network]\n\
             network_backend = \"cni\"\n\
             cni_plugin_dirs = [{plugins:?}]\n\
             network_config_dir = {netd:?}\n\
             [engine]\n\
             lock_type = \"file\"\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = {events:?}\n\
             tmp_dir = {tmp:?}\n\
             static_dir = {static_dir:?}\n\
             volume_path = {volumes:?}\n",
            plugins = plugin_dir.display().to_string(),
            netd = d("net.d"),
            events = d("tmp/events.log"),
            tmp = d("tmp"),
            static_dir = d("root/libpod"),
            volumes = d("root/volumes"),
        );
        fs::write(&self.conf, conf).unwrap();
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = {:?}\nrunroot = {:?}\n",
            d("root"),
            d("runroot")
        );
        fs::write(&self.storage_conf, storage).unwrap();
        let conflist = serde_json::json!({
            "cniVersion": cni_version,
            "name": self.net,
            "plugins": [{
                "type": "macvlan",
                "master": "eth0",
                "mode": "bridge",
                "ipam": {
                    "type": "host-local",
                    "dataDir": self.ipam_dir,
                    "ranges": [
                        [{ "subnet": subnet.v4.to_string() }],
                        [{ "subnet": subnet.v6.to_string() }],
                    ],
                },
            }],
        });
        fs::write(&self.conflist, conflist.to_string()).unwrap();
    }

    /// `nsenter --net=<test ns> podman <global flags> <args>`, killed (by pid)
    /// after `timeout`.
    fn podman_with_timeout(&self, args: &[&str], timeout: Duration) -> CmdOutput {
        let step = self.steps.get() + 1;
        self.steps.set(step);
        let log = |s: &str| self.dir.join(format!("step{step}.{s}"));
        let (out_path, err_path) = (log("out"), log("err"));
        let d = |p: &str| self.dir.join(p);
        let mut cmd = Command::new(&self.tools.nsenter);
        cmd.arg(format!("--net={}", self.host.ns.path().display()))
            .arg(&self.tools.podman)
            .arg("--root")
            .arg(d("root"))
            .arg("--runroot")
            .arg(d("runroot"))
            .arg("--tmpdir")
            .arg(d("tmp"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .env("CONTAINERS_STORAGE_CONF", &self.storage_conf)
            .env_remove("CONTAINER_HOST")
            .env_remove("CONTAINER_CONNECTION")
            .stdin(Stdio::null());
        let shown = format!("podman {}", args.join(" "));
        // Output goes to files (no pipe to fill up); also runs from Drop, so no panics.
        let files = fs::File::create(&out_path).and_then(|o| Ok((o, fs::File::create(&err_path)?)));
        let mut child = match files.and_then(|(o, e)| cmd.stdout(o).stderr(e).spawn()) {
            Ok(c) => c,
            Err(e) => {
                return CmdOutput {
                    ok: false,
                    stdout: String::new(),
                    stderr: format!("spawning {shown}: {e}"),
                }
            }
        };
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    // Child::kill is SIGKILL to this pid (nsenter exec'd podman).
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let stdout = fs::read_to_string(&out_path).unwrap_or_default();
        let mut stderr = fs::read_to_string(&err_path).unwrap_or_default();
        if status.is_none() {
            stderr.push_str(&format!("\n{shown}: killed after {timeout:?}"));
        }
        CmdOutput {
            ok: status.is_some_and(|s| s.success()),
            stdout,
            stderr,
        }
    }

    fn podman(&self, args: &[&str]) -> CmdOutput {
        self.podman_with_timeout(args, STEP_TIMEOUT)
    }

    fn podman_ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.ok,
            "podman {} failed:\n{}\n{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// `podman run --rm -d` a sleeping busybox on our network and inspect it.
    fn run_container(&mut self, suffix: &str, lifetime_secs: u32, extra: &[&str]) -> Container {
        let name = format!("{}-{suffix}", self.net);
        let rootfs = self.rootfs.display().to_string();
        let lifetime = lifetime_secs.to_string();
        let mut args = vec!["run", "--rm", "-d", "--name", &name, "--network", &self.net];
        args.extend([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
        args.extend(extra);
        // --rootfs comes last before the command.
        args.extend(["--rootfs", &rootfs, "sleep", &lifetime]);
        let out = self.podman(&args);
        // Even a failed run may have left a container behind: remove it by name.
        self.started.push((name.clone(), None, Vec::new()));
        assert!(
            out.ok,
            "podman run {name} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        let id = out.stdout.trim().to_string();
        let c = self.inspect(&name, &id);
        self.started
            .push((id, Some(c.sandbox.clone()), vec![c.pid, c.conmon_pid]));
        c
    }

    /// The container as `podman inspect` reports it now.
    fn inspect(&self, name: &str, id: &str) -> Container {
        let inspected = self.podman_ok(&["inspect", id]);
        let v: Value = serde_json::from_str(&inspected).unwrap();
        let v = &v[0];
        let attachment = &v["NetworkSettings"]["Networks"][&self.net];
        Container {
            name: name.to_string(),
            id: id.to_string(),
            pid: v["State"]["Pid"].as_u64().unwrap() as u32,
            conmon_pid: v["State"]["ConmonPid"].as_u64().unwrap() as u32,
            sandbox: PathBuf::from(v["NetworkSettings"]["SandboxKey"].as_str().unwrap()),
            ip: attachment["IPAddress"].as_str().unwrap().parse().unwrap(),
            ip6: attachment["GlobalIPv6Address"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            mac: attachment["MacAddress"].as_str().unwrap().to_string(),
        }
    }

    /// libcni cache files of our network (`<net>-<container id>-<ifname>`).
    fn our_cache_entries(&self) -> Vec<String> {
        let prefix = format!("{}-", self.net);
        list_dir(Path::new(CNI_RESULTS_DIR))
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    /// Pids (not ours) whose environment carries our CONTAINERS_CONF: podman,
    /// conmon and conmon's exit command all inherit it.
    fn our_processes(&self) -> Vec<u32> {
        let marker = format!("CONTAINERS_CONF={}", self.conf.display());
        let me = std::process::id();
        list_dir(Path::new("/proc"))
            .into_iter()
            .filter_map(|n| n.parse::<u32>().ok())
            .filter(|&pid| pid != me && process_alive(pid))
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == marker.as_bytes()))
            })
            .collect()
    }
}

impl Drop for PodmanEnv {
    fn drop(&mut self) {
        let started = std::mem::take(&mut self.started);
        let ids: Vec<&str> = started.iter().map(|(id, _, _)| id.as_str()).collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-t", "0", "-i"];
            args.extend(&ids);
            let out = self.podman_with_timeout(&args, Duration::from_secs(30));
            if !out.ok {
                eprintln!("cleanup: podman rm: {}", out.stderr.trim());
            }
        }
        // Give conmon and its exit command time to finish before killing them.
        let recorded: Vec<u32> = started.iter().flat_map(|(_, _, p)| p.clone()).collect();
        let alive = || {
            let mut pids: Vec<u32> = recorded
                .iter()
                .copied()
                .chain(self.our_processes())
                .collect();
            pids.sort_unstable();
            pids.dedup();
            pids.retain(|&p| p > 1 && process_alive(p));
            pids
        };
        wait_until(SETTLE_TIMEOUT, || {
            alive().iter().map(u32::to_string).collect()
        });
        for pid in alive() {
            eprintln!("cleanup: killing leftover pid {pid}");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for (id, sandbox, _) in &started {
            if let Some(sb) = sandbox.as_ref().filter(|p| p.exists()) {
                eprintln!("cleanup: removing netns mount {}", sb.display());
                let _ = nix::mount::umount2(sb, nix::mount::MntFlags::MNT_DETACH);
                let _ = fs::remove_file(sb);
            }
            // Only full ids name runc state and cgroups (names are not ids).
            if id.len() == 64 {
                let _ = fs::remove_dir_all(Path::new(RUNC_STATE_DIR).join(id));
                for cg in container_cgroups(id) {
                    let _ = fs::remove_dir(cg);
                }
            }
        }
        for entry in self.our_cache_entries() {
            let _ = fs::remove_file(Path::new(CNI_RESULTS_DIR).join(entry));
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: removing {}: {e}", self.dir.display());
        }
    }
}

/// Polls `f` (every 100 ms, at most `timeout`) until it returns an empty list;
/// returns the last list.
fn wait_until(timeout: Duration, f: impl Fn() -> Vec<String>) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = f();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn list_dir(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Running or sleeping; a zombie has exited (its reaper is not us).
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the last ')' (the command name may contain one).
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

/// cgroupfs-manager cgroups of a container: `libpod_parent/libpod-<id>` under
/// each v1 hierarchy, or under the v2 root.
fn container_cgroups(id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let leaf = Path::new("libpod_parent").join(format!("libpod-{id}"));
    std::iter::once(root.to_path_buf())
        .chain(list_dir(root).into_iter().map(|h| root.join(h)))
        .map(|h| h.join(&leaf))
        .filter(|p| p.is_dir())
        .collect()
}
