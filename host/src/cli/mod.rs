//! The subcommands of the `weir` binary.

pub mod graph;
pub mod new;
pub mod oci;
pub mod receipts;
pub mod run;
pub mod serve;

/// Exit codes, documented in the README.
pub mod exit {
    /// Something else went wrong (I/O on output, engine start-up, ONNX Runtime missing).
    pub const INTERNAL: u8 = 1;
    /// The request was wrong: bad arguments, unreadable or invalid input, a bad manifest.
    pub const BAD_INPUT: u8 = 2;
    /// The component could not be loaded (missing, not a component, wrong exports/imports).
    pub const BAD_COMPONENT: u8 = 3;
    /// A step ran and failed: trap, timeout, memory or fuel limit, step error, malformed output.
    pub const STEP_FAILED: u8 = 4;
    /// An OCI registry refused or failed: credentials, not found, unreachable, or an artifact that failed verification.
    pub const REGISTRY: u8 = 5;
}

/// An error with the exit code it deserves.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub fn fail(code: u8) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { code, error }
}

/// Shorthand: any error as a failure with `code`.
pub fn with_code<E: Into<anyhow::Error>>(code: u8) -> impl FnOnce(E) -> Failure {
    move |error| Failure { code, error: error.into() }
}
