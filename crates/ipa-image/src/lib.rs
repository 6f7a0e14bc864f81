//! # ipa-image
//!
//! The image pipeline: one streaming, verified write path for raw, qcow2 and compressed
//! images (gzip, xz, zstd, bzip2), plus config drives, partition images and UEFI boot entries.
//!
//! * Entry point: [`ImagePipeline::write_image`], behind `standby.prepare_image` and the
//!   `write_image` deploy and service steps, which this crate's `standby` fragment runs itself
//!   (IPA's generic manager lists that step and forwards it to `standby`).
//!   `standby.get_partition_uuids` reads the pipeline's own [`ImageState`];
//!   `image.install_bootloader` is registered here too.
//! * The install device is resolved once per command through the hardware managers the
//!   extension was built with, and handed to the pipeline: nothing here calls back into the
//!   managers' owner, and no hardware manager depends on this crate.
//! * Download: the shared stack's download policy ([`ipa_http::download`]): URL failover,
//!   retries, HTTP Range resume.
//! * Verification inline on a separate thread; the first MiB is withheld until the checksum
//!   matches ([`pipeline`], [`writer`]); optional read-back verification of the written
//!   bytes ([`readback`]).
//! * qcow2 is converted natively while streaming, with Range requests for out-of-order
//!   clusters ([`qcow2`]); nothing is staged in RAM or on disk.

pub mod bootloader;
pub mod checksum;
pub mod configdrive;
pub mod deploy;
pub mod disk;
pub mod error;
pub mod format;
pub mod info;
pub mod pipeline;
pub mod qcow2;
pub mod readback;
pub mod writer;

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use ipa_core::command::{CommandSpec, Param, Params};
use ipa_core::error::AgentError;
use ipa_core::extension::{CommandContext, Extension};
use ipa_core::hardware::{HardwareManagers, Step, StepCall, StepKind};
use ipa_core::registry::ExtensionDescriptor;
use ipa_core::services::AgentServices;
use serde_json::Value;

pub use error::ImageError;

/// What the last image write recorded (`standby.get_partition_uuids`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageState {
    /// Id of the image last written by this process (a repeat is a no-op, as in IPA).
    pub cached_image_id: Option<String>,
    /// IPA's key format: `{"root uuid": …, "efi system partition uuid": …, "partitions": {…}}`.
    pub partition_uuids: serde_json::Map<String, Value>,
}

/// The image pipeline with its state: what `standby.prepare_image` and the `write_image` step
/// run.
#[derive(Debug)]
pub struct ImagePipeline {
    services: Arc<AgentServices>,
    hardware: Arc<HardwareManagers>,
    state: RwLock<ImageState>,
}

impl ImagePipeline {
    /// A pipeline writing to the install device the managers choose.
    pub fn new(services: Arc<AgentServices>, hardware: Arc<HardwareManagers>) -> Self {
        Self { services, hardware, state: RwLock::default() }
    }

    /// The OS install device (IPA's `dispatch_to_managers('get_os_install_device')`).
    pub async fn install_device(&self, permit_refresh: bool) -> Result<String, AgentError> {
        install_device(&self.hardware, permit_refresh).await
    }

    /// Write the image described by `args` (`image_info`, `configdrive`) to the OS install
    /// device, record the partition UUIDs for `standby.get_partition_uuids`, and return IPA's
    /// result text (`"image (<id>) written to device <dev> root_uuid=<u>"`).
    pub async fn write_image(
        &self,
        args: &Params,
        ctx: &CommandContext,
    ) -> Result<Value, AgentError> {
        deploy::validate(&self.services, args)?;
        let device = self.install_device(true).await?;
        let msg = deploy::run(&self.services, &device, &self.state, args, ctx).await?;
        Ok(Value::String(msg))
    }

    /// Synchronous validation of `write_image` / `prepare_image` arguments (400 with IPA's
    /// text).
    pub fn validate(&self, args: &Params) -> Result<(), AgentError> {
        Ok(deploy::validate(&self.services, args)?)
    }

