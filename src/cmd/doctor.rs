//! `macvnet doctor`: can macvlan/macvtap work on this machine?
//!
//! Every check is read-only unless `--probe` is given; the probe works only inside a
//! namespace it creates (mvt-doctor-<pid>) and deletes it again.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use macvnet_netlink as nl;

use crate::{CmdResult, Global};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also prove it live: create a temporary namespace with a veth pair, a macvlan and a
    /// macvtap inside it, then remove everything.
    #[arg(long)]
    pub probe: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Missing,
}

/// One line of the report (also the JSON object).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
    pub hint: String,
    /// macvlan cannot work when this check is not ok.
    #[serde(skip)]
    pub fatal: bool,
}

impl Check {
    fn new(
        check: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Check {
            check: check.into(),
            status,
            detail: detail.into(),
            hint: hint.into(),
            fatal: false,
        }
    }
    fn fatal_if_not_ok(mut self) -> Self {
        self.fatal = self.status != Status::Ok;
        self
    }
}

pub fn run(args: Args, global: &Global) -> CmdResult {
    let mut checks = Vec::new();
    let release = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
    let kconf = KernelConfig::load(&release);
    let (st, hint) = match kconf.source {
        Some(_) => (Status::Ok, ""),
        None => (
            Status::Warn,
            "kernel features below are inferred from /sys/module and /lib/modules only",
        ),
    };
    checks.push(Check::new(
        "kernel",
        st,
        format!("Linux {release}, config from {}", kconf.source_label()),
        hint,
    ));
    for feat in FEATURES {
        let mut c = check_feature(feat, &kconf);
        c.fatal = feat.name == "macvlan" && c.status == Status::Missing;
        checks.push(c);
    }
    checks.push(check_tun());
    checks.push(check_vhost(&kconf));
    checks.push(check_netns_dir());
    let caps = read_cap_eff();
    checks.push(
        check_cap(
            caps,
            12,
            "CAP_NET_ADMIN",
            "needed to create and change links; run as root",
        )
        .fatal_if_not_ok(),
    );
    checks.push(check_cap(
        caps,
        21,
        "CAP_SYS_ADMIN",
        "needed for named namespaces (mount, setns); run as root for `netns` and `lab`",
    ));
    checks.push(check_cni_bin("/opt/cni/bin"));
    checks.push(check_cni_bin("/usr/lib/cni"));
    checks.push(check_cni_conf("/etc/cni/net.d"));
    if args.probe {
        checks.extend(probe());
    }

    if global.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print_text(&checks);
    }
    let broken: Vec<&str> = checks
        .iter()
        .filter(|c| c.fatal)
        .map(|c| c.check.as_str())
        .collect();
    if broken.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        if !global.json {
            println!("macvlan cannot work here: {}", broken.join(", "));
        }
        Ok(ExitCode::FAILURE)
    }
}

fn print_text(checks: &[Check]) {
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    for c in checks {
        let marker = match (c.status, c.fatal) {
            (Status::Ok, _) => "[ ok ]",
            (Status::Warn, false) => "[warn]",
            (Status::Missing, false) => "[miss]",
            (_, true) => "[FAIL]",
        };
        println!("{marker} {:<width$}  {}", c.check, c.detail);
        if c.status != Status::Ok && !c.hint.is_empty() {
            println!("       {:<width$}  hint: {}", "", c.hint);
        }
    }
    if checks.iter().all(|c| !c.fatal) {
        println!("macvlan can work here.");
    }
}

// ---- kernel features ----

struct Feature {
    name: &'static str,
    config: &'static str,
    module: &'static str,
    /// Why it matters, shown when it is missing.
    why: &'static str,
}

const FEATURES: &[Feature] = &[
    Feature {
        name: "macvlan",
        config: "CONFIG_MACVLAN",
        module: "macvlan",
        why: "macvlan links cannot be created: use a kernel built with CONFIG_MACVLAN=y or =m",
    },
    Feature {
        name: "macvtap",
        config: "CONFIG_MACVTAP",
        module: "macvtap",
        why: "no macvtap (/dev/tapN) for VMs: needs CONFIG_MACVTAP",
    },
    Feature {
        name: "veth",
        config: "CONFIG_VETH",
        module: "veth",
        why: "no veth pairs: `lab` and the tests use them as uplinks (CONFIG_VETH)",
    },
    Feature {
        name: "tun",
        config: "CONFIG_TUN",
        module: "tun",
        why: "no tun/tap devices (/dev/net/tun) for VMs (CONFIG_TUN)",
    },
    Feature {
        name: "bridge",
        config: "CONFIG_BRIDGE",
        module: "bridge",
        why: "no Linux bridge: the vepa hairpin lab needs one (CONFIG_BRIDGE)",
    },
    Feature {
        name: "8021q",
        config: "CONFIG_VLAN_8021Q",
        module: "8021q",
        why: "no VLAN sub-interfaces to put macvlans on (CONFIG_VLAN_8021Q); untagged parents still work",
    },
    Feature {
        name: "ipvlan",
        config: "CONFIG_IPVLAN",
        module: "ipvlan",
        why: "no ipvlan, the alternative when a switch allows one MAC per port (CONFIG_IPVLAN)",
    },
    Feature {
        name: "dummy",
        config: "CONFIG_DUMMY",
        module: "dummy",
        why: "no dummy links as stand-in parents; use a veth pair instead (CONFIG_DUMMY)",
    },
];

