//! `macvnet bench dataplane`: throughput and round trips between two namespaces over five
//! topologies, each built fresh in `mvbench-<pid>-*` namespaces and removed after its case.
//!
//! Generator: iperf3 for the TCP stream when it is installed (and not `--builtin`), else a
//! built-in one: sockets created inside the namespaces (a socket stays in the namespace it
//! was made in), driven from threads of this process. UDP streams and round trips are always
//! built-in. CPU is the whole machine's busy time from /proc/stat over each stream, so it
//! counts sender, receiver and softirq work alike.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use macvnet_netlink as nl;
use nl::{Handle, LinkChange, MacvlanSpec, Mode, NetnsRef};

use super::{check, link_up, quantile, BenchNs};

const A_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PREFIX: u8 = 24;
const TCP_PORT: u16 = 5202;
const SINK_PORT: u16 = 5203;
const ECHO_PORT: u16 = 5204;
/// UDP payload of the bulk stream: a 1500-byte IPv4 frame without fragmentation.
const BIG: usize = 1472;
/// UDP payload of the packet-rate stream.
const SMALL: usize = 64;
const TCP_CHUNK: usize = 128 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    MacvlanBridge,
    VepaHairpin,
    VethPair,
    VethBridge,
    Macvtap,
}

impl Case {
    pub const ALL: [Case; 5] = [
        Case::MacvlanBridge,
        Case::VepaHairpin,
        Case::VethPair,
        Case::VethBridge,
        Case::Macvtap,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::MacvlanBridge => "macvlan-bridge",
            Case::VepaHairpin => "vepa-hairpin",
            Case::VethPair => "veth-pair",
            Case::VethBridge => "veth-bridge",
            Case::Macvtap => "macvtap",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Case::MacvlanBridge => "two bridge-mode macvlan children of one veth parent (peer in a lan ns), one child per ns",
            Case::VepaHairpin => "two vepa-mode children; frames leave the parent and a hairpin Linux bridge in the lan ns sends them back",
            Case::VethPair => "ns A <-> ns B over one veth pair",
            Case::VethBridge => "two veth pairs into a Linux bridge in a third ns",
            Case::Macvtap => "a macvlan child in ns A talks to a bridge-mode macvtap sibling; a thread of this process reads/writes its frames on /dev/tapN (UDP only: sink counts, echo answers)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub cases: Vec<Case>,
    /// Length of each stream (TCP, UDP bulk, UDP small, round trips).
    pub duration: Duration,
    /// Each case is measured this many times (round-robin); figures are medians.
    pub rounds: usize,
    pub builtin: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CaseResult {
    pub case: String,
    pub description: String,
    /// Rounds the medians below come from.
    pub rounds: usize,
    /// "iperf3" or "builtin".
    pub tcp_generator: Option<String>,
    pub tcp_gbps: Option<f64>,
    /// Whole-machine CPU busy time per Gbit moved by the TCP stream (ms/Gbit; lower is better).
    pub tcp_cpu_ms_per_gbit: Option<f64>,
    /// Cores kept busy during the TCP stream.
    pub tcp_cpu_cores: Option<f64>,
    /// UDP payload received, 1472-byte datagrams.
    pub udp_gbps: f64,
    pub udp_cpu_ms_per_gbit: Option<f64>,
    /// 64-byte datagrams received per second.
    pub udp_pps: f64,
    /// Of the 64-byte datagrams sent, the share that arrived.
    pub udp_small_delivered: f64,
    pub rtt_p50_us: f64,
    pub rtt_p99_us: f64,
    pub rtt_samples: usize,
    pub note: Option<String>,
    /// [min, max] over the rounds, for judging differences.
    pub ranges: Ranges,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Ranges {
    pub tcp_gbps: Option<[f64; 2]>,
    pub tcp_cpu_ms_per_gbit: Option<[f64; 2]>,
    pub udp_kpps: [f64; 2],
    pub rtt_p50_us: [f64; 2],
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// "agrees", "partly" or "disagrees".
    pub agrees: String,
    pub text: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub machine: super::Machine,
    pub duration_s: f64,
    pub rounds: usize,
    pub addresses: String,
    pub results: Vec<CaseResult>,
    pub verdict: Option<Verdict>,
}

pub fn run(opts: &Options) -> anyhow::Result<Report> {
    let iperf = if opts.builtin { None } else { which("iperf3") };
    let machine = super::Machine::probe();
    let rounds = opts.rounds.max(1);
    let mut per_case: Vec<Vec<CaseResult>> = vec![Vec::new(); opts.cases.len()];
    // Round-robin with a rotating start, so drift (other load, thermal) spreads over all cases.
    for round in 0..rounds {
        for k in 0..opts.cases.len() {
            let i = (k + round) % opts.cases.len();
            let Some(&case) = opts.cases.get(i) else {
                continue;
            };
            check()?;
            let topo =
                build(case).with_context(|| format!("building the {} topology", case.name()))?;
            let r = measure(case, &topo, opts, iperf.as_deref())
                .with_context(|| format!("measuring {}", case.name()))?;
            drop(topo);
            if let Some(v) = per_case.get_mut(i) {
                v.push(r);
            }
        }
    }
    let results: Vec<CaseResult> = per_case.into_iter().filter_map(median_of).collect();
    let verdict = verdict(&results);
    Ok(Report {
        machine,
        duration_s: opts.duration.as_secs_f64(),
        rounds,
        addresses: format!("{A_IP}/{PREFIX} <-> {B_IP}/{PREFIX}"),
        results,
        verdict,
    })
}

fn range_opt(v: &[CaseResult], f: &dyn Fn(&CaseResult) -> Option<f64>) -> Option<[f64; 2]> {
    let x: Vec<f64> = v.iter().filter_map(f).filter(|x| x.is_finite()).collect();
    let lo = x.iter().copied().reduce(f64::min)?;
    let hi = x.iter().copied().reduce(f64::max)?;
    Some([lo, hi])
}

fn range(v: &[CaseResult], f: &dyn Fn(&CaseResult) -> f64) -> [f64; 2] {
    range_opt(v, &|r| Some(f(r))).unwrap_or([f64::NAN, f64::NAN])
}

/// One result per case: the median of each figure over the rounds.
fn median_of(v: Vec<CaseResult>) -> Option<CaseResult> {
    let first = v.first()?.clone();
    let med = |f: &dyn Fn(&CaseResult) -> f64| quantile(&v.iter().map(f).collect::<Vec<_>>(), 0.5);
    let med_opt = |f: &dyn Fn(&CaseResult) -> Option<f64>| {
        let x: Vec<f64> = v.iter().filter_map(f).collect();
        (!x.is_empty()).then(|| quantile(&x, 0.5))
    };
    Some(CaseResult {
        rounds: v.len(),
        tcp_gbps: med_opt(&|r| r.tcp_gbps),
        tcp_cpu_ms_per_gbit: med_opt(&|r| r.tcp_cpu_ms_per_gbit),
        tcp_cpu_cores: med_opt(&|r| r.tcp_cpu_cores),
        udp_gbps: med(&|r| r.udp_gbps),
        udp_cpu_ms_per_gbit: med_opt(&|r| r.udp_cpu_ms_per_gbit),
        udp_pps: med(&|r| r.udp_pps),
        udp_small_delivered: med(&|r| r.udp_small_delivered),
        rtt_p50_us: med(&|r| r.rtt_p50_us),
        rtt_p99_us: med(&|r| r.rtt_p99_us),
        rtt_samples: v.iter().map(|r| r.rtt_samples).sum(),
        ranges: Ranges {
            tcp_gbps: range_opt(&v, &|r| r.tcp_gbps),
            tcp_cpu_ms_per_gbit: range_opt(&v, &|r| r.tcp_cpu_ms_per_gbit),
            udp_kpps: range(&v, &|r| r.udp_pps / 1e3),
            rtt_p50_us: range(&v, &|r| r.rtt_p50_us),
        },
        ..first
    })
}

fn which(prog: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

// ---- topologies ----

enum Peer {
    Ns(NetnsRef),
    Tap(Responder),
}

struct Topo {
    a: NetnsRef,
    peer: Peer,
    /// Declared last: dropped after the responder stopped using the tap fd.
    _nss: Vec<BenchNs>,
}

fn nlerr(e: nl::Error) -> anyhow::Error {
    anyhow!("{e}")
}

fn addr_up(ns: &BenchNs, ifname: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
    let mut h = ns.handle()?;
    let idx = link_up(&mut h, ifname)?;
    let net = ipnet::IpNet::V4(ipnet::Ipv4Net::new(ip, PREFIX).map_err(|e| anyhow!("{e}"))?);
    h.add_addr(idx, net).map_err(nlerr)
}

fn set_controller(h: &mut Handle, port: &str, bridge: u32) -> anyhow::Result<u32> {
    let idx = h.link_by_name(port).map_err(nlerr)?.index;
    h.set_link(
        idx,
        &LinkChange {
            controller: Some(bridge),
            up: Some(true),
            ..Default::default()
        },
    )
    .map_err(nlerr)?;
    Ok(idx)
}

/// host ns with eth0, its veth peer up0 in a lan ns; both up.
fn uplink() -> anyhow::Result<(BenchNs, BenchNs)> {
    let host = BenchNs::new("host")?;
    let lan = BenchNs::new("lan")?;
    let lan_fd = lan.ns.open().map_err(nlerr)?;
    let mut h = host.handle()?;
    h.add_veth("eth0", "up0", Some(lan_fd.as_fd()))
        .map_err(nlerr)?;
    link_up(&mut h, "eth0")?;
    link_up(&mut lan.handle()?, "up0")?;
    Ok((host, lan))
}

fn build(case: Case) -> anyhow::Result<Topo> {
    let a = BenchNs::new("a")?;
    let mut nss = Vec::new();
    let peer;
    match case {
        Case::MacvlanBridge | Case::VepaHairpin => {
            let b = BenchNs::new("b")?;
            let (host, lan) = uplink()?;
            let mode = if case == Case::VepaHairpin {
                Mode::Vepa
            } else {
                Mode::Bridge
            };
            if case == Case::VepaHairpin {
                let mut l = lan.handle()?;
                l.add_bridge("br0").map_err(nlerr)?;
                let br = link_up(&mut l, "br0")?;
                let up0 = set_controller(&mut l, "up0", br)?;
                l.set_hairpin(up0, true).map_err(nlerr)?;
            }
            let mut h = host.handle()?;
            let parent = h.link_by_name("eth0").map_err(nlerr)?.index;
            for (ns, name) in [(&a, "mv0"), (&b, "mv1")] {
                let fd = ns.ns.open().map_err(nlerr)?;
                let spec = MacvlanSpec {
                    name: name.to_string(),
                    parent,
                    mode: Some(mode),
                    netns: Some(Arc::new(fd)),
                    ..Default::default()
                };
                h.add_macvlan(&spec).map_err(nlerr)?;
            }
            addr_up(&a, "mv0", A_IP)?;
            addr_up(&b, "mv1", B_IP)?;
            peer = Peer::Ns(b.ns.clone());
            nss.extend([b, host, lan]);
        }
        Case::VethPair => {
            let b = BenchNs::new("b")?;
            let b_fd = b.ns.open().map_err(nlerr)?;
            a.handle()?
                .add_veth("v0", "v1", Some(b_fd.as_fd()))
                .map_err(nlerr)?;
            addr_up(&a, "v0", A_IP)?;
            addr_up(&b, "v1", B_IP)?;
            peer = Peer::Ns(b.ns.clone());
            nss.push(b);
        }
        Case::VethBridge => {
            let b = BenchNs::new("b")?;
            let br_ns = BenchNs::new("br")?;
            let mut h = br_ns.handle()?;
            h.add_bridge("br0").map_err(nlerr)?;
            let br = link_up(&mut h, "br0")?;
            for (ns, port, end) in [(&a, "pa", "v0"), (&b, "pb", "v1")] {
                let fd = ns.ns.open().map_err(nlerr)?;
                h.add_veth(port, end, Some(fd.as_fd())).map_err(nlerr)?;
                set_controller(&mut h, port, br)?;
            }
            addr_up(&a, "v0", A_IP)?;
            addr_up(&b, "v1", B_IP)?;
            peer = Peer::Ns(b.ns.clone());
            nss.extend([b, br_ns]);
        }
        Case::Macvtap => {
            let (host, lan) = uplink()?;
            let mut h = host.handle()?;
            let parent = h.link_by_name("eth0").map_err(nlerr)?.index;
            let fd = a.ns.open().map_err(nlerr)?;
            let child = MacvlanSpec {
                name: "mv0".into(),
                parent,
                mode: Some(Mode::Bridge),
                netns: Some(Arc::new(fd)),
                ..Default::default()
            };
            h.add_macvlan(&child).map_err(nlerr)?;
            addr_up(&a, "mv0", A_IP)?;
            let tap = MacvlanSpec {
                name: "mvtap0".into(),
                parent,
                tap: true,
                mode: Some(Mode::Bridge),
                ..Default::default()
            };
            h.add_macvlan(&tap).map_err(nlerr)?;
            link_up(&mut h, "mvtap0")?;
            let (dev, fds) = nl::tap::open_link_queues(
                &host.ns,
                &nl::tap::TapLink::Name("mvtap0".into()),
                1,
                false,
                nl::tap::Offloads::default(),
            )
            .map_err(nlerr)?;
            let mac = dev
                .mac
                .ok_or_else(|| anyhow!("mvtap0 has no MAC address"))?;
            let fd = fds
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("no tap queue opened"))?;
            peer = Peer::Tap(Responder::start(nl::tap::TapQueue::from(fd), mac.0, B_IP));
            nss.extend([host, lan]);
        }
    }
    let a_ns = a.ns.clone();
    nss.push(a);
    Ok(Topo {
        a: a_ns,
        peer,
        _nss: nss,
    })
}

// ---- /proc/stat ----

/// Busy and total jiffies of all CPUs (steal excluded from busy: not ours).
fn cpu_jiffies() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = get(0) + get(1) + get(2) + get(5) + get(6);
    Some((busy, busy + get(3) + get(4) + get(7)))
}

struct CpuMeter(Option<(u64, u64)>, Instant);

impl CpuMeter {
    fn start() -> Self {
        CpuMeter(cpu_jiffies(), Instant::now())
    }

    /// (busy CPU seconds, cores busy on average).
    fn stop(&self) -> Option<(f64, f64)> {
        let (b0, _) = self.0?;
        let (b1, _) = cpu_jiffies()?;
        // SAFETY: sysconf only reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as f64 } else { 100.0 };
        let busy = (b1.saturating_sub(b0)) as f64 / hz;
        let wall = self.1.elapsed().as_secs_f64();
        Some((busy, if wall > 0.0 { busy / wall } else { 0.0 }))
    }
}

fn ms_per_gbit(busy_s: f64, bits: f64) -> Option<f64> {
    (bits > 0.0).then(|| busy_s * 1000.0 / (bits / 1e9))
}

// ---- sockets in namespaces ----

fn in_ns<T: Send>(
    ns: &NetnsRef,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> anyhow::Result<T> {
    nl::netns::run_in(ns, f).map_err(nlerr)?.map_err(Into::into)
}

fn udp_in(ns: &NetnsRef, ip: Ipv4Addr, port: u16) -> anyhow::Result<UdpSocket> {
    let s = in_ns(ns, || UdpSocket::bind((ip, port)))
        .with_context(|| format!("binding UDP {ip}:{port}"))?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(s)
}

/// A thread that runs `f(stop)` until told to stop; stopped and joined on drop.
struct Worker<T> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Worker<T> {
    fn spawn(f: impl FnOnce(Arc<AtomicBool>) -> T + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        Worker {
            stop,
            handle: Some(std::thread::spawn(move || f(s2))),
        }
    }

    fn finish(mut self) -> anyhow::Result<T> {
        self.stop.store(true, Ordering::SeqCst);
        let h = self
            .handle
            .take()
            .ok_or_else(|| anyhow!("worker already joined"))?;
        h.join().map_err(|_| anyhow!("a benchmark thread panicked"))
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Counts datagrams and payload bytes on `sock` until stopped.
fn udp_sink(sock: UdpSocket) -> Worker<(u64, u64)> {
    Worker::spawn(move |stop| {
        let mut buf = vec![0u8; 65536];
        let (mut pkts, mut bytes) = (0u64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = sock.recv(&mut buf) {
                pkts += 1;
                bytes += n as u64;
            }
        }
        (pkts, bytes)
    })
}

fn udp_echo(sock: UdpSocket) -> Worker<()> {
    Worker::spawn(move |stop| {
        let mut buf = vec![0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(buf.get(..n).unwrap_or(&[]), from);
            }
        }
    })
}

/// Sends `size`-byte datagrams to `dst` for `dur`; returns datagrams sent.
fn udp_blast(a: &NetnsRef, dst: SocketAddr, size: usize, dur: Duration) -> anyhow::Result<u64> {
    let s = udp_in(a, A_IP, 0)?;
    s.connect(dst)?;
    let buf = vec![0x5au8; size];
    let end = Instant::now() + dur;
    let mut sent = 0u64;
    let mut i = 0u32;
    loop {
        // Checking the clock every 64 sends keeps the loop about sending.
        if i.is_multiple_of(64) && (Instant::now() >= end || super::interrupted()) {
            break;
        }
        i = i.wrapping_add(1);
        // ENOBUFS/EAGAIN under overload: the datagram is lost, which the receiver's count shows.
        if s.send(&buf).is_ok() {
            sent += 1;
        }
    }
    Ok(sent)
}

struct UdpFigures {
    pkts: u64,
    bytes: u64,
    sent: u64,
    secs: f64,
    cpu: Option<(f64, f64)>,
}

fn udp_stream(topo: &Topo, size: usize, dur: Duration) -> anyhow::Result<UdpFigures> {
    let dst = SocketAddr::from((B_IP, SINK_PORT));
    let sink = match &topo.peer {
        Peer::Ns(b) => Some(udp_sink(udp_in(b, B_IP, SINK_PORT)?)),
        Peer::Tap(r) => {
            r.reset();
            None
        }
    };
    let cpu = CpuMeter::start();
    let t0 = Instant::now();
    let sent = udp_blast(&topo.a, dst, size, dur)?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu.stop();
    // Let queued datagrams arrive before counting.
    std::thread::sleep(Duration::from_millis(50));
    let (pkts, bytes) = match (sink, &topo.peer) {
        (Some(w), _) => w.finish()?,
        (None, Peer::Tap(r)) => r.counts(),
        (None, Peer::Ns(_)) => (0, 0),
    };
    Ok(UdpFigures {
        pkts,
        bytes,
        sent,
        secs,
        cpu,
    })
}

struct TcpFigures {
    gbps: f64,
    cpu: Option<(f64, f64)>,
    generator: &'static str,
}

fn tcp_builtin(a: &NetnsRef, b: &NetnsRef, dur: Duration) -> anyhow::Result<TcpFigures> {
    let listener = in_ns(b, || TcpListener::bind((B_IP, TCP_PORT))).context("TCP listen")?;
    listener.set_nonblocking(true)?;
    let accept_deadline = Instant::now() + Duration::from_secs(5);
    let rx = Worker::spawn(move |stop| -> u64 {
        let mut conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(_) if Instant::now() < accept_deadline && !stop.load(Ordering::Relaxed) => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(_) => return 0,
            }
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = vec![0u8; TCP_CHUNK];
        let mut total = 0u64;
        let hard_end = Instant::now() + Duration::from_secs(3600);
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) if stop.load(Ordering::Relaxed) || Instant::now() > hard_end => break,
                Err(_) => {}
            }
        }
        total
    });
    let dst = SocketAddr::from((B_IP, TCP_PORT));
    let mut conn = in_ns(a, || {
        TcpStream::connect_timeout(&dst, Duration::from_secs(3))
    })
    .context("TCP connect")?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    let buf = vec![0xa5u8; TCP_CHUNK];
    let cpu = CpuMeter::start();
    let t0 = Instant::now();
    let end = t0 + dur;
    while Instant::now() < end && !super::interrupted() {
        conn.write_all(&buf).context("TCP send")?;
    }
    conn.shutdown(std::net::Shutdown::Write)?;
    // The receiver ends at EOF; join waits for it (bounded by its read timeout loop).
    let handle = rx;
    let bytes = wait_eof(handle)?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu.stop();
    Ok(TcpFigures {
        gbps: bytes as f64 * 8.0 / secs / 1e9,
        cpu,
        generator: "builtin",
    })
}

