//! The `host-local` IPAM plugin (store compatible with the reference's).
macvnet_plugins::plugin_note!("host-local");

fn main() -> std::process::ExitCode {
    macvnet_cni::skel::run(
        &macvnet_ipam::HostLocalPlugin,
        concat!(
            "CNI host-local plugin (macvnet ",
            env!("CARGO_PKG_VERSION"),
            ")"
        ),
    )
}
