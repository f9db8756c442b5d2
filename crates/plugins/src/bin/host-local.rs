//! The `host-local` IPAM plugin (store compatible with the reference's).
// A C main, not Rust's: see macvnet_cni::plugin_main.
#![no_main]
macvnet_plugins::plugin_note!("host-local");

macvnet_cni::plugin_main!(
    macvnet_ipam::HostLocalPlugin,
    concat!(
        "CNI host-local plugin (macvnet ",
        env!("CARGO_PKG_VERSION"),
        ")"
    )
);
