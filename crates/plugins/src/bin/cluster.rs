//! The `cluster` IPAM plugin: one address pool in etcd for every host of an L2 segment.

fn main() -> std::process::ExitCode {
    macvnet_cni::skel::run(
        &macvnet_cluster::ClusterPlugin,
        concat!(
            "CNI cluster IPAM plugin (macvnet ",
            env!("CARGO_PKG_VERSION"),
            ")"
        ),
    )
}
