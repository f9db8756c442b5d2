//! The `dhcp` IPAM plugin; `dhcp daemon [flags]` runs its lease daemon (reference flags).
macvnet_plugins::plugin_note!("dhcp");

fn main() -> std::process::ExitCode {
    macvnet_dhcp::cli::main()
}
