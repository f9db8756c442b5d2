//! `macvnet bench`: the data plane (macvlan vs veth vs bridge vs macvtap) and the control plane
//! (our CNI plugins vs a reference plugin folder), as a table, JSON (-j) and an SVG.
//!
//! The lead wires this file in as `cmd::bench`; the engine lives in `src/bench/`.

#[path = "../bench/mod.rs"]
mod engine;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::output::Table;
use crate::{CmdResult, Global};
use engine::chart::fmt_num;
use engine::{cni, dataplane};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  macvnet bench dataplane                 # five topologies, 3 rounds of 1 s per stream
  macvnet bench dataplane --quick -j      # a few hundred ms each, JSON
  macvnet bench cni --reference /usr/lib/cni
  macvnet bench cni --reference /usr/lib/cni --n 500 --parallel 1,4,16 --attachments 1000 --svg cni.svg

Everything runs inside namespaces named mvbench-<pid>-*, removed at the end and on Ctrl-C.
Addresses come from 198.18.0.0/15 only. Needs root.")]
pub struct Args {
    #[command(subcommand)]
    cmd: BenchCmd,
}

#[derive(Debug, clap::Subcommand)]
enum BenchCmd {
    /// Throughput, packet rate, round trips and CPU per Gbit/s between two namespaces.
    Dataplane(DataplaneArgs),
    /// ADD/DEL latency, peak RSS, decile flatness and throughput: ours vs a reference plugin dir.
    Cni(CniArgs),
}

#[derive(Debug, clap::Args)]
struct DataplaneArgs {
    /// Seconds per stream (TCP, UDP bulk, UDP small packets, round trips) in each round.
    #[arg(long, default_value_t = 1.0)]
    duration: f64,
    /// Measure every topology this many times, round-robin; the figures are medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// One round of 0.2 s per stream: a smoke run, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Use the built-in generator even when iperf3 is installed.
    #[arg(long)]
    builtin: bool,
    /// Only these topologies (repeatable or comma-separated).
    #[arg(long = "case", value_enum, value_delimiter = ',')]
    cases: Vec<dataplane::Case>,
    /// Write the SVG bar chart here.
    #[arg(long, default_value = "macvnet-bench-dataplane.svg")]
    svg: PathBuf,
    /// Do not write an SVG.
    #[arg(long)]
    no_svg: bool,
}

#[derive(Debug, clap::Args)]
struct CniArgs {
    /// The reference plugin folder (e.g. /usr/lib/cni from containernetworking-plugins).
    #[arg(long)]
    reference: PathBuf,
    /// Our plugin folder; default: the directory of this macvnet binary (target/release).
    #[arg(long)]
    ours: Option<PathBuf>,
    /// Plugin to compare (both folders need it and host-local).
    #[arg(long, default_value = "macvlan")]
    plugin: String,
    /// ADD+DEL runs per implementation and IPAM mode (after 3 warm-up runs).
    #[arg(long, default_value_t = 200)]
    n: usize,
    /// Worker counts for the throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    parallel: Vec<usize>,
    /// Attachments held at once for the decile flatness run (0 = skip).
    #[arg(long, default_value_t = 1000)]
    attachments: usize,
    /// Write the SVG plots here.
    #[arg(long, default_value = "macvnet-bench-cni.svg")]
    svg: PathBuf,
    /// Do not write an SVG.
    #[arg(long)]
    no_svg: bool,
}

pub fn run(args: Args, global: &Global) -> CmdResult {
    if !nix::unistd::geteuid().is_root() {
        bail!("bench needs root (it creates network namespaces and links)");
    }
    engine::install_signal_handlers()?;
    match args.cmd {
        BenchCmd::Dataplane(a) => run_dataplane(a, global),
        BenchCmd::Cni(a) => run_cni(a, global),
    }
}

fn write_svg(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("macvnet bench: wrote {}", path.display());
    Ok(())
}

