//! Running another plugin (IPAM) the way Go's `pkg/invoke` does: look it up on
//! `CNI_PATH`, run it with this process's environment plus the request's CNI
//! variables and an overridden `CNI_COMMAND`, feed the config on stdin, and read a
//! result (any version) or an error JSON (code passed through) from stdout.
//! Each run is bounded by a timeout after which the child is killed by pid.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::CniError;
use crate::skel::Request;
use crate::types::CniResult;
use crate::version;

/// Default bound on one delegate run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Most stdout/stderr kept from a delegate; the rest is read and dropped.
pub const MAX_OUTPUT: usize = 4 * 1024 * 1024;
/// Spawn retries on ETXTBSY (the binary is being written), as Go does.
const TXTBSY_RETRIES: u32 = 5;
/// Longest nap while reaping a child that closed its pipes but has not exited yet.
const MAX_NAP: Duration = Duration::from_millis(10);
/// How often to look for a child that exited while something else holds its pipes.
const SLICE: Duration = Duration::from_millis(50);
/// How long to wait for pipes after the child exited.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// Find `plugin` in `paths`: first regular, executable file named `plugin`.
/// Errors are Go's messages with code 999 (Go returns a plain error there, which its
/// skel reports as 999).
pub fn find_in_path(plugin: &str, paths: &[PathBuf]) -> Result<PathBuf, CniError> {
    if plugin.is_empty() {
        return Err(CniError::internal("no plugin name provided"));
    }
    if plugin.contains('/') {
        return Err(CniError::internal(format!("invalid plugin name: {plugin}")));
    }
    if paths.is_empty() {
        return Err(CniError::internal("no paths provided"));
    }
    for dir in paths {
        let full = dir.join(plugin);
        if let Ok(meta) = std::fs::metadata(&full) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(full);
            }
        }
    }
    let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    Err(CniError::internal(format!(
        "failed to find plugin {plugin:?} in path [{}]",
        list.join(" ")
    )))
}

/// Runs delegate plugins.
#[derive(Debug, Clone)]
pub struct Delegate {
    /// Directories searched for the plugin (`CNI_PATH`).
    pub paths: Vec<PathBuf>,
    /// Variables set on the child on top of this process's environment.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Delegate {
    /// A delegate searching `paths`, inheriting this process's environment only.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Self {
            paths,
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A delegate passing the request's CNI variables on (the child would inherit them
    /// from a real plugin process anyway; this also covers [`crate::skel::run_with`]).
    pub fn from_request(req: &Request) -> Self {
        let netns = req
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut d = Self::new(req.path.clone())
            .with_env("CNI_CONTAINERID", &req.container_id)
            .with_env("CNI_NETNS", netns)
            .with_env("CNI_IFNAME", &req.ifname)
            .with_env("CNI_ARGS", &req.args_raw)
            .with_env("CNI_PATH", &req.path_raw);
        if req.netns_override {
            d = d.with_env("CNI_NETNS_OVERRIDE", "1");
        }
        d
    }

    /// Builder: set a variable for the child.
    #[must_use]
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Locate `plugin` on [`Delegate::paths`].
    pub fn find(&self, plugin: &str) -> Result<PathBuf, CniError> {
        find_in_path(plugin, &self.paths)
    }

    /// ADD: the delegate's result, parsed from whatever version it printed. A result
    /// without `cniVersion` is taken to be the config's version (Go's `fixupResultVersion`).
    pub fn add(&self, plugin: &str, netconf: &[u8]) -> Result<CniResult, CniError> {
        self.add_or_failure(plugin, netconf).map_err(|f| f.error)
    }

    /// [`Delegate::add`], telling on failure whether the plugin may hold something of
    /// this ADD (see [`AddFailure::may_hold`]).
    pub fn add_or_failure(&self, plugin: &str, netconf: &[u8]) -> Result<CniResult, AddFailure> {
        let stdout = self.run(plugin, "ADD", netconf)?;
        // It succeeded, so it holds whatever it allocated, parsable or not.
        parse_delegate_result(netconf, &stdout).map_err(|error| AddFailure {
            error,
            may_hold: true,
        })
    }

