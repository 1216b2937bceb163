//! The NATS JetStream trigger: each pipeline with `[pipelines.NAME.nats]`
//! gets a durable pull consumer. Messages carry OIP v2 inference requests;
//! results are OIP responses (with the request `id` and the full receipt).
//!
//! - At least once, never lost: a message is acked only after JetStream
//!   acknowledged storing its result (or its dead letter). Results and dead
//!   letters go to subjects a stream stores (`<STREAM>_OUT` is created when
//!   none does). A host that dies mid-message leaves it unacked, and
//!   JetStream redelivers it after `ack_wait`. Duplicates carry the same
//!   request `id`.
//! - A malformed message goes to the dead-letter subject at once and is
//!   terminated; a failing one is retried (nak) until `max_deliver`, then
//!   dead-lettered. A message delivered more than `max_deliver` times
//!   without an answer (it took its hosts down) is dead-lettered unrun by
//!   the next host that gets it. Neither holds up the others.
//! - With access control on, a message carries `Authorization: Bearer
//!   <key>` (a header) of a key that may invoke the pipeline; otherwise it
//!   is dead-lettered (401/403) unrun.
//! - A message names where its result goes (`Weir-Reply-To`) only under
//!   the consumer's `reply_prefix`: never a JetStream API subject.
//! - Erasure reaches the broker: the request, result and dead letter of a
//!   message that names a data subject are noted, and deleted from their
//!   streams when the subject is erased ([`Broker`]).
//! - Back-pressure: a host pulls only as many messages as it has free
//!   slots (`concurrency`), and long invocations send progress acks so
//!   JetStream does not redeliver them while they run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, consumer::PullConsumer, AckKind};
use async_nats::HeaderMap;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

mod broker;
mod error;
mod settings;

pub use broker::Broker;
pub use error::NatsError;

pub use settings::{NatsConsumer, NatsSettings};
use weir_access::{Access, Requirement};
use weir_core::{ErrorKind, Retry};
use weir_observe::provenance::{BrokerMessage, ProvenanceStore};

use crate::dispatch::{Completed, Dispatcher, Failure, Invocation, Prepared, TriggerKind};

/// What a dead-lettered message becomes, on the dead-letter subject.
#[derive(Serialize)]
struct DeadLetter<'a> {
    pipeline: &'a str,
    subject: &'a str,
    delivered: i64,
    stream_sequence: u64,
    error: LetterError<'a>,
    request: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
struct LetterError<'a> {
    status: u16,
    kind: &'a str,
    message: &'a str,
}

/// The header a client sets to have the result sent to it (JetStream does
/// not keep a message's own reply subject).
pub const REPLY_TO_HEADER: &str = "Weir-Reply-To";

/// Connect and start one consumer loop per configured pipeline. The
/// broker handle erases a subject's messages.
pub async fn start(
    dispatcher: Arc<Dispatcher>,
    settings: &NatsSettings,
    access: Arc<Access>,
    provenance: Option<Arc<ProvenanceStore>>,
) -> Result<Arc<Broker>, NatsError> {
    // Pulls sent before a reconnect are gone with the old connection:
    // workers pull again at once instead of waiting for them to time out.
    let reconnected = Arc::new(Notify::new());
    let on_event = reconnected.clone();
    let client = async_nats::ConnectOptions::new()
        .name("weir")
        .event_callback(move |event| {
            let reconnected = on_event.clone();
            async move {
                if matches!(event, async_nats::Event::Connected) {
                    reconnected.notify_waiters();
                }
                log_connection(event)
            }
        })
        .connect(settings.servers.as_slice())
        .await
        .map_err(|e| NatsError::Connect { url: settings.url.clone(), message: e.to_string() })?;
    let context = jetstream::new(client);
    let broker = Arc::new(Broker::new(context.clone(), provenance));
    for config in &settings.consumers {
        let consumer = consumer(&context, config).await?;
        store_outputs(&context, config).await?;
        tracing::info!(pipeline = %config.pipeline, subject = %config.subject, durable = %config.durable, "consuming from NATS JetStream");
        let worker = Worker {
            dispatcher: dispatcher.clone(),
            js: context.clone(),
            config: config.clone(),
            access: access.clone(),
            broker: broker.clone(),
            reconnected: reconnected.clone(),
        };
        tokio::spawn(watch_backlog(dispatcher.clone(), config.clone(), consumer.clone()));
        tokio::spawn(worker.run(consumer));
    }
    Ok(broker)
}