/// The kernel's build configuration, from the first source that has one.
struct KernelConfig {
    release: String,
    /// CONFIG_X -> "y" / "m" / "n" (not set).
    values: HashMap<String, String>,
    source: Option<String>,
    /// /lib/modules/<release> exists (modules can be loaded at all).
    modules_dir: Option<PathBuf>,
    /// Paths listed in modules.builtin, reduced to module names.
    builtin: Vec<String>,
    /// Module names in modules.dep (loadable).
    loadable: Vec<String>,
}

impl KernelConfig {
    fn load(release: &str) -> Self {
        let mut kc = KernelConfig {
            release: release.to_string(),
            values: HashMap::new(),
            source: None,
            modules_dir: None,
            builtin: Vec::new(),
            loadable: Vec::new(),
        };
        if let Some(text) = read_gz("/proc/config.gz") {
            kc.values = parse_kconfig(&text);
            kc.source = Some("/proc/config.gz".into());
        } else {
            let boot = format!("/boot/config-{release}");
            if let Ok(text) = std::fs::read_to_string(&boot) {
                kc.values = parse_kconfig(&text);
                kc.source = Some(boot);
            }
        }
        let dir = PathBuf::from(format!("/lib/modules/{release}"));
        if dir.is_dir() {
            kc.builtin = read_module_list(&dir.join("modules.builtin"));
            kc.loadable = read_module_list(&dir.join("modules.dep"));
            kc.modules_dir = Some(dir);
        }
        kc
    }

