//! The `static` IPAM plugin.
macvnet_plugins::plugin_note!("static");

fn main() -> std::process::ExitCode {
    macvnet_cni::skel::run(
        &macvnet_ipam::StaticPlugin,
        concat!(
            "CNI static plugin (macvnet ",
            env!("CARGO_PKG_VERSION"),
            ")"
        ),
    )
}
