//! The `macvtap` CNI plugin (direct and KubeVirt-compatible deviceID flows).
// A C main, not Rust's: see macvnet_cni::plugin_main.
#![no_main]
macvnet_plugins::plugin_note!("macvtap");

macvnet_cni::plugin_main!(
    macvnet_plugins::macvtap::MacvtapPlugin,
    concat!(
        "CNI macvtap plugin (macvnet ",
        env!("CARGO_PKG_VERSION"),
        ")"
    )
);