/// Join a receiver that stops by itself at EOF; stop it after 5 s regardless.
fn wait_eof(w: Worker<u64>) -> anyhow::Result<u64> {
    let end = Instant::now() + Duration::from_secs(5);
    while w.handle.as_ref().is_some_and(|h| !h.is_finished()) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1));
    }
    w.finish()
}

/// iperf3 -s in B (not -1: the readiness probe is a connection too), iperf3 -c in A, JSON
/// parsed; the server is killed by pid afterwards.
fn tcp_iperf(iperf: &str, a: &NetnsRef, b: &NetnsRef, dur: Duration) -> anyhow::Result<TcpFigures> {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let port = TCP_PORT.to_string();
    let mut srv = nl::netns::command_in(b, iperf).map_err(nlerr)?;
    srv.args(["-s", "-p", &port, "-B", &B_IP.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _srv = Kill(srv.spawn().context("starting iperf3 -s")?);
    // Wait until the server listens (bounded).
    let dst = SocketAddr::from((B_IP, TCP_PORT));
    let up = (0..100).any(|_| {
        let ok = in_ns(a, || {
            TcpStream::connect_timeout(&dst, Duration::from_millis(100))
        })
        .is_ok();
        if !ok {
            std::thread::sleep(Duration::from_millis(20));
        }
        ok
    });
    if !up {
        bail!("iperf3 server did not start listening");
    }
    std::thread::sleep(Duration::from_millis(50));
    let secs = dur.as_secs_f64().ceil().max(1.0) as u64;
    let mut cli = nl::netns::command_in(a, iperf).map_err(nlerr)?;
    cli.args([
        "-c",
        &B_IP.to_string(),
        "-p",
        &port,
        "-t",
        &secs.to_string(),
        "-J",
    ]);
    let cpu = CpuMeter::start();
    let out = cli.output().context("running iperf3 -c")?;
    let cpu = cpu.stop();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing iperf3 -J output")?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| {
            anyhow!(
                "iperf3: no end.sum_received.bits_per_second (error: {})",
                v["error"]
            )
        })?;
    Ok(TcpFigures {
        gbps: bps / 1e9,
        cpu,
        generator: "iperf3",
    })
}

