//! `macvnet bench cni`: our CNI plugins and a reference plugin directory side by side.
//!
//! Each implementation gets its own host namespace (parent `eth0`, a veth whose peer sits in a
//! lan namespace) and its own host-local dataDir in a temp dir; containers are namespaces from
//! a shared pool, ours attaching `net0` and the reference `net1`. Runs alternate: every
//! iteration runs both, the order flipping each time (latency rounds: both ADDs, 100 ms, both
//! DELs, as bench/cni-compare.sh does). A plugin is reaped with wait4, which
//! gives its peak RSS (children it waited for, e.g. host-local, included).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use macvnet_netlink as nl;

use super::{check, link_up, quantile, BenchNs};

/// A plugin taking longer than this is killed and counted as failed.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
const WARMUP: usize = 3;
/// Between the ADDs and the DELs of one latency round.
const DEL_PAUSE: Duration = Duration::from_millis(100);
const SUBNET: &str = "198.18.0.0/16";

#[derive(Debug, Clone)]
pub struct Options {
    pub ours: PathBuf,
    pub reference: PathBuf,
    pub plugin: String,
    pub n: usize,
    pub parallel: Vec<usize>,
    pub attachments: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ipam {
    HostLocal,
    L2Only,
}

impl Ipam {
    fn name(self) -> &'static str {
        match self {
            Ipam::HostLocal => "host-local",
            Ipam::L2Only => "l2-only",
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Pcts {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub samples: usize,
}

impl Pcts {
    fn of(v: &[f64]) -> Pcts {
        Pcts {
            p50_ms: quantile(v, 0.5),
            p90_ms: quantile(v, 0.9),
            p99_ms: quantile(v, 0.99),
            samples: v.len(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub ipam: Ipam,
    pub add: Pcts,
    pub del: Pcts,
    /// Largest ru_maxrss of these runs (ADD and DEL).
    pub peak_rss_kib: i64,
    /// Median ru_maxrss of these runs: a run's peak, typically.
    pub rss_p50_kib: i64,
    #[serde(skip)]
    pub rss_samples: Vec<f64>,
    /// Raw samples (ms), for plots.
    #[serde(skip)]
    pub add_samples: Vec<f64>,
    #[serde(skip)]
    pub del_samples: Vec<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    pub workers: usize,
    pub ops: usize,
    pub add_per_s: f64,
    pub del_per_s: f64,
    pub failures: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Side {
    pub name: String,
    pub dir: String,
    pub latency: Vec<Latency>,
    /// Largest `ru_maxrss` seen: counts the copy of this bench that fork made before exec.
    pub peak_rss_kib: i64,
    /// The plugin's own peak: the largest VmHWM of its image at exit (ptrace), over
    /// [`OWN_RSS_ROUNDS`] ADDs and DELs with each IPAM. Free of the fork's copy that floors
    /// `ru_maxrss`, and a worst case rather than a median.
    pub own_peak_rss_kib: i64,
    pub throughput: Vec<Throughput>,
    /// ADD p50 (ms) of each tenth of the attachments, in order (host-local).
    pub decile_add_p50_ms: Vec<f64>,
    pub decile_flatness: f64,
    /// The same for host-local run alone (no link): the IPAM's own growth with the store.
    pub ipam_decile_add_p50_ms: Vec<f64>,
    pub ipam_decile_flatness: f64,
    pub attachments: usize,
    pub teardown_del_p50_ms: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Target {
    pub what: String,
    pub value: f64,
    pub target: String,
    pub met: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub machine: super::Machine,
    pub plugin: String,
    pub n: usize,
    pub warmup: usize,
    /// /bin/true started the same way: the process-start floor.
    pub floor_p50_ms: f64,
    pub floor_rss_kib: i64,
    pub ours: Side,
    pub reference: Side,
    pub targets: Vec<Target>,
}

struct Impl {
    name: &'static str,
    dir: PathBuf,
    data: PathBuf,
    ifname: &'static str,
    host: BenchNs,
    _lan: BenchNs,
}

/// Removes the temp dir (host-local dataDirs) on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Sample {
    ms: f64,
    rss_kib: i64,
    ok: bool,
    stdout: String,
}

fn pidfd_open(pid: libc::pid_t) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `macvnet-bench-spawn` next to this program, when there: plugins are started through it so
/// that their `ru_maxrss` is not floored by the copy fork makes of this bench (see that
/// program's doc). Without it they are started directly.
static SPAWNER: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

fn spawner() -> Option<&'static Path> {
    SPAWNER
        .get_or_init(|| {
            let p = std::env::current_exe()
                .ok()?
                .with_file_name("macvnet-bench-spawn");
            p.is_file().then_some(p)
        })
        .as_deref()
}

/// How a program is started.
#[derive(Clone, Copy)]
enum Start {
    /// Through the spawner when there, for its figures.
    Spawned,
    /// By this process: under ptrace, or where the spawner's own start would count.
    Direct,
}

/// A command for `program` in `netns` with a clean environment (`env` added), and the
/// report file the spawner will write (None when started directly).
fn spawn_command(
    netns: &nl::netns::NetnsRef,
    program: &Path,
    env: &[(&str, &std::ffi::OsStr)],
    start: Start,
) -> anyhow::Result<(std::process::Command, Option<PathBuf>)> {
    static REPORTS: AtomicUsize = AtomicUsize::new(0);
    let spawner = match start {
        Start::Spawned => spawner(),
        Start::Direct => None,
    };
    let (mut cmd, report) = match spawner {
        Some(sp) => {
            let report = std::env::temp_dir().join(format!(
                "mvbench-{}-report-{}",
                std::process::id(),
                REPORTS.fetch_add(1, Ordering::Relaxed)
            ));
            let mut cmd = std::process::Command::new(sp);
            cmd.arg(&report).arg(netns.path()).arg(program);
            (cmd, Some(report))
        }
        None => (
            nl::netns::command_in(netns, &program.display().to_string())
                .map_err(|e| anyhow!("{e}"))?,
            None,
        ),
    };
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied());
    Ok((cmd, report))
}

/// Spawn `cmd`, feed `stdin`, reap with wait4 (bounded by a pidfd poll): wall time, peak RSS.
/// With a spawner `report`, both are the spawner's figures for the program it started.
fn measure(
    (mut cmd, report): (std::process::Command, Option<PathBuf>),
    stdin: &[u8],
) -> anyhow::Result<Sample> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting the plugin")?;
    if let Some(mut i) = child.stdin.take() {
        // A plugin may exit without reading stdin (EPIPE); its exit status tells.
        let _ = i.write_all(stdin);
    }
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    let pidfd = pidfd_open(pid).context("pidfd_open")?;
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = start + PLUGIN_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r > 0 {
            break;
        }
        if r == 0 || left.is_zero() {
            // Still our unreaped child: the pid cannot have been reused.
            let _ = child.kill();
            break;
        }
        // EINTR (Ctrl-C): keep waiting for the plugin, which got the signal too.
    }
    let mut status = 0;
    // SAFETY: rusage is plain data, zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; the pointers are valid for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let took = start.elapsed();
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let mut stdout = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let (mut ms, mut rss_kib) = (took.as_secs_f64() * 1000.0, ru.ru_maxrss);
    if let Some(report) = report {
        let text = std::fs::read_to_string(&report).unwrap_or_default();
        let _ = std::fs::remove_file(&report);
        let mut f = text.split_whitespace().map(str::parse::<i64>);
        match (f.next(), f.next()) {
            (Some(Ok(us)), Some(Ok(kib))) => {
                ms = us as f64 / 1000.0;
                rss_kib = kib;
            }
            _ => bail!("macvnet-bench-spawn wrote no report (status {status})"),
        }
    }
    Ok(Sample {
        ms,
        rss_kib,
        ok,
        stdout,
    })
}

/// Network name of the host-local-alone phase (its own store under the side's dataDir).
const IPAM_ALONE_NET: &str = "mvbench-ipam";

fn conf(imp: &Impl, ipam: Ipam, plugin: &str) -> Vec<u8> {
    let ipam = match ipam {
        Ipam::HostLocal => serde_json::json!({
            "type": "host-local", "dataDir": imp.data, "ranges": [[{"subnet": SUBNET}]]
        }),
        Ipam::L2Only => serde_json::json!({}),
    };
    serde_json::to_vec(&serde_json::json!({
        "cniVersion": "1.0.0", "name": "mvbench", "type": plugin, "master": "eth0", "mode": "bridge",
        "ipam": ipam
    }))
    .unwrap_or_default()
}

fn run_plugin(
    imp: &Impl,
    plugin: &str,
    command: &str,
    id: &str,
    netns: &Path,
    conf: &[u8],
) -> anyhow::Result<Sample> {
    measure(
        plugin_command(imp, plugin, command, id, netns, Start::Spawned)?,
        conf,
    )
}

/// The CNI environment of one call.
fn cni_env<'a>(
    imp: &'a Impl,
    command: &'a str,
    id: &'a str,
    netns: &'a Path,
) -> [(&'static str, &'a std::ffi::OsStr); 5] {
    [
        ("CNI_COMMAND", command.as_ref()),
        ("CNI_CONTAINERID", id.as_ref()),
        ("CNI_NETNS", netns.as_os_str()),
        ("CNI_IFNAME", imp.ifname.as_ref()),
        ("CNI_PATH", imp.dir.as_os_str()),
    ]
}

/// The plugin of `imp`, to be started in its host namespace with the CNI environment.
fn plugin_command(
    imp: &Impl,
    plugin: &str,
    command: &str,
    id: &str,
    netns: &Path,
    start: Start,
) -> anyhow::Result<(std::process::Command, Option<PathBuf>)> {
    let env = cni_env(imp, command, id, netns);
    spawn_command(&imp.host.ns, &imp.dir.join(plugin), &env, start)
}

/// Untimed rounds per IPAM mode for [`own_peak_rss`].
pub const OWN_RSS_ROUNDS: usize = 5;

/// Run `cmd` traced and return the peak RSS of the program itself (VmHWM, KiB, read when it
/// stops at exit) and whether it succeeded. `ru_maxrss` cannot tell this: it also counts the
/// pages the fork copied from this (much larger) bench process before exec. Only the
/// plugin's own process is counted, not children it runs (the reference's host-local,
/// another Go process of the same size).
fn own_peak_rss(mut cmd: std::process::Command, stdin: &[u8]) -> anyhow::Result<(i64, bool)> {
    use nix::sys::ptrace;
    use nix::sys::signal::Signal;
    use nix::sys::wait::{waitpid, WaitStatus};
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; PTRACE_TRACEME is one system call
    // that allocates nothing.
    unsafe {
        cmd.pre_exec(|| ptrace::traceme().map_err(std::io::Error::from));
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().context("starting the plugin")?;
    let raw = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    let pid = nix::unistd::Pid::from_raw(raw);
    // A watchdog bounds every wait below: it kills through a pidfd, never a reusable pid.
    let pidfd = pidfd_open(raw).context("pidfd_open")?;
    let (done, timeout) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if timeout.recv_timeout(PLUGIN_TIMEOUT).is_err() {
            // SAFETY: signals the process the pidfd refers to; no pointers are passed.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    0,
                    0,
                );
            }
        }
    });
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin);
    }
    let mut hwm = 0;
    let mut execed = false;
    let ok = loop {
        match waitpid(pid, None).context("waitpid")? {
            // The stop after exec: from now on, stop once more at exit.
            WaitStatus::Stopped(_, Signal::SIGTRAP) if !execed => {
                let _ = ptrace::setoptions(
                    pid,
                    ptrace::Options::PTRACE_O_TRACEEXIT | ptrace::Options::PTRACE_O_EXITKILL,
                );
                let _ = ptrace::cont(pid, None);
                execed = true;
            }
            WaitStatus::PtraceEvent(_, _, ev) if ev == libc::PTRACE_EVENT_EXIT => {
                hwm = vm_hwm_kib(raw).unwrap_or(0);
                let _ = ptrace::cont(pid, None);
            }
            WaitStatus::Stopped(_, sig) => {
                let _ = ptrace::cont(pid, Some(sig));
            }
            WaitStatus::Exited(_, code) => break execed && code == 0,
            WaitStatus::Signaled(..) => break false,
            _ => {}
        }
    };
    let _ = done.send(());
    let _ = watchdog.join();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut String::new());
    }
    Ok((hwm, ok))
}

