//! Extensions whose logic is transport- and hardware-neutral: `clean`, `deploy`, `service`
//! (step listing and execution with version checks), `poll`, `flow`, `system`, `log`, and the power and
//! bookkeeping half of `standby`. Each registers itself with the plugin registry.

mod flow;
mod log;
mod poll;
mod standby;
mod steps;
mod system;

pub use flow::FlowExtension;
pub use log::LogExtension;
pub use poll::PollExtension;
pub use standby::StandbyPowerExtension;
pub use steps::StepsExtension;
pub use system::SystemExtension;

use std::sync::Arc;

use crate::error::AgentError;
use crate::hardware::HardwareManagers;
use crate::services::AgentServices;

/// The hardware managers, or `HardwareManagerNotFound` if the runtime has none.
pub(crate) fn hardware(services: &AgentServices) -> Result<Arc<HardwareManagers>, AgentError> {
    services.hardware().ok_or_else(|| AgentError::HardwareManagerNotFound {
        details: "No valid HardwareManager found".into(),
    })
}
