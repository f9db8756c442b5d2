//! The plugin entry point: environment and stdin → [`Request`] → [`Plugin`] → stdout,
//! following Go's `pkg/skel` (env table per command, version gates, error JSON on stdout
//! with exit status 1).
//!
//! Go behaviour kept: no `CNI_COMMAND` and a non-empty `about` → `about` and the supported
//! versions on stderr, exit 0; missing variables → code 4 naming them in table order;
//! CHECK needs config ≥ 0.4.0 and GC/STATUS ≥ 1.1.0 (else code 1 "config version does not
//! allow CHECK"), and a supported plugin version ≥ the config's (else code 1 "plugin
//! version does not allow CHECK"); config version not in the supported list → code 1;
//! unknown command → code 4 (after the config's name is validated, as in Go).
//!
//! Differences from Go, on purpose:
//! - the "CNI_NETNS is the plugin's own netns" check (code 8) runs *before* ADD/DEL
//!   instead of after, so a plugin never configures its own namespace;
//! - VERSION echoes the request's `cniVersion` (spec §5) instead of always "1.1.0";
//! - stdin is capped at [`MAX_STDIN`] bytes (code 6 above it);
//! - error JSON carries `cniVersion` (spec §5 "Error").

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::args::CniArgs;
use crate::delegate::Delegate;
use crate::error::CniError;
use crate::types::{CniResult, NetConf};
use crate::validate::{validate_container_id, validate_interface_name, validate_network_name};
use crate::version::{self, VersionInfo, CHECK_MIN, CURRENT, GC_STATUS_MIN, SUPPORTED_VERSIONS};

/// Largest network config accepted on stdin.
pub const MAX_STDIN: usize = 4 * 1024 * 1024;

/// A CNI command (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    /// The exact upper-case spelling the spec uses; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "GC" => Self::Gc,
            "STATUS" => Self::Status,
            "VERSION" => Self::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Gc => "GC",
            Self::Status => "STATUS",
            Self::Version => "VERSION",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The environment a plugin runs with (tests build one by hand).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    pub fn new() -> Self {
        Self::default()
    }

    /// The process environment (non-UTF-8 variables are skipped).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// Builder: set `key`.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(key, value);
        self
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(key.into(), value.into());
    }

    pub fn remove(&mut self, key: &str) {
        self.vars.remove(key);
    }

    /// The value of `key`; `None` when unset (empty counts as unset for the skel).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    fn get_or_empty(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

/// One parsed, validated plugin invocation.
#[derive(Debug, Clone)]
pub struct Request {
    pub command: Command,
    /// `CNI_CONTAINERID` ("" for GC/STATUS).
    pub container_id: String,
    /// `CNI_NETNS` (may be absent on DEL, GC, STATUS).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` ("" for GC/STATUS).
    pub ifname: String,
    /// `CNI_ARGS` as given; parse with [`Request::args`].
    pub args_raw: String,
    /// `CNI_PATH` split on ':' (empty entries dropped).
    pub path: Vec<PathBuf>,
    /// `CNI_PATH` as given.
    pub path_raw: String,
    /// `CNI_NETNS_OVERRIDE` is "1"/"true".
    pub netns_override: bool,
    /// The raw stdin bytes, for plugins to parse their own config struct.
    pub stdin: Vec<u8>,
    pub config: NetConf,
}

impl Request {
    /// `CNI_ARGS` parsed (code 4 when malformed).
    pub fn args(&self) -> Result<CniArgs, CniError> {
        CniArgs::parse(&self.args_raw)
    }

    /// `CNI_NETNS`, or code 4 when absent.
    pub fn netns_path(&self) -> Result<&Path, CniError> {
        self.netns
            .as_deref()
            .ok_or_else(|| CniError::invalid_env("required env variables [CNI_NETNS] missing"))
    }

    /// The config's protocol version ("0.1.0" when absent).
    pub fn cni_version(&self) -> &str {
        self.config.version()
    }

    /// `prevResult` parsed into the canonical result.
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        self.config.prev_result()
    }

    /// A delegate that runs other plugins (IPAM) with this request's environment.
    pub fn delegate(&self) -> Delegate {
        Delegate::from_request(self)
    }
}