fn run_dataplane(a: DataplaneArgs, global: &Global) -> CmdResult {
    let secs = if a.quick { 0.2 } else { a.duration };
    if !(secs > 0.0 && secs <= 600.0) {
        bail!("--duration must be in (0, 600] seconds");
    }
    let opts = dataplane::Options {
        cases: if a.cases.is_empty() {
            dataplane::Case::ALL.to_vec()
        } else {
            a.cases
        },
        duration: Duration::from_secs_f64(secs),
        rounds: if a.quick { 1 } else { a.rounds.clamp(1, 100) },
        builtin: a.builtin,
    };
    let report = dataplane::run(&opts)?;
    if !a.no_svg {
        write_svg(&a.svg, &dataplane::svg(&report))?;
    }
    if global.json {
        crate::output::print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.push(
        [
            "case",
            "TCP Gbit/s",
            "CPU ms/Gbit",
            "cores",
            "UDP Gbit/s",
            "CPU ms/Gbit",
            "64B kpps",
            "delivered",
            "RTT p50 µs",
            "RTT p99 µs",
        ]
        .map(String::from)
        .to_vec(),
    );
    let opt = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "-".into());
    for r in &report.results {
        t.push(vec![
            r.case.clone(),
            opt(r.tcp_gbps),
            opt(r.tcp_cpu_ms_per_gbit),
            opt(r.tcp_cpu_cores),
            fmt_num(r.udp_gbps),
            opt(r.udp_cpu_ms_per_gbit),
            fmt_num(r.udp_pps / 1e3),
            format!("{:.0}%", r.udp_small_delivered * 100.0),
            fmt_num(r.rtt_p50_us),
            fmt_num(r.rtt_p99_us),
        ]);
    }
    let mut out = format!(
        "{}\n{secs} s per stream, median of {} round(s), {}\n\n",
        report.machine.line(),
        report.rounds,
        report.addresses
    );
    out.push_str(&t.render());
    out.push('\n');
    for r in &report.results {
        out.push_str(&format!("{:15} {}\n", r.case, r.description));
        if let Some(n) = &r.note {
            out.push_str(&format!("{:15} note: {n}\n", ""));
        }
    }
    let generators: Vec<&str> = report
        .results
        .iter()
        .filter_map(|r| r.tcp_generator.as_deref())
        .collect();
    if let Some(g) = generators.first() {
        out.push_str(&format!("TCP stream generator: {g}\n"));
    }
    out.push_str(
        "CPU ms/Gbit: whole-machine busy time (/proc/stat: user+system+irq+softirq, both ends) during the \
         TCP stream, then the UDP 1472-byte stream, per Gbit received. delivered: share of the 64-byte \
         datagrams sent that arrived.\n",
    );
    let load1: f64 = report
        .machine
        .loadavg
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0);
    if load1 > report.machine.nproc as f64 * 0.5 {
        out.push_str(&format!(
            "\nNote: the machine was busy (load {load1} on {} CPUs) when this started; every figure is noisy.\n",
            report.machine.nproc
        ));
    }
    if let Some(v) = &report.verdict {
        out.push_str(&format!("\n{}\n", v.text));
    }
    crate::output::print_text(&out);
    Ok(ExitCode::SUCCESS)
}

