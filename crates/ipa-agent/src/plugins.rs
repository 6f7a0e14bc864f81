//! Names every plugin crate exactly once.
//!
//! rustc does not load a dependency that no source line refers to, so a plugin crate that is
//! never named is not linked and its `inventory` registrations silently vanish. Each line below
//! names one plugin crate; `tests/registered_plugins.rs` asserts the registered set for the
//! features of the build. Add one line per new plugin crate.

// Always linked: the image pipeline and the Ironic lifecycle (also called from `run`; registers
// the `rescue` extension).
use ipa_image as _;
use ipa_ironic as _;

// Transports.
#[cfg(feature = "transport-amqp")]
use ipa_transport_amqp as _;
#[cfg(feature = "transport-rest")]
use ipa_transport_rest as _;
#[cfg(feature = "transport-zmq")]
use ipa_transport_zmq as _;

// Hardware managers.
#[cfg(feature = "hw-container")]
use ipa_hw_container as _;
#[cfg(feature = "hw-generic")]
use ipa_hw_generic as _;
#[cfg(feature = "hw-intel-cna")]
use ipa_hw_intel_cna as _;
#[cfg(feature = "hw-mellanox")]
use ipa_hw_mellanox as _;
#[cfg(feature = "hw-sim")]
use ipa_hw_sim as _;
