//! One `ErrorKind` for the whole host: every error a caller, a component or a
//! registry can cause is classified once, and each kind is mapped once to an
//! HTTP status, a CLI exit code and a queue retry decision. Triggers and the
//! CLI never decide these from each other's numbers.

use std::fmt;

/// Whose fault a failure was, and so what to tell the one who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request (or the command line, or the manifest) is wrong.
    InvalidInput,
    /// The request is larger than a limit allows.
    TooLarge,
    /// No such pipeline, step, job or record.
    NotFound,
    /// The caller did not say who it is.
    Unauthenticated,
    /// The caller may not do this.
    Forbidden,
    /// Too much is running or queued already; try again later.
    Overloaded,
    /// It took longer than its time limit.
    TimedOut,
    /// A step ran and failed (trap, limit, its own error, malformed output).
    StepFailed,
    /// A component is unusable (missing, not a component, wrong interface).
    BadComponent,
    /// A registry refused, failed or served something that failed verification.
    Registry,
    /// A part weir needs is not available now (a store, a loader).
    Unavailable,
    /// A fault of weir itself or of its host.
    Internal,
}

/// What a queue should do with a message whose invocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retrying cannot help: dead-letter it at once.
    Never,
    /// It may succeed later: redeliver (until the delivery limit).
    Later,
}

/// Exit codes of the `weir` binary (documented in docs/cli.md).
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

impl ErrorKind {
    /// Every kind, for tables and tests.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::InvalidInput,
        ErrorKind::TooLarge,
        ErrorKind::NotFound,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::Overloaded,
        ErrorKind::TimedOut,
        ErrorKind::StepFailed,
        ErrorKind::BadComponent,
        ErrorKind::Registry,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// The HTTP status of a response that failed this way.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidInput => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::TooLarge => 413,
            ErrorKind::Overloaded => 429,
            ErrorKind::StepFailed | ErrorKind::Internal => 500,
            // A component or model that cannot be had: the service is not
            // available for that pipeline (the others go on).
            ErrorKind::Registry | ErrorKind::BadComponent | ErrorKind::Unavailable => 503,
            ErrorKind::TimedOut => 504,
        }
    }

    /// The gRPC status code (google.rpc.Code) of a call that failed this way.
    pub fn grpc_code(self) -> i32 {
        match self {
            ErrorKind::InvalidInput => 3,                      // INVALID_ARGUMENT
            ErrorKind::TimedOut => 4,                          // DEADLINE_EXCEEDED
            ErrorKind::NotFound => 5,                          // NOT_FOUND
            ErrorKind::Forbidden => 7,                         // PERMISSION_DENIED
            ErrorKind::TooLarge | ErrorKind::Overloaded => 8,  // RESOURCE_EXHAUSTED
            ErrorKind::StepFailed | ErrorKind::Internal => 13, // INTERNAL
            ErrorKind::Registry | ErrorKind::BadComponent | ErrorKind::Unavailable => 14, // UNAVAILABLE
            ErrorKind::Unauthenticated => 16,                  // UNAUTHENTICATED
        }
    }

    /// The exit code of a `weir` command that failed this way.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::InvalidInput
            | ErrorKind::TooLarge
            | ErrorKind::NotFound
            | ErrorKind::Unauthenticated
            | ErrorKind::Forbidden => exit::BAD_INPUT,
            ErrorKind::BadComponent => exit::BAD_COMPONENT,
            ErrorKind::StepFailed | ErrorKind::TimedOut => exit::STEP_FAILED,
            ErrorKind::Registry => exit::REGISTRY,
            ErrorKind::Overloaded | ErrorKind::Unavailable | ErrorKind::Internal => exit::INTERNAL,
        }
    }

    /// Whether a queued message that failed this way is worth redelivering.
    pub fn retry(self) -> Retry {
        match self {
            ErrorKind::InvalidInput
            | ErrorKind::TooLarge
            | ErrorKind::NotFound
            | ErrorKind::Unauthenticated
            | ErrorKind::Forbidden => Retry::Never,
            ErrorKind::Overloaded
            | ErrorKind::TimedOut
            | ErrorKind::StepFailed
            | ErrorKind::BadComponent
            | ErrorKind::Registry
            | ErrorKind::Unavailable
            | ErrorKind::Internal => Retry::Later,
        }
    }

    /// Whether the one who asked was at fault (a 4xx).
    pub fn is_caller_error(self) -> bool {
        self.retry() == Retry::Never
    }

    /// A stable name, for logs, metrics labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::TooLarge => "too-large",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::TimedOut => "timed-out",
            ErrorKind::StepFailed => "step-failed",
            ErrorKind::BadComponent => "bad-component",
            ErrorKind::Registry => "registry",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An error that knows its kind.
pub trait Classify {
    fn kind(&self) -> ErrorKind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_faults_are_4xx_exit_2_and_never_retried() {
        for kind in ErrorKind::ALL {
            let caller = kind.is_caller_error();
            assert_eq!(caller, (400..500).contains(&kind.http_status()) && kind != ErrorKind::Overloaded, "{kind}");
            if caller {
                assert_eq!(kind.exit_code(), exit::BAD_INPUT, "{kind}");
            }
        }
        assert_eq!(ErrorKind::Overloaded.retry(), Retry::Later, "429 is worth retrying");
    }
}
