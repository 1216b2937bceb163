//! The gRPC trigger: the Open Inference Protocol's `GRPCInferenceService`
//! (`[triggers.grpc]`). It is the HTTP trigger's twin, not a second server:
//! it shares its keys, quotas, concurrency slots, decoding budget, time
//! limit and message limits, and every invocation goes through the same
//! [`Dispatcher`](crate::Dispatcher) — same receipts (in the response's
//! `parameters`), metrics and spans. Errors carry the gRPC code of their
//! [`ErrorKind`]; `authorization` and `traceparent` come as metadata.

mod convert;
mod listen;
mod settings;

/// The messages and service compiled from `proto/inference.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("inference");
}

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{Stream, StreamExt};
use prost::Message as _;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};
use weir_access::{base_pipeline, AuditEvent, Principal, Requirement};
use weir_core::ErrorKind;

pub use settings::{GrpcSettings, DEFAULT_LISTEN};

use crate::dispatch::{Failure, Invocation, Prepared, TriggerKind};
use crate::http::{self, AppState};
use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::*;

fn status(failure: Failure) -> Status {
    Status::new(Code::from_i32(failure.kind.grpc_code()), failure.message)
}

/// The service, over the HTTP trigger's state.
#[derive(Clone)]
struct Service {
    state: Arc<AppState>,
}

/// What a call's metadata says about its caller.
struct Caller {
    authorization: Option<String>,
    traceparent: Option<String>,
    /// Every metadata entry, for an experiment's sticky header.
    metadata: MetadataMap,
}

impl Caller {
    fn of(metadata: &MetadataMap) -> Caller {
        let text = |key: &str| metadata.get(key).map(|v| v.to_str().unwrap_or("").to_string());
        Caller { authorization: text("authorization"), traceparent: text("traceparent"), metadata: metadata.clone() }
    }
}

impl Service {
    /// Authenticate the caller and check `requirement`; refusals are audited.
    fn authorize(&self, caller: &Caller, requirement: Requirement, action: &str) -> Result<Principal, Status> {
        if requirement == Requirement::Public {
            return Ok(Principal::operator());
        }
        let principal = self.state.access.authenticate(caller.authorization.as_deref()).map_err(|error| {
            self.audit("unauthenticated", action, ErrorKind::Unauthenticated.http_status());
            Status::unauthenticated(error.to_string())
        })?;
        if !principal.may(&requirement) {
            self.audit(&principal.key_id, action, ErrorKind::Forbidden.http_status());
            return Err(Status::permission_denied(format!(
                "key `{}` may not do this: it needs {} (see `weir keys list`)",
                principal.key_id,
                requirement.scope_text()
            )));
        }
        Ok(principal)
    }

    fn audit(&self, key_id: &str, action: &str, status: u16) {
        if let Some(log) = &self.state.audit {
            if let Err(error) = log.record(&AuditEvent::now(key_id, format!("gRPC {action}"), status, None)) {
                tracing::error!(%error, "could not write the audit log");
            }
        }
    }

    /// One `ModelInfer`, unary or from a stream: admitted, decoded, run
    /// and answered exactly as an HTTP request is.
    async fn infer(&self, caller: &Caller, message: ModelInferRequest) -> Result<Answer, Status> {
        let received = Instant::now();
        let name = convert::pipeline_name(&message.model_name, &message.model_version);
        let action = format!("ModelInfer {name}");
        let principal = self.authorize(caller, Requirement::invoke(&name), &action)?;
        let result = self.run(caller, &principal, &name, message, received).await;
        let http_status = match &result {
            Ok(_) => 200,
            Err(failure) => failure.status(),
        };
        if self.state.dispatcher.executor().pipeline(&name).is_ok() {
            self.audit(&principal.key_id, &action, http_status);
        }
        result.map_err(status)
    }

    async fn run(
        &self,
        caller: &Caller,
        principal: &Principal,
        name: &str,
        message: ModelInferRequest,
        received: Instant,
    ) -> Result<Answer, Failure> {
        let state = &self.state;
        let dispatcher = &state.dispatcher;
        dispatcher.executor().pipeline(name)?;
        let _admission = state.quotas.admit(principal, base_pipeline(name)).map_err(|refusal| {
            let seconds = http::count_refusal(state, name, principal, &refusal);
            Failure::new(ErrorKind::Overloaded, format!("{} (retry after {seconds} s)", refusal.message))
        })?;
        let counted = |failure: Failure| {
            dispatcher.count(name, failure.status());
            failure
        };
        let Ok(_slot) = state.slots.try_acquire() else {
            let message = format!(
                "{} invocations are already running (max_concurrency); retry later",
                state.settings.max_concurrency
            );
            return Err(counted(Failure::new(ErrorKind::Overloaded, message)));
        };
        let _budget = http::decoding_budget(state, message.encoded_len()).map_err(counted)?;
        let (request, inputs) = convert::request(message).map_err(|e| counted(Failure::from_error(&e)))?;
        let prepared = Prepared::from_parts(request, inputs, received, dispatcher.limits()).map_err(counted)?;
        let rows = prepared.inputs().iter().filter(|t| t.shape.len() >= 2).map(|t| t.shape[0]).max().unwrap_or(1);
        state.quotas.charge_rows(principal, base_pipeline(name), rows);
        if let Some(refusal) = http::suspected_extraction(state, name, principal, &prepared) {
            http::count_refusal(state, name, principal, &refusal);
            return Err(Failure::new(ErrorKind::Overloaded, refusal.message));
        }
        let trace = dispatcher.trace(caller.traceparent.as_deref());
        let timeout = state.settings.timeout;
        let sticky_header = dispatcher
            .sticky_header(name)
            .and_then(|key| caller.metadata.get(key.as_str()).and_then(|v| v.to_str().ok()).map(str::to_string));
        let invocation =
            Invocation { trigger: TriggerKind::Grpc, pipeline: name, prepared, timeout, trace, sticky_header };
        let completed = dispatcher.invoke(invocation).await?;
        let invocation_id = completed.output.invocation_id.clone();
        let traceparent = trace.zip(completed.span_id).map(|(trace, span)| trace.traceparent(span));
        let response = convert::response(completed.response);
        let limit = dispatcher.limits().max_response_bytes;
        if response.encoded_len() as u64 > limit {
            let message = format!(
                "the response would be over the limit of {limit} bytes (max_response); ask for fewer outputs or \
                 a smaller batch"
            );
            return Err(Failure::new(ErrorKind::TooLarge, message));
        }
        Ok(Answer { response, invocation_id, traceparent })
    }
}

