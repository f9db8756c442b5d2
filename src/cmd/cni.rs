//! `macvnet cni`: install our CNI plugin binaries (the ones built next to `macvnet`).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::{output, CmdResult, Global};

/// Plugins we build, in install order (missing ones are skipped: macvtap and dhcp come later).
pub const PLUGINS: &[&str] = &["macvlan", "macvtap", "host-local", "static", "dhcp"];
/// Where runtimes look for CNI plugins by default.
pub const DEFAULT_DIR: &str = "/opt/cni/bin";

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  macvnet cni install
  macvnet cni install --dir /usr/libexec/cni
  macvnet cni install --plugin macvlan --plugin host-local")]
pub struct Args {
    #[command(subcommand)]
    cmd: CniCmd,
}

#[derive(Debug, clap::Subcommand)]
enum CniCmd {
    /// Copy the plugins built next to this binary into a CNI plugin directory,
    /// replacing files there atomically (a runtime never sees a half-written plugin).
    Install {
        /// Target directory (created if missing).
        #[arg(long, default_value = DEFAULT_DIR, value_name = "DIR")]
        dir: PathBuf,
        /// Only these plugins (repeatable); default: every one found.
        #[arg(long = "plugin", value_name = "NAME")]
        plugins: Vec<String>,
        /// Where to take the binaries from; default: the directory of this `macvnet`.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
    },
}

#[derive(Debug, serde::Serialize)]
struct Installed {
    plugin: String,
    path: PathBuf,
    bytes: u64,
}

pub fn run(args: Args, global: &Global) -> CmdResult {
    match args.cmd {
        CniCmd::Install { dir, plugins, from } => {
            let from = match from {
                Some(f) => f,
                None => std::env::current_exe()
                    .context("cni install: locating this binary")?
                    .parent()
                    .map(Path::to_path_buf)
                    .context("cni install: this binary has no directory")?,
            };
            for p in &plugins {
                if !PLUGINS.contains(&p.as_str()) {
                    bail!(
                        "cni install: unknown plugin {p:?} (known: {})",
                        PLUGINS.join(", ")
                    );
                }
            }
            let wanted: Vec<&str> = if plugins.is_empty() {
                PLUGINS.to_vec()
            } else {
                plugins.iter().map(String::as_str).collect()
            };
            let done = install(&from, &dir, &wanted, !plugins.is_empty())?;
            if global.json {
                output::print_json(&done)?;
            } else {
                for i in &done {
                    output::print_text(&format!(
                        "installed {} ({} bytes)\n",
                        i.path.display(),
                        i.bytes
                    ));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Copy each of `plugins` from `from` to `dir`; a missing source is an error only when
/// it was asked for by name.
fn install(
    from: &Path,
    dir: &Path,
    plugins: &[&str],
    strict: bool,
) -> anyhow::Result<Vec<Installed>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cni install: creating {}", dir.display()))?;
    let mut done = Vec::new();
    for name in plugins {
        let src = from.join(name);
        if !src.is_file() {
            if strict {
                bail!(
                    "cni install: {} not found (build it with cargo build --release)",
                    src.display()
                );
            }
            tracing::info!("skipping {name}: {} not built", src.display());
            continue;
        }
        let dst = dir.join(name);
        let bytes = copy_atomic(&src, &dst)?;
        done.push(Installed {
            plugin: name.to_string(),
            path: dst,
            bytes,
        });
    }
    if done.is_empty() {
        bail!(
            "cni install: no plugin binaries found in {}",
            from.display()
        );
    }
    Ok(done)
}

/// Write a temporary file beside `dst`, make it 0755, sync, rename over `dst`: a running
/// plugin keeps its old inode (no ETXTBSY), a starting one sees old or new, never half.
fn copy_atomic(src: &Path, dst: &Path) -> anyhow::Result<u64> {
    let name = dst.file_name().and_then(|n| n.to_str()).unwrap_or("plugin");
    let tmp = dst.with_file_name(format!(".{name}.macvnet-{}", std::process::id()));
    let result = (|| -> anyhow::Result<u64> {
        let data = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&data)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, dst).with_context(|| format!("renaming onto {}", dst.display()))?;
        Ok(data.len() as u64)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cni install: {}", dst.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn installs_atomically_and_skips_missing() {
        let base = std::env::temp_dir().join(format!("mvt-{}-cni-install", std::process::id()));
        let from = base.join("from");
        let to = base.join("to");
        std::fs::create_dir_all(&from).unwrap();
        std::fs::write(from.join("macvlan"), b"#!/bin/sh\n").unwrap();
        let done = install(&from, &to, PLUGINS, false).unwrap();
        assert_eq!(done.len(), 1);
        let meta = std::fs::metadata(to.join("macvlan")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        // Again over the existing file; no temp files left.
        install(&from, &to, &["macvlan"], true).unwrap();
        assert_eq!(std::fs::read_dir(&to).unwrap().count(), 1);
        assert!(install(&from, &to, &["static"], true).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
