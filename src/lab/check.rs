//! `lab check`: ping every ordered pair of endpoints and compare with the expectations.

use std::io::Read;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use macvnet_netlink as nl;
use nl::NetnsRef;
use serde::Serialize;

use super::expect::{endpoints, expect, Endpoint, Role};
use super::state::LabState;
use super::topo::Topology;
use super::LabError;

/// Per-request wait and number of requests per cell.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
pub const PROBE_TRIES: u32 = 2;
/// Probes in flight at once (each is a short-lived thread in a namespace).
const PARALLEL: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub from: String,
    pub to: String,
    pub expected: bool,
    pub actual: bool,
    /// Why the expectation is what it is (mode semantics).
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u64>,
    /// A probe that could not run at all (e.g. the namespace vanished).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Cell {
    pub fn matches(&self) -> bool {
        self.expected == self.actual && self.error.is_none()
    }
    /// "ok", "--", "!ok" or "!--".
    pub fn glyph(&self) -> &'static str {
        match (self.matches(), self.actual) {
            (true, true) => "ok",
            (true, false) => "--",
            (false, true) => "!ok",
            (false, false) => "!--",
        }
    }
}

/// What a macvtap's /dev/tapN received while the gateway pinged it.
#[derive(Debug, Clone, Serialize)]
pub struct TapProbe {
    pub child: String,
    pub device: String,
    /// ARP requests / neighbor solicitations for the child's address read from the fd.
    pub arp_requests: u32,
    /// IP packets to the child's address read from the fd (e.g. echo requests).
    pub to_address: u32,
    /// Frames of any kind read from the fd.
    pub frames: u32,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub lab: String,
    pub endpoints: Vec<Endpoint>,
    pub cells: Vec<Cell>,
    pub taps: Vec<TapProbe>,
    pub mismatches: usize,
    pub elapsed_ms: u64,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.mismatches == 0
    }
}

struct Probe<'a> {
    from: &'a Endpoint,
    to: &'a Endpoint,
    ns: NetnsRef,
    /// Bind to the source link when the source namespace holds several endpoints.
    via: Option<String>,
}

fn run_probe(p: &Probe<'_>) -> (bool, Option<u64>, Option<String>) {
    let dst: IpAddr = p.to.addr.addr();
    match nl::icmp::ping_via(&p.ns, p.via.as_deref(), dst, PROBE_TRIES, PROBE_TIMEOUT) {
        Ok(o) => (o.replied, o.rtt_us, None),
        Err(e) => (false, None, Some(e.to_string())),
    }
}

/// An open /dev/tapN, drained before the probes so only new frames count.
struct TapWatch {
    child: String,
    device: String,
    addr: IpAddr,
    file: Option<std::fs::File>,
    error: Option<String>,
}

impl TapWatch {
    fn open(t: &Topology, st: &LabState, e: &Endpoint) -> Option<TapWatch> {
        let Role::Child(i) = e.role else { return None };
        let c = t.children.get(i)?;
        if !c.tap {
            return None;
        }
        let mut w = TapWatch {
            child: c.name.clone(),
            device: String::new(),
            addr: e.addr.addr(),
            file: None,
            error: None,
        };
        let ns = NetnsRef::Named(st.physical(&c.netns)?.to_string());
        // /dev/tapN is named by ifindex, which repeats across namespaces: the tap module finds
        // this link's own major:minor (private sysfs) and opens a matching node.
        let link = nl::tap::TapLink::Name(c.name.clone());
        match nl::tap::open_link_queues(&ns, &link, 1, false, nl::tap::Offloads::default()) {
            Ok((dev, fds)) => {
                w.device = format!("/dev/tap{} ({}:{})", dev.index, dev.major, dev.minor);
                match fds.into_iter().next().map(std::fs::File::from) {
                    Some(f) => {
                        // SAFETY: F_SETFL on an fd we own; no memory is passed.
                        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
                        // SAFETY: as above.
                        let rc = unsafe {
                            libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK)
                        };
                        if flags < 0 || rc < 0 {
                            w.error = Some("making the tap fd non-blocking failed".into());
                        } else {
                            w.file = Some(f);
                            w.drain();
                        }
                    }
                    None => w.error = Some("no tap queue opened".into()),
                }
            }
            Err(e) => w.error = Some(format!("opening the tap of {}: {e}", c.name)),
        }
        Some(w)
    }

    /// Read every queued frame; count frames, and resolution requests and packets for our address.
    fn drain(&mut self) -> (u32, u32, u32) {
        let Some(f) = self.file.as_mut() else {
            return (0, 0, 0);
        };
        let (mut frames, mut asks, mut to) = (0, 0, 0);
        let mut buf = vec![0u8; 65536];
        // Bounded: a queue holds at most a few hundred frames.
        for _ in 0..4096 {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    frames += 1;
                    match classify(buf.get(..n).unwrap_or(&[]), self.addr) {
                        Some(ForAddr::Resolve) => asks += 1,
                        Some(ForAddr::Packet) => to += 1,
                        None => {}
                    }
                }
            }
        }
        (frames, asks, to)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ForAddr {
    /// ARP request or IPv6 neighbor solicitation asking for the address.
    Resolve,
    /// An IP packet to the address.
    Packet,
}

