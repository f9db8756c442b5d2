//! `macvnet bench`: measurements inside namespaces this command creates and removes
//! (`mvbench-<pid>-<n>-<tag>`), also when interrupted by Ctrl-C or SIGTERM.

pub mod chart;
pub mod cni;
pub mod dataplane;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use macvnet_netlink as nl;
use nl::{Handle, LinkChange, NetnsRef};

static STOP: AtomicBool = AtomicBool::new(false);
static COUNTER: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM only set a flag; every loop checks it and returns an error, so the
/// namespace guards run their Drop and remove everything.
pub fn install_signal_handlers() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &act) }
            .map_err(|e| anyhow::anyhow!("installing a {sig} handler: {e}"))?;
    }
    Ok(())
}

pub fn interrupted() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Err("interrupted") once Ctrl-C/SIGTERM arrived.
pub fn check() -> anyhow::Result<()> {
    if interrupted() {
        anyhow::bail!("interrupted; removing the benchmark namespaces");
    }
    Ok(())
}

/// A named namespace `mvbench-<pid>-<n>-<tag>`, deleted (with every link in it) on drop.
#[derive(Debug)]
pub struct BenchNs {
    pub name: String,
    pub ns: NetnsRef,
}

impl BenchNs {
    pub fn new(tag: &str) -> anyhow::Result<BenchNs> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}{n}-{tag}", prefix());
        let ns = nl::netns::add(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(BenchNs { name, ns })
    }

    pub fn handle(&self) -> anyhow::Result<Handle> {
        Handle::open(&self.ns).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

impl Drop for BenchNs {
    fn drop(&mut self) {
        if let Err(e) = nl::netns::del(&self.name, true) {
            eprintln!(
                "macvnet bench: cleanup: deleting namespace {}: {e}",
                self.name
            );
        }
    }
}

/// Every namespace of this process starts with this.
pub fn prefix() -> String {
    format!("mvbench-{}-", std::process::id())
}

/// Set a link up (by name) through `h`.
pub fn link_up(h: &mut Handle, name: &str) -> anyhow::Result<u32> {
    let l = h.link_by_name(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    h.set_link(
        l.index,
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(l.index)
}

/// Value at quantile `q` (0..=1) of `v`, nearest rank on a sorted copy; NaN when empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((s.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
    s.get(i).copied().unwrap_or(f64::NAN)
}

/// The machine the figures come from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub date: String,
    pub nproc: usize,
    pub kernel: String,
    pub cpu_model: String,
    /// /proc/loadavg (1, 5, 15 min) when the run started: other load skews every figure.
    pub loadavg: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let nproc = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Machine {
            date: utc_now(),
            nproc,
            kernel,
            cpu_model,
            loadavg,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} · {} CPUs ({}) · kernel {} · load {}",
            self.date, self.nproc, self.cpu_model, self.kernel, self.loadavg
        )
    }
}

/// "YYYY-MM-DD HH:MM UTC" from the system clock (civil-from-days, no time crate needed).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
