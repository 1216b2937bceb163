//! Which broker messages hold a data subject's data, and erasing them.
//!
//! A request weir consumed stays in its stream (under the stream's own
//! retention), and the results and dead letters weir published hold
//! outputs and requests. Each of them is noted against the request's
//! `parameters.subject` — in the provenance store when there is one, so a
//! restart does not forget them, else in memory — and `DELETE
//! /v2/subjects/{s}` deletes them from JetStream, which overwrites a
//! deleted message's bytes in its store (its secure erase, the default of
//! the stream message-delete API).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use serde::Deserialize;
use weir_observe::provenance::{BrokerMessage, ProvenanceStore};

/// Longest subject noted from a request that was refused before parsing.
const MAX_CLAIMED_SUBJECT: usize = 256;

/// The broker side of erasure.
pub struct Broker {
    js: jetstream::Context,
    ledger: Ledger,
}

enum Ledger {
    Store(Arc<ProvenanceStore>),
    Memory(Mutex<HashMap<String, Vec<BrokerMessage>>>),
}

impl Broker {
    pub(crate) fn new(js: jetstream::Context, provenance: Option<Arc<ProvenanceStore>>) -> Broker {
        let ledger = match provenance {
            Some(store) => Ledger::Store(store),
            None => Ledger::Memory(Mutex::default()),
        };
        Broker { js, ledger }
    }

    /// Note that `messages` hold `subject`'s data.
    pub(crate) fn note(&self, subject: &str, messages: &[BrokerMessage]) {
        match &self.ledger {
            Ledger::Store(store) => {
                if let Err(error) = store.remember_published(subject, messages) {
                    tracing::error!(%error, "could not note broker messages for erasure");
                }
            }
            Ledger::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                map.entry(subject.to_string()).or_default().extend_from_slice(messages);
            }
        }
    }

    /// Delete every noted message of `subject` from its stream; how many
    /// were still there. Forgetting the notes is the provenance store's
    /// erasure (or done here, in memory).
    pub async fn erase_subject(&self, subject: &str) -> Result<usize, String> {
        let messages = match &self.ledger {
            Ledger::Store(store) => store.published(subject).map_err(|e| e.to_string())?,
            Ledger::Memory(map) => map.lock().unwrap_or_else(|p| p.into_inner()).remove(subject).unwrap_or_default(),
        };
        let mut erased = 0;
        for message in messages {
            let stream = match self.js.get_stream(&message.stream).await {
                Ok(stream) => stream,
                // The stream itself is gone, and its messages with it.
                Err(e) if e.to_string().contains("not found") => continue,
                Err(e) => return Err(format!("JetStream stream `{}`: {e}", message.stream)),
            };
            match stream.delete_message(message.sequence).await {
                Ok(true) => erased += 1,
                Ok(false) => {}
                // Already deleted, or expired by the stream's retention.
                Err(e) if e.to_string().contains("no message found") => {}
                Err(e) => return Err(format!("deleting message {} of `{}`: {e}", message.sequence, message.stream)),
            }
        }
        Ok(erased)
    }
}

/// The subject a request names, read leniently from a message that was
/// refused before it was parsed (its dead letter carries the request).
pub(crate) fn claimed_subject(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Claimed {
        parameters: Option<Parameters>,
    }
    #[derive(Deserialize)]
    struct Parameters {
        subject: Option<String>,
    }
    let subject = serde_json::from_slice::<Claimed>(payload).ok()?.parameters?.subject?;
    (!subject.is_empty() && subject.len() <= MAX_CLAIMED_SUBJECT).then_some(subject)
}
