//! Per-step configuration, as granted in the manifest (`config = { ... }`) or
//! on the command line (`weir run --config key=value`). Read through
//! `wasi:config/store`; a step sees only its own values.

use std::str::FromStr;

use crate::bindings::wasi::config::store;
use crate::StepError;

/// The raw value of `key`, if the step was given one.
pub fn get(key: &str) -> Result<Option<String>, StepError> {
    store::get(key).map_err(|e| StepError::Failed(format!("reading config `{key}`: {}", describe(e))))
}

/// All configuration values the step was given.
pub fn all() -> Result<Vec<(String, String)>, StepError> {
    store::get_all().map_err(|e| StepError::Failed(format!("reading config: {}", describe(e))))
}

/// `key` parsed as `T`, if present. A value that does not parse is an error
/// that names the key and the value.
pub fn parse<T: FromStr>(key: &str) -> Result<Option<T>, StepError>
where
    T::Err: std::fmt::Display,
{
    match get(key)? {
        None => Ok(None),
        Some(raw) => raw.trim().parse::<T>().map(Some).map_err(|e| {
            StepError::Failed(format!("config `{key}` = {raw:?} is not a valid {}: {e}", std::any::type_name::<T>()))
        }),
    }
}

/// `key` parsed as `T`, or `default` when absent.
pub fn parse_or<T: FromStr>(key: &str, default: T) -> Result<T, StepError>
where
    T::Err: std::fmt::Display,
{
    Ok(parse(key)?.unwrap_or(default))
}

/// `key` parsed as `T`; absent is an error telling the operator what to set.
pub fn require<T: FromStr>(key: &str) -> Result<T, StepError>
where
    T::Err: std::fmt::Display,
{
    parse(key)?.ok_or_else(|| {
        StepError::Failed(format!(
            "config `{key}` is required: set it in the step's `config` table or with `--config {key}=...`"
        ))
    })
}

/// A comma-separated list of `T` (e.g. `mean = "0.5, 1.0, 2"`).
pub fn parse_list<T: FromStr>(key: &str) -> Result<Option<Vec<T>>, StepError>
where
    T::Err: std::fmt::Display,
{
    let Some(raw) = get(key)? else { return Ok(None) };
    raw.split(',')
        .map(|item| {
            item.trim()
                .parse::<T>()
                .map_err(|e| StepError::Failed(format!("config `{key}`: item {:?} is not valid: {e}", item.trim())))
        })
        .collect::<Result<Vec<T>, _>>()
        .map(Some)
}

fn describe(error: store::Error) -> String {
    match error {
        store::Error::Upstream(msg) => format!("upstream: {msg}"),
        store::Error::Io(msg) => format!("io: {msg}"),
    }
}
