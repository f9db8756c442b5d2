//! `lab check`: ping every ordered pair of endpoints and compare with the expectations.

use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use macvnet_netlink as nl;
use nl::{Handle, NetnsRef};
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
    /// ARP requests for the child's address read from the fd.
    pub arp_requests: u32,
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
        let link = Handle::open(&ns).and_then(|mut h| h.link_by_name(&c.name));
        match link.map(|l| l.tap_device()) {
            Ok(Some(dev)) => {
                w.device = dev.clone();
                match std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&dev)
                {
                    Ok(f) => {
                        w.file = Some(f);
                        w.drain();
                    }
                    Err(e) => w.error = Some(format!("opening {dev}: {e}")),
                }
            }
            Ok(None) => w.error = Some("not a macvtap".into()),
            Err(e) => w.error = Some(e.to_string()),
        }
        Some(w)
    }

    /// Read every queued frame; count frames and ARP requests for our address.
    fn drain(&mut self) -> (u32, u32) {
        let Some(f) = self.file.as_mut() else {
            return (0, 0);
        };
        let (mut frames, mut arps) = (0, 0);
        let mut buf = vec![0u8; 65536];
        // Bounded: a queue holds at most a few hundred frames.
        for _ in 0..4096 {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    frames += 1;
                    if buf
                        .get(..n)
                        .is_some_and(|fr| is_arp_request_for(fr, self.addr))
                    {
                        arps += 1;
                    }
                }
            }
        }
        (frames, arps)
    }
}

/// An ARP request (who-has `ip`) in a frame read from a tap fd. The fd may prepend a
/// virtio-net header (10 or 12 bytes, IFF_VNET_HDR is on by default for macvtap), so try each.
fn is_arp_request_for(frame: &[u8], ip: IpAddr) -> bool {
    let IpAddr::V4(v4) = ip else { return false };
    [10usize, 12, 0].iter().any(|off| {
        let Some(f) = frame.get(*off..) else {
            return false;
        };
        // Ethernet: type at 12..14 = 0x0806; ARP: oper at 20..22 = 1, target IP at 38..42.
        f.get(12..14) == Some(&[0x08, 0x06][..])
            && f.get(20..22) == Some(&[0, 1][..])
            && f.get(38..42) == Some(&v4.octets()[..])
    })
}

/// Run the matrix against a lab that is up.
pub fn check(t: &Topology, st: &LabState) -> Result<Report, LabError> {
    if !st.complete {
        return Err(LabError::Partial {
            name: t.name.clone(),
        });
    }
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

    let mut results = Vec::with_capacity(probes.len());
    for chunk in probes.chunks(PARALLEL) {
        let out: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = chunk
                .iter()
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

    let cells: Vec<Cell> = probes
        .iter()
        .zip(results)
        .map(|(p, (actual, rtt_us, error))| {
            let e = expect(t, p.from, p.to);
            Cell {
                from: p.from.label.clone(),
                to: p.to.label.clone(),
                expected: e.reach,
                actual,
                why: e.why,
                rtt_us,
                error,
            }
        })
        .collect();

    let tap_reports: Vec<TapProbe> = taps
        .iter_mut()
        .map(|w| {
            let (frames, arp_requests) = w.drain();
            TapProbe {
                child: w.child.clone(),
                device: w.device.clone(),
                arp_requests,
                frames,
                ok: w.error.is_none() && arp_requests > 0,
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
                "\ntap {status} {} ({}): {} ARP request(s) for its address arrived on the fd ({} frame(s)); \
                 macvtap hands frames to the tap, not to the stack\n",
                tp.child, tp.device, tp.arp_requests, tp.frames
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
    fn arp_request_detected_with_vnet_header() {
        let mut f = vec![0u8; 10];
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 198, 18, 0, 1]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[198, 18, 0, 13]);
        assert!(is_arp_request_for(&f, "198.18.0.13".parse().unwrap()));
        assert!(!is_arp_request_for(&f, "198.18.0.14".parse().unwrap()));
        assert!(is_arp_request_for(&f[10..], "198.18.0.13".parse().unwrap()));
    }
}
