//! What every trigger (HTTP, async jobs, NATS) does with one Open Inference
//! Protocol request: parse it, run the pipeline under a time limit, price
//! it, and build the response — or say, with an HTTP-style status, whose
//! fault the failure was.

use std::time::{Duration, Instant};

use crate::accounting::Receipt;
use crate::oip::{self, InferenceRequest};
use crate::pipeline::{Executor, PipelineError, PipelineOutput, RunOptions};
use crate::tensor::Tensor;

/// A failed request: an HTTP status (also used by the queue triggers to
/// tell bad requests from failures worth retrying) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub message: String,
}

impl Failure {
    pub fn new(status: u16, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into() }
    }

    /// The request itself was wrong (retrying it cannot help).
    pub fn is_permanent(&self) -> bool {
        matches!(self.status, 400 | 404 | 413)
    }
}

impl From<PipelineError> for Failure {
    fn from(error: PipelineError) -> Self {
        let status = match &error {
            PipelineError::UnknownPipeline { .. } => 404,
            e if e.is_caller_error() => 400,
            PipelineError::Step(crate::InvokeError::Timeout { .. }) => 504,
            PipelineError::Load { .. } => 503,
            _ => 500,
        };
        Failure::new(status, error.to_string())
    }
}

/// A parsed request, ready to run.
pub struct Prepared {
    pub request: InferenceRequest,
    inputs: Vec<Tensor>,
    options: RunOptions,
}

impl Prepared {
    /// Answer with the full receipt unless the request asked for the compact one.
    pub fn prefer_full_receipt(&mut self) {
        let asked = self.request.parameters.as_ref().and_then(|p| p.get("receipt")).is_some();
        self.options.full_receipt |= !asked;
    }
}

/// Parse an OIP request body; `received` starts the queue-wait clock.
pub fn prepare(body: &[u8], received: Instant) -> Result<Prepared, Failure> {
    let bad_request = |e: oip::OipError| Failure::new(400, e.to_string());
    let request = oip::parse_request(body).map_err(bad_request)?;
    let inputs = oip::request_tensors(&request).map_err(bad_request)?;
    let mut options = oip::run_options(&request).map_err(bad_request)?;
    options.received = Some(received);
    Ok(Prepared { request, inputs, options })
}

/// A finished invocation and its OIP response.
pub struct Completed {
    pub output: PipelineOutput,
    pub receipt: Option<Receipt>,
    pub response: oip::InferenceResponse,
}

/// Run a prepared request on `pipeline`; over `timeout` it is cancelled (504).
pub async fn execute(
    executor: &Executor,
    pipeline: &str,
    prepared: Prepared,
    receipts: bool,
    timeout: Duration,
) -> Result<Completed, Failure> {
    let Prepared { request, inputs, options } = prepared;
    let output = match tokio::time::timeout(timeout, executor.run(pipeline, inputs, &options)).await {
        Ok(result) => result?,
        Err(_) => return Err(Failure::new(504, format!("the invocation took longer than {timeout:?} and was cancelled"))),
    };
    let receipt = receipts.then(|| output.receipt(&executor.manifest().accounting));
    let response = oip::pipeline_response(pipeline, &request, &output, &options, receipt.as_ref())
        .map_err(|e| Failure::new(400, e.to_string()))?;
    Ok(Completed { output, receipt, response })
}