    fn source_label(&self) -> String {
        match &self.source {
            Some(s) => s.clone(),
            None => "none found (no /proc/config.gz or /boot/config-*)".into(),
        }
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_gz(path: &str) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// `CONFIG_X=y|m|...` and `# CONFIG_X is not set` lines.
fn parse_kconfig(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(key) = rest.strip_suffix(" is not set") {
                out.insert(key.to_string(), "n".to_string());
            }
        } else if let Some((k, v)) = line.split_once('=') {
            if k.starts_with("CONFIG_") {
                out.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    out
}

/// Module names from modules.builtin / modules.dep (`kernel/drivers/net/macvlan.ko[.xz]: deps`).
fn read_module_list(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| module_name(l.split(':').next().unwrap_or("")))
        .collect()
}

fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.split(".ko").next()?;
    // The kernel treats '-' and '_' in module names alike.
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

#[derive(Debug, PartialEq, Eq)]
enum Support {
    BuiltIn(String),
    /// Module: loaded now?, and where we know that from.
    Module {
        loaded: bool,
        loadable: bool,
        evidence: String,
    },
    Absent(String),
    Unknown,
}

fn feature_support(f: &Feature, kc: &KernelConfig) -> Support {
    let module = f.module.replace('-', "_");
    let sys = Path::new("/sys/module").join(&module);
    // A loaded module has /sys/module/<m>/initstate; built-in code may have /sys/module/<m> without it.
    let loaded = sys.join("initstate").exists();
    let in_sys = sys.exists();
    let loadable =
        kc.loadable.contains(&module) || (kc.modules_dir.is_some() && modinfo_finds(f.module));
    if let (Some(v), Some(src)) = (kc.value(f.config), kc.source.as_deref()) {
        let evidence = if v == "n" {
            format!("{} is not set in {src}", f.config)
        } else {
            format!("{}={v} in {src}", f.config)
        };
        return match v {
            "y" => Support::BuiltIn(evidence),
            "m" => Support::Module {
                loaded,
                loadable,
                evidence,
            },
            _ if loaded => Support::Module {
                loaded,
                loadable,
                evidence: format!("/sys/module/{module}/initstate"),
            },
            _ => Support::Absent(evidence),
        };
    }
    if kc.source.is_some() && !in_sys && !kc.builtin.contains(&module) && !loadable {
        // A config that does not mention the symbol at all: the option did not exist or was off.
        return Support::Absent(format!("{} not in {}", f.config, kc.source_label()));
    }
    if kc.builtin.contains(&module) {
        return Support::BuiltIn(format!("{module} in modules.builtin"));
    }
    if loaded {
        return Support::Module {
            loaded,
            loadable,
            evidence: format!("/sys/module/{module}/initstate"),
        };
    }
    if in_sys {
        return Support::BuiltIn(format!("/sys/module/{module} without initstate"));
    }
    if loadable {
        return Support::Module {
            loaded,
            loadable,
            evidence: "modules.dep / modinfo".into(),
        };
    }
    if kc.modules_dir.is_some() {
        return Support::Absent(format!(
            "not built in, not loaded and not in /lib/modules/{}",
            kc.release
        ));
    }
    Support::Unknown
}

fn modinfo_finds(module: &str) -> bool {
    std::process::Command::new("modinfo")
        .args(["-F", "filename", module])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn check_feature(f: &Feature, kc: &KernelConfig) -> Check {
    let name = format!("kernel:{}", f.name);
    match feature_support(f, kc) {
        Support::BuiltIn(ev) => Check::new(name, Status::Ok, format!("built in ({ev})"), ""),
        Support::Module {
            loaded: true,
            evidence,
            ..
        } => Check::new(name, Status::Ok, format!("module, loaded ({evidence})"), ""),
        Support::Module {
            loaded: false,
            loadable: true,
            evidence,
        } => Check::new(
            name,
            Status::Ok,
            format!("module, loadable ({evidence}); the kernel loads it on first use"),
            "",
        ),
        Support::Module {
            loaded: false,
            loadable: false,
            evidence,
        } => Check::new(
            name,
            Status::Warn,
            format!(
                "module, but not loaded and no module file found for {} ({evidence})",
                kc.release
            ),
            format!(
                "install the kernel modules package for {} or `modprobe {}`",
                kc.release, f.module
            ),
        ),
        Support::Absent(ev) => Check::new(name, Status::Missing, format!("absent ({ev})"), f.why),
        Support::Unknown => Check::new(
            name,
            Status::Warn,
            "unknown: no kernel config, no /sys/module entry, no modules directory",
            "try `macvnet doctor --probe` to test it live",
        ),
    }
}

// ---- devices, namespaces, privileges ----

fn char_device(path: &str) -> Option<bool> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.file_type().is_char_device())
}

fn check_tun() -> Check {
    let name = "dev:/dev/net/tun";
    match char_device("/dev/net/tun") {
        Some(true) => Check::new(name, Status::Ok, "character device present", ""),
        Some(false) => Check::new(name, Status::Warn, "exists but is not a character device", "recreate it: mknod /dev/net/tun c 10 200"),
        None => Check::new(
            name,
            Status::Warn,
            "absent: tap devices for VMs cannot be opened",
            "load tun (`modprobe tun`) or create it: mkdir -p /dev/net && mknod /dev/net/tun c 10 200",
        ),
    }
}

fn check_vhost(kc: &KernelConfig) -> Check {
    let name = "dev:/dev/vhost-net";
    let conf = kc
        .value("CONFIG_VHOST_NET")
        .map(|v| match v {
            "n" => ", CONFIG_VHOST_NET not set".to_string(),
            _ => format!(", CONFIG_VHOST_NET={v}"),
        })
        .unwrap_or_default();
    match char_device("/dev/vhost-net") {
        Some(true) => Check::new(
            name,
            Status::Ok,
            format!("character device present{conf}"),
            "",
        ),
        _ => Check::new(
            name,
            Status::Warn,
            format!("absent{conf}: VMs on macvtap fall back to slow userspace virtio-net"),
            "needed for fast VM networking: `modprobe vhost_net` or a kernel with CONFIG_VHOST_NET",
        ),
    }
}

/// Whether `dir` is a mount point and its propagation, from /proc/self/mountinfo.
fn mount_propagation(mountinfo: &str, dir: &str) -> Option<bool> {
    // Fields: id parent maj:min root mountpoint options [optional fields...] - fstype source opts
    let mut found = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.get(4) == Some(&dir) {
            let optional = fields.iter().skip(6).take_while(|f| **f != "-");
            // The last mount on a path wins (it hides earlier ones).
            found = Some(optional.clone().any(|f| f.starts_with("shared:")));
        }
    }
    found
}

