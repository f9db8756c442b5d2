//! The dhcp IPAM plugin and daemon (same program as the `dhcp` binary of macvnet-plugins).

fn main() -> std::process::ExitCode {
    macvnet_dhcp::cli::main()
}
