//! `rescue.finalize_rescue` (spec `ipa-agent.md` §4.9, `ironic-contract.md` §2, §5.3).
//!
//! Synchronous: Ironic sends it with `wait=false` but fails the rescue unless the reply already
//! says `SUCCEEDED`. It writes the password hash to `/etc/ipa-rescue-config/ipa-rescue-password`
//! (under the run mode's root prefix: inside the sandbox in tests), touches `/etc/.rescued` so
//! a restarted agent never serves again, and asks the runtime to stop serving once the reply
//! has left. A plaintext password is hashed with SHA-256 crypt (`$5$`), as IPA does; Ironic normally sends
//! an already hashed one (`hashed: true`), written verbatim.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use ipa_core::command::{CommandSpec, Param, Params};
use ipa_core::error::AgentError;
use ipa_core::extension::{CommandContext, Extension, param_bool, param_str};
use ipa_core::registry::ExtensionDescriptor;
use ipa_core::services::AgentServices;
use serde_json::Value;

/// Where the hash goes (under the root prefix).
pub const PASSWORD_FILE: &str = "/etc/ipa-rescue-config/ipa-rescue-password";
/// The marker that keeps the API off after a restart.
pub const RESCUED_MARKER: &str = "/etc/.rescued";

/// The rescue extension.
#[derive(Debug)]
pub struct RescueExtension {
    services: Arc<AgentServices>,
}

static COMMANDS: &[CommandSpec] =
    &[CommandSpec::sync("finalize_rescue", &[Param::opt("rescue_password"), Param::opt("hashed")])];

const CRYPT_SALT_CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SHA-256 crypt (`$5$<16-char salt>$<hash>`) of `password`: IPA's format for a plaintext
/// rescue password.
pub fn sha256_crypt(password: &str) -> Result<String, AgentError> {
    let salt: String = (0..16)
        .map(|_| CRYPT_SALT_CHARS[rand::random_range(0..CRYPT_SALT_CHARS.len())] as char)
        .collect();
    sha256_crypt_with_salt(password, &salt)
}

fn sha256_crypt_with_salt(password: &str, salt: &str) -> Result<String, AgentError> {
    let params = sha_crypt::Sha256Params::default();
    let hash = sha_crypt::sha256_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .map_err(|e| AgentError::execution(format!("cannot hash the rescue password: {e:?}")))?;
    Ok(format!("$5${salt}${hash}"))
}

impl RescueExtension {
    /// New.
    pub fn new(services: Arc<AgentServices>) -> Self {
        Self { services }
    }

    fn write(&self, path: &str, content: &str) -> Result<PathBuf, AgentError> {
        let p = self.services.mode.os_path(path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&p, content)?;
        Ok(p)
    }
}

#[async_trait]
impl Extension for RescueExtension {
    fn name(&self) -> &'static str {
        "rescue"
    }
    fn class_name(&self) -> &'static str {
        "RescueExtension"
    }
    fn commands(&self) -> &'static [CommandSpec] {
        COMMANDS
    }
    async fn execute(
        &self,
        _command: &str,
        params: Params,
        _ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        let password = param_str(&params, "rescue_password")?.unwrap_or_default();
        let hashed = param_bool(&params, "hashed").unwrap_or(false);
        let content = if hashed { password.to_string() } else { sha256_crypt(password)? };
        let file = self.write(PASSWORD_FILE, &content)?;
        self.write(RESCUED_MARKER, "")?;
        tracing::info!(
            file = %file.display(),
            hashed,
            "rescue password written; the agent stops serving after this reply"
        );
        self.services.control.stop_serving();
        Ok(Value::Null)
    }
}

/// Whether this boot already finalised a rescue (the API must stay off).
pub fn already_rescued(services: &AgentServices) -> bool {
    services.mode.os_path(RESCUED_MARKER).exists()
}

inventory::submit! {
    ExtensionDescriptor { name: "rescue", build: |s, _| Arc::new(RescueExtension::new(s.clone())) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipa_core::services::ServeState;

    #[test]
    fn sha256_crypt_matches_the_reference_vector() {
        // glibc crypt(3) gives the same string for this input.
        assert_eq!(
            sha256_crypt_with_salt("Hello world!", "saltstring").unwrap(),
            "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
        );
        let h = sha256_crypt("pw").unwrap();
        assert!(h.starts_with("$5$") && h.len() == 3 + 16 + 1 + 43, "{h}");
        assert_ne!(h, sha256_crypt("pw").unwrap(), "salts are random");
    }

    #[tokio::test]
    async fn finalize_rescue_writes_under_the_sandbox_root_and_stops_serving() {
        let d = tempfile::tempdir().unwrap();
        let s = AgentServices::for_tests(d.path());
        let ext = RescueExtension::new(s.clone());
        let mut p = Params::new();
        p.insert("rescue_password".into(), Value::from("$5$abc$def"));
        p.insert("hashed".into(), Value::from(true));
        ext.execute("finalize_rescue", p, CommandContext::detached("rescue.finalize_rescue"))
            .await
            .unwrap();
        let f = d.path().join("root/etc/ipa-rescue-config/ipa-rescue-password");
        assert_eq!(std::fs::read_to_string(f).unwrap(), "$5$abc$def");
        assert!(already_rescued(&s));
        assert_eq!(s.control.state(), ServeState::Stop);

        let d2 = tempfile::tempdir().unwrap();
        let s2 = AgentServices::for_tests(d2.path());
        let mut p = Params::new();
        p.insert("rescue_password".into(), Value::from("plain"));
        RescueExtension::new(s2.clone())
            .execute("finalize_rescue", p, CommandContext::detached("x"))
            .await
            .unwrap();
        let written = std::fs::read_to_string(
            d2.path().join("root/etc/ipa-rescue-config/ipa-rescue-password"),
        )
        .unwrap();
        assert!(written.starts_with("$5$"));
        assert!(!written.contains("plain"));
    }
}