/// A finished `ModelInfer`, and what its response metadata says.
struct Answer {
    response: ModelInferResponse,
    invocation_id: String,
    /// The invocation's span in the caller's trace, when spans are exported.
    traceparent: Option<String>,
}

type InferStream = Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: true }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let caller = Caller::of(request.metadata());
        let name = request.into_inner().name;
        self.authorize(&caller, Requirement::invoke(&name), &format!("ModelReady {name}"))?;
        match http::ready(&self.state, &name).await {
            Ok(()) => Ok(Response::new(ModelReadyResponse { ready: true })),
            Err(failure) if failure.kind == ErrorKind::NotFound => Err(status(failure)),
            Err(_) => Ok(Response::new(ModelReadyResponse { ready: false })),
        }
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.authorize(&Caller::of(request.metadata()), Requirement::AnyKey, "ServerMetadata")?;
        Ok(Response::new(ServerMetadataResponse {
            name: "weir".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: http::extensions(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let caller = Caller::of(request.metadata());
        let name = request.into_inner().name;
        self.authorize(&caller, Requirement::invoke(&name), &format!("ModelMetadata {name}"))?;
        let executor = self.state.dispatcher.executor();
        let pipeline = executor.pipeline(&name).map_err(|e| status(Failure::from_error(&e)))?;
        let metadata = http::metadata_of(pipeline);
        let tensors = |list: Vec<http::api::TensorMetadata>| {
            list.into_iter()
                .map(|t| model_metadata_response::TensorMetadata { name: t.name, datatype: t.datatype, shape: t.shape })
                .collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: metadata.name,
            versions: metadata.versions,
            platform: metadata.platform,
            inputs: tensors(metadata.inputs),
            outputs: tensors(metadata.outputs),
        }))
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let caller = Caller::of(request.metadata());
        let answer = self.infer(&caller, request.into_inner()).await?;
        let mut response = Response::new(answer.response);
        if let Ok(id) = MetadataValue::try_from(answer.invocation_id.as_str()) {
            response.metadata_mut().insert("weir-invocation-id", id);
        }
        if let Some(Ok(traceparent)) = answer.traceparent.as_deref().map(MetadataValue::try_from) {
            response.metadata_mut().insert("traceparent", traceparent);
        }
        Ok(response)
    }

    type ModelStreamInferStream = InferStream;

    /// Requests are answered one at a time, in order; a failed one is
    /// answered with its `error_message` and the stream goes on.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<InferStream>, Status> {
        let caller = Caller::of(request.metadata());
        let inbound = request.into_inner();
        let service = self.clone();
        let answers =
            futures_util::stream::unfold((inbound, service, caller), |(mut inbound, service, caller)| async {
                let answer = match inbound.next().await? {
                    Ok(message) => Ok(match service.infer(&caller, message).await {
                        Ok(answer) => ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(answer.response),
                        },
                        Err(status) => ModelStreamInferResponse {
                            error_message: status.message().to_string(),
                            infer_response: None,
                        },
                    }),
                    Err(status) => Err(status),
                };
                Some((answer, (inbound, service, caller)))
            });
        Ok(Response::new(Box::pin(answers)))
    }
}

/// Serve `GRPCInferenceService` on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.dispatcher.limits().clone();
    // A call may take its body's time and its invocation's, no more: a
    // client that trickles a message in is cut off like a slow HTTP body.
    let deadline = state.settings.body_timeout + state.settings.timeout;
    let max_concurrency = u32::try_from(state.settings.max_concurrency).unwrap_or(u32::MAX);
    let incoming = listen::incoming(listener, state.settings.max_connections);
    let service = GrpcInferenceServiceServer::new(Service { state })
        .max_decoding_message_size(usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX))
        .max_encoding_message_size(usize::try_from(limits.max_response_bytes).unwrap_or(usize::MAX));
    tonic::transport::Server::builder()
        .timeout(deadline)
        .max_concurrent_streams(Some(max_concurrency))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(std::io::Error::other)
}

/// Bind the gRPC listener (before serving, so its address can be told).
pub(crate) async fn bind(settings: &GrpcSettings) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(&settings.listen).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

#[cfg(test)]
mod tests;