    /// What the last write recorded.
    pub fn state(&self) -> ImageState {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// IPA's `dispatch_to_managers('get_os_install_device')`.
async fn install_device(
    hardware: &HardwareManagers,
    permit_refresh: bool,
) -> Result<String, AgentError> {
    hardware
        .dispatch("get_os_install_device", |m, p| {
            Box::pin(m.get_os_install_device(permit_refresh, p))
        })
        .await
}

/// `write_image` as IPA's generic manager lists it (deploy and service steps, priority 0).
fn write_image_step() -> Step {
    Step::new("write_image", 0, "deploy")
        .arg("image_info", "Image information (URLs, checksum, format) as Ironic sends it", true)
        .arg("configdrive", "Config drive: a gzipped, base64-encoded ISO or a URL", false)
}

/// `standby` fragment: `prepare_image`, `get_partition_uuids`, and the `write_image` step.
#[derive(Debug)]
pub struct StandbyImageExtension {
    pipeline: ImagePipeline,
}

impl StandbyImageExtension {
    /// The fragment around `pipeline`.
    pub fn new(pipeline: ImagePipeline) -> Self {
        Self { pipeline }
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &ImagePipeline {
        &self.pipeline
    }
}

static STANDBY_COMMANDS: &[CommandSpec] = &[
    CommandSpec::asynchronous(
        "prepare_image",
        &[Param::opt("image_info"), Param::opt("configdrive")],
    ),
    CommandSpec::sync("get_partition_uuids", &[]),
];

#[async_trait]
impl Extension for StandbyImageExtension {
    fn name(&self) -> &'static str {
        "standby"
    }
    fn class_name(&self) -> &'static str {
        "StandbyExtension"
    }
    fn commands(&self) -> &'static [CommandSpec] {
        STANDBY_COMMANDS
    }
    fn validate(
        &self,
        command: &str,
        params: &Params,
        _peers: &ipa_core::dispatcher::ExtensionSet,
    ) -> Result<(), AgentError> {
        match command {
            "prepare_image" => self.pipeline.validate(params),
            _ => Ok(()),
        }
    }
    fn steps(&self, kind: StepKind) -> Vec<Step> {
        match kind {
            StepKind::Deploy | StepKind::Service => vec![write_image_step()],
            StepKind::Clean => Vec::new(),
        }
    }
    async fn execute_step(&self, call: StepCall<'_>) -> Result<Value, AgentError> {
        match call.step {
            "write_image" => self.pipeline.write_image(&call.args, call.ctx).await,
            other => Err(AgentError::incompatible(format!("{other} is not a step of standby"))),
        }
    }
    async fn execute(
        &self,
        command: &str,
        params: Params,
        ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        match command {
            "prepare_image" => self.pipeline.write_image(&params, &ctx).await,
            "get_partition_uuids" => Ok(Value::Object(self.pipeline.state().partition_uuids)),
            other => Err(AgentError::invalid_command(format!("Unknown command: {other}"))),
        }
    }
}

/// `image` extension: `install_bootloader`.
#[derive(Debug)]
pub struct ImageExtension {
    services: Arc<AgentServices>,
    hardware: Arc<HardwareManagers>,
}

static IMAGE_COMMANDS: &[CommandSpec] = &[CommandSpec::asynchronous(
    "install_bootloader",
    &[
        Param::req("root_uuid"),
        Param::opt("efi_system_part_uuid"),
        Param::opt("prep_boot_part_uuid"),
        Param::opt("target_boot_mode"),
        Param::opt("ignore_bootloader_failure"),
    ],
)];

#[async_trait]
impl Extension for ImageExtension {
    fn name(&self) -> &'static str {
        "image"
    }
    fn class_name(&self) -> &'static str {
        "ImageExtension"
    }
    fn commands(&self) -> &'static [CommandSpec] {
        IMAGE_COMMANDS
    }
    async fn execute(
        &self,
        command: &str,
        params: Params,
        _ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        match command {
            "install_bootloader" => {
                let device = install_device(&self.hardware, false).await?;
                Ok(bootloader::install(&self.services, &device, &params).await?)
            }
            other => Err(AgentError::invalid_command(format!("Unknown command: {other}"))),
        }
    }
}

inventory::submit! {
    ExtensionDescriptor {
        name: "standby-image",
        build: |s, hw| Arc::new(StandbyImageExtension::new(ImagePipeline::new(s.clone(), hw.clone()))),
    }
}

inventory::submit! {
    ExtensionDescriptor {
        name: "image",
        build: |s, hw| Arc::new(ImageExtension { services: s.clone(), hardware: hw.clone() }),
    }
}