/// VmHWM of a live process, KiB.
fn vm_hwm_kib(pid: libc::pid_t) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn must(imp: &Impl, what: &str, s: Sample) -> anyhow::Result<Sample> {
    // Ctrl-C reaches the plugin too; say why it failed.
    check()?;
    if !s.ok {
        bail!("{} {what} failed: {}", imp.name, s.stdout.trim());
    }
    Ok(s)
}

fn side(name: &str, dir: &Path) -> Side {
    Side {
        name: name.into(),
        dir: dir.display().to_string(),
        latency: Vec::new(),
        peak_rss_kib: 0,
        own_peak_rss_kib: 0,
        throughput: Vec::new(),
        decile_add_p50_ms: Vec::new(),
        decile_flatness: f64::NAN,
        ipam_decile_add_p50_ms: Vec::new(),
        ipam_decile_flatness: f64::NAN,
        attachments: 0,
        teardown_del_p50_ms: f64::NAN,
    }
}

pub fn run(opts: &Options) -> anyhow::Result<Report> {
    for (what, dir) in [("ours", &opts.ours), ("reference", &opts.reference)] {
        for p in [opts.plugin.as_str(), "host-local"] {
            if !dir.join(p).is_file() {
                bail!("{what}: {} not found (build with `cargo build --release -p macvnet-plugins`, or pass --ours/--reference)", dir.join(p).display());
            }
        }
    }
    if opts.n == 0 {
        bail!("--n must be at least 1");
    }
    if opts.parallel.iter().any(|&p| p == 0 || p > 256) {
        bail!("--parallel values must be 1..=256");
    }
    let tmp = TempDir(std::env::temp_dir().join(format!("{}cni", super::prefix())));
    std::fs::create_dir_all(&tmp.0).with_context(|| format!("creating {}", tmp.0.display()))?;
    let mut imps = Vec::new();
    for (name, dir, ifname) in [
        ("ours", &opts.ours, "net0"),
        ("reference", &opts.reference, "net1"),
    ] {
        let host = BenchNs::new(&format!("{name}-host"))?;
        let lan = BenchNs::new(&format!("{name}-lan"))?;
        let lan_fd = lan.ns.open().map_err(|e| anyhow!("{e}"))?;
        let mut h = host.handle()?;
        h.add_veth("eth0", "up0", Some(std::os::fd::AsFd::as_fd(&lan_fd)))
            .map_err(|e| anyhow!("{e}"))?;
        link_up(&mut h, "eth0")?;
        link_up(&mut lan.handle()?, "up0")?;
        imps.push(Impl {
            name,
            dir: dir.clone(),
            data: tmp.0.join(name),
            ifname,
            host,
            _lan: lan,
        });
    }
    let max_par_ops = opts
        .parallel
        .iter()
        .map(|&p| ops_for(opts.n, p))
        .max()
        .unwrap_or(0);
    let pool_size = opts.attachments.max(max_par_ops).max(1);
    let mut pool: Vec<BenchNs> = Vec::with_capacity(pool_size);
    for i in 0..pool_size {
        check()?;
        pool.push(BenchNs::new(&format!("c{i}"))?);
    }
    let machine = super::Machine::probe();
    let mut ours = side("ours", &opts.ours);
    let mut refr = side("reference", &opts.reference);

    // Floor: /bin/true started the same way (fork, setns, exec, wait4).
    let mut floor = Vec::new();
    let mut floor_rss = 0;
    for _ in 0..opts.n.min(50) {
        let s = measure(
            spawn_command(
                &imps[0].host.ns,
                Path::new("/bin/true"),
                &[],
                Start::Spawned,
            )?,
            b"",
        )?;
        floor.push(s.ms);
        floor_rss = floor_rss.max(s.rss_kib);
    }

    let c0 = pool
        .first()
        .ok_or_else(|| anyhow!("empty namespace pool"))?
        .ns
        .path();
    for ipam in [Ipam::HostLocal, Ipam::L2Only] {
        let mut add = [Vec::new(), Vec::new()];
        let mut del = [Vec::new(), Vec::new()];
        let mut rss = [0i64, 0];
        let mut rss_all: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for i in 0..opts.n + WARMUP {
            check()?;
            let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
            let id = format!("mvbench-lat-{i}");
            for k in order {
                let imp = &imps[k];
                let c = conf(imp, ipam, &opts.plugin);
                let a = must(
                    imp,
                    "ADD",
                    run_plugin(imp, &opts.plugin, "ADD", &id, &c0, &c)?,
                )?;
                rss[k] = rss[k].max(a.rss_kib);
                if i >= WARMUP {
                    rss_all[k].push(a.rss_kib as f64);
                    add[k].push(a.ms);
                }
            }
            // A DEL right after creating a link waits for the kernel to let go of the fresh
            // link (linkwatch, DAD); the pause keeps that out of both DEL figures.
            std::thread::sleep(DEL_PAUSE);
            for k in order {
                let imp = &imps[k];
                let c = conf(imp, ipam, &opts.plugin);
                let d = must(
                    imp,
                    "DEL",
                    run_plugin(imp, &opts.plugin, "DEL", &id, &c0, &c)?,
                )?;
                rss[k] = rss[k].max(d.rss_kib);
                if i >= WARMUP {
                    rss_all[k].push(d.rss_kib as f64);
                    del[k].push(d.ms);
                }
            }
        }
        for (k, s) in [&mut ours, &mut refr].into_iter().enumerate() {
            let (a, d) = (std::mem::take(&mut add[k]), std::mem::take(&mut del[k]));
            s.latency.push(Latency {
                ipam,
                add: Pcts::of(&a),
                del: Pcts::of(&d),
                peak_rss_kib: rss[k],
                rss_p50_kib: quantile(&rss_all[k], 0.5) as i64,
                rss_samples: std::mem::take(&mut rss_all[k]),
                add_samples: a,
                del_samples: d,
            });
            s.peak_rss_kib = s.peak_rss_kib.max(rss[k]);
        }
    }

    // Own peak RSS: a few untimed rounds under ptrace (the stops would skew the timings).
    for ipam in [Ipam::HostLocal, Ipam::L2Only] {
        for i in 0..OWN_RSS_ROUNDS {
            check()?;
            let id = format!("mvbench-rss-{i}");
            for command in ["ADD", "DEL"] {
                for (k, s) in [&mut ours, &mut refr].into_iter().enumerate() {
                    let imp = &imps[k];
                    let c = conf(imp, ipam, &opts.plugin);
                    let (hwm, ok) = own_peak_rss(
                        plugin_command(imp, &opts.plugin, command, &id, &c0, Start::Direct)?.0,
                        &c,
                    )?;
                    if !ok {
                        bail!("{} {command} failed while measuring its RSS", imp.name);
                    }
                    s.own_peak_rss_kib = s.own_peak_rss_kib.max(hwm);
                }
            }
        }
    }

    // Throughput: W workers take containers from a shared counter; all ADDs, then all DELs.
    for (j, &w) in opts.parallel.iter().enumerate() {
        let order = if j % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            check()?;
            let t = throughput(&imps[k], &opts.plugin, &pool, w, ops_for(opts.n, w))?;
            if k == 0 { &mut ours } else { &mut refr }
                .throughput
                .push(t);
        }
    }

    // Attachments: both hold 1..=N at once, alternating; ADD p50 per tenth.
    let n_att = opts.attachments;
    if n_att > 0 {
        let mut adds = [Vec::with_capacity(n_att), Vec::with_capacity(n_att)];
        let mut dels = [Vec::new(), Vec::new()];
        let mut rss = [0i64, 0];
        let mut attached: Vec<usize> = Vec::new();
        let res = (|| -> anyhow::Result<()> {
            for (i, c) in pool.iter().take(n_att).enumerate() {
                check()?;
                let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
                for k in order {
                    let imp = &imps[k];
                    let cf = conf(imp, Ipam::HostLocal, &opts.plugin);
                    let s = must(
                        imp,
                        "ADD",
                        run_plugin(
                            imp,
                            &opts.plugin,
                            "ADD",
                            &format!("mvbench-att-{i}"),
                            &c.ns.path(),
                            &cf,
                        )?,
                    )?;
                    adds[k].push(s.ms);
                    rss[k] = rss[k].max(s.rss_kib);
                }
                attached.push(i);
            }
            Ok(())
        })();
        // Teardown (timed too): DEL in order, even after a failure, so leases are released.
        for &i in &attached {
            if super::interrupted() {
                break;
            }
            for (k, imp) in imps.iter().enumerate() {
                let cf = conf(imp, Ipam::HostLocal, &opts.plugin);
                if let Some(c) = pool.get(i) {
                    let s = run_plugin(
                        imp,
                        &opts.plugin,
                        "DEL",
                        &format!("mvbench-att-{i}"),
                        &c.ns.path(),
                        &cf,
                    )?;
                    dels[k].push(s.ms);
                }
            }
        }
        res?;
        // host-local alone, N attachments held in a store of its own: the IPAM's own
        // flatness, without the kernel's link work (which grows with the siblings).
        let mut ipam_adds = [Vec::with_capacity(n_att), Vec::with_capacity(n_att)];
        let netns = pool.first().map(|c| c.ns.path());
        for i in 0..n_att {
            check()?;
            let Some(netns) = &netns else { break };
            let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
            for k in order {
                let imp = &imps[k];
                let mut cf: serde_json::Value =
                    serde_json::from_slice(&conf(imp, Ipam::HostLocal, "host-local"))?;
                cf["name"] = IPAM_ALONE_NET.into();
                let s = must(
                    imp,
                    "ADD",
                    run_plugin(
                        imp,
                        "host-local",
                        "ADD",
                        &format!("mvbench-ipam-{i}"),
                        netns,
                        &serde_json::to_vec(&cf)?,
                    )?,
                )?;
                ipam_adds[k].push(s.ms);
            }
        }
        for imp in &imps {
            // Bench data in our temp dir, no kernel state: removed, not DELed one by one.
            let _ = std::fs::remove_dir_all(imp.data.join(IPAM_ALONE_NET));
        }
        let flatness = |d: &[f64]| match (d.first(), d.last()) {
            (Some(f), Some(l)) if *f > 0.0 => l / f,
            _ => f64::NAN,
        };
        for (k, s) in [&mut ours, &mut refr].into_iter().enumerate() {
            s.attachments = adds[k].len();
            s.decile_add_p50_ms = deciles(&adds[k]);
            s.decile_flatness = flatness(&s.decile_add_p50_ms);
            s.ipam_decile_add_p50_ms = deciles(&ipam_adds[k]);
            s.ipam_decile_flatness = flatness(&s.ipam_decile_add_p50_ms);
            s.teardown_del_p50_ms = quantile(&dels[k], 0.5);
            s.peak_rss_kib = s.peak_rss_kib.max(rss[k]);
        }
    }
    drop(pool);
    let targets = targets(&ours, &refr);
    Ok(Report {
        machine,
        plugin: opts.plugin.clone(),
        n: opts.n,
        warmup: WARMUP,
        floor_p50_ms: quantile(&floor, 0.5),
        floor_rss_kib: floor_rss,
        ours,
        reference: refr,
        targets,
    })
}

