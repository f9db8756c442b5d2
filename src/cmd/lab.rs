//! `macvnet lab`: build, check, draw and tear down a topology described in a TOML file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use nix::sys::signal::{SigSet, Signal};

use crate::lab::{build, check, picture, state, topo, LabError};
use crate::{CmdResult, Global};

/// Like print!/println!, but a closed stdout (`| head`) must not panic before `down` runs.
macro_rules! out {
    ($($a:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($a)*);
    }};
}
macro_rules! outln {
    () => { out!("\n") };
    ($($a:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($a)*);
    }};
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  macvnet lab run examples/seed.toml            # up, check, down: the tutorial in one command
  macvnet lab up examples/vepa.toml && macvnet lab check -j examples/vepa.toml
  macvnet lab down examples/vepa.toml
  macvnet lab draw examples/seed.toml -o seed.svg

Namespaces are named mvlab-<pid>-<name>; state lives in /run/macvnet/labs (MACVNET_STATE_DIR).
File format: examples/README.md.")]
pub struct Args {
    #[command(subcommand)]
    pub cmd: LabCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum LabCmd {
    /// Create the lab's namespaces and links.
    Up { file: PathBuf },
    /// Ping every ordered pair of endpoints and compare with what the modes predict.
    Check { file: PathBuf },
    /// Delete everything the lab created (also after a failed `up`). Idempotent.
    Down { file: PathBuf },
    /// up, check, down; exits with check's status. Down runs even when up or check fails.
    Run { file: PathBuf },
    /// Draw the topology as SVG (stdout, or -o FILE).
    Draw {
        file: PathBuf,
        #[arg(short = 'o', long = "output", value_name = "FILE.svg")]
        output: Option<PathBuf>,
    },
    /// Validate the file and print the expected matrix (creates nothing).
    Validate { file: PathBuf },
}

pub fn run(args: Args, global: &Global) -> CmdResult {
    match args.cmd {
        LabCmd::Up { file } => {
            let t = topo::load(&file)?;
            let st = build::up(&t, &file.display().to_string())?;
            report_up(&st, global)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Check { file } => {
            let t = topo::load(&file)?;
            do_check(&t, global)
        }
        LabCmd::Down { file } => {
            let name = lab_name(&file)?;
            do_down(&name, global)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Run { file } => {
            let t = topo::load(&file)?;
            // Hold Ctrl-C/SIGTERM/SIGHUP until down has run (every step is bounded, a run takes
            // seconds); unblocking afterwards delivers them, so the signal still ends us.
            let mut signals = SigSet::empty();
            for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
                signals.add(s);
            }
            if let Err(e) = signals.thread_block() {
                tracing::warn!(error = %e, "blocking signals during lab run");
            }
            let result = run_lab(&t, &file, global);
            let _ = signals.thread_unblock();
            result
        }
        LabCmd::Draw { file, output } => {
            let t = topo::load(&file)?;
            let st = state::load(&t.name).ok().flatten();
            let svg = crate::draw::render_svg(&picture::picture(&t, st.as_ref()));
            match output {
                Some(o) => {
                    std::fs::write(&o, svg).with_context(|| format!("writing {}", o.display()))?;
                    if !global.json {
                        eprintln!("wrote {}", o.display());
                    }
                }
                None => out!("{svg}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Validate { file } => {
            let t = topo::load(&file)?;
            let eps = crate::lab::expect::endpoints(&t);
            let cells: Vec<ExpectedCell> = eps
                .iter()
                .flat_map(|a| eps.iter().map(move |b| (a, b)))
                .map(|(a, b)| {
                    let e = crate::lab::expect::expect(&t, a, b);
                    ExpectedCell {
                        from: a.label.clone(),
                        to: b.label.clone(),
                        expected: e.reach,
                        why: e.why,
                    }
                })
                .collect();
            if global.json {
                crate::output::print_json(
                    &serde_json::json!({"lab": t.name, "valid": true, "cells": cells}),
                )?;
            } else {
                outln!(
                    "{}: valid ({} namespaces, {} uplinks, {} children)",
                    file.display(),
                    t.netns.len(),
                    t.uplinks.len(),
                    t.children.len()
                );
                for c in &cells {
                    let what = if c.expected { "reply" } else { "no reply" };
                    outln!("  {} → {}: {what} ({})", c.from, c.to, c.why);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One cell of `lab validate`: what `check` will expect.
#[derive(Debug, serde::Serialize)]
struct ExpectedCell {
    from: String,
    to: String,
    expected: bool,
    why: String,
}

/// The lab name from a file, even one that no longer validates (so `down` always works).
fn lab_name(file: &Path) -> anyhow::Result<String> {
    match topo::load(file) {
        Ok(t) => Ok(t.name),
        Err(LabError::Invalid { .. }) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let table: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
            let name = table
                .get("name")
                .and_then(|v| v.as_str())
                .with_context(|| format!("{}: no lab name", file.display()))?;
            // The name becomes a file name under the state dir: same rule as validation.
            let ok = !name.is_empty()
                && name.len() <= 32
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            anyhow::ensure!(ok, "{}: bad lab name {name:?}", file.display());
            Ok(name.to_string())
        }
        Err(e) => Err(e.into()),
    }
}

fn report_up(st: &state::LabState, global: &Global) -> anyhow::Result<()> {
    if global.json {
        crate::output::print_json(st)?;
    } else {
        let names: Vec<String> = st
            .namespaces
            .iter()
            .map(|n| format!("{}={}", n.logical, n.physical))
            .collect();
        outln!("lab {} is up: {}", st.name, names.join(" "));
    }
    Ok(())
}

fn do_check(t: &topo::Topology, global: &Global) -> CmdResult {
    let st = state::load(&t.name)?.ok_or_else(|| LabError::NotUp {
        name: t.name.clone(),
        path: state::state_path(&t.name).display().to_string(),
    })?;
    let r = check::check(t, &st)?;
    if global.json {
        crate::output::print_json(&r)?;
    } else {
        out!("{}", check::render_text(&r));
    }
    Ok(if r.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn do_down(name: &str, global: &Global) -> anyhow::Result<()> {
    let r = build::down(name)?;
    if global.json {
        crate::output::print_json(&r)?;
    } else if r.nothing_to_do {
        outln!("lab {name}: nothing to do (not up)");
    } else {
        outln!("lab {name} is down: removed {}", r.removed.join(" "));
    }
    Ok(())
}

/// `lab run` after loading: up, check, and down whatever happened.
fn run_lab(t: &topo::Topology, file: &Path, global: &Global) -> CmdResult {
    let up = build::up(t, &file.display().to_string());
    let outcome = match up {
        Ok(st) => {
            if !global.json {
                let _ = report_up(&st, global);
                outln!();
            }
            do_check(t, global)
        }
        Err(e) => Err(anyhow::Error::new(e).context("lab up failed")),
    };
    // Down always runs; in JSON mode stdout stays one document (the check report).
    let down = build::down(&t.name).map_err(anyhow::Error::new);
    if let (Ok(r), false) = (&down, global.json) {
        outln!(
            "\nlab {} is down: removed {} namespaces",
            t.name,
            r.removed.len()
        );
    }
    match (outcome, down) {
        (Ok(code), Ok(_)) => Ok(code),
        (Err(e), Ok(_)) => Err(e),
        (Ok(_), Err(d)) => Err(d.context("lab down failed")),
        (Err(e), Err(d)) => Err(e.context(format!("and lab down failed too: {d:#}"))),
    }
}
