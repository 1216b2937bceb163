//! What one request may hold. Callers are untrusted: every count and length
//! they send is checked against these before anything is allocated from it.
//! Tensor data is bounded by the body itself (each element takes at least
//! one byte of JSON), so decoded tensors hold at most a few times the body.

/// Limits on one inference request, the same for every trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLimits {
    /// The largest request body (HTTP body, job, NATS message payload).
    pub max_body_bytes: u64,
    /// The largest response body; a bigger one (a `trace` of a big batch)
    /// is refused with 413 rather than built.
    pub max_response_bytes: u64,
    /// Inputs in one request.
    pub max_inputs: usize,
    /// Requested outputs in one request.
    pub max_outputs: usize,
    /// Bytes in a tensor name, an output name, the request id or `until`.
    pub max_name_bytes: usize,
    /// Dimensions of one tensor.
    pub max_rank: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body_bytes: 8 << 20,
            max_response_bytes: 64 << 20,
            max_inputs: 256,
            max_outputs: 256,
            max_name_bytes: 256,
            max_rank: 32,
        }
    }
}

/// Decoded tensors hold at most this many bytes per byte of request body
/// (FP64 from `0,`: 8 bytes for 2), plus the body itself.
pub const DECODED_BYTES_PER_BODY_BYTE: u64 = 4;

impl RequestLimits {
    /// What decoding a body of `body_len` bytes may hold in memory at most:
    /// the body, the raw `data` copies, and the tensors decoded from them.
    pub fn decoded_bound(&self, body_len: usize) -> u64 {
        (body_len as u64).saturating_mul(DECODED_BYTES_PER_BODY_BYTE + 2)
    }
}
