//! The subcommands of the `weir` binary.

pub mod compile;
mod compose;
pub mod experiment;
pub mod export;
pub mod graph;
pub mod keys;
pub mod new;
pub mod oci;
mod parquet;
pub mod receipts;
mod reconcile;
mod reload;
pub mod retrain;
pub mod run;
pub mod serve;
pub mod signing;

/// Exit codes (docs/cli.md): one per `ErrorKind` family, mapped in weir-core.
pub use weir_core::error::exit;
use weir_core::Classify;

/// An error with the exit code it deserves.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub fn fail(code: u8) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { code, error }
}

/// A classified error, with the exit code its kind maps to.
pub fn classified<E: Classify + Into<anyhow::Error>>(error: E) -> Failure {
    Failure { code: error.kind().exit_code(), error: error.into() }
}

/// Shorthand: any error as a failure with `code`.
pub fn with_code<E: Into<anyhow::Error>>(code: u8) -> impl FnOnce(E) -> Failure {
    move |error| Failure { code, error: error.into() }
}
