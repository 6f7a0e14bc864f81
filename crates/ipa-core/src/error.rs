//! IPA's error catalogue (`ironic_python_agent/errors.py`, spec `ipa-agent.md` §2.4) as one typed enum.
//!
//! Every failure the agent reports to a control plane is an [`AgentError`]. It always serialises to
//! IPA's `{"type", "code", "message", "details"}` object ([`ErrorBody`]), so a stored result can never
//! poison `GET /v1/commands/` the way a raw Python exception does in IPA (spec §1.5 quirk).
//!
//! Crates with their own `thiserror` enums (image pipeline, Ironic client, hardware managers) convert
//! into this type in exactly one `From` impl each; transports turn it into wire faults at their edge.

use serde::{Deserialize, Serialize};

/// The serialised form of an error: exactly IPA's `RESTError.serialize()` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Error class name (`"CommandExecutionError"`, `"TypeError"`, ...). Ironic matches on
    /// `"TypeError"` to detect an agent that does not know a parameter.
    #[serde(rename = "type")]
    pub kind: String,
    /// HTTP-style status code of the class.
    pub code: u16,
    /// Class-level text.
    pub message: String,
    /// Instance text. Ironic shows `details` (falling back to `message`) to the operator.
    pub details: String,
}

/// `s` cut to at most `max` bytes (on a character boundary), with what was cut said in the
/// text: echoed user input and tool output must not grow what the agent keeps without bound.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes cut)", &s[..end], s.len() - end))
}

/// Longest `message` / `details` kept in a recorded error.
pub const MAX_ERROR_TEXT: usize = 16 * 1024;

impl ErrorBody {
    /// The same error with `message` and `details` clipped to [`MAX_ERROR_TEXT`].
    pub fn bounded(mut self) -> Self {
        if self.message.len() > MAX_ERROR_TEXT {
            self.message = clip(&self.message, MAX_ERROR_TEXT).into_owned();
        }
        if self.details.len() > MAX_ERROR_TEXT {
            self.details = clip(&self.details, MAX_ERROR_TEXT).into_owned();
        }
        self
    }

    /// IPA's `str(e)`: `"<message>: <details>"`, used as the REST `faultstring`.
    pub fn faultstring(&self) -> String {
        format!("{}: {}", self.message, self.details)
    }
}