    /// DEL.
    pub fn del(&self, plugin: &str, netconf: &[u8]) -> Result<(), CniError> {
        self.exec(plugin, "DEL", netconf).map(drop)
    }

    /// CHECK.
    pub fn check(&self, plugin: &str, netconf: &[u8]) -> Result<(), CniError> {
        self.exec(plugin, "CHECK", netconf).map(drop)
    }

    /// STATUS.
    pub fn status(&self, plugin: &str, netconf: &[u8]) -> Result<(), CniError> {
        self.exec(plugin, "STATUS", netconf).map(drop)
    }

    /// GC.
    pub fn gc(&self, plugin: &str, netconf: &[u8]) -> Result<(), CniError> {
        self.exec(plugin, "GC", netconf).map(drop)
    }

    /// Run `plugin` with `CNI_COMMAND=command`; its stdout on success. On a non-zero
    /// exit the error JSON it printed is returned as is (its code passed through); with
    /// no or unparsable output the error has code 0, as in Go's `pluginErr`.
    pub fn exec(&self, plugin: &str, command: &str, netconf: &[u8]) -> Result<Vec<u8>, CniError> {
        self.run(plugin, command, netconf).map_err(|f| f.error)
    }

    /// [`Delegate::exec`] with [`AddFailure::may_hold`] on failure.
    fn run(&self, plugin: &str, command: &str, netconf: &[u8]) -> Result<Vec<u8>, AddFailure> {
        // Not found or not started: it never ran.
        let never_ran = |error| AddFailure {
            error,
            may_hold: false,
        };
        let died = |error| AddFailure {
            error,
            may_hold: true,
        };
        let path = self.find(plugin).map_err(never_ran)?;
        let mut child = self.spawn(&path, command).map_err(never_ran)?;
        let deadline = Instant::now() + self.timeout;

        if let Some(mut stdin) = child.stdin.take() {
            let data = netconf.to_vec();
            // A separate writer: a child that does not read stdin must not block us.
            thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
        }
        let (mut out_buf, mut err_buf) = (Shared::default(), Shared::default());
        let (tx, rx) = mpsc::channel::<bool>();
        if let Some(out) = child.stdout.take() {
            out_buf = spawn_reader(out, true, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            err_buf = spawn_reader(err, false, tx.clone());
        }
        drop(tx);

        let (mut out_done, mut err_done) = (false, false);
        let mut exited: Option<(ExitStatus, Instant)> = None;
        // Pipes close when the child exits, so this wakes as soon as it is done; the
        // slices only serve to notice a child that exited while a grandchild holds
        // the pipes open (then we stop waiting after PIPE_GRACE).
        while !(out_done && err_done) {
            let now = Instant::now();
            if now >= deadline {
                return Err(died(kill_for_timeout(&mut child, &path, self.timeout)));
            }
            if exited.is_some_and(|(_, at)| now >= at + PIPE_GRACE) {
                break;
            }
            match rx.recv_timeout((deadline - now).min(SLICE)) {
                Ok(true) => out_done = true,
                Ok(false) => err_done = true,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if exited.is_none() {
                        if let Ok(Some(st)) = child.try_wait() {
                            exited = Some((st, Instant::now()));
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = match exited {
            Some((st, _)) => st,
            None => wait_bounded(&mut child, deadline, &path, self.timeout).map_err(died)?,
        };
        let take = |b: &Shared| {
            b.lock()
                .map(|mut v| std::mem::take(&mut *v))
                .unwrap_or_default()
        };
        let (stdout, stderr) = (take(&out_buf), take(&err_buf));

        if status.success() {
            if !stderr.is_empty() {
                // Informational only (Go copies it to the caller's stderr).
                let _ = std::io::stderr().write_all(&stderr);
            }
            return Ok(stdout);
        }
        let answered = status.code().is_some() && CniError::from_json(&stdout).is_ok();
        Err(AddFailure {
            error: plugin_error(status, &stdout, &stderr),
            may_hold: !answered,
        })
    }

    fn spawn(&self, path: &Path, command: &str) -> Result<Child, CniError> {
        let mut attempt = 0;
        loop {
            let mut cmd = Command::new(path);
            cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("CNI_COMMAND", command)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            match cmd.spawn() {
                Ok(child) => return Ok(child),
                Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && attempt < TXTBSY_RETRIES => {
                    attempt += 1;
                    thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(CniError::internal(format!(
                        "failed to execute plugin {}: {e}",
                        path.display()
                    )));
                }
            }
        }
    }
}

/// Output collected by a reader thread; readable before EOF if a grandchild keeps the pipe open.
type Shared = Arc<Mutex<Vec<u8>>>;

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    is_stdout: bool,
    tx: mpsc::Sender<bool>,
) -> Shared {
    let shared: Shared = Arc::default();
    let sink = Arc::clone(&shared);
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    let Ok(mut buf) = sink.lock() else { break };
                    // Keep at most MAX_OUTPUT; keep draining so the child never blocks.
                    let room = MAX_OUTPUT.saturating_sub(buf.len());
                    buf.extend_from_slice(chunk.get(..n.min(room)).unwrap_or_default());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(is_stdout);
    });
    shared
}

/// A failed delegated ADD.
#[derive(Debug, Clone)]
pub struct AddFailure {
    pub error: CniError,
    /// Whether the plugin may hold something of this ADD, so that the caller's undo
    /// must run its DEL: true when it died, hung or printed nothing usable (or
    /// succeeded with a result we could not parse). False when it never ran, or it
    /// exited printing an error of its own: a plugin that refuses undoes its own work
    /// (the reference plugins call no DEL then), and a DEL could release what the
    /// attachment held before, such as the address host-local refused to duplicate.
    pub may_hold: bool,
}

fn kill_for_timeout(child: &mut Child, path: &Path, timeout: Duration) -> CniError {
    // Child::kill signals this child's pid (SIGKILL), nothing else.
    let _ = child.kill();
    let _ = child.wait();
    CniError::internal(format!(
        "plugin {} timed out after {} s and was killed",
        path.display(),
        timeout.as_secs_f64()
    ))
}

/// Reap the child; it has normally just closed its pipes, so start with short naps.
fn wait_bounded(
    child: &mut Child,
    deadline: Instant,
    path: &Path,
    timeout: Duration,
) -> Result<ExitStatus, CniError> {
    let mut nap = Duration::from_micros(50);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                return Err(kill_for_timeout(child, path, timeout))
            }
            Ok(None) => {
                thread::sleep(nap);
                nap = (nap * 2).min(MAX_NAP);
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CniError::internal(format!(
                    "waiting for plugin {}: {e}",
                    path.display()
                )));
            }
        }
    }
}

