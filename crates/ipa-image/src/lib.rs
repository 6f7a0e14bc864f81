//! # ipa-image
//!
//! The image pipeline: one streaming, verified write path for raw, qcow2 and compressed
//! images (gzip, xz, zstd, bzip2), plus config drives, partition images and UEFI boot entries.
//!
//! * Entry point: [`write_image`], used by the `write_image` deploy step and by
//!   `standby.prepare_image` (registered here as a `standby` fragment). `image.install_bootloader`
//!   is registered here too.
//! * Download: the shared stack ([`ipa_http`]) with URL failover, retries, HTTP Range resume ([`http`]).
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
pub mod file_download;
pub mod format;
pub mod http;
pub mod info;
pub mod pipeline;
pub mod qcow2;
pub mod readback;
pub mod writer;

use std::sync::Arc;

use async_trait::async_trait;
use ipa_core::command::{CommandSpec, Param, Params};
use ipa_core::error::AgentError;
use ipa_core::extension::{CommandContext, Extension};
use ipa_core::registry::ExtensionDescriptor;
use ipa_core::services::AgentServices;
use serde_json::Value;

pub use error::ImageError;

/// Write the image described by `args` (`image_info`, `configdrive`) to the OS install device
/// (found through the hardware managers), record the partition UUIDs for
/// `standby.get_partition_uuids`, and return IPA's result text
/// (`"image (<id>) written to device <dev> root_uuid=<u>"`).
pub async fn write_image(
    services: &Arc<AgentServices>,
    args: &Params,
    ctx: &CommandContext,
) -> Result<Value, AgentError> {
    Ok(Value::String(deploy::run(services, args, ctx).await?))
}

/// Synchronous validation of `write_image` / `prepare_image` arguments (400 with IPA's text).
pub fn validate_write_image(services: &AgentServices, args: &Params) -> Result<(), AgentError> {
    Ok(deploy::validate(services, args)?)
}

/// `standby` fragment: `prepare_image`.
#[derive(Debug)]
pub struct StandbyImageExtension {
    services: Arc<AgentServices>,
}

static STANDBY_COMMANDS: &[CommandSpec] = &[CommandSpec::asynchronous(
    "prepare_image",
    &[Param::opt("image_info"), Param::opt("configdrive")],
)];

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
    fn validate(&self, command: &str, params: &Params) -> Result<(), AgentError> {
        match command {
            "prepare_image" => validate_write_image(&self.services, params),
            _ => Ok(()),
        }
    }
    async fn execute(
        &self,
        command: &str,
        params: Params,
        ctx: CommandContext,
    ) -> Result<Value, AgentError> {
        match command {
            "prepare_image" => write_image(&self.services, &params, &ctx).await,
            other => Err(AgentError::invalid_command(format!("Unknown command: {other}"))),
        }
    }
}

/// `image` extension: `install_bootloader`.
#[derive(Debug)]
pub struct ImageExtension {
    services: Arc<AgentServices>,
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
            "install_bootloader" => Ok(bootloader::install(&self.services, &params).await?),
            other => Err(AgentError::invalid_command(format!("Unknown command: {other}"))),
        }
    }
}

inventory::submit! {
    ExtensionDescriptor {
        name: "standby-image",
        build: |s| Arc::new(StandbyImageExtension { services: s.clone() }),
    }
}

inventory::submit! {
    ExtensionDescriptor { name: "image", build: |s| Arc::new(ImageExtension { services: s.clone() }) }
}