/// Operations per throughput run: at least n, at least 4 per worker, a multiple of workers.
fn ops_for(n: usize, workers: usize) -> usize {
    let w = workers.max(1);
    n.max(4 * w).div_ceil(w) * w
}

fn throughput(
    imp: &Impl,
    plugin: &str,
    pool: &[BenchNs],
    workers: usize,
    ops: usize,
) -> anyhow::Result<Throughput> {
    let cf = conf(imp, Ipam::HostLocal, plugin);
    let paths: Vec<PathBuf> = pool.iter().take(ops).map(|c| c.ns.path()).collect();
    let ops = paths.len();
    let mut rates = [0.0f64; 2];
    let failures = Mutex::new(0usize);
    for (phase, command) in ["ADD", "DEL"].into_iter().enumerate() {
        let next = AtomicUsize::new(0);
        let t0 = Instant::now();
        let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = paths.get(i) else { break };
                    if super::interrupted() {
                        break;
                    }
                    // Started directly: a spawner's own start would count in the wall time.
                    let id = format!("mvbench-par-{i}");
                    let started = plugin_command(imp, plugin, command, &id, p, Start::Direct);
                    match started.and_then(|cmd| measure(cmd, &cf)) {
                        Ok(s) if s.ok => {}
                        Ok(s) => {
                            if let Ok(mut f) = failures.lock() {
                                *f += 1;
                            }
                            if let Ok(mut e) = errors.lock() {
                                e.push(s.stdout);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut v) = errors.lock() {
                                v.push(e.to_string());
                            }
                        }
                    }
                });
            }
        });
        rates[phase] = ops as f64 / t0.elapsed().as_secs_f64();
        let errors = errors.into_inner().unwrap_or_default();
        if let Some(first) = errors.first() {
            tracing::warn!(
                "{} {command} with {workers} workers: {} failed, first: {}",
                imp.name,
                errors.len(),
                first.trim()
            );
        }
    }
    check()?;
    let failures = failures.into_inner().unwrap_or(0);
    Ok(Throughput {
        workers,
        ops,
        add_per_s: rates[0],
        del_per_s: rates[1],
        failures,
    })
}

