//! `acme-agent`: the stock agent with the Acme widget manager linked in.

// Naming the crate once links it, and with it its `inventory::submit!` registration.
use acme_hardware_manager as _;

fn main() -> std::process::ExitCode {
    ipa_agent::main()
}
