//! OS seams: external commands and power actions, each a narrow trait with a real
//! implementation and a hand-written fake side by side (no mocking framework).

mod command;
mod power;

pub use command::{
    CommandRunner, ExecError, ExecOutput, ExecRequest, FakeResponse, FakeRunner,
    SANDBOX_ALLOW_LIST, SandboxRunner, SystemRunner,
};
pub use power::{PowerAction, PowerController, PowerRecord, RecordingPower, SystemPower};