/// p50 of each tenth of `v` (in order); fewer than 10 samples give one value per sample.
fn deciles(v: &[f64]) -> Vec<f64> {
    if v.is_empty() {
        return Vec::new();
    }
    let parts = v.len().min(10);
    (0..parts)
        .map(|d| {
            let a = d * v.len() / parts;
            let b = (d + 1) * v.len() / parts;
            quantile(v.get(a..b).unwrap_or(&[]), 0.5)
        })
        .collect()
}

fn lat(s: &Side, ipam: Ipam) -> Option<&Latency> {
    s.latency.iter().find(|l| l.ipam == ipam)
}

fn targets(o: &Side, r: &Side) -> Vec<Target> {
    let mut t = Vec::new();
    let mut push = |what: &str, value: f64, target: &str, met: bool| {
        t.push(Target {
            what: what.into(),
            value,
            target: target.into(),
            met: value.is_finite() && met,
        });
    };
    if let (Some(a), Some(b)) = (lat(o, Ipam::HostLocal), lat(r, Ipam::HostLocal)) {
        let x = a.add.p50_ms / b.add.p50_ms;
        push(
            "ADD p50 (host-local), ours/reference",
            x,
            "<= 0.35",
            x <= 0.35,
        );
        let x = a.del.p50_ms / b.del.p50_ms;
        push(
            "DEL p50 (host-local), ours/reference",
            x,
            "<= 1.1",
            x <= 1.1,
        );
    }
    // ru_maxrss of the sequential runs: an upper bound of each plugin's own peak (it is the
    // larger of the plugin and the pages its fork copied: of macvnet-bench-spawn when there,
    // else of this bench, whose copy can exceed our plugin).
    // The median run's peak, like the latency targets use p50; the worst run is printed too.
    let seq_p50 = |s: &Side| {
        let all: Vec<f64> = s
            .latency
            .iter()
            .flat_map(|l| l.rss_samples.iter().copied())
            .collect();
        quantile(&all, 0.5)
    };
    let x = seq_p50(o) / seq_p50(r).max(1.0);
    push(
        "peak RSS p50 (ru_maxrss, sequential runs), ours/reference",
        x,
        "<= 0.333",
        x <= 1.0 / 3.0,
    );
    // The plugin's own peak, worst run: what a node pays per plugin in flight.
    if o.own_peak_rss_kib > 0 && r.own_peak_rss_kib > 0 {
        let x = o.own_peak_rss_kib as f64 / r.own_peak_rss_kib as f64;
        push(
            "peak RSS, own (largest traced VmHWM), ours/reference",
            x,
            "<= 0.333",
            x <= 1.0 / 3.0,
        );
    }
    if o.attachments > 0 && !o.ipam_decile_add_p50_ms.is_empty() {
        let x = o.ipam_decile_flatness;
        push(
            &format!(
                "ours last/first decile ADD p50, host-local alone, at {} attachments",
                o.attachments
            ),
            x,
            "<= 1.5",
            x <= 1.5,
        );
    }
    if o.attachments > 0 {
        let x = o.decile_flatness;
        push(
            &format!(
                "ours last/first decile ADD p50 at {} attachments",
                o.attachments
            ),
            x,
            "<= 1.5",
            x <= 1.5,
        );
    }
    let top = |s: &Side| s.throughput.iter().max_by_key(|t| t.workers).cloned();
    if let (Some(a), Some(b)) = (top(o), top(r)) {
        let x = a.add_per_s / b.add_per_s;
        push(
            &format!("ADD throughput with {} workers, ours/reference", a.workers),
            x,
            ">= 2",
            x >= 2.0,
        );
    }
    t
}

