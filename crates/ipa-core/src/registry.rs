//! Compile-time plugin registration with `inventory`.
//!
//! Plugins submit **const descriptors** (names plus `fn` pointers; no work at registration time).
//! Iteration is always sorted by name: inventory guarantees no order.
//!
//! A plugin crate that the final binary never names is not linked, and its registrations vanish
//! silently (rustc does not load unreferenced `--extern` crates). The agent binary therefore names
//! each plugin crate exactly once in `plugins.rs`, and a test asserts the registered set.

use std::sync::Arc;

use figment::Figment;

use crate::config::{AgentConfig, ConfigError};
use crate::extension::SharedExtension;
use crate::hardware::{HardwareManager, HardwareManagers};
use crate::services::AgentServices;
use crate::transport::Transport;

/// Kernel parameter aliases a plugin reads: (`ipa-amqp-url`, `amqp.url`).
pub type KernelParams = &'static [(&'static str, &'static str)];

/// A transport plugin.
#[derive(Debug)]
pub struct TransportDescriptor {
    /// Registry name.
    pub name: &'static str,
    /// One line for `--list-plugins`.
    pub description: &'static str,
    /// Its configuration section, if any.
    pub config_section: Option<&'static str>,
    /// Its kernel parameters.
    pub kernel_params: KernelParams,
    /// Build from configuration; `Ok(None)` when the transport is not configured (off).
    pub from_config: fn(&Figment, &AgentConfig) -> Result<Option<Box<dyn Transport>>, ConfigError>,
}

/// A hardware-manager plugin.
#[derive(Debug)]
pub struct HardwareManagerDescriptor {
    /// Registry name.
    pub name: &'static str,
    /// One line for `--list-plugins`.
    pub description: &'static str,
    /// Its configuration section, if any.
    pub config_section: Option<&'static str>,
    /// Its kernel parameters.
    pub kernel_params: KernelParams,
    /// Construct (cheaply; probing happens in `evaluate_hardware_support`).
    pub build: fn(&Arc<AgentServices>) -> Result<Arc<dyn HardwareManager>, ConfigError>,
}

/// An extension (or a fragment adding commands to an extension of the same name).
#[derive(Debug)]
pub struct ExtensionDescriptor {
    /// Registry name (plugin id, unique).
    pub name: &'static str,
    /// Construct, from the services and the hardware managers (built before any extension).
    pub build: fn(&Arc<AgentServices>, &Arc<HardwareManagers>) -> SharedExtension,
}

inventory::collect!(TransportDescriptor);
inventory::collect!(HardwareManagerDescriptor);
inventory::collect!(ExtensionDescriptor);

/// Registered transports, sorted by name.
pub fn transports() -> Vec<&'static TransportDescriptor> {
    let mut v: Vec<_> = inventory::iter::<TransportDescriptor>.into_iter().collect();
    v.sort_by_key(|d| d.name);
    v
}

/// Registered hardware managers, sorted by name.
pub fn hardware_managers() -> Vec<&'static HardwareManagerDescriptor> {
    let mut v: Vec<_> = inventory::iter::<HardwareManagerDescriptor>.into_iter().collect();
    v.sort_by_key(|d| d.name);
    v
}

/// Registered extensions, sorted by name.
pub fn extensions() -> Vec<&'static ExtensionDescriptor> {
    let mut v: Vec<_> = inventory::iter::<ExtensionDescriptor>.into_iter().collect();
    v.sort_by_key(|d| d.name);
    v
}

/// Configuration sections owned by plugins.
pub fn plugin_sections() -> Vec<String> {
    let mut v: Vec<String> = transports()
        .iter()
        .filter_map(|d| d.config_section)
        .chain(hardware_managers().iter().filter_map(|d| d.config_section))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Kernel parameter aliases from all plugins.
pub fn kernel_aliases() -> Vec<(String, String)> {
    transports()
        .iter()
        .flat_map(|d| d.kernel_params.iter())
        .chain(hardware_managers().iter().flat_map(|d| d.kernel_params.iter()))
        .map(|(p, k)| (p.to_string(), k.to_string()))
        .collect()
}

/// Names of everything registered, `kind:name`, sorted — what the registered-plugin test checks.
pub fn registered_names() -> Vec<String> {
    let mut v: Vec<String> = transports()
        .iter()
        .map(|d| format!("transport:{}", d.name))
        .chain(hardware_managers().iter().map(|d| format!("hardware:{}", d.name)))
        .chain(extensions().iter().map(|d| format!("extension:{}", d.name)))
        .collect();
    v.sort();
    v
}
