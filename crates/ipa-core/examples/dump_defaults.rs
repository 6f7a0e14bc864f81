//! Prints the default configuration as JSON (used to regenerate docs/configuration.md).
fn main() {
    let v = serde_json::to_value(ipa_core::config::AgentConfig::default()).unwrap();
    println!("{}", serde_json::to_string_pretty(&v).unwrap());
}