/// Say what happens to the broker connection: a cluster node going away
/// and the client moving to another is worth an operator's attention.
fn log_connection(event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => tracing::info!("connected to NATS"),
        async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting to the listed servers"),
        event => tracing::debug!(%event, "NATS client event"),
    }
}

/// How often a consumer's backlog is read from the server for `/metrics`.
const BACKLOG_EVERY: Duration = Duration::from_secs(2);

/// Keep `weir_consumer_pending_messages` and `…_ack_pending_messages` up
/// to date: what a scaler (KEDA, an HPA on external metrics) scales on.
/// Read from the server, so the lag counts messages no host has pulled.
async fn watch_backlog(dispatcher: Arc<Dispatcher>, config: NatsConsumer, consumer: PullConsumer) {
    let mut every = tokio::time::interval(BACKLOG_EVERY);
    loop {
        every.tick().await;
        match consumer.get_info().await {
            Ok(info) => dispatcher.metrics().consumer_backlog(
                &config.pipeline,
                &config.stream,
                &config.durable,
                info.num_pending,
                info.num_ack_pending as u64,
            ),
            Err(error) => tracing::debug!(pipeline = %config.pipeline, %error, "reading the consumer's backlog failed"),
        }
    }
}

async fn consumer(context: &jetstream::Context, config: &NatsConsumer) -> Result<PullConsumer, NatsError> {
    let fail = |message: String| NatsError::Setup {
        pipeline: config.pipeline.clone(),
        stream: config.stream.clone(),
        durable: config.durable.clone(),
        message,
    };
    // An existing stream is used as it is (it may capture more subjects).
    let stream = context
        .get_or_create_stream(jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: vec![config.subject.clone()],
            num_replicas: config.replicas,
            duplicate_window: duplicate_window(config),
            ..Default::default()
        })
        .await
        .map_err(|e| fail(e.to_string()))?;
    stream
        .get_or_create_consumer(
            &config.durable,
            pull::Config {
                durable_name: Some(config.durable.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                // One delivery more than the setting: a message whose every
                // delivery took its host down reaches a host once more, to
                // be dead-lettered without running.
                max_deliver: config.max_deliver + 1,
                filter_subject: config.subject.clone(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| fail(e.to_string()))
}

/// How long the server holds a pull open waiting for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// How long past `PULL_EXPIRES` a pull may stay unanswered before it is
/// taken as lost (the server ends a live one at `PULL_EXPIRES`).
const PULL_GRACE: Duration = Duration::from_millis(1500);

/// How long a host keeps trying to store an answer the broker refuses or
/// times out on, before leaving the message to be redelivered.
const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(30);

/// How long a stream weir creates remembers message ids: at least two
/// minutes (JetStream's default), and long enough that an answer to a
/// message redelivered after `ack_wait` is still recognised.
fn duplicate_window(config: &NatsConsumer) -> Duration {
    let deliveries = u32::try_from(config.max_deliver + 1).unwrap_or(u32::MAX);
    config.ack_wait.checked_mul(deliveries).unwrap_or(OUTPUT_MAX_AGE).clamp(Duration::from_secs(120), OUTPUT_MAX_AGE)
}

/// How long `<STREAM>_OUT` keeps results and dead letters.
const OUTPUT_MAX_AGE: Duration = Duration::from_secs(86_400);

/// Make sure a stream stores every subject the consumer publishes to, so
/// that each publish is acknowledged: subjects no stream stores go into
/// `<STREAM>_OUT`.
async fn store_outputs(context: &jetstream::Context, config: &NatsConsumer) -> Result<(), NatsError> {
    let name = format!("{}_OUT", config.stream);
    let fail = |message: String| NatsError::Setup {
        pipeline: config.pipeline.clone(),
        stream: name.clone(),
        durable: config.durable.clone(),
        message,
    };
    let mut missing = Vec::new();
    for subject in config.outputs() {
        if context.stream_by_subject(subject.as_str()).await.is_err() {
            missing.push(subject);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let stream = context
        .get_or_create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: missing.clone(),
            max_age: OUTPUT_MAX_AGE,
            num_replicas: config.replicas,
            duplicate_window: duplicate_window(config),
            ..Default::default()
        })
        .await
        .map_err(|e| fail(e.to_string()))?;
    let stored = &stream.cached_info().config.subjects;
    match missing.iter().find(|s| !stored.contains(s)) {
        Some(subject) => Err(fail(format!(
            "no stream stores `{subject}`, and stream `{name}` exists without it; add the subject to a stream \
             (results and dead letters are published to JetStream, so that none is lost)"
        ))),
        None => Ok(()),
    }
}

#[derive(Clone)]
struct Worker {
    dispatcher: Arc<Dispatcher>,
    js: jetstream::Context,
    config: NatsConsumer,
    /// With access control on, a message carries `Authorization: Bearer
    /// <key>` of a key that may invoke the pipeline.
    access: Arc<Access>,
    /// Where the messages holding a subject's data are noted.
    broker: Arc<Broker>,
    /// Notified when the client reconnects (to the same or another node).
    reconnected: Arc<Notify>,
}

impl Worker {
    async fn run(self, consumer: PullConsumer) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        loop {
            // Pull no more than there are free slots to run.
            let Ok(first) = slots.clone().acquire_owned().await else { return };
            let mut permits = vec![first];
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                permits.push(permit);
            }
            // Created before the pull, so that a reconnect during it counts.
            let reconnected = self.reconnected.notified();
            let batch = consumer.batch().max_messages(permits.len()).expires(PULL_EXPIRES).messages().await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(pipeline = %self.config.pipeline, %error, "pulling from NATS failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // A pull whose node or consumer leader died gets no answer: the
            // client would wait 5 s past `expires`; give up sooner, or at
            // once when the connection was re-made.
            let given_up = tokio::time::sleep(PULL_EXPIRES + PULL_GRACE);
            tokio::pin!(given_up, reconnected);
            loop {
                let next = tokio::select! {
                    // Messages already here are taken before giving up on the pull.
                    biased;
                    next = batch.next() => next,
                    () = &mut given_up => {
                        tracing::debug!(pipeline = %self.config.pipeline, "a pull got no answer; pulling again");
                        None
                    }
                    () = &mut reconnected => {
                        tracing::info!(pipeline = %self.config.pipeline, "reconnected to NATS; pulling again");
                        None
                    }
                };
                let Some(message) = next else { break };
                match message {
                    Ok(message) => {
                        let Some(permit) = permits.pop() else { break };
                        let worker = self.clone();
                        tokio::spawn(async move {
                            worker.handle(message).await;
                            drop(permit);
                        });
                    }
                    Err(error) => {
                        tracing::warn!(pipeline = %self.config.pipeline, %error, "a NATS pull returned an error")
                    }
                }
            }
        }
    }

    async fn handle(&self, message: jetstream::Message) {
        let info = message.info().ok();
        let delivered = info.as_ref().map_or(1, |i| i.delivered);
        // Queue wait counts from when JetStream stored the message.
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        let waited = info.as_ref().map_or(0, |i| (now - i.published.unix_timestamp_nanos()).max(0));
        let received = Instant::now().checked_sub(Duration::from_nanos(waited as u64)).unwrap_or_else(Instant::now);
        let admitted = self.admit(&message, delivered);
        let prepared = admitted.and_then(|()| self.dispatcher.prepare(&message.payload, received));
        let subject = match &prepared {
            Ok(prepared) => prepared.subject().map(str::to_string),
            Err(_) => broker::claimed_subject(&message.payload),
        };
        let outcome = match prepared {
            Ok(mut prepared) => {
                prepared.prefer_full_receipt();
                self.execute_with_progress(&message, prepared).await
            }
            Err(failure) => {
                self.dispatcher.count(&self.config.pipeline, failure.status());
                Err(failure)
            }
        };
        let done = match outcome {
            Ok((response, invocation_id)) => self.publish_result(&message, &response, &invocation_id).await,
            Err(failure) if failure.kind.retry() == Retry::Never || delivered >= self.config.max_deliver => {
                self.dead_letter(&message, &failure, delivered).await
            }
            Err(failure) => {
                tracing::warn!(pipeline = %self.config.pipeline, delivered, error = %failure.message, "invocation failed; NATS will redeliver");
                message
                    .ack_with(AckKind::Nak(Some(Duration::from_millis(500))))
                    .await
                    .map(|()| None)
                    .map_err(|e| e.to_string())
            }
        };
        if let (Some(subject), Ok(published)) = (&subject, &done) {
            let consumed =
                info.as_ref().map(|i| BrokerMessage { stream: i.stream.to_string(), sequence: i.stream_sequence });
            let held: Vec<BrokerMessage> = consumed.into_iter().chain(published.clone()).collect();
            self.broker.note(subject, &held);
        }
        if let Err(error) = done {
            // Not acked: JetStream redelivers it after ack_wait.
            tracing::error!(pipeline = %self.config.pipeline, %error, "could not finish a NATS message; it will be redelivered");
        }
    }

    /// Whether a message may run at all: its reply subject is allowed, and
    /// it has not already taken `max_deliver` hosts down.
    fn admit(&self, message: &jetstream::Message, delivered: i64) -> Result<(), Failure> {
        if delivered > self.config.max_deliver {
            let message = format!(
                "delivered {delivered} times without an answer (each host stopped or crashed while running it); \
                 not run again (max_deliver = {})",
                self.config.max_deliver
            );
            return Err(Failure::new(ErrorKind::Internal, message));
        }
        let authorization = message.headers.as_ref().and_then(|h| h.get("Authorization")).map(|v| v.as_str());
        let principal = self
            .access
            .authenticate(authorization)
            .map_err(|e| Failure::new(ErrorKind::Unauthenticated, e.to_string()))?;
        let requirement = Requirement::Invoke(self.config.pipeline.clone());
        if !principal.may(&requirement) {
            let why = format!(
                "key `{}` may not invoke this pipeline: it needs {}",
                principal.key_id,
                requirement.scope_text()
            );
            return Err(Failure::new(ErrorKind::Forbidden, why));
        }
        match self.reply_subject(message) {
            Some(Err(subject)) => Err(Failure::new(
                ErrorKind::InvalidInput,
                format!(
                    "{REPLY_TO_HEADER} `{subject}` is not allowed: it must start with `{}` and hold no wildcards \
                     or spaces (set `reply_prefix` in the manifest to allow another prefix)",
                    self.config.reply_prefix
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Where the message asks its result to go, if it asks: `Err` when the
    /// subject is outside the consumer's `reply_prefix`.
    fn reply_subject(&self, message: &jetstream::Message) -> Option<Result<String, String>> {
        let subject = message.headers.as_ref()?.get(REPLY_TO_HEADER)?.as_str().to_string();
        let rest = subject.strip_prefix(self.config.reply_prefix.as_str()).unwrap_or_default();
        let allowed = !rest.is_empty()
            && rest.len() <= 256
            && rest.split('.').all(|token| !token.is_empty() && token != "*" && token != ">")
            && rest.chars().all(|c| c.is_ascii_graphic());
        Some(if allowed { Ok(subject) } else { Err(subject) })
    }

    /// Run, telling JetStream the message is still being worked on.
    async fn execute_with_progress(
        &self,
        message: &jetstream::Message,
        prepared: Prepared,
    ) -> Result<(Vec<u8>, String), Failure> {
        let traceparent = message.headers.as_ref().and_then(|h| h.get("traceparent")).map(|v| v.as_str().to_string());
        let invocation = Invocation {
            trigger: TriggerKind::Nats,
            pipeline: &self.config.pipeline,
            prepared,
            timeout: self.config.timeout,
            trace: self.dispatcher.trace(traceparent.as_deref()),
            sticky_header: None,
        };
        let run = self.dispatcher.invoke(invocation);
        tokio::pin!(run);
        let mut progress = tokio::time::interval(self.config.ack_wait / 3);
        progress.tick().await;
        let completed: Completed = loop {
            tokio::select! {
                completed = &mut run => break completed?,
                _ = progress.tick() => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        };
        Ok((completed.body, completed.output.invocation_id))
    }

    async fn publish_result(
        &self,
        message: &jetstream::Message,
        body: &[u8],
        invocation_id: &str,
    ) -> Result<Option<BrokerMessage>, String> {
        let reply_to = self.reply_subject(message).and_then(Result::ok);
        let Some(subject) = self.config.results.clone().or(reply_to) else {
            // Nowhere to send it: the result is dropped, and said so.
            tracing::warn!(pipeline = %self.config.pipeline, "no `results` subject and no {REPLY_TO_HEADER} header: result dropped");
            return message.double_ack().await.map(|()| None).map_err(|e| e.to_string());
        };
        let mut headers = self.output_headers(message, "result");
        headers.insert("Weir-Invocation-Id", invocation_id);
        headers.insert("Weir-Instance", weir_core::ids::instance_id());
        let stored = self.publish_stored(message, subject, headers, body.to_vec()).await?;
        // Only now is the message done. A lost ack means a redelivery and a
        // duplicate result (same request id), never a lost one; so the ack
        // is not waited for, which spares a round trip per message.
        message.ack().await.map_err(|e| e.to_string())?;
        Ok(Some(stored))
    }

    /// Headers of a message's result or dead letter: `Nats-Msg-Id` names
    /// the message it answers, so JetStream stores one answer per message
    /// even when a lost ack makes a host answer a redelivery again (within
    /// the output stream's duplicate window, 2 minutes by default).
    fn output_headers(&self, message: &jetstream::Message, kind: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(info) = message.info() {
            // The consumer is part of it: two pipelines (or deployments)
            // answering the same message must not drop each other's answer.
            let id = format!("weir-{kind}.{}.{}.{}", info.stream, info.consumer, info.stream_sequence);
            headers.insert("Nats-Msg-Id", id.as_str());
        }
        headers
    }

    /// Publish `answer` (to `message`) and wait until JetStream says it
    /// stored it (or already had it: a duplicate, counted); where it is.
    /// While the broker cannot store it (a cluster electing a new leader,
    /// a reconnect), the publish is retried and the message kept with
    /// progress acks: the work is done, and a redelivery would run it
    /// again and spend one of its `max_deliver` deliveries on an outage.
    async fn publish_stored(
        &self,
        message: &jetstream::Message,
        subject: String,
        headers: HeaderMap,
        answer: Vec<u8>,
    ) -> Result<BrokerMessage, String> {
        let answer = bytes::Bytes::from(answer);
        let deadline = Instant::now() + PUBLISH_RETRY_FOR;
        let mut pause = Duration::from_millis(100);
        let store = async {
            loop {
                let stored = match self.js.publish_with_headers(subject.clone(), headers.clone(), answer.clone()).await
                {
                    Ok(stored) => {
                        stored.await.map_err(|e| format!("JetStream did not store the answer on `{subject}`: {e}"))
                    }
                    Err(e) => Err(format!("publishing to `{subject}`: {e}")),
                };
                match stored {
                    Ok(ack) => break Ok(ack),
                    Err(error) if Instant::now() + pause < deadline => {
                        tracing::warn!(pipeline = %self.config.pipeline, %error, "storing an answer failed; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                    Err(error) => break Err(error),
                }
            }
        };
        // The message is kept (progress acks every ack_wait / 3) for as long
        // as storing its answer takes, each wait for JetStream included.
        tokio::pin!(store);
        let mut progress = tokio::time::interval(self.config.ack_wait / 3);
        progress.tick().await;
        let ack = loop {
            tokio::select! {
                stored = &mut store => break stored?,
                _ = progress.tick() => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        };
        if ack.duplicate {
            self.dispatcher.metrics().duplicate_output(&self.config.pipeline);
            tracing::info!(pipeline = %self.config.pipeline, %subject, "this answer was already stored (a redelivered message, or a publish retried after its ack was lost)");
        }
        Ok(BrokerMessage { stream: ack.stream, sequence: ack.sequence })
    }

    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        failure: &Failure,
        delivered: i64,
    ) -> Result<Option<BrokerMessage>, String> {
        tracing::warn!(pipeline = %self.config.pipeline, delivered, kind = %failure.kind, error = %failure.message, "dead-lettering a NATS message");
        let mut stored = None;
        if let Some(subject) = &self.config.dead_letter {
            let letter = DeadLetter {
                pipeline: &self.config.pipeline,
                subject: message.subject.as_str(),
                delivered,
                stream_sequence: message.info().map(|i| i.stream_sequence).unwrap_or_default(),
                error: LetterError { status: failure.status(), kind: failure.kind.as_str(), message: &failure.message },
                request: String::from_utf8_lossy(&message.payload),
            };
            let body = serde_json::to_vec(&letter).map_err(|e| e.to_string())?;
            let headers = self.output_headers(message, "dead-letter");
            stored = Some(self.publish_stored(message, subject.clone(), headers, body).await?);
        }
        message.double_ack_with(AckKind::Term).await.map_err(|e| e.to_string())?;
        Ok(stored)
    }
}
