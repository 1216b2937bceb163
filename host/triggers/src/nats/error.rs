//! How starting the NATS trigger fails (in every build: a build without
//! the `nats` feature fails with [`NatsError::NotBuilt`]).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {url}: {message} (is nats-server running with JetStream, `nats-server -js`?)")]
    Connect { url: String, message: String },
    #[error(
        "pipeline `{pipeline}`: cannot set up stream `{stream}` / consumer `{durable}`: {message} (the broker must \
         run JetStream, `nats-server -js`, and let this client create or read them)"
    )]
    Setup { pipeline: String, stream: String, durable: String, message: String },
    #[error(
        "this weir was built without the NATS trigger (cargo feature `nats`): rebuild with it, or remove \
         [triggers.nats] from the manifest"
    )]
    NotBuilt,
}

impl weir_core::Classify for NatsError {
    fn kind(&self) -> weir_core::ErrorKind {
        weir_core::ErrorKind::Unavailable
    }
}
