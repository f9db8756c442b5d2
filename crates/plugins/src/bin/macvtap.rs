//! The `macvtap` CNI plugin (direct and KubeVirt-compatible deviceID flows).
macvnet_plugins::plugin_note!("macvtap");

fn main() -> std::process::ExitCode {
    macvnet_cni::skel::run(
        &macvnet_plugins::macvtap::MacvtapPlugin,
        concat!(
            "CNI macvtap plugin (macvnet ",
            env!("CARGO_PKG_VERSION"),
            ")"
        ),
    )
}