/// One variant per class of IPA's catalogue that the agent can raise, plus [`AgentError::Internal`]
/// for failures that IPA would surface as a plain (non-`RESTError`) Python exception.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// `RESTError`: the catalogue's root, with its default details.
    #[error("An error occurred: {details}")]
    Rest { details: String },
    /// `InvalidContentError` (400): a malformed request body.
    #[error("Invalid request body: {details}")]
    InvalidContent { details: String },
    /// `InvalidCommandError` (400): bad command name, unknown command.
    #[error("Invalid command: {details}")]
    InvalidCommand { details: String },
    /// `InvalidCommandParamsError` (400): parameters rejected by a validator.
    #[error("Invalid command parameters: {details}")]
    InvalidCommandParams { details: String },
    /// `NotFound` (404).
    #[error("Not found: {details}")]
    NotFound { details: String },
    /// `RequestedObjectNotFoundError` (404): `"<kind> with id <id> not found."`.
    #[error("Not found: {kind} with id {id} not found.")]
    RequestedObjectNotFound { kind: String, id: String },
    /// `DeviceNotFound` (404): no disk matches the root-device hints.
    #[error("Error finding the disk or partition device to deploy the image onto: {details}")]
    DeviceNotFound { details: String },
    /// `CommandExecutionError` (500).
    #[error("Command execution failed: {details}")]
    CommandExecution { details: String },
    /// `AgentIsBusy` (409): an async command is still running.
    #[error("Agent is busy: executing command {command}")]
    AgentIsBusy { command: String },
    /// `ContainerNotPermittedError` (500).
    #[error(
        "Container image not permitted: Container image {url} is not in [container]allowed_containers and [container]allow_arbitrary_containers is not enabled."
    )]
    ContainerNotPermitted { url: String },
    /// `IronicAPIError` (500).
    #[error("Error in call to ironic-api: {details}")]
    IronicApi { details: String },
    /// `HeartbeatError` (500).
    #[error("Error heartbeating to agent API: {details}")]
    Heartbeat { details: String },
    /// `HeartbeatConflictError` (500).
    #[error("ConflictError heartbeating to agent API: {details}")]
    HeartbeatConflict { details: String },
    /// `HeartbeatConnectionError` (500).
    #[error(
        "Error attempting to heartbeat - Possible transitory network failure or blocking port may be present.: {details}"
    )]
    HeartbeatConnection { details: String },
    /// `LookupNodeError` (500).
    #[error("Error getting configuration from Ironic: {details}")]
    LookupNode { details: String },
    /// `LookupAgentIPError` (500).
    #[error("Error finding IP for Ironic Agent: {details}")]
    LookupAgentIp { details: String },
    /// `ImageDownloadError` (500): `"Download of image <id> failed: <msg>"`.
    #[error("Error downloading image: Download of image {image_id} failed: {msg}")]
    ImageDownload { image_id: String, msg: String },
    /// `ImageDownloadOutofSpaceError` (500).
    #[error("Error downloading image: Download of image {image_id} failed: {msg}")]
    ImageDownloadOutOfSpace { image_id: String, msg: String },
    /// `ImageDownloadFatalError` (500): not retried (4xx).
    #[error("Error downloading image: Download of image {image_id} failed: {msg}")]
    ImageDownloadFatal { image_id: String, msg: String },
    /// `ImageDownloadTimeoutError` (408).
    #[error("Image download timeout: Download of image {image_id} failed: {msg}")]
    ImageDownloadTimeout { image_id: String, msg: String },
    /// `ImageChecksumError` (500). The text reproduces IPA byte for byte, including the swap of
    /// location and image ID that happens at IPA's raise site.
    #[error("Error verifying image checksum: {}", checksum_details(.image_id, .location, .expected, .actual))]
    ImageChecksum { image_id: String, location: String, expected: String, actual: String },
    /// `ImageWriteError` (500).
    #[error(
        "Error writing image to device: Writing image to device {device} failed with exit code {exit_code}. stdout: {stdout}. stderr: {stderr}"
    )]
    ImageWrite { device: String, exit_code: i32, stdout: String, stderr: String },
    /// `SystemRebootError` (500).
    #[error("Error rebooting system: {details}")]
    SystemReboot { details: String },
    /// `BlockDeviceEraseError` (500).
    #[error("Error erasing block device: {details}")]
    BlockDeviceErase { details: String },
    /// `BlockDeviceError` (500).
    #[error("Block device caused unknown error: {details}")]
    BlockDevice { details: String },
    /// `SoftwareRAIDError` (500).
    #[error("Software RAID caused unknown error: {details}")]
    SoftwareRaid { details: String },
    /// `VirtualMediaBootError` (500).
    #[error("Configuring agent from virtual media failed: {details}")]
    VirtualMediaBoot { details: String },
    /// `ExtensionError` (500).
    #[error("An error occurred: {details}")]
    Extension { details: String },
    /// `UnknownNodeError` (500).
    #[error("Agent is not associated with an Ironic node: {details}")]
    UnknownNode { details: String },
    /// `HardwareManagerNotFound` (500).
    #[error("No valid HardwareManager found: {details}")]
    HardwareManagerNotFound { details: String },
    /// `HardwareManagerMethodNotFound` (500): no manager handles the method.
    #[error("No HardwareManager found to handle method: Could not find method: {method}")]
    HardwareManagerMethodNotFound { method: String },
    /// `HardwareManagerConfigurationError` (500): stops dispatch, never falls through.
    #[error("Hardware manager configuration error: {details}")]
    HardwareManagerConfiguration { details: String },
    /// `IncompatibleHardwareMethodError` (500): "not me, ask the next manager".
    #[error("HardwareManager method is not compatible with hardware: {details}")]
    IncompatibleHardwareMethod { details: String },
    /// `VersionMismatch` (409): Ironic's cached `hardware_manager_version` differs from ours.
    #[error(
        "Hardware managers version mismatch, reload agent with correct version: Current versions: {current}, versions used by ironic: {ironic}"
    )]
    VersionMismatch { current: String, ironic: String },
    /// `CleaningError` (500).
    #[error("Clean step failed: {details}")]
    Cleaning { details: String },
    /// `DeploymentError` (500).
    #[error("Deploy step failed: {details}")]
    Deployment { details: String },
    /// `ServicingError` (500).
    #[error("Service step failed: {details}")]
    Servicing { details: String },
    /// `ProtectedDeviceError` (500): its message is replaced by the details, as in IPA.
    #[error("{details}: {details}")]
    ProtectedDevice { details: String },
    /// `InvalidImage` (500).
    #[error("The provided image is not valid for use: {details}")]
    InvalidImage { details: String },
    /// `ClockSyncError` (500).
    #[error("Error syncing system clock: {details}")]
    ClockSync { details: String },
    /// Python's `TypeError` for unknown or missing keyword arguments. IPA stores the raw exception
    /// and then fails to serialise it (HTTP 500 forever after); we serialise it as
    /// `{"type": "TypeError", "code": 500, "message": <text>, "details": <text>}` so that Ironic's
    /// `_raise_if_typeerror` sees what it looks for.
    #[error("{details}")]
    TypeError { details: String },
    /// A failure that IPA would raise as a plain Python exception (`ValueError`, `OSError`, ...):
    /// a sync command records it with its class name; an async command wraps it into
    /// `CommandExecutionError(str(e))`; a step wraps it into Cleaning/Deployment/ServicingError.
    #[error("{details}")]
    Internal { class: String, details: String },
    /// An error class outside IPA's catalogue, e.g. from a vendor hardware manager. Serialised
    /// with the given type name, code and message.
    #[error("{message}: {details}")]
    Custom { kind: String, code: u16, message: String, details: String },
}

