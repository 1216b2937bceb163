//! A step's stdout and stderr, captured per invocation and turned into log
//! lines tagged with the step.

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub stream: LogStream,
    pub line: String,
}

pub(crate) fn collect(stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) -> Vec<LogLine> {
    let mut lines = Vec::new();
    for (stream, pipe) in [(LogStream::Stdout, stdout), (LogStream::Stderr, stderr)] {
        let bytes = pipe.contents();
        let text = String::from_utf8_lossy(&bytes);
        lines.extend(
            text.lines().filter(|l| !l.trim().is_empty()).map(|line| LogLine { stream, line: line.to_string() }),
        );
    }
    lines
}

/// The last few stderr lines, where a guest's panic message ends up; Rust's
/// "run with RUST_BACKTRACE" hint is dropped since it cannot apply here.
pub(crate) fn stderr_tail(lines: &[LogLine], count: usize) -> Option<String> {
    let mut tail: Vec<&str> = lines
        .iter()
        .rev()
        .filter(|l| l.stream == LogStream::Stderr && !l.line.starts_with("note: run with `RUST_BACKTRACE"))
        .take(count)
        .map(|l| l.line.as_str())
        .collect();
    tail.reverse();
    (!tail.is_empty()).then(|| tail.join(" | "))
}

/// Emit a step's captured output as tracing events tagged with the step and,
/// in a pipeline, the invocation.
pub fn emit(step: &str, invocation: Option<&str>, lines: &[LogLine]) {
    let invocation = invocation.unwrap_or("");
    for line in lines {
        match line.stream {
            LogStream::Stdout => {
                tracing::info!(target: "weir::step", invocation, step, stream = "stdout", "{}", line.line)
            }
            LogStream::Stderr => {
                tracing::warn!(target: "weir::step", invocation, step, stream = "stderr", "{}", line.line)
            }
        }
    }
}
