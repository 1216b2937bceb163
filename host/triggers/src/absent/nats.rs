//! The NATS trigger in a build without the `nats` feature: its manifest
//! sections are still read (so a manifest is checked the same way), and
//! [`crate::Triggers::from_manifest`] refuses one that asks for it.

use std::sync::Arc;

use weir_access::Access;
use weir_observe::provenance::ProvenanceStore;

use crate::dispatch::Dispatcher;

#[path = "../nats/error.rs"]
mod error;
#[path = "../nats/settings.rs"]
mod settings;

pub use error::NatsError;
pub use settings::{NatsConsumer, NatsSettings};

/// A broker connection, which this build cannot make: no value exists.
pub enum Broker {}

impl Broker {
    pub async fn erase_subject(&self, _subject: &str) -> Result<usize, String> {
        match *self {}
    }
}

pub async fn start(
    _dispatcher: Arc<Dispatcher>,
    _settings: &NatsSettings,
    _access: Arc<Access>,
    _provenance: Option<Arc<ProvenanceStore>>,
) -> Result<Arc<Broker>, NatsError> {
    Err(NatsError::NotBuilt)
}
