//! The ranges every number in a manifest must fall in, and the located
//! checks that enforce them. A limit outside its range is an error naming
//! the file, line and column, the key, and the allowed range; nothing
//! downstream (deadlines computed with `Instant + timeout`, memory pools,
//! fuel counters) ever sees an absurd value.
//!
//! Triggers read their own sections but check their durations with
//! [`duration`] and these ranges, so every duration in a manifest is bounded
//! the same way.

use std::time::Duration;

use toml::Spanned;
use weir_core::units::{parse_bytes, parse_duration};

use crate::place::Place;
use crate::ManifestError;

/// An inclusive range of durations, with the texts a message shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
    /// `min` and `max` as a reader writes them (`1ms`, `24h`).
    pub min_text: &'static str,
    pub max_text: &'static str,
}

/// An inclusive range of byte sizes, with the texts a message shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub min: u64,
    pub max: u64,
    pub min_text: &'static str,
    pub max_text: &'static str,
}

const DAY: u64 = 86_400;

/// A step's `limits.timeout`: 1 ms (one epoch tick) to 24 h.
pub const STEP_TIMEOUT: DurationRange =
    DurationRange { min: Duration::from_millis(1), max: Duration::from_secs(DAY), min_text: "1ms", max_text: "24h" };

/// A trigger's time limit of one invocation (`triggers.http.timeout`,
/// `triggers.jobs.timeout`, the NATS timeouts and `ack_wait`): 1 ms to 24 h.
pub const TRIGGER_TIMEOUT: DurationRange = STEP_TIMEOUT;

/// How long records are kept (`provenance.retention`,
/// `triggers.jobs.retention`): 1 s to 3650 d (about ten years).
pub const RETENTION: DurationRange = DurationRange {
    min: Duration::from_secs(1),
    max: Duration::from_secs(3650 * DAY),
    min_text: "1s",
    max_text: "3650d",
};

/// A step's `limits.memory`: one WebAssembly page (64 KiB) to 4 GiB, the
/// most a 32-bit linear memory can address. (The sandbox engine may be
/// built with a lower ceiling; see `EngineOptions::max_memory_bytes`.)
pub const STEP_MEMORY: ByteRange = ByteRange { min: 64 << 10, max: 4 << 30, min_text: "64KiB", max_text: "4GiB" };

/// A step's `limits.fuel` (guest instructions): 1 to 10^15 (days of work
/// at a billion instructions a second, far past any 24 h timeout).
pub const MAX_FUEL: u64 = 1_000_000_000_000_000;

/// A model's `threads` (ONNX Runtime intra-op threads): 1 to 1024.
pub const MAX_THREADS: usize = 1024;

/// Dimensions of a declared tensor (`shape`): at most 64 of them, each
/// `-1` (any size) or 0 to 2^53.
pub const MAX_RANK: usize = 64;
pub const MAX_DIM: i64 = 1 << 53;

/// Each `[accounting]` figure: a number from 0 to 10^9.
pub const MAX_PRICE: f64 = 1e9;

/// A spanned duration such as `30s`, parsed and checked against `range`.
pub fn duration(
    place: &Place,
    value: &Spanned<String>,
    key: &str,
    range: &DurationRange,
) -> Result<Duration, ManifestError> {
    let text = value.get_ref();
    let parsed = parse_duration(text).map_err(|e| place.at(value, format!("{key}: {e}")))?;
    let allowed = format!("allowed: {} to {}", range.min_text, range.max_text);
    if parsed < range.min {
        let what = if parsed.is_zero() { "zero" } else { "too short" };
        return Err(place.at(value, format!("{key}: `{}` is {what}; {allowed}", text.trim())));
    }
    if parsed > range.max {
        return Err(place.at(value, format!("{key}: `{}` is too long; {allowed}", text.trim())));
    }
    Ok(parsed)
}

