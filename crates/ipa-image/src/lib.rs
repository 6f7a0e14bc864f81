//! # ipa-image
//!
//! The image pipeline (skeleton; the image-pipeline issue fills it in). Hardware managers call
//! [`write_image`] from their `write_image` deploy step; the `standby.prepare_image` command
//! calls the same function.

use std::sync::Arc;

use ipa_core::command::Params;
use ipa_core::error::AgentError;
use ipa_core::extension::CommandContext;
use ipa_core::services::AgentServices;
use serde_json::Value;

/// Write the image described by `args` (`image_info`, `configdrive`) to the OS install device
/// (found through the hardware managers), record the partition UUIDs for
/// `standby.get_partition_uuids`, and return IPA's result text
/// (`"image (<id>) written to device <dev> root_uuid=<u>"`).
pub async fn write_image(
    _services: &Arc<AgentServices>,
    _args: &Params,
    _ctx: &CommandContext,
) -> Result<Value, AgentError> {
    Err(AgentError::execution("image writing is not implemented yet"))
}