/// What a plain Ethernet frame read from a tap fd (no vnet header) means for `ip`.
fn classify(frame: &[u8], ip: IpAddr) -> Option<ForAddr> {
    let f = nl::tap::describe_frame(frame);
    if let Some(arp) = &f.arp {
        return (arp.op == 1 && IpAddr::V4(arp.target_ip) == ip).then_some(ForAddr::Resolve);
    }
    let p = f.ip.as_ref()?;
    if p.icmp.as_ref().and_then(|i| i.target).map(IpAddr::V6) == Some(ip) {
        return Some(ForAddr::Resolve);
    }
    (p.dst == ip).then_some(ForAddr::Packet)
}

/// Run the probes `which` in parallel (bounded), results in the order of `which`.
fn run_all(probes: &[Probe<'_>], which: &[usize]) -> Vec<(bool, Option<u64>, Option<String>)> {
    let mut results = Vec::with_capacity(which.len());
    for chunk in which.chunks(PARALLEL) {
        let out: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = chunk
                .iter()
                .filter_map(|i| probes.get(*i))
                .map(|p| s.spawn(move || run_probe(p)))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or((false, None, Some("probe thread panicked".into())))
                })
                .collect()
        });
        results.extend(out);
    }
    results
}

/// Run the matrix against a lab that is up.
pub fn check(t: &Topology, st: &LabState) -> Result<Report, LabError> {
    if !st.complete {
        return Err(LabError::Partial {
            name: t.name.clone(),
        });
    }
    // DHCP children's addresses are known only from the leases `up` recorded.
    let leased = st.with_leases(t);
    let t = &leased;
    let start = Instant::now();
    let eps = endpoints(t);
    let mut probes = Vec::new();
    for a in &eps {
        let phys = st.physical(&a.netns).ok_or_else(|| LabError::Partial {
            name: t.name.clone(),
        })?;
        let shared = eps.iter().filter(|e| e.netns == a.netns).count() > 1;
        for b in &eps {
            // Same-namespace targets are local: binding a device would only get in the way.
            let via = (shared && a.netns != b.netns).then(|| a.ifname.clone());
            probes.push(Probe {
                from: a,
                to: b,
                ns: NetnsRef::Named(phys.to_string()),
                via,
            });
        }
    }
    let mut taps: Vec<TapWatch> = eps
        .iter()
        .filter_map(|e| TapWatch::open(t, st, e))
        .collect();

    let mut results = run_all(&probes, &(0..probes.len()).collect::<Vec<_>>());
    // A loaded machine can drop a reply: probe each missing expected reply once more.
    let expected: Vec<_> = probes.iter().map(|p| expect(t, p.from, p.to)).collect();
    let retry: Vec<usize> = (0..probes.len())
        .filter(|i| {
            expected.get(*i).is_some_and(|e| e.reach) && results.get(*i).is_some_and(|r| !r.0)
        })
        .collect();
    if !retry.is_empty() {
        for (i, r) in retry.iter().zip(run_all(&probes, &retry)) {
            if let Some(slot) = results.get_mut(*i) {
                *slot = r;
            }
        }
    }
    let cells: Vec<Cell> = probes
        .iter()
        .zip(results)
        .zip(expected)
        .map(|((p, (actual, rtt_us, error)), e)| Cell {
            from: p.from.label.clone(),
            to: p.to.label.clone(),
            expected: e.reach,
            actual,
            why: e.why,
            rtt_us,
            error,
        })
        .collect();

    let tap_reports: Vec<TapProbe> = taps
        .iter_mut()
        .map(|w| {
            let (frames, arp_requests, to_address) = w.drain();
            TapProbe {
                child: w.child.clone(),
                device: w.device.clone(),
                arp_requests,
                to_address,
                frames,
                ok: w.error.is_none() && arp_requests + to_address > 0,
                error: w.error.clone(),
            }
        })
        .collect();
    // Only count a tap as failed when something was supposed to ask for it (a gateway pings it).
    let tap_fail = tap_reports
        .iter()
        .filter(|r| !r.ok && eps.iter().any(|e| matches!(e.role, Role::Gateway(_))))
        .count();
    let mismatches = cells.iter().filter(|c| !c.matches()).count() + tap_fail;
    Ok(Report {
        lab: t.name.clone(),
        endpoints: eps,
        cells,
        taps: tap_reports,
        mismatches,
        elapsed_ms: start.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
    })
}