/// A spanned byte size such as `64MiB`, parsed and checked against `range`.
pub fn bytes(place: &Place, value: &Spanned<String>, key: &str, range: &ByteRange) -> Result<u64, ManifestError> {
    let text = value.get_ref();
    let allowed = format!("allowed: {} to {}", range.min_text, range.max_text);
    let parsed = parse_bytes(text).map_err(|e| {
        if e.ends_with("is too large") {
            place.at(value, format!("{key}: `{}` is too large; {allowed}", text.trim()))
        } else {
            place.at(value, format!("{key}: {e}"))
        }
    })?;
    if parsed < range.min {
        let what = if parsed == 0 { "zero" } else { "too small" };
        return Err(place.at(value, format!("{key}: `{}` is {what}; {allowed}", text.trim())));
    }
    if parsed > range.max {
        return Err(place.at(value, format!("{key}: `{}` is too large; {allowed}", text.trim())));
    }
    Ok(parsed)
}

/// A spanned count that must lie in `min..=max`.
pub fn count<N>(place: &Place, value: &Spanned<N>, key: &str, min: N, max: N) -> Result<N, ManifestError>
where
    N: Copy + PartialOrd + std::fmt::Display,
{
    count_shown(place, value, key, min, max, &max.to_string())
}

/// [`count`], with `max` shown as `max_text` (e.g. `10^15`).
pub fn count_shown<N>(
    place: &Place,
    value: &Spanned<N>,
    key: &str,
    min: N,
    max: N,
    max_text: &str,
) -> Result<N, ManifestError>
where
    N: Copy + PartialOrd + std::fmt::Display,
{
    let n = *value.get_ref();
    if n < min || n > max {
        return Err(place.at(value, format!("{key} = {n} is out of range; allowed: {min} to {max_text}")));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn spanned(text: &str) -> Spanned<String> {
        Spanned::new(0..text.len(), text.to_string())
    }

    #[test]
    fn durations_are_bounded() {
        let place = Place::new(Path::new("w.toml"), "x");
        let check = |text: &str| duration(&place, &spanned(text), "k", &STEP_TIMEOUT).map_err(|e| e.message);
        assert_eq!(check("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(check("24h"), Ok(Duration::from_secs(DAY)));
        assert_eq!(check("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(check("0s").unwrap_err(), "k: `0s` is zero; allowed: 1ms to 24h");
        assert_eq!(check("999us").unwrap_err(), "k: `999us` is too short; allowed: 1ms to 24h");
        assert_eq!(check("1000000000000s").unwrap_err(), "k: `1000000000000s` is too long; allowed: 1ms to 24h");
        assert_eq!(check("25h").unwrap_err(), "k: `25h` is too long; allowed: 1ms to 24h");
        assert!(check("99999999999999999999999d").unwrap_err().contains("too large"));
    }

    #[test]
    fn sizes_and_counts_are_bounded() {
        let place = Place::new(Path::new("w.toml"), "x");
        let check = |text: &str| bytes(&place, &spanned(text), "m", &STEP_MEMORY).map_err(|e| e.message);
        assert_eq!(check("64MiB"), Ok(64 << 20));
        assert_eq!(check("4GiB"), Ok(4 << 30));
        assert_eq!(check("0").unwrap_err(), "m: `0` is zero; allowed: 64KiB to 4GiB");
        assert_eq!(check("1KiB").unwrap_err(), "m: `1KiB` is too small; allowed: 64KiB to 4GiB");
        assert_eq!(check("5GiB").unwrap_err(), "m: `5GiB` is too large; allowed: 64KiB to 4GiB");
        assert_eq!(check("99999999999GiB").unwrap_err(), "m: `99999999999GiB` is too large; allowed: 64KiB to 4GiB");
        let n = Spanned::new(0..1, 0u64);
        assert_eq!(
            count_shown(&place, &n, "f", 1, MAX_FUEL, "10^15").unwrap_err().message,
            "f = 0 is out of range; allowed: 1 to 10^15"
        );
        let n = Spanned::new(0..1, 9usize);
        assert_eq!(count(&place, &n, "n", 1, 8).unwrap_err().message, "n = 9 is out of range; allowed: 1 to 8");
    }
}
