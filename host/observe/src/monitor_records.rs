//! Monitor results kept as records: with `[provenance]`, every window a
//! monitor runs on is stored beside the invocation records, under the same
//! retention, and read back newest first (`GET /v2/monitors/{pipeline}/{monitor}/results`),
//! so what a monitor found survives restarts and reloads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use weir_core::clock::unix_ms as now_ms;

use crate::provenance::{err, ProvenanceError, ProvenanceStore};

/// `pipeline \0 monitor \0 unix_ms \0 sequence` (numbers zero-padded, so
/// keys sort by time within a monitor) -> the result as JSON.
pub(crate) const MONITOR_RESULTS: TableDefinition<&str, &[u8]> = TableDefinition::new("monitor_results");

/// Results written by this process (two in one millisecond stay apart).
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The most results one read returns.
pub const MAX_READ: usize = 1000;

/// One run of a monitor over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorResult {
    pub unix_ms: u64,
    pub rows: usize,
    /// Each output's elements (at most 256 kept).
    pub outputs: BTreeMap<String, Vec<f64>>,
    /// Elements of the `alert` output that are true.
    pub alerts: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The key range of one monitor's results: `[prefix\0, prefix\x01)`.
fn bounds(pipeline: &str, monitor: &str) -> (String, String) {
    (format!("{pipeline}\0{monitor}\0"), format!("{pipeline}\0{monitor}\u{1}"))
}

impl ProvenanceStore {
    /// Keep `result` of `monitor` on `pipeline`; results past the store's
    /// retention are purged as each is written.
    pub fn put_monitor_result(
        &self,
        pipeline: &str,
        monitor: &str,
        result: &MonitorResult,
    ) -> Result<(), ProvenanceError> {
        let bytes = serde_json::to_vec(result).map_err(err)?;
        let (low, _) = bounds(pipeline, monitor);
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let key = format!("{low}{:020}\0{sequence:020}", result.unix_ms);
        let cutoff = format!("{low}{:020}", now_ms().saturating_sub(self.retention().as_millis() as u64));
        let db = self.db();
        let mut tx = db.begin_write().map_err(err)?;
        tx.set_durability(redb::Durability::Eventual);
        {
            let mut table = tx.open_table(MONITOR_RESULTS).map_err(err)?;
            table.insert(key.as_str(), bytes.as_slice()).map_err(err)?;
            // Only this monitor's expired results, oldest first: what is scanned is what is deleted.
            let expired: Vec<String> = table
                .range(low.as_str()..cutoff.as_str())
                .map_err(err)?
                .map(|entry| entry.map(|(k, _)| k.value().to_string()))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            for key in expired {
                table.remove(key.as_str()).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Purge every monitor's results past the retention (at start: a
    /// monitor no longer declared has no writes to purge them).
    pub(crate) fn purge_monitor_results(&self, now: u64) -> Result<(), ProvenanceError> {
        let cutoff = now.saturating_sub(self.retention().as_millis() as u64);
        let db = self.db();
        let tx = db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(MONITOR_RESULTS).map_err(err)?;
            let mut expired = Vec::new();
            for entry in table.iter().map_err(err)? {
                let (key, value) = entry.map_err(err)?;
                let unix_ms = serde_json::from_slice::<MonitorResult>(value.value()).map_or(0, |r| r.unix_ms);
                if unix_ms < cutoff {
                    expired.push(key.value().to_string());
                }
            }
            for key in expired {
                table.remove(key.as_str()).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// The newest `limit` results of `monitor` on `pipeline` (at most [`MAX_READ`]), newest first.
    pub fn monitor_results(
        &self,
        pipeline: &str,
        monitor: &str,
        limit: usize,
    ) -> Result<Vec<MonitorResult>, ProvenanceError> {
        let tx = self.db().begin_read().map_err(err)?;
        let table = match tx.open_table(MONITOR_RESULTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let (low, high) = bounds(pipeline, monitor);
        let mut results = Vec::new();
        for entry in table.range(low.as_str()..high.as_str()).map_err(err)?.rev().take(limit.min(MAX_READ)) {
            let (_, value) = entry.map_err(err)?;
            results.push(serde_json::from_slice(value.value()).map_err(err)?);
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn result(unix_ms: u64, alerts: usize) -> MonitorResult {
        MonitorResult { unix_ms, rows: 40, outputs: BTreeMap::from([("p".into(), vec![0.5])]), alerts, error: None }
    }

    #[test]
    fn results_are_kept_per_monitor_newest_first_and_expire_with_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProvenanceStore::open(&dir.path().join("p.redb"), Duration::from_secs(3600)).unwrap();
        let now = now_ms();
        for (i, at) in [now - 2000, now - 1000, now].into_iter().enumerate() {
            store.put_monitor_result("diagnosis", "drift", &result(at, i)).unwrap();
        }
        // A monitor whose name extends another's is not mixed in.
        store.put_monitor_result("diagnosis", "drift2", &result(now, 9)).unwrap();
        let read = store.monitor_results("diagnosis", "drift", 10).unwrap();
        assert_eq!(read.iter().map(|r| r.alerts).collect::<Vec<_>>(), [2, 1, 0]);
        assert_eq!(store.monitor_results("diagnosis", "drift", 1).unwrap(), [result(now, 2)]);
        assert!(store.monitor_results("other", "drift", 10).unwrap().is_empty());
        // One from before the retention period is purged by the next write.
        store.put_monitor_result("diagnosis", "drift", &result(now - 7_200_000, 5)).unwrap();
        store.put_monitor_result("diagnosis", "drift", &result(now, 3)).unwrap();
        let alerts: Vec<usize> =
            store.monitor_results("diagnosis", "drift", 10).unwrap().iter().map(|r| r.alerts).collect();
        assert_eq!(alerts, [3, 2, 1, 0]);
    }
}
