//! Helper of `macvnet bench cni`: start a program in a network namespace and report its own
//! wall time and peak RSS.
//!
//! A child's `ru_maxrss` also counts the pages fork copied from its parent before exec. From
//! the bench itself that floor is ≈1.3–1.5 MiB (its relocated data and heap), more than a
//! small plugin uses, so every run of such a plugin would read the floor. Forked from this
//! small process instead, the floor is this process's few anonymous pages.
//!
//! Usage: `macvnet-bench-spawn REPORT NETNS PROGRAM`. stdin, stdout, stderr and the
//! environment pass to PROGRAM, which dies with this process (PR_SET_PDEATHSIG). REPORT gets
//! `<wall µs from fork to reap> <ru_maxrss KiB>`; the exit status is PROGRAM's (128+N for a
//! signal N, 127 when it could not be started).

use std::ffi::CString;
use std::os::fd::AsFd;
use std::time::Instant;

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{execv, fork, ForkResult};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, report, netns, program] = args.as_slice() else {
        eprintln!("usage: macvnet-bench-spawn REPORT NETNS PROGRAM");
        std::process::exit(2);
    };
    let ns = match std::fs::File::open(netns) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("macvnet-bench-spawn: open {netns}: {e}");
            std::process::exit(127);
        }
    };
    let Ok(prog) = CString::new(program.as_str()) else {
        std::process::exit(127);
    };
    let start = Instant::now();
    // SAFETY: single-threaded here; the child only makes syscalls (prctl, setns, execv)
    // and exits, it does not allocate or take locks.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            if setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).is_ok() {
                let _ = execv(&prog, &[&prog]);
            }
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            eprintln!("macvnet-bench-spawn: fork: {e}");
            std::process::exit(127);
        }
    };
    let code = loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, c)) => break c,
            Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("macvnet-bench-spawn: wait: {e}");
                std::process::exit(127);
            }
        }
    };
    let wall_us = start.elapsed().as_micros();
    // The only child waited for: the children's maximum is its own.
    // SAFETY: rusage is plain data that getrusage fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer for the duration of the call.
    let maxrss = if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } == 0 {
        ru.ru_maxrss
    } else {
        0
    };
    if let Err(e) = std::fs::write(report, format!("{wall_us} {maxrss}\n")) {
        eprintln!("macvnet-bench-spawn: write {report}: {e}");
    }
    std::process::exit(code);
}
