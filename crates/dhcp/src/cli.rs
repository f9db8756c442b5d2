//! `dhcp` (plugin) and `dhcp daemon [flags]` entry point, with Go `flag` syntax
//! (`-name value`, `-name=value`, `--name`, booleans as `-name` or `-name=false`) so the
//! reference's command lines and systemd units work unchanged.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::client::Timing;
use crate::config::DEFAULT_SOCKET_PATH;
use crate::daemon::{self, DaemonConfig};
use crate::plugin::DhcpPlugin;
use crate::store::DEFAULT_STATE_DIR;

const USAGE: &str = "Usage of daemon:
  -broadcast
    \tbroadcast DHCP leases
  -hostprefix string
    \toptional prefix to host root
  -lifetimes
    \tput the lease time on leased addresses present on the link (default true)
  -pidfile string
    \toptional path to write daemon PID to
  -resendmax duration
    \toptional dhcp client max resend delay between requests (default 1m2s)
  -resendtimeout duration
    \toptional dhcp client resend timeout, no more retries after this timeout (default 3m28s)
  -socketpath string
    \toptional dhcp server socketpath
  -statedir string
    \tdirectory where leases are persisted (default /var/lib/cni/dhcp)
  -timeout duration
    \toptional dhcp client timeout duration for each request (default 10s)
";

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units ns, us, µs, ms,
/// s, m, h ("1m2s", "1.5h", "300ms"); "0" alone is zero.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let s2 = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s2;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {s:?}")),
    }
}

/// Parse the daemon's flags; `Err` carries the message to print (usage for -h).
pub fn parse_daemon_flags(args: &[String]) -> Result<DaemonConfig, String> {
    let mut cfg = DaemonConfig {
        socket_path: PathBuf::new(),
        pidfile: None,
        host_prefix: String::new(),
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        timing: Timing::default(),
        address_lifetimes: true,
    };
    let mut socket = String::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            break; // Go stops at the first non-flag argument.
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            return Err(USAGE.to_string());
        }
        let is_bool = matches!(name, "broadcast" | "lifetimes");
        let value = match (inline, is_bool) {
            (Some(v), _) => v,
            (None, true) => "true".to_string(),
            (None, false) => {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("flag needs an argument: -{name}\n{USAGE}"))?;
                i += 1;
                v.clone()
            }
        };
        let dur = |v: &str| {
            parse_go_duration(v).map_err(|e| format!("invalid value {v:?} for flag -{name}: {e}"))
        };
        match name {
            "pidfile" => cfg.pidfile = (!value.is_empty()).then(|| PathBuf::from(&value)),
            "hostprefix" => cfg.host_prefix = value,
            "socketpath" => socket = value,
            "statedir" => cfg.state_dir = PathBuf::from(value),
            "broadcast" => cfg.timing.broadcast = parse_bool(&value)?,
            "lifetimes" => cfg.address_lifetimes = parse_bool(&value)?,
            "timeout" => cfg.timing.timeout = dur(&value)?,
            "resendmax" => cfg.timing.resend_max = dur(&value)?,
            "resendtimeout" => cfg.timing.resend_timeout = dur(&value)?,
            other => return Err(format!("flag provided but not defined: -{other}\n{USAGE}")),
        }
    }
    cfg.socket_path = PathBuf::from(if socket.is_empty() {
        DEFAULT_SOCKET_PATH.to_string()
    } else {
        socket
    });
    if cfg.timing.timeout.is_zero() {
        return Err("-timeout must be positive".to_string());
    }
    Ok(cfg)
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The binary's main: `dhcp daemon ...` runs the daemon, anything else is the plugin.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("daemon") {
        init_tracing("info");
        let cfg = match parse_daemon_flags(args.get(2..).unwrap_or(&[])) {
            Ok(c) => c,
            Err(msg) => {
                let help = msg == USAGE;
                eprint!("{msg}");
                return if help {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                };
            }
        };
        match daemon::run(cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }
    } else {
        init_tracing("warn");
        macvnet_cni::run(
            &DhcpPlugin,
            &format!("CNI dhcp plugin (macvnet) v{}", env!("CARGO_PKG_VERSION")),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_go_duration("1m2s").unwrap(), Duration::from_secs(62));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("300ms").unwrap(),
            Duration::from_millis(300)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "10", "s", "1x", "-1s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reference_flags() {
        let c = parse_daemon_flags(&v(&[
            "-socketpath",
            "/tmp/d.sock",
            "--pidfile=/tmp/d.pid",
            "-broadcast",
            "-timeout",
            "3s",
            "-resendmax=5s",
            "-hostprefix",
            "/host",
            "-statedir",
            "/tmp/st",
        ]))
        .unwrap();
        assert_eq!(c.socket_path, PathBuf::from("/tmp/d.sock"));
        assert_eq!(c.pidfile, Some(PathBuf::from("/tmp/d.pid")));
        assert!(c.timing.broadcast);
        assert_eq!(c.timing.timeout, Duration::from_secs(3));
        assert_eq!(c.timing.resend_max, Duration::from_secs(5));
        assert_eq!(c.host_prefix, "/host");
        let d = parse_daemon_flags(&[]).unwrap();
        assert_eq!(d.socket_path, PathBuf::from(DEFAULT_SOCKET_PATH));
        assert_eq!(d.timing.resend_timeout, Duration::from_secs(208));
        assert!(parse_daemon_flags(&v(&["-nope"])).is_err());
        assert!(parse_daemon_flags(&v(&["-timeout"])).is_err());
        assert!(parse_daemon_flags(&v(&["-broadcast=false"])).is_ok_and(|c| !c.timing.broadcast));
    }
}
