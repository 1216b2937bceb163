//! weir-observe: what is known about invocations, kept apart from running
//! them. Everything here reads the executor's typed facts and events:
//!
//! - [`receipts`]: what an invocation and each step cost (CPU, energy with
//!   its method, money, CO2), priced from measured facts;
//! - [`energy`]: where joules come from (RAPL when readable, else a CPU model;
//!   [`gpu_energy`]: NVML for steps on a GPU);
//! - [`recording`] and [`provenance`]: the provenance observer and its store;
//! - [`logs`]: step output as tagged log lines (an observer);
//! - [`metrics`]: Prometheus metrics; [`telemetry`]: OpenTelemetry spans;
//! - [`report`]: receipts summed per pipeline and step;
//! - [`feedback`]: true outcomes scored against recorded answers, and live quality;
//! - [`export`]: recorded edges and feedback as rows for retraining;
//! - [`monitor_records`]: monitor results kept beside the records.

pub mod energy;
pub mod export;
pub mod feedback;
pub mod gpu_energy;
/// Keyed hashes of sensitive tensors (the key lives in `weir-core`, which the audit log shares).
pub use weir_core::hash_key;
pub mod logs;
pub mod metrics;
pub mod monitor_records;
pub mod provenance;
pub mod receipts;
pub mod recording;
pub mod report;
pub mod rewrite;
pub mod telemetry;

pub use receipts::{CompactReceipt, Receipt, StepReceipt};
