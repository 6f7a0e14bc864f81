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
