//! The `ipa-agent` binary: everything lives in the library so vendor binaries can reuse it.

fn main() -> std::process::ExitCode {
    ipa_agent::main()
}