/// The SVG: ADD and DEL latency distributions (CDF), decile p50s, throughput.
pub fn svg(r: &Report) -> String {
    use super::chart::{Bar, Panel, Series, OURS, REFERENCE};
    let cdf = |v: &[f64]| -> Vec<(f64, f64)> {
        let mut s: Vec<f64> = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len().max(1) as f64;
        s.iter()
            .enumerate()
            .map(|(i, x)| (*x, (i + 1) as f64 / n * 100.0))
            .collect()
    };
    let mut panels = Vec::new();
    for (op, pick) in [("ADD", true), ("DEL", false)] {
        let mut series = Vec::new();
        // Clip at the largest p99: the last 1 % would squash the body of every curve.
        let mut tail = 0.0f64;
        for (side, color) in [(&r.ours, OURS), (&r.reference, REFERENCE)] {
            for l in &side.latency {
                let v = if pick { &l.add_samples } else { &l.del_samples };
                tail = tail.max(quantile(v, 0.99));
                series.push(Series {
                    label: format!("{} {}", side.name, l.ipam.name()),
                    color,
                    dashed: l.ipam == Ipam::L2Only,
                    points: cdf(v),
                });
            }
        }
        panels.push(Panel::Lines {
            title: format!("{op} latency distribution"),
            note: format!(
                "share of {} runs finished within x ms (left is faster; cut at the largest p99)",
                r.n
            ),
            x_label: "ms".into(),
            y_label: "% of runs".into(),
            series,
            x_max: Some(tail * 1.1),
            legend_low: true,
        });
    }
    let dec = |s: &Side, color| Series {
        label: s.name.clone(),
        color,
        dashed: false,
        points: s
            .decile_add_p50_ms
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + 1) as f64, *v))
            .collect(),
    };
    panels.push(Panel::Lines {
        title: format!("ADD p50 per tenth of {} attachments", r.ours.attachments),
        note: format!(
            "flat is good: last/first ours {}, reference {}",
            super::chart::fmt_num(r.ours.decile_flatness),
            super::chart::fmt_num(r.reference.decile_flatness)
        ),
        x_label: "decile".into(),
        y_label: "ms".into(),
        series: vec![dec(&r.ours, OURS), dec(&r.reference, REFERENCE)],
        x_max: None,
        legend_low: false,
    });
    let mut bars = Vec::new();
    for (i, t) in r.ours.throughput.iter().enumerate() {
        bars.push(Bar {
            label: format!("ours ×{}", t.workers),
            value: Some(t.add_per_s),
            color: OURS,
        });
        if let Some(rt) = r.reference.throughput.get(i) {
            bars.push(Bar {
                label: format!("ref ×{}", rt.workers),
                value: Some(rt.add_per_s),
                color: REFERENCE,
            });
        }
    }
    panels.push(Panel::Bars {
        title: "ADD throughput by parallel workers".into(),
        note: "higher is better".into(),
        unit: "ADD/s".into(),
        bars,
    });
    super::chart::render(
        &format!("macvnet bench cni: {} ours vs reference", r.plugin),
        &r.machine.line(),
        &panels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decile_split() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let d = deciles(&v);
        assert_eq!(d.len(), 10);
        assert!(d[0] < 11.0 && d[9] > 90.0);
        assert_eq!(deciles(&[1.0, 2.0]).len(), 2);
    }

    #[test]
    fn ops_are_a_multiple_of_workers() {
        assert_eq!(ops_for(5, 2), 8);
        assert_eq!(ops_for(200, 16), 208);
        assert_eq!(ops_for(10, 1), 10);
    }
}