fn checksum_details(image_id: &str, location: &str, expected: &str, actual: &str) -> String {
    // IPA: `ImageChecksumError(image_id, image_location, ...)` formats "location: {}; image ID: {}"
    // but is raised with the two arguments swapped, so the text shows the ID after "location:".
    format!(
        "Image failed to verify against checksum. location: {image_id}; image ID: {location}; \
         image checksum: {expected}; verification checksum: {actual}"
    )
}

impl AgentError {
    /// The catalogue class name (`type` in the wire body).
    pub fn kind(&self) -> &str {
        use AgentError::*;
        match self {
            Rest { .. } => "RESTError",
            InvalidContent { .. } => "InvalidContentError",
            InvalidCommand { .. } => "InvalidCommandError",
            InvalidCommandParams { .. } => "InvalidCommandParamsError",
            NotFound { .. } => "NotFound",
            RequestedObjectNotFound { .. } => "RequestedObjectNotFoundError",
            DeviceNotFound { .. } => "DeviceNotFound",
            CommandExecution { .. } => "CommandExecutionError",
            AgentIsBusy { .. } => "AgentIsBusy",
            ContainerNotPermitted { .. } => "ContainerNotPermittedError",
            IronicApi { .. } => "IronicAPIError",
            Heartbeat { .. } => "HeartbeatError",
            HeartbeatConflict { .. } => "HeartbeatConflictError",
            HeartbeatConnection { .. } => "HeartbeatConnectionError",
            LookupNode { .. } => "LookupNodeError",
            LookupAgentIp { .. } => "LookupAgentIPError",
            ImageDownload { .. } => "ImageDownloadError",
            ImageDownloadOutOfSpace { .. } => "ImageDownloadOutofSpaceError",
            ImageDownloadFatal { .. } => "ImageDownloadFatalError",
            ImageDownloadTimeout { .. } => "ImageDownloadTimeoutError",
            ImageChecksum { .. } => "ImageChecksumError",
            ImageWrite { .. } => "ImageWriteError",
            SystemReboot { .. } => "SystemRebootError",
            BlockDeviceErase { .. } => "BlockDeviceEraseError",
            BlockDevice { .. } => "BlockDeviceError",
            SoftwareRaid { .. } => "SoftwareRAIDError",
            VirtualMediaBoot { .. } => "VirtualMediaBootError",
            Extension { .. } => "ExtensionError",
            UnknownNode { .. } => "UnknownNodeError",
            HardwareManagerNotFound { .. } => "HardwareManagerNotFound",
            HardwareManagerMethodNotFound { .. } => "HardwareManagerMethodNotFound",
            HardwareManagerConfiguration { .. } => "HardwareManagerConfigurationError",
            IncompatibleHardwareMethod { .. } => "IncompatibleHardwareMethodError",
            VersionMismatch { .. } => "VersionMismatch",
            Cleaning { .. } => "CleaningError",
            Deployment { .. } => "DeploymentError",
            Servicing { .. } => "ServicingError",
            ProtectedDevice { .. } => "ProtectedDeviceError",
            InvalidImage { .. } => "InvalidImage",
            ClockSync { .. } => "ClockSyncError",
            TypeError { .. } => "TypeError",
            Internal { class, .. } => class,
            Custom { kind, .. } => kind,
        }
    }

