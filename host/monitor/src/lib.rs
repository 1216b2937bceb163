//! weir-monitor: monitors as components off the critical path.
//!
//! A pipeline declares monitors (`[[pipelines.P.monitors]]`): components
//! written with the same SDK and run in the same sandbox as steps, fed
//! edges of the graph. The executor's observer ([`Monitors`]) copies the
//! monitored edges of each finished invocation into the monitor's bounded
//! queue without waiting (a full queue sheds the invocation and counts
//! it); a task per monitor stacks the rows into windows ([`window`]) and
//! runs the component on each window with its reference (a file, or the
//! first rows seen); its outputs become results, log events and metrics
//! ([`results`]).

mod hub;
mod reference;
pub mod results;
pub mod window;

use std::path::PathBuf;

use thiserror::Error;

pub use hub::{Monitors, PreparedMonitors};
pub use results::{MonitorBoard, MonitorFigures, MonitorResult};

#[derive(Debug, Error)]
pub enum MonitorError {
    #[error("monitor `{monitor}`: reference file {}: {problem}", file.display())]
    Reference { monitor: String, file: PathBuf, problem: String },
}