fn check_netns_dir() -> Check {
    let name = "netns:/run/netns";
    let dir = nl::netns::NETNS_RUN_DIR;
    if !Path::new(dir).is_dir() {
        return Check::new(
            name,
            Status::Ok,
            "not created yet; made on the first `macvnet netns add` or `ip netns add`",
            "",
        );
    }
    let count = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match mount_propagation(&info, dir) {
        Some(true) => Check::new(name, Status::Ok, format!("shared mount point, {count} named namespace(s)"), ""),
        Some(false) => Check::new(
            name,
            Status::Warn,
            format!("mount point but not shared, {count} named namespace(s): namespaces added later may not be seen by other mount namespaces"),
            "mount --make-rshared /run/netns",
        ),
        None => Check::new(
            name,
            Status::Ok,
            format!("directory, not a mount point yet, {count} entries; `netns add` makes it a shared mount"),
            "",
        ),
    }
}

fn read_cap_eff() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

fn check_cap(caps: Option<u64>, bit: u32, cap: &str, hint: &str) -> Check {
    let name = format!("cap:{cap}");
    match caps {
        Some(c) if c & (1u64 << bit) != 0 => Check::new(name, Status::Ok, "effective", ""),
        Some(_) => Check::new(name, Status::Missing, "not in the effective set", hint),
        None => Check::new(
            name,
            Status::Warn,
            "could not read CapEff from /proc/self/status",
            hint,
        ),
    }
}

// ---- CNI ----

const CNI_PLUGINS: &[&str] = &[
    "macvlan",
    "macvtap",
    "ipvlan",
    "host-local",
    "static",
    "dhcp",
    "bridge",
    "tuning",
];

fn check_cni_bin(dir: &str) -> Check {
    let name = format!("cni:{dir}");
    if !Path::new(dir).is_dir() {
        return Check::new(
            name,
            Status::Warn,
            "absent",
            "only needed for container runtimes: install CNI plugins (containernetworking-plugins or macvnet's) here",
        );
    }
    let found: Vec<&str> = CNI_PLUGINS
        .iter()
        .copied()
        .filter(|p| Path::new(dir).join(p).is_file())
        .collect();
    if found.contains(&"macvlan") {
        Check::new(
            name,
            Status::Ok,
            format!("plugins: {}", found.join(", ")),
            "",
        )
    } else {
        let list = if found.is_empty() {
            "none of ours".to_string()
        } else {
            found.join(", ")
        };
        Check::new(
            name,
            Status::Warn,
            format!("present, no macvlan plugin (found: {list})"),
            "install a macvlan CNI plugin here",
        )
    }
}

fn check_cni_conf(dir: &str) -> Check {
    let name = format!("cni:{dir}");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Check::new(
            name,
            Status::Warn,
            "absent",
            "only needed for container runtimes: network configs live here",
        );
    };
    let mut total = 0;
    let mut macvlan = 0;
    for e in rd.flatten() {
        let p = e.path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "conf" | "conflist" | "json") {
            continue;
        }
        total += 1;
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if text.contains("\"macvlan\"") || text.contains("\"macvtap\"") {
            macvlan += 1;
        }
    }
    Check::new(
        name,
        Status::Ok,
        format!("{total} network config(s), {macvlan} using macvlan/macvtap"),
        "",
    )
}

// ---- live probe ----

/// Deletes the probe namespace (and with it every link inside) on drop.
struct ProbeNs(String);

impl Drop for ProbeNs {
    fn drop(&mut self) {
        if let Err(e) = nl::netns::del(&self.0, true) {
            eprintln!("macvnet doctor: removing probe namespace {}: {e}", self.0);
        }
    }
}