/// UDP ping-pong for `dur` (at most 200 000 round trips); µs per round trip.
fn round_trips(a: &NetnsRef, dur: Duration, warmup_only: bool) -> anyhow::Result<Vec<f64>> {
    let s = udp_in(a, A_IP, 0)?;
    s.connect((B_IP, ECHO_PORT))?;
    s.set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut buf = [0u8; 64];
    let mut out = Vec::new();
    if warmup_only {
        // First packets resolve ARP; 10 tries bound the wait.
        for i in 0u32..10 {
            s.send(&i.to_be_bytes())?;
            if s.recv(&mut buf).is_ok() {
                return Ok(vec![0.0]);
            }
        }
        bail!("no UDP echo from {B_IP} (no connectivity)");
    }
    let end = Instant::now() + dur;
    let mut seq = 0u32;
    while Instant::now() < end && out.len() < 200_000 && !super::interrupted() {
        seq = seq.wrapping_add(1);
        let t = Instant::now();
        s.send(&seq.to_be_bytes())?;
        // Replies to earlier (timed-out) probes are skipped by sequence number.
        loop {
            match s.recv(&mut buf) {
                Ok(n) if n >= 4 && buf.get(..4) == Some(&seq.to_be_bytes()[..]) => {
                    out.push(t.elapsed().as_secs_f64() * 1e6);
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    Ok(out)
}

fn measure(
    case: Case,
    topo: &Topo,
    opts: &Options,
    iperf: Option<&str>,
) -> anyhow::Result<CaseResult> {
    let dur = opts.duration;
    let echo = match &topo.peer {
        Peer::Ns(b) => Some(udp_echo(udp_in(b, B_IP, ECHO_PORT)?)),
        Peer::Tap(_) => None,
    };
    round_trips(&topo.a, dur, true)?;
    let mut r = CaseResult {
        case: case.name().into(),
        description: case.describe().into(),
        ..Default::default()
    };
    if let Peer::Ns(b) = &topo.peer {
        check()?;
        let tcp = match iperf {
            Some(p) => tcp_iperf(p, &topo.a, b, dur)?,
            None => tcp_builtin(&topo.a, b, dur)?,
        };
        r.tcp_generator = Some(tcp.generator.into());
        r.tcp_gbps = Some(tcp.gbps);
        if let Some((busy, cores)) = tcp.cpu {
            r.tcp_cpu_cores = Some(cores);
            // Same wall time for bits and CPU: bits = gbps * wall; busy = cores * wall.
            r.tcp_cpu_ms_per_gbit = (tcp.gbps > 0.0).then(|| cores * 1000.0 / tcp.gbps);
            let _ = busy;
        }
    } else {
        r.note = Some("no TCP: the tap reader is a frame echo/sink, not a TCP stack; UDP figures are frames read from the tap fd".into());
    }
    check()?;
    let big = udp_stream(topo, BIG, dur)?;
    r.udp_gbps = big.bytes as f64 * 8.0 / big.secs / 1e9;
    r.udp_cpu_ms_per_gbit = big
        .cpu
        .and_then(|(busy, _)| ms_per_gbit(busy, big.bytes as f64 * 8.0));
    check()?;
    let small = udp_stream(topo, SMALL, dur)?;
    r.udp_pps = small.pkts as f64 / small.secs;
    r.udp_small_delivered = if small.sent > 0 {
        small.pkts as f64 / small.sent as f64
    } else {
        0.0
    };
    let _ = small.cpu;
    check()?;
    let rtt = round_trips(&topo.a, dur, false)?;
    r.rtt_samples = rtt.len();
    r.rtt_p50_us = quantile(&rtt, 0.5);
    r.rtt_p99_us = quantile(&rtt, 0.99);
    if let Some(w) = echo {
        w.finish()?;
    }
    Ok(r)
}

/// Name, ranges (macvlan, other), medians (macvlan, other), higher is better, unit.
type Metric<'a> = (
    &'a str,
    Option<[f64; 2]>,
    Option<[f64; 2]>,
    Option<f64>,
    Option<f64>,
    bool,
    &'a str,
);

/// Compare macvlan bridge mode with veth pair and veth + bridge on TCP throughput, CPU per
/// Gbit, 64-byte packet rate and round-trip time. A difference counts only when the
/// round-to-round ranges (widened by 3 %) do not overlap; otherwise it is a tie.
fn verdict(results: &[CaseResult]) -> Option<Verdict> {
    let get = |c: Case| results.iter().find(|r| r.case == c.name());
    let mv = get(Case::MacvlanBridge)?;
    let others: Vec<&CaseResult> = [Case::VethPair, Case::VethBridge]
        .into_iter()
        .filter_map(get)
        .collect();
    if others.is_empty() {
        return None;
    }
    let (mut wins, mut ties, mut losses) = (0, 0, 0);
    let mut lines = Vec::new();
    for o in &others {
        let mut parts = Vec::new();
        let metrics: [Metric<'_>; 4] = [
            (
                "TCP",
                mv.ranges.tcp_gbps,
                o.ranges.tcp_gbps,
                mv.tcp_gbps,
                o.tcp_gbps,
                true,
                "Gbit/s",
            ),
            (
                "CPU",
                mv.ranges.tcp_cpu_ms_per_gbit,
                o.ranges.tcp_cpu_ms_per_gbit,
                mv.tcp_cpu_ms_per_gbit,
                o.tcp_cpu_ms_per_gbit,
                false,
                "ms/Gbit",
            ),
            (
                "64-B UDP",
                Some(mv.ranges.udp_kpps),
                Some(o.ranges.udp_kpps),
                Some(mv.udp_pps / 1e3),
                Some(o.udp_pps / 1e3),
                true,
                "kpps",
            ),
            (
                "RTT p50",
                Some(mv.ranges.rtt_p50_us),
                Some(o.ranges.rtt_p50_us),
                Some(mv.rtt_p50_us),
                Some(o.rtt_p50_us),
                false,
                "µs",
            ),
        ];
        for (name, rm, ro, m, t, higher_better, unit) in metrics {
            let (Some(rm), Some(ro), Some(m), Some(t)) = (rm, ro, m, t) else {
                continue;
            };
            let overlap = rm[0] * 0.97 <= ro[1] * 1.03 && ro[0] * 0.97 <= rm[1] * 1.03;
            let better = if higher_better { m > t } else { m < t };
            let word = if overlap {
                ties += 1;
                "tie"
            } else if better {
                wins += 1;
                "macvlan better"
            } else {
                losses += 1;
                "macvlan worse"
            };
            parts.push(format!(
                "{name} {} vs {} {unit} ({word})",
                super::chart::fmt_num(m),
                super::chart::fmt_num(t)
            ));
        }
        lines.push(format!("vs {}: {}", o.case, parts.join("; ")));
    }
    let (agrees, head) = if losses == 0 && wins > 0 {
        ("agrees", "This machine agrees with the claim: macvlan bridge mode beats or ties veth and veth + bridge on every measure")
    } else if losses == 0 {
        ("inconclusive", "Inconclusive here: every difference is within the spread between rounds (a busy or noisy machine; try more --rounds)")
    } else if wins > losses {
        ("partly", "This machine partly agrees with the claim: macvlan bridge mode wins more measures than it loses")
    } else {
        ("disagrees", "This machine does not agree with the claim: macvlan bridge mode loses at least as many measures as it wins")
    };
    Some(Verdict {
        agrees: agrees.into(),
        text: format!(
            "{head} ({wins} better, {ties} tied, {losses} worse). {}",
            lines.join(". ")
        ),
    })
}

// ---- macvtap frame responder ----

/// Reads frames on a macvtap queue: answers ARP for `ip`, counts UDP to the sink port, echoes
/// UDP to the echo port (addresses and ports swapped, which keeps both checksums valid).
struct Responder {
    counters: Arc<(AtomicU64, AtomicU64)>,
    worker: Option<Worker<()>>,
}

impl Responder {
    fn start(q: nl::tap::TapQueue, mac: [u8; 6], ip: Ipv4Addr) -> Responder {
        let counters = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let c = counters.clone();
        let worker = Worker::spawn(move |stop| {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let n = match q.recv(&mut buf, Duration::from_millis(100)) {
                    Ok(Some(n)) => n,
                    Ok(None) => continue,
                    Err(_) => break,
                };
                let Some(frame) = buf.get_mut(..n) else {
                    continue;
                };
                match answer(frame, mac, ip) {
                    Action::Reply(reply) => {
                        let _ = q.send(&reply);
                    }
                    Action::Echo => {
                        let _ = q.send(frame);
                    }
                    Action::Count(bytes) => {
                        c.0.fetch_add(1, Ordering::Relaxed);
                        c.1.fetch_add(bytes, Ordering::Relaxed);
                    }
                    Action::Ignore => {}
                }
            }
        });
        Responder {
            counters,
            worker: Some(worker),
        }
    }

    fn reset(&self) {
        self.counters.0.store(0, Ordering::Relaxed);
        self.counters.1.store(0, Ordering::Relaxed);
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.counters.0.load(Ordering::Relaxed),
            self.counters.1.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        drop(self.worker.take());
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Reply(Vec<u8>),
    /// The frame was rewritten in place into its answer.
    Echo,
    Count(u64),
    Ignore,
}

fn answer(f: &mut [u8], mac: [u8; 6], ip: Ipv4Addr) -> Action {
    let ip = ip.octets();
    let Some(ethertype) = f.get(12..14) else {
        return Action::Ignore;
    };
    match ethertype {
        [0x08, 0x06] => {
            // ARP request (op 1) for our address: reply with our MAC.
            let (Some(op), Some(tpa), Some(sha), Some(spa)) =
                (f.get(20..22), f.get(38..42), f.get(22..28), f.get(28..32))
            else {
                return Action::Ignore;
            };
            if op != [0, 1] || tpa != ip {
                return Action::Ignore;
            }
            let mut r = Vec::with_capacity(42);
            r.extend_from_slice(sha);
            r.extend_from_slice(&mac);
            r.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
            r.extend_from_slice(&mac);
            r.extend_from_slice(&ip);
            r.extend_from_slice(sha);
            r.extend_from_slice(spa);
            Action::Reply(r)
        }
        [0x08, 0x00] => {
            let Some(&vihl) = f.get(14) else {
                return Action::Ignore;
            };
            let ihl = usize::from(vihl & 0x0f) * 4;
            if f.get(23) != Some(&17) || f.get(30..34) != Some(&ip[..]) || ihl < 20 {
                return Action::Ignore;
            }
            let u = 14 + ihl;
            let (Some(dport), Some(ulen)) = (f.get(u + 2..u + 4), f.get(u + 4..u + 6)) else {
                return Action::Ignore;
            };
            let dport = u16::from_be_bytes([dport[0], dport[1]]);
            let payload = u64::from(u16::from_be_bytes([ulen[0], ulen[1]]).saturating_sub(8));
            match dport {
                SINK_PORT => Action::Count(payload),
                ECHO_PORT if f.len() >= u + 8 => {
                    swap(f, 0, 6, 6);
                    swap(f, 26, 30, 4);
                    swap(f, u, u + 2, 2);
                    Action::Echo
                }
                _ => Action::Ignore,
            }
        }
        _ => Action::Ignore,
    }
}

/// Swap the `len`-byte fields at `a` and `b` (callers checked the bounds).
fn swap(f: &mut [u8], a: usize, b: usize, len: usize) {
    for i in 0..len {
        f.swap(a + i, b + i);
    }
}

/// The SVG: one bar panel per measure, one bar per topology.
pub fn svg(r: &Report) -> String {
    use super::chart::{Bar, Panel, PALETTE};
    let color = |i: usize| PALETTE.get(i % PALETTE.len()).copied().unwrap_or("#2563eb");
    let bars = |f: &dyn Fn(&CaseResult) -> Option<f64>| -> Vec<Bar> {
        r.results
            .iter()
            .enumerate()
            .map(|(i, c)| Bar {
                label: c.case.clone(),
                value: f(c),
                color: color(i),
            })
            .collect()
    };
    let panels = vec![
        Panel::Bars {
            title: "TCP stream".into(),
            note: "one connection, higher is better".into(),
            unit: "Gbit/s".into(),
            bars: bars(&|c| c.tcp_gbps),
        },
        Panel::Bars {
            title: "CPU per Gbit/s, TCP stream".into(),
            note: "whole-machine busy ms per Gbit moved, lower is better".into(),
            unit: "ms/Gbit".into(),
            bars: bars(&|c| c.tcp_cpu_ms_per_gbit),
        },
        Panel::Bars {
            title: "UDP 1472-byte stream received".into(),
            note: "higher is better".into(),
            unit: "Gbit/s".into(),
            bars: bars(&|c| Some(c.udp_gbps)),
        },
        Panel::Bars {
            title: "CPU per Gbit/s received, UDP 1472-byte stream".into(),
            note: "whole-machine busy ms per Gbit received, lower is better".into(),
            unit: "ms/Gbit".into(),
            bars: bars(&|c| c.udp_cpu_ms_per_gbit),
        },
        Panel::Bars {
            title: "UDP 64-byte packets received".into(),
            note: "higher is better".into(),
            unit: "kpps".into(),
            bars: bars(&|c| Some(c.udp_pps / 1e3)),
        },
        Panel::Bars {
            title: "UDP round trip p50".into(),
            note: "lower is better".into(),
            unit: "µs".into(),
            bars: bars(&|c| Some(c.rtt_p50_us)),
        },
        Panel::Bars {
            title: "UDP round trip p99".into(),
            note: "lower is better".into(),
            unit: "µs".into(),
            bars: bars(&|c| Some(c.rtt_p99_us)),
        },
    ];
    let sub = match &r.verdict {
        Some(v) => format!("{} · macvlan claim: {}", r.machine.line(), v.agrees),
        None => r.machine.line(),
    };
    super::chart::render(
        "macvnet bench dataplane: two namespaces, five topologies",
        &sub,
        &panels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_request_gets_a_reply() {
        let mac = [2, 0, 0, 0, 0, 9];
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[
            2, 0, 0, 0, 0, 1, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2,
        ]);
        let Action::Reply(r) = answer(&mut f, mac, B_IP) else {
            panic!("no reply")
        };
        assert_eq!(&r[..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&r[20..22], &[0, 2]);
        assert_eq!(&r[28..32], &[198, 18, 0, 2]);
        assert_eq!(&r[38..42], &[198, 18, 0, 1]);
    }

    #[test]
    fn udp_echo_swaps_and_sink_counts() {
        let mut f = vec![2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[
            0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ]);
        f.extend_from_slice(&[0x30, 0x39]);
        f.extend_from_slice(&ECHO_PORT.to_be_bytes());
        f.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
        let mut e = f.clone();
        assert_eq!(answer(&mut e, [0; 6], B_IP), Action::Echo);
        assert_eq!(&e[..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&e[26..30], &[198, 18, 0, 2]);
        assert_eq!(&e[34..36], &ECHO_PORT.to_be_bytes());
        assert_eq!(&e[36..38], &[0x30, 0x39]);
        f[36..38].copy_from_slice(&SINK_PORT.to_be_bytes());
        assert_eq!(answer(&mut f, [0; 6], B_IP), Action::Count(4));
        f.truncate(20);
        assert_eq!(answer(&mut f, [0; 6], B_IP), Action::Ignore);
    }
}
