//! The `static` IPAM plugin.
// A C main, not Rust's: see macvnet_cni::plugin_main.
#![no_main]
macvnet_plugins::plugin_note!("static");

macvnet_cni::plugin_main!(
    macvnet_ipam::StaticPlugin,
    concat!(
        "CNI static plugin (macvnet ",
        env!("CARGO_PKG_VERSION"),
        ")"
    )
);