/// The matrix as text: rows are sources, columns targets; legend and reasons below.
pub fn render_text(r: &Report) -> String {
    let labels: Vec<&str> = r.endpoints.iter().map(|e| e.label.as_str()).collect();
    let corner = "from \\ to";
    let w0 = labels
        .iter()
        .map(|l| l.len())
        .max()
        .unwrap_or(0)
        .max(corner.len());
    let cw: Vec<usize> = labels.iter().map(|l| l.len().max(3)).collect();
    let mut s = String::new();
    s.push_str(&format!("{corner:<w0$}"));
    for (l, w) in labels.iter().zip(&cw) {
        s.push_str(&format!("  {l:>w$}"));
    }
    s.push('\n');
    for from in &labels {
        s.push_str(&format!("{from:<w0$}"));
        for (to, w) in labels.iter().zip(&cw) {
            let g = r
                .cells
                .iter()
                .find(|c| c.from == *from && c.to == *to)
                .map_or("?", |c| c.glyph());
            s.push_str(&format!("  {g:>w$}"));
        }
        s.push('\n');
    }
    s.push_str(
        "\nok = reply, as expected   -- = no reply, as expected   \
         !ok = reply but none expected   !-- = no reply but one expected\n",
    );
    // Reasons, grouped, for every cell without a reply or with a surprise.
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for c in r.cells.iter().filter(|c| !c.expected || !c.matches()) {
        let mark = if c.matches() { "" } else { "MISMATCH " };
        let key = format!("{mark}{}", c.why);
        let pair = format!("{}→{}", c.from, c.to);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(pair),
            None => groups.push((key, vec![pair])),
        }
    }
    if !groups.is_empty() {
        s.push_str("\nwhy no reply is expected (or what went wrong):\n");
        for (why, pairs) in &groups {
            s.push_str(&format!("  {}: {why}\n", pairs.join(" ")));
        }
    }
    for c in r.cells.iter().filter(|c| c.error.is_some()) {
        s.push_str(&format!(
            "  probe {}→{} failed: {}\n",
            c.from,
            c.to,
            c.error.as_deref().unwrap_or("")
        ));
    }
    for tp in &r.taps {
        let status = if tp.ok { "ok" } else { "!!" };
        match &tp.error {
            Some(e) => s.push_str(&format!("\ntap {status} {}: {e}\n", tp.child)),
            None => s.push_str(&format!(
                "\ntap {status} {} {}: {} address request(s) (ARP/ND) and {} packet(s) for its \
                 address arrived on the fd ({} frame(s) in all): macvtap hands frames to the tap, \
                 not to the stack\n",
                tp.child, tp.device, tp.arp_requests, tp.to_address, tp.frames
            )),
        }
    }
    let total = r.cells.len();
    s.push_str(&format!(
        "\n{}: {} of {total} cells as expected{} ({} ms)\n",
        r.lab,
        r.cells.iter().filter(|c| c.matches()).count(),
        if r.passed() { ", PASS" } else { ", FAIL" },
        r.elapsed_ms
    ));
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tap_frames_classified() {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 198, 18, 0, 1]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[198, 18, 0, 13]);
        let me: IpAddr = "198.18.0.13".parse().unwrap();
        assert_eq!(classify(&f, me), Some(ForAddr::Resolve));
        assert_eq!(classify(&f, "198.18.0.14".parse().unwrap()), None);
        assert_eq!(classify(&f[..10], me), None);
    }
}
