//! Errors as wasi-nn reports them to a guest: a code and a message.

use thiserror::Error;

/// `wasi:nn/errors.error-code`, as the host uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NnErrorCode {
    InvalidArgument,
    InvalidEncoding,
    Timeout,
    RuntimeError,
    UnsupportedOperation,
    TooLarge,
    NotFound,
    Security,
    Unknown,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct NnError {
    pub code: NnErrorCode,
    pub message: String,
}

impl NnError {
    pub fn new(code: NnErrorCode, message: impl Into<String>) -> Self {
        NnError { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(NnErrorCode::InvalidArgument, message)
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(NnErrorCode::RuntimeError, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(NnErrorCode::UnsupportedOperation, message)
    }
}