/// Go-style text of an exit status ("exit status 1", "signal: killed").
fn status_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal: {s}"),
        _ => status.to_string(),
    }
}

fn plugin_error(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> CniError {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        if stderr.is_empty() {
            return CniError::new(
                0,
                format!(
                    "netplugin failed with no error message: {}",
                    status_text(status)
                ),
                "",
            );
        }
        return CniError::new(
            0,
            format!(
                "netplugin failed: {:?}: {}",
                String::from_utf8_lossy(stderr),
                status_text(status)
            ),
            "",
        );
    }
    match CniError::from_json(stdout) {
        Ok(e) => e,
        Err(perr) => CniError::new(
            0,
            format!(
                "netplugin failed but error parsing its diagnostic message {:?}: {perr}",
                String::from_utf8_lossy(stdout)
            ),
            "",
        ),
    }
}

/// Parse a delegate's ADD output against the config it was given.
pub fn parse_delegate_result(netconf: &[u8], stdout: &[u8]) -> Result<CniResult, CniError> {
    let conf_version = version::decode_version(netconf)?;
    let mut raw: Value = serde_json::from_slice(stdout)
        .map_err(|e| CniError::decoding(format!("failed to unmarshal raw result: {e}")))?;
    if raw.is_null() {
        raw = Value::Object(serde_json::Map::new());
    }
    let result_version = match raw.get("cniVersion") {
        Some(Value::String(v)) if !v.is_empty() => v.clone(),
        _ => {
            if let Value::Object(obj) = &mut raw {
                obj.insert("cniVersion".into(), Value::String(conf_version.clone()));
            }
            conf_version
        }
    };
    CniResult::from_value(&result_version, raw)
}