    /// The class's status code (HTTP status when the error is raised at request time).
    pub fn code(&self) -> u16 {
        use AgentError::*;
        match self {
            InvalidContent { .. } | InvalidCommand { .. } | InvalidCommandParams { .. } => 400,
            NotFound { .. } | RequestedObjectNotFound { .. } | DeviceNotFound { .. } => 404,
            AgentIsBusy { .. } | VersionMismatch { .. } => 409,
            ImageDownloadTimeout { .. } => 408,
            Custom { code, .. } => *code,
            _ => 500,
        }
    }

    /// The class-level message.
    pub fn message(&self) -> String {
        use AgentError::*;
        let m = match self {
            Rest { .. } | Extension { .. } => "An error occurred",
            InvalidContent { .. } => "Invalid request body",
            InvalidCommand { .. } => "Invalid command",
            InvalidCommandParams { .. } => "Invalid command parameters",
            NotFound { .. } | RequestedObjectNotFound { .. } => "Not found",
            DeviceNotFound { .. } => {
                "Error finding the disk or partition device to deploy the image onto"
            }
            CommandExecution { .. } => "Command execution failed",
            AgentIsBusy { .. } => "Agent is busy",
            ContainerNotPermitted { .. } => "Container image not permitted",
            IronicApi { .. } => "Error in call to ironic-api",
            Heartbeat { .. } => "Error heartbeating to agent API",
            HeartbeatConflict { .. } => "ConflictError heartbeating to agent API",
            HeartbeatConnection { .. } => {
                "Error attempting to heartbeat - Possible transitory network failure or blocking \
                 port may be present."
            }
            LookupNode { .. } => "Error getting configuration from Ironic",
            LookupAgentIp { .. } => "Error finding IP for Ironic Agent",
            ImageDownload { .. } | ImageDownloadOutOfSpace { .. } | ImageDownloadFatal { .. } => {
                "Error downloading image"
            }
            ImageDownloadTimeout { .. } => "Image download timeout",
            ImageChecksum { .. } => "Error verifying image checksum",
            ImageWrite { .. } => "Error writing image to device",
            SystemReboot { .. } => "Error rebooting system",
            BlockDeviceErase { .. } => "Error erasing block device",
            BlockDevice { .. } => "Block device caused unknown error",
            SoftwareRaid { .. } => "Software RAID caused unknown error",
            VirtualMediaBoot { .. } => "Configuring agent from virtual media failed",
            UnknownNode { .. } => "Agent is not associated with an Ironic node",
            HardwareManagerNotFound { .. } => "No valid HardwareManager found",
            HardwareManagerMethodNotFound { .. } => "No HardwareManager found to handle method",
            HardwareManagerConfiguration { .. } => "Hardware manager configuration error",
            IncompatibleHardwareMethod { .. } => {
                "HardwareManager method is not compatible with hardware"
            }
            VersionMismatch { .. } => {
                "Hardware managers version mismatch, reload agent with correct version"
            }
            Cleaning { .. } => "Clean step failed",
            Deployment { .. } => "Deploy step failed",
            Servicing { .. } => "Service step failed",
            InvalidImage { .. } => "The provided image is not valid for use",
            ClockSync { .. } => "Error syncing system clock",
            ProtectedDevice { details } | TypeError { details } | Internal { details, .. } => {
                return details.clone();
            }
            Custom { message, .. } => return message.clone(),
        };
        m.to_string()
    }

