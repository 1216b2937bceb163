//! Human units in limits: `64MiB`, `1GB`, `200ms`, `5s`.

use std::time::Duration;

/// Parse a byte size: a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = parse_number(number, text)
        .map_err(|e| e.unwrap_or_else(|| format!("`{text}` is not a size; write e.g. `64MiB` or `1GiB`")))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{text}`; use B, KB, MB, GB, KiB, MiB or GiB")),
    };
    number.checked_mul(factor).ok_or_else(|| format!("`{text}` is too large"))
}

/// Parse a duration: a number with a unit (us, ms, s, m, h, d).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = parse_number(number, text)
        .map_err(|e| e.unwrap_or_else(|| format!("`{text}` is not a duration; write e.g. `200ms` or `5s`")))?;
    Ok(match unit.trim() {
        "us" | "µs" => Duration::from_micros(number),
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" | "min" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        "d" => Duration::from_secs(number.saturating_mul(86_400)),
        "" => return Err(format!("`{text}` has no unit; write e.g. `{number}ms` or `{number}s`")),
        other => return Err(format!("unknown duration unit `{other}` in `{text}`; use us, ms, s, m, h or d")),
    })
}

/// The leading digits of a size or duration: `Err(None)` when there are
/// none, `Err(Some(message))` when they do not fit in a `u64`.
fn parse_number(digits: &str, text: &str) -> Result<u64, Option<String>> {
    if digits.is_empty() {
        return Err(None);
    }
    digits.parse().map_err(|_| Some(format!("`{text}` is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("12 parsecs").unwrap_err().contains("unknown size unit"));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("5y").is_err());
        assert_eq!(parse_duration("99999999999999999999s"), Err("`99999999999999999999s` is too large".into()));
        assert!(parse_duration("-5s").unwrap_err().contains("is not a duration"));
        assert_eq!(parse_duration("18446744073709551615d"), Ok(Duration::from_secs(u64::MAX)), "saturates");
    }

    #[test]
    fn huge_sizes_are_errors() {
        assert_eq!(parse_bytes("99999999999999999999"), Err("`99999999999999999999` is too large".into()));
        assert_eq!(parse_bytes("17179869184GiB"), Err("`17179869184GiB` is too large".into()));
        assert!(parse_bytes("").unwrap_err().contains("is not a size"));
    }
}
