//! weir-core: the vocabulary every other weir crate shares, and nothing
//! that runs anything.
//!
//! - [`tensor`]: datatypes, tensors, their validation and the BYTES codec;
//!   [`tensor_json`]: their elements as JSON, streamed;
//! - [`digest`]: `sha256:` content digests;
//! - [`error`]: the one [`ErrorKind`], mapped once to an HTTP status, a CLI
//!   exit code and a queue retry decision;
//! - [`step`]: what a step may see and use ([`StepGrants`], [`StepLimits`]);
//! - [`device`], [`objective`], [`energy`], [`pricing`]: where models run,
//!   which variant of one serves, how joules are known, and what receipts
//!   charge;
//! - [`units`], [`paths`], [`clock`], [`ids`], [`wasm`]: small shared helpers
//!   that used to exist several times over.

pub mod clock;
pub mod device;
pub mod digest;
pub mod energy;
pub mod error;
pub mod hash_key;
pub mod ids;
pub mod objective;
pub mod paths;
pub mod policy;
pub mod precompiled;
pub mod pricing;
pub mod secret;
pub mod step;
pub mod tensor;
pub mod tensor_json;
pub mod units;
pub mod wasm;

pub use device::DeviceChoice;
pub use digest::{Digest, DigestError};
pub use energy::{CpuModel, Energy, EnergyMethod, EnergySource};
pub use error::{Classify, ErrorKind, Retry};
pub use objective::Objective;
pub use pricing::Pricing;
pub use step::{DirGrant, HttpGrant, ModelGrants, StepGrants, StepLimits};
pub use tensor::{Datatype, Tensor, TensorError};