fn run_cni(a: CniArgs, global: &Global) -> CmdResult {
    let ours = match a.ours {
        Some(d) => d,
        None => std::env::current_exe()
            .context("finding this binary")?
            .parent()
            .map(PathBuf::from)
            .context("this binary has no directory")?,
    };
    let opts = cni::Options {
        ours,
        reference: a.reference,
        plugin: a.plugin,
        n: a.n,
        parallel: a.parallel,
        attachments: a.attachments,
    };
    let report = cni::run(&opts)?;
    if !a.no_svg {
        write_svg(&a.svg, &cni::svg(&report))?;
    }
    if global.json {
        crate::output::print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "{}\n{} ours ({}) vs reference ({}); {} runs each after {} warm-up, alternating\n\
         floor (/bin/true started the same way): p50 {} ms, peak RSS {} KiB\n\n",
        report.machine.line(),
        report.plugin,
        report.ours.dir,
        report.reference.dir,
        report.n,
        report.warmup,
        fmt_num(report.floor_p50_ms),
        report.floor_rss_kib
    );
    let mut t = Table::new();
    t.push(
        [
            "",
            "ipam",
            "ADD p50",
            "p90",
            "p99",
            "DEL p50",
            "p90",
            "p99",
            "ru_maxrss KiB p50/max",
        ]
        .map(String::from)
        .to_vec(),
    );
    for s in [&report.ours, &report.reference] {
        for l in &s.latency {
            t.push(vec![
                s.name.clone(),
                format!("{:?}", l.ipam)
                    .to_lowercase()
                    .replace("hostlocal", "host-local")
                    .replace("l2only", "l2-only"),
                format!("{} ms", fmt_num(l.add.p50_ms)),
                fmt_num(l.add.p90_ms),
                fmt_num(l.add.p99_ms),
                format!("{} ms", fmt_num(l.del.p50_ms)),
                fmt_num(l.del.p90_ms),
                fmt_num(l.del.p99_ms),
                format!("{}/{}", l.rss_p50_kib, l.peak_rss_kib),
            ]);
        }
    }
    out.push_str(&t.render());
    let mut t = Table::new();
    t.push(
        ["", "workers", "ops", "ADD/s", "DEL/s", "failures"]
            .map(String::from)
            .to_vec(),
    );
    for s in [&report.ours, &report.reference] {
        for x in &s.throughput {
            t.push(vec![
                s.name.clone(),
                x.workers.to_string(),
                x.ops.to_string(),
                fmt_num(x.add_per_s),
                fmt_num(x.del_per_s),
                x.failures.to_string(),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&t.render());
    if report.ours.attachments > 0 {
        out.push_str(&format!(
            "\nADD p50 (ms) per tenth of {} attachments held at once:\n",
            report.ours.attachments
        ));
        for s in [&report.ours, &report.reference] {
            let v: Vec<String> = s.decile_add_p50_ms.iter().map(|x| fmt_num(*x)).collect();
            out.push_str(&format!(
                "{:10} {}  (last/first {}, teardown DEL p50 {} ms)\n",
                s.name,
                v.join(" "),
                fmt_num(s.decile_flatness),
                fmt_num(s.teardown_del_p50_ms)
            ));
        }
        out.push_str("host-local alone (no link), ADD p50 (ms) per tenth:\n");
        for s in [&report.ours, &report.reference] {
            let v: Vec<String> = s
                .ipam_decile_add_p50_ms
                .iter()
                .map(|x| fmt_num(*x))
                .collect();
            out.push_str(&format!(
                "{:10} {}  (last/first {})\n",
                s.name,
                v.join(" "),
                fmt_num(s.ipam_decile_flatness)
            ));
        }
    }
    out.push_str(&format!(
        "\npeak RSS: the ru_maxrss column is the larger of the plugin and the pages its fork copied before\n\
         exec (plugins start through macvnet-bench-spawn, a small process, when it is next to macvnet;\n\
         floor {2} KiB: /bin/true started the same way). The plugin's own, traced (VmHWM at exit, worst\n\
         of {3} ADDs and DELs): ours {0} KiB, reference {1} KiB\n",
        report.ours.own_peak_rss_kib,
        report.reference.own_peak_rss_kib,
        report.floor_rss_kib,
        4 * cni::OWN_RSS_ROUNDS,
    ));
    out.push_str("\ntargets:\n");
    for x in &report.targets {
        out.push_str(&format!(
            "  {:4} {}: {} (target {})\n",
            if x.met { "met" } else { "MISS" },
            x.what,
            fmt_num(x.value),
            x.target
        ));
    }
    crate::output::print_text(&out);
    Ok(ExitCode::SUCCESS)
}
