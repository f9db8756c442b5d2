//! The `macvlan` CNI plugin.
macvnet_plugins::plugin_note!("macvlan");

fn main() -> std::process::ExitCode {
    macvnet_cni::skel::run(
        &macvnet_plugins::macvlan::MacvlanPlugin,
        concat!(
            "CNI macvlan plugin (macvnet ",
            env!("CARGO_PKG_VERSION"),
            ")"
        ),
    )
}
