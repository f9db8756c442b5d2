//! The `macvlan` CNI plugin.
// A C main, not Rust's: see macvnet_cni::plugin_main.
#![no_main]
macvnet_plugins::plugin_note!("macvlan");

macvnet_cni::plugin_main!(
    macvnet_plugins::macvlan::MacvlanPlugin,
    concat!(
        "CNI macvlan plugin (macvnet ",
        env!("CARGO_PKG_VERSION"),
        ")"
    )
);
