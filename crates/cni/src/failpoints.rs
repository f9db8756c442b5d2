//! Crash-test hooks. `failpoint!("macvlan::add::after_create")` marks a step of a plugin;
//! built with the `failpoints` feature (tests only: `cargo build -p macvnet-plugins
//! --features failpoints`), the process SIGKILLs itself there when env `MACVNET_FAILPOINT`
//! names the point, and appends every point it passes to the file named by
//! `MACVNET_FAILPOINT_LOG`. Without the feature the macro expands to nothing.
//! crates/plugins/tests/crash.rs kills each plugin at each point of [`ALL`] in turn.

/// Every failpoint, by plugin and command.
pub const ALL: &[&str] = &[
    "macvlan::add::after_create",
    "macvlan::add::after_rename",
    "macvlan::add::after_ipam",
    "macvlan::add::after_configure",
    "macvlan::del::after_ipam",
    "macvlan::del::after_link",
    "macvtap::add::after_create",
    "macvtap::add::after_move",
    "macvtap::add::after_rename",
    "macvtap::add::after_node",
    "macvtap::add::after_ipam",
    "macvtap::add::after_configure",
    "macvtap::del::after_ipam",
    "macvtap::del::after_link",
    "host-local::add::after_lock",
    "host-local::add::after_source",
    "host-local::add::after_reserve",
    "host-local::add::after_allocate",
    "host-local::del::after_lock",
    "host-local::del::after_release",
    "dhcp::add::before_call",
    "dhcp::add::after_call",
    "dhcp::del::before_call",
    "dhcp::daemon::after_acquire",
    "dhcp::daemon::after_save",
    "dhcp::daemon::after_release",
];

/// The failpoint `name` was reached.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::io::Write;
    if let Some(log) = std::env::var_os("MACVNET_FAILPOINT_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{name}");
        }
    }
    if std::env::var("MACVNET_FAILPOINT").is_ok_and(|v| v == name) {
        // SAFETY: raise(2) has no memory-safety preconditions.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// Mark a step; SIGKILL here when `MACVNET_FAILPOINT` names it (feature `failpoints`).
#[cfg(feature = "failpoints")]
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {
        $crate::failpoints::hit($name)
    };
}

/// Mark a step (compiled out: built without the `failpoints` feature).
#[cfg(not(feature = "failpoints"))]
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {};
}