fn probe() -> Vec<Check> {
    let ns_name = format!("mvt-doctor-{}", std::process::id());
    let ns = match nl::netns::add(&ns_name) {
        Ok(ns) => ns,
        Err(e) => {
            return vec![Check::new(
                "probe:netns",
                Status::Warn,
                format!("could not create namespace {ns_name}: {e}"),
                "the probe needs root (CAP_SYS_ADMIN) and a writable /run/netns",
            )]
        }
    };
    let _guard = ProbeNs(ns_name.clone());
    let mut out = Vec::new();
    let setup = (|| -> nl::Result<(nl::Handle, u32)> {
        let mut h = nl::Handle::open(&ns)?;
        h.add_veth("mvt-up0", "mvt-up1", None)?;
        let parent = h.link_by_name("mvt-up0")?;
        h.set_link(
            parent.index,
            &nl::LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )?;
        Ok((h, parent.index))
    })();
    let (mut h, parent) = match setup {
        Ok(v) => v,
        Err(e) => {
            out.push(Check::new(
                "probe:veth",
                Status::Warn,
                format!("could not build a veth parent in {ns_name}: {e}"),
                "the probe needs veth (CONFIG_VETH)",
            ));
            return out;
        }
    };
    for tap in [false, true] {
        let (what, link) = if tap {
            ("macvtap", "mvt-tap0")
        } else {
            ("macvlan", "mvt-mv0")
        };
        let spec = nl::MacvlanSpec {
            name: link.into(),
            parent,
            tap,
            mode: Some(nl::Mode::Bridge),
            up: true,
            ..Default::default()
        };
        let result = h.add_macvlan(&spec).and_then(|()| h.link_by_name(link));
        let check = match result {
            Ok(info) => {
                let mut detail =
                    format!("created {link} ({what}, bridge mode) on a veth in {ns_name}");
                if let Some(dev) = info.tap_device() {
                    if char_device(&dev) == Some(true) {
                        detail.push_str(&format!(", {dev} present"));
                    } else {
                        detail.push_str(&format!(", {dev} not visible here"));
                    }
                }
                if let Err(e) = h.del_link(info.index) {
                    detail.push_str(&format!("; delete failed: {e}"));
                }
                Check::new(format!("probe:{what}"), Status::Ok, detail, "")
            }
            Err(e) => {
                let mut c = Check::new(
                    format!("probe:{what}"),
                    Status::Missing,
                    format!("creating {link} failed: {e}"),
                    format!("see kernel:{what} above"),
                );
                c.fatal = !tap;
                c
            }
        };
        out.push(check);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kconfig_lines() {
        let m = parse_kconfig("CONFIG_MACVLAN=y\nCONFIG_TUN=m\n# CONFIG_DUMMY is not set\n#comment\nCONFIG_X=\"str\"\n");
        assert_eq!(m.get("CONFIG_MACVLAN").map(String::as_str), Some("y"));
        assert_eq!(m.get("CONFIG_TUN").map(String::as_str), Some("m"));
        assert_eq!(m.get("CONFIG_DUMMY").map(String::as_str), Some("n"));
        assert_eq!(m.get("CONFIG_X").map(String::as_str), Some("str"));
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn module_names() {
        assert_eq!(
            module_name("kernel/drivers/net/macvlan.ko").as_deref(),
            Some("macvlan")
        );
        assert_eq!(
            module_name("kernel/net/8021q/8021q.ko.xz").as_deref(),
            Some("8021q")
        );
        assert_eq!(
            module_name("kernel/drivers/vhost/vhost-net.ko.zst").as_deref(),
            Some("vhost_net")
        );
        assert_eq!(module_name(""), None);
    }

    #[test]
    fn cap_eff() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let c = parse_cap_eff(s).unwrap();
        assert!(c & (1 << 12) != 0 && c & (1 << 21) != 0);
        assert_eq!(parse_cap_eff("CapEff:\t0000000000001000\n"), Some(1 << 12));
        assert_eq!(parse_cap_eff("nothing"), None);
        assert_eq!(
            check_cap(Some(0), 12, "CAP_NET_ADMIN", "h").status,
            Status::Missing
        );
        assert_eq!(
            check_cap(Some(1 << 12), 12, "CAP_NET_ADMIN", "h").status,
            Status::Ok
        );
    }

    #[test]
    fn mountinfo_propagation() {
        let mi = "22 1 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw\n\
                  30 22 0:21 /netns /run/netns rw shared:7 - tmpfs tmpfs rw\n";
        assert_eq!(mount_propagation(mi, "/run/netns"), Some(true));
        let private = "30 22 0:21 /netns /run/netns rw - tmpfs tmpfs rw\n";
        assert_eq!(mount_propagation(private, "/run/netns"), Some(false));
        assert_eq!(mount_propagation(mi, "/nope"), None);
    }

    #[test]
    fn absent_when_config_says_not_set() {
        let kc = KernelConfig {
            release: "x".into(),
            values: parse_kconfig("# CONFIG_IPVLAN is not set\nCONFIG_MACVLAN=y\n"),
            source: Some("test".into()),
            modules_dir: None,
            builtin: vec![],
            loadable: vec![],
        };
        // A module name that is never loaded, so /sys/module cannot contradict the config.
        let ipvlan = Feature {
            name: "ipvlan",
            config: "CONFIG_IPVLAN",
            module: "mvt_no_such_mod",
            why: "",
        };
        assert_eq!(check_feature(&ipvlan, &kc).status, Status::Missing);
        let macvlan = FEATURES.iter().find(|f| f.name == "macvlan").unwrap();
        assert_eq!(check_feature(macvlan, &kc).status, Status::Ok);
    }
}