    /// The instance text.
    pub fn details(&self) -> String {
        use AgentError::*;
        match self {
            Rest { details }
            | InvalidContent { details }
            | InvalidCommand { details }
            | InvalidCommandParams { details }
            | NotFound { details }
            | DeviceNotFound { details }
            | CommandExecution { details }
            | IronicApi { details }
            | Heartbeat { details }
            | HeartbeatConflict { details }
            | HeartbeatConnection { details }
            | LookupNode { details }
            | LookupAgentIp { details }
            | SystemReboot { details }
            | BlockDeviceErase { details }
            | BlockDevice { details }
            | SoftwareRaid { details }
            | VirtualMediaBoot { details }
            | Extension { details }
            | UnknownNode { details }
            | HardwareManagerNotFound { details }
            | HardwareManagerConfiguration { details }
            | IncompatibleHardwareMethod { details }
            | Cleaning { details }
            | Deployment { details }
            | Servicing { details }
            | ProtectedDevice { details }
            | InvalidImage { details }
            | ClockSync { details }
            | TypeError { details }
            | Internal { details, .. }
            | Custom { details, .. } => details.clone(),
            RequestedObjectNotFound { kind, id } => format!("{kind} with id {id} not found."),
            AgentIsBusy { command } => format!("executing command {command}"),
            ContainerNotPermitted { url } => format!(
                "Container image {url} is not in [container]allowed_containers and \
                 [container]allow_arbitrary_containers is not enabled."
            ),
            ImageDownload { image_id, msg }
            | ImageDownloadOutOfSpace { image_id, msg }
            | ImageDownloadFatal { image_id, msg }
            | ImageDownloadTimeout { image_id, msg } => {
                format!("Download of image {image_id} failed: {msg}")
            }
            ImageChecksum { image_id, location, expected, actual } => {
                checksum_details(image_id, location, expected, actual)
            }
            ImageWrite { device, exit_code, stdout, stderr } => format!(
                "Writing image to device {device} failed with exit code {exit_code}. \
                 stdout: {stdout}. stderr: {stderr}"
            ),
            HardwareManagerMethodNotFound { method } => format!("Could not find method: {method}"),
            VersionMismatch { current, ironic } => {
                format!("Current versions: {current}, versions used by ironic: {ironic}")
            }
        }
    }

    /// The wire object `{type, code, message, details}`.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            kind: self.kind().to_string(),
            code: self.code(),
            message: self.message(),
            details: self.details(),
        }
    }

    /// True for `InvalidContentError` and its subclasses: raised at request time (HTTP 400) and
    /// never recorded in the command list.
    pub fn is_invalid_content(&self) -> bool {
        matches!(
            self,
            AgentError::InvalidContent { .. }
                | AgentError::InvalidCommand { .. }
                | AgentError::InvalidCommandParams { .. }
        )
    }

    /// True for errors that IPA models as plain Python exceptions rather than `RESTError`s.
    pub fn is_internal(&self) -> bool {
        matches!(self, AgentError::Internal { .. } | AgentError::TypeError { .. })
    }

    /// True for `IncompatibleHardwareMethodError`: hardware dispatch moves to the next manager.
    pub fn is_incompatible(&self) -> bool {
        matches!(self, AgentError::IncompatibleHardwareMethod { .. })
    }

    // ---- short constructors used throughout the workspace ----------------------------------

    /// `IncompatibleHardwareMethodError` with a reason.
    pub fn incompatible(details: impl Into<String>) -> Self {
        AgentError::IncompatibleHardwareMethod { details: details.into() }
    }
    /// `InvalidCommandParamsError`.
    pub fn invalid_params(details: impl Into<String>) -> Self {
        AgentError::InvalidCommandParams { details: details.into() }
    }
    /// `InvalidCommandError`.
    pub fn invalid_command(details: impl Into<String>) -> Self {
        AgentError::InvalidCommand { details: details.into() }
    }
    /// `CommandExecutionError`.
    pub fn execution(details: impl Into<String>) -> Self {
        AgentError::CommandExecution { details: details.into() }
    }
    /// A plain-exception failure with a Python-style class name (`ValueError`, `OSError`...).
    pub fn internal(class: impl Into<String>, details: impl Into<String>) -> Self {
        AgentError::Internal { class: class.into(), details: details.into() }
    }
    /// `RESTError` with the catalogue's default details.
    pub fn rest_default() -> Self {
        AgentError::Rest { details: "An unexpected error occurred. Please try back later.".into() }
    }
}

