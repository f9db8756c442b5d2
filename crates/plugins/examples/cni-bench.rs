//! ADD/DEL latency and peak RSS of our macvlan plugin vs the reference, same IPAM
//! (host-local, each with its own dataDir), alternating runs, inside test namespaces.
//!
//! `cargo run --release -p macvnet-plugins --example cni-bench -- [ITERATIONS]`
//! (root; needs /usr/lib/cni/macvlan). Our binaries are taken from the same target
//! dir as this example (`cargo build --release -p macvnet-plugins` first), or from
//! `MACVNET_BENCH_DIR` when set (e.g. a static build).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use macvnet_netlink::testing::{require_root, uplink_pair, TestNs};

const REF_DIR: &str = "/usr/lib/cni";
/// Pause between the ADDs and the DELs of one round.
const SETTLE: Duration = Duration::from_millis(100);

struct Impl {
    name: &'static str,
    dir: PathBuf,
    data: PathBuf,
    container: TestNs,
    add: Vec<Duration>,
    del: Vec<Duration>,
    rss_kib: i64,
}

/// Spawn `cmd`, feed `stdin`, reap with wait4: (wall time, peak RSS KiB, success).
fn measure(mut cmd: Command, stdin: &[u8]) -> Result<(Duration, i64, bool), String> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin).map_err(|e| format!("stdin: {e}"))?;
    }
    let pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child `pid`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child by pid; the pointers are valid for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let took = start.elapsed();
    if r != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((took, ru.ru_maxrss, ok))
}

fn plugin_cmd(host: &TestNs, imp: &Impl, command: &str) -> Result<Command, String> {
    let prog = imp.dir.join("macvlan");
    let mut cmd = macvnet_netlink::netns::command_in(&host.ns, &prog.display().to_string())
        .map_err(|e| e.to_string())?;
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "mvt-bench")
        .env("CNI_NETNS", imp.container.ns.path())
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", &imp.dir);
    Ok(cmd)
}

fn conf(imp: &Impl) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "cniVersion": "1.0.0", "name": "mvtbench", "type": "macvlan", "master": "eth0",
        "ipam": {"type": "host-local", "dataDir": imp.data, "subnet": "198.18.10.0/24",
                 "routes": [{"dst": "0.0.0.0/0"}]}
    }))
    .unwrap_or_default()
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(f64::NAN)
}

fn main() -> ExitCode {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    if !require_root("cni-bench") {
        return ExitCode::FAILURE;
    }
    if !Path::new(REF_DIR).join("macvlan").exists() {
        eprintln!("cni-bench: {REF_DIR}/macvlan not installed");
        return ExitCode::FAILURE;
    }
    match run(iterations) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cni-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(iterations: usize) -> Result<(), String> {
    let our_dir = match std::env::var_os("MACVNET_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .ok_or("no target dir")?,
    };
    if !our_dir.join("macvlan").exists() {
        return Err(format!("{}/macvlan not built", our_dir.display()));
    }
    let (host, _lan) = uplink_pair("bench").map_err(|e| e.to_string())?;
    let tmp = std::env::temp_dir().join(format!("mvt-{}-bench", std::process::id()));
    let mut imps = Vec::new();
    for (name, dir) in [
        ("ours", our_dir.clone()),
        ("reference", PathBuf::from(REF_DIR)),
    ] {
        imps.push(Impl {
            name,
            dir,
            data: tmp.join(name),
            container: TestNs::new(&format!("bench-{name}")).map_err(|e| e.to_string())?,
            add: Vec::new(),
            del: Vec::new(),
            rss_kib: 0,
        });
    }
    // Floor: a process started in the host namespace doing nothing.
    let mut floor = Vec::new();
    let mut floor_rss = 0i64;
    let result = (|| -> Result<(), String> {
        for i in 0..iterations + 5 {
            let t = macvnet_netlink::netns::command_in(&host.ns, "/bin/true")
                .map_err(|e| e.to_string())?;
            let (d, rss, _) = measure(t, b"")?;
            floor_rss = floor_rss.max(rss);
            let warm = i >= 5;
            if warm {
                floor.push(d);
            }
            // Alternate which goes first.
            let order: Vec<usize> = if i % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
            let mut adds = [Duration::ZERO; 2];
            for &k in &order {
                let imp = &imps[k];
                let (add, rss, ok) = measure(plugin_cmd(&host, imp, "ADD")?, &conf(imp))?;
                if !ok {
                    return Err(format!("{} ADD failed", imp.name));
                }
                adds[k] = add;
                imps[k].rss_kib = imps[k].rss_kib.max(rss);
            }
            // A link is deleted long after it was made; right after ADD the kernel may
            // still hold references (linkwatch, DAD) that make DELLINK wait.
            std::thread::sleep(SETTLE);
            for &k in &order {
                let imp = &imps[k];
                let (del, rss, ok) = measure(plugin_cmd(&host, imp, "DEL")?, &conf(imp))?;
                if !ok {
                    return Err(format!("{} DEL failed", imp.name));
                }
                let imp = &mut imps[k];
                imp.rss_kib = imp.rss_kib.max(rss);
                if warm {
                    imp.add.push(adds[k]);
                    imp.del.push(del);
                }
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    println!(
        "iterations: {iterations} (after 5 warm-up), host-local IPAM, cniVersion 1.0.0, DEL {} ms after ADD",
        SETTLE.as_millis()
    );
    println!(
        "floor (/bin/true started the same way): p50 {:.2} ms, peak RSS {floor_rss} KiB",
        pct(&mut floor, 0.5)
    );
    println!(
        "{:10} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "", "ADD p50", "ADD p99", "DEL p50", "DEL p99", "peak RSS"
    );
    let mut rows = Vec::new();
    for imp in &mut imps {
        let row = (
            pct(&mut imp.add, 0.5),
            pct(&mut imp.add, 0.99),
            pct(&mut imp.del, 0.5),
            pct(&mut imp.del, 0.99),
            imp.rss_kib,
        );
        println!(
            "{:10} {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>7} KiB",
            imp.name, row.0, row.1, row.2, row.3, row.4
        );
        rows.push(row);
    }
    if let [o, r] = rows.as_slice() {
        let above = |x: i64| (x - floor_rss).max(1) as f64;
        println!(
            "RSS above the floor: ours {} KiB, reference {} KiB, ratio {:.2}x",
            o.4 - floor_rss,
            r.4 - floor_rss,
            above(o.4) / above(r.4)
        );
        println!(
            "ratio ours/reference: ADD p50 {:.2}x  ADD p99 {:.2}x  DEL p50 {:.2}x  DEL p99 {:.2}x  RSS {:.2}x",
            o.0 / r.0,
            o.1 / r.1,
            o.2 / r.2,
            o.3 / r.3,
            o.4 as f64 / r.4 as f64
        );
    }
    Ok(())
}