/// A CNI plugin. `check`, `status` and `gc` default to success (as Go's skel does for
/// a missing callback).
pub trait Plugin {
    fn add(&self, req: &Request) -> Result<CniResult, CniError>;
    fn del(&self, req: &Request) -> Result<(), CniError>;
    fn check(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
    fn status(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
    fn gc(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
    /// Versions reported by VERSION and accepted in configs (oldest first).
    fn supported_versions(&self) -> &[&'static str] {
        SUPPORTED_VERSIONS
    }
}

/// Run `plugin` as the process's main: environment, stdin and stdout of this process.
pub fn run<P: Plugin>(plugin: &P, about: &str) -> ExitCode {
    ExitCode::from(u8::try_from(run_status(plugin, about)).unwrap_or(1))
}

/// Define the C `main` of a plugin binary that is `#![no_main]`, running `$plugin` through
/// [`run_status`]. Skipping Rust's runtime start matters for a process that lives a few
/// milliseconds: it no longer parses /proc/self/maps (sscanf, locale tables) to find the
/// main thread's stack guard, which was a sizeable part of a plugin's resident set.
/// SIGPIPE is ignored as Rust's start would: a delegated IPAM plugin that exits without
/// reading its stdin must give an error to undo, not kill the plugin halfway.
#[macro_export]
macro_rules! plugin_main {
    ($plugin:expr, $about:expr) => {
        #[no_mangle]
        extern "C" fn main(
            _argc: ::std::ffi::c_int,
            _argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            $crate::skel::ignore_sigpipe();
            $crate::skel::run_status(&$plugin, $about)
        }
    };
}

/// Ignore SIGPIPE, as Rust's own `main` does (see [`plugin_main!`]).
pub fn ignore_sigpipe() {
    // SAFETY: SIG_IGN installs no handler code; nothing else in the process touches SIGPIPE.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
}

/// [`run`] returning the exit status (0 or 1) instead of an `ExitCode`.
pub fn run_status<P: Plugin>(plugin: &P, about: &str) -> i32 {
    let env = Env::from_process();
    let stdin = std::io::stdin();
    let cmd = env.get_or_empty("CNI_COMMAND");
    // A person typing the command by hand must not be left waiting on a terminal.
    let skip_stdin = (cmd.is_empty() || cmd == "VERSION") && stdin.is_terminal();
    let mut empty: &[u8] = &[];
    let mut locked = stdin.lock();
    let input: &mut dyn Read = if skip_stdin { &mut empty } else { &mut locked };
    let code = run_with_reader(
        plugin,
        about,
        &env,
        input,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
    );
    // stdout is a LineWriter; without Rust's runtime nothing flushes it at exit.
    let _ = std::io::stdout().flush();
    code
}

/// [`run`] on explicit inputs; returns the exit status (0 or 1).
pub fn run_with<P: Plugin>(
    plugin: &P,
    about: &str,
    env: &Env,
    stdin: &[u8],
    out: &mut impl Write,
    err: &mut impl Write,
) -> i32 {
    let mut input = stdin;
    run_with_reader(plugin, about, env, &mut input, out, err)
}

/// [`run_with`] reading stdin only once the environment is known good (as Go does).
pub fn run_with_reader<P: Plugin>(
    plugin: &P,
    about: &str,
    env: &Env,
    stdin: &mut dyn Read,
    out: &mut impl Write,
    err: &mut impl Write,
) -> i32 {
    let mut reply_version = CURRENT.to_string();
    match dispatch(plugin, about, env, stdin, out, err, &mut reply_version) {
        Ok(()) => 0,
        Err(e) => {
            tracing::debug!(code = e.code, msg = %e.msg, details = %e.details, "CNI error");
            let _ = out.write_all(e.to_string_pretty(&reply_version).as_bytes());
            let _ = out.flush();
            1
        }
    }
}

/// Which commands require a variable (Go skel's table); `None` = never required.
fn required(var: &str, cmd: &str) -> bool {
    let list: &[&str] = match var {
        "CNI_COMMAND" | "CNI_PATH" => &["ADD", "CHECK", "DEL", "GC", "STATUS"],
        "CNI_CONTAINERID" | "CNI_IFNAME" => &["ADD", "CHECK", "DEL"],
        "CNI_NETNS" => &["ADD", "CHECK"],
        _ => &[],
    };
    list.contains(&cmd)
}

const ENV_VARS: &[&str] = &[
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
    "CNI_NETNS_OVERRIDE",
];

fn check_env(env: &Env) -> Result<(), CniError> {
    let cmd = env.get_or_empty("CNI_COMMAND");
    let mut missing = Vec::new();
    for var in ENV_VARS {
        let val = env.get_or_empty(var);
        let req = required(var, cmd);
        if val.is_empty() {
            if req || *var == "CNI_COMMAND" {
                missing.push(*var);
            }
        } else if req {
            match *var {
                "CNI_CONTAINERID" => validate_container_id(val)?,
                "CNI_IFNAME" => validate_interface_name(val)?,
                _ => {}
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CniError::invalid_env(format!(
            "required env variables [{}] missing",
            missing.join(",")
        )))
    }
}

fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>, CniError> {
    let mut buf = Vec::new();
    stdin
        .take(MAX_STDIN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::io(format!("error reading from stdin: {e}")))?;
    if buf.len() > MAX_STDIN {
        return Err(CniError::decoding(format!(
            "network config on stdin is larger than {MAX_STDIN} bytes"
        )));
    }
    Ok(buf)
}

/// Go skel's `validateConfig`: the JSON must decode and carry a valid `name`.
fn validate_config(stdin: &[u8]) -> Result<(), CniError> {
    #[derive(serde::Deserialize)]
    struct NameOnly {
        #[serde(default)]
        name: Option<String>,
    }
    let conf: Option<NameOnly> = serde_json::from_slice(stdin)
        .map_err(|e| CniError::decoding(format!("error unmarshall network config: {e}")))?;
    let name = conf.and_then(|c| c.name).unwrap_or_default();
    if name.is_empty() {
        return Err(CniError::invalid_config("missing network name"));
    }
    validate_network_name(&name)
}

/// CHECK/GC/STATUS gates: config ≥ `min`, and the plugin supports something ≥ config.
fn gate(config_version: &str, min: &str, cmd: Command, supported: &[&str]) -> Result<(), CniError> {
    if !version::greater_or_equal(config_version, min)? {
        return Err(CniError::incompatible_version(format!(
            "config version does not allow {cmd}"
        )));
    }
    for v in supported {
        if version::greater_or_equal(v, config_version)? {
            return Ok(());
        }
    }
    Err(CniError::incompatible_version(format!(
        "plugin version does not allow {cmd}"
    )))
}

/// Whether `path` is the network namespace this thread is in.
fn is_own_netns(path: &Path) -> Result<bool, CniError> {
    let Ok(target) = std::fs::metadata(path) else {
        // Go lets the plugin judge a bad path (and DEL of a gone netns is fine).
        return Ok(false);
    };
    let own = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| CniError::invalid_netns(format!("get plugin's netns failed: {e}")))?;
    Ok(target.dev() == own.dev() && target.ino() == own.ino())
}

fn dispatch<P: Plugin>(
    plugin: &P,
    about: &str,
    env: &Env,
    stdin: &mut dyn Read,
    out: &mut impl Write,
    err: &mut impl Write,
    reply_version: &mut String,
) -> Result<(), CniError> {
    let supported = plugin.supported_versions();
    let cmd_str = env.get_or_empty("CNI_COMMAND");
    if let Err(e) = check_env(env) {
        if cmd_str.is_empty() && !about.is_empty() {
            let _ = writeln!(err, "{about}");
            let _ = writeln!(
                err,
                "CNI protocol versions supported: {}",
                supported.join(", ")
            );
            return Ok(());
        }
        return Err(e);
    }

    let stdin = if cmd_str == "VERSION" {
        // Best effort: VERSION only needs the requested cniVersion, if any.
        read_stdin(stdin).unwrap_or_default()
    } else {
        read_stdin(stdin)?
    };
    if let Ok(v) = version::decode_version(&stdin) {
        *reply_version = v;
    }

    if cmd_str == "VERSION" {
        let requested = serde_json::from_slice::<serde_json::Value>(&stdin)
            .ok()
            .and_then(|v| {
                v.get("cniVersion")
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
            });
        let info = VersionInfo::reply(requested.as_deref(), supported);
        let mut text = serde_json::to_string(&info).map_err(|e| CniError::io(e.to_string()))?;
        text.push('\n');
        return out
            .write_all(text.as_bytes())
            .map_err(|e| CniError::io(format!("error writing stdout: {e}")));
    }

    validate_config(&stdin)?;
    let Some(cmd) = Command::parse(cmd_str) else {
        return Err(CniError::invalid_env(format!(
            "unknown CNI_COMMAND: {cmd_str}"
        )));
    };

    let config_version = version::decode_version(&stdin)?;
    match cmd {
        Command::Check => gate(&config_version, CHECK_MIN, cmd, supported)?,
        Command::Gc | Command::Status => gate(&config_version, GC_STATUS_MIN, cmd, supported)?,
        Command::Add | Command::Del | Command::Version => {}
    }
    version::reconcile(&config_version, supported)?;

    let config = NetConf::parse(&stdin)?;
    let netns = Some(env.get_or_empty("CNI_NETNS"))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let override_raw = env.get_or_empty("CNI_NETNS_OVERRIDE");
    let netns_override = override_raw == "1" || override_raw.eq_ignore_ascii_case("true");
    let path_raw = env.get_or_empty("CNI_PATH").to_string();
    let req = Request {
        command: cmd,
        container_id: env.get_or_empty("CNI_CONTAINERID").to_string(),
        netns,
        ifname: env.get_or_empty("CNI_IFNAME").to_string(),
        args_raw: env.get_or_empty("CNI_ARGS").to_string(),
        path: path_raw
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect(),
        path_raw,
        netns_override,
        stdin,
        config,
    };

    if matches!(cmd, Command::Add | Command::Del) && !req.netns_override {
        if let Some(ns) = &req.netns {
            if is_own_netns(ns)? {
                return Err(CniError::invalid_netns(
                    "plugin's netns and netns from CNI_NETNS should not be the same",
                ));
            }
        }
    }

    match cmd {
        Command::Add => {
            let result = plugin.add(&req)?;
            let text = result.to_string_pretty(&config_version)?;
            out.write_all(text.as_bytes())
                .map_err(|e| CniError::io(format!("error writing result: {e}")))?;
            out.flush()
                .map_err(|e| CniError::io(format!("error writing result: {e}")))
        }
        Command::Del => plugin.del(&req),
        Command::Check => plugin.check(&req),
        Command::Gc => plugin.gc(&req),
        Command::Status => plugin.status(&req),
        Command::Version => Ok(()),
    }
}