impl From<std::io::Error> for AgentError {
    fn from(e: std::io::Error) -> Self {
        AgentError::internal("OSError", e.to_string())
    }
}

impl Serialize for AgentError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_body().serialize(s)
    }
}

/// Render a JSON value the way Python's `str(dict)` would, for error texts that IPA builds with
/// `%s` of a dict (e.g. the version-mismatch details).
pub fn python_repr(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
            let escaped = s.replace('\\', "\\\\");
            let escaped = if quote == '\'' { escaped.replace('\'', "\\'") } else { escaped };
            format!("{quote}{escaped}{quote}")
        }
        Value::Array(a) => {
            format!("[{}]", a.iter().map(python_repr).collect::<Vec<_>>().join(", "))
        }
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    python_repr(&Value::String(k.clone())),
                    python_repr(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn display_is_message_colon_details_for_every_variant() {
        let samples = vec![
            AgentError::rest_default(),
            AgentError::invalid_command("Unknown command: x"),
            AgentError::RequestedObjectNotFound { kind: "Extension".into(), id: "foo".into() },
            AgentError::AgentIsBusy { command: "prepare_image".into() },
            AgentError::ImageChecksum {
                image_id: "img".into(),
                location: "http://x/img".into(),
                expected: "aa".into(),
                actual: "bb".into(),
            },
            AgentError::HardwareManagerMethodNotFound { method: "get_cpus".into() },
            AgentError::VersionMismatch { current: "{}".into(), ironic: "{'a': '1'}".into() },
            AgentError::ContainerNotPermitted { url: "docker://x".into() },
            AgentError::ImageWrite {
                device: "/dev/sda".into(),
                exit_code: 1,
                stdout: "o".into(),
                stderr: "e".into(),
            },
        ];
        for e in samples {
            assert_eq!(e.to_string(), e.to_body().faultstring(), "{e:?}");
        }
    }

    #[test]
    fn busy_fault_text_matches_ipa() {
        let e = AgentError::AgentIsBusy { command: "execute_clean_step".into() };
        assert_eq!(e.to_string(), "Agent is busy: executing command execute_clean_step");
        assert_eq!(e.code(), 409);
        assert_eq!(e.kind(), "AgentIsBusy");
    }

    #[test]
    fn checksum_text_reproduces_ipa_argument_swap() {
        let e = AgentError::ImageChecksum {
            image_id: "fedora".into(),
            location: "http://10.0.0.1/f.img".into(),
            expected: "abc".into(),
            actual: "def".into(),
        };
        assert_eq!(
            e.details(),
            "Image failed to verify against checksum. location: fedora; image ID: \
             http://10.0.0.1/f.img; image checksum: abc; verification checksum: def"
        );
    }

    #[test]
    fn type_error_serialises_with_python_class_name() {
        let e = AgentError::TypeError {
            details: "install_bootloader() got an unexpected keyword argument 'bogus'".into(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"type": "TypeError", "code": 500,
                   "message": "install_bootloader() got an unexpected keyword argument 'bogus'",
                   "details": "install_bootloader() got an unexpected keyword argument 'bogus'"})
        );
    }

    #[test]
    fn only_invalid_content_family_is_request_time() {
        assert!(AgentError::invalid_params("x").is_invalid_content());
        assert!(AgentError::invalid_command("x").is_invalid_content());
        assert!(!AgentError::execution("x").is_invalid_content());
        assert!(!AgentError::AgentIsBusy { command: "x".into() }.is_invalid_content());
    }

    #[test]
    fn python_repr_of_version_dicts() {
        let v = json!({"generic_hardware_manager": "1.2", "x": null, "n": 3, "b": true});
        assert_eq!(
            python_repr(&v),
            "{'generic_hardware_manager': '1.2', 'x': None, 'n': 3, 'b': True}"
        );
    }
}
