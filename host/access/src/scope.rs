//! Scopes (what a key may do) and requirements (what an endpoint needs).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One thing a key may do. Written as text in the key file and on the
/// command line: `invoke:NAME`, `invoke:*`, `records:read`,
/// `records:erase`, `status`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    /// Invoke the named pipeline (sync, async) and read its metadata;
    /// `None` is every pipeline (`invoke:*`).
    Invoke(Option<String>),
    /// Read kept invocation records.
    ReadRecords,
    /// Erase kept records (by invocation or subject).
    EraseRecords,
    /// Send the true outcome of recorded invocations (feedback).
    WriteFeedback,
    /// `/v2/status` and `/metrics`.
    Status,
    /// Everything, including other keys' jobs.
    Admin,
}

#[derive(Debug, Error, PartialEq)]
#[error(
    "`{0}` is not a scope; scopes are `invoke:PIPELINE`, `invoke:*`, `records:read`, `records:erase`, \
     `feedback:write`, `status` and `admin`"
)]
pub struct ScopeError(pub String);

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<Scope, ScopeError> {
        let pipeline_name = |name: &str| {
            !name.is_empty()
                && name.len() <= 128
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match text {
            "invoke:*" => Ok(Scope::Invoke(None)),
            "records:read" => Ok(Scope::ReadRecords),
            "records:erase" => Ok(Scope::EraseRecords),
            "feedback:write" => Ok(Scope::WriteFeedback),
            "status" => Ok(Scope::Status),
            "admin" => Ok(Scope::Admin),
            _ => match text.strip_prefix("invoke:") {
                Some(name) if pipeline_name(name) => Ok(Scope::Invoke(Some(name.to_string()))),
                _ => Err(ScopeError(text.to_string())),
            },
        }
    }
}

impl TryFrom<String> for Scope {
    type Error = ScopeError;

    fn try_from(text: String) -> Result<Scope, ScopeError> {
        text.parse()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Invoke(None) => f.write_str("invoke:*"),
            Scope::Invoke(Some(name)) => write!(f, "invoke:{name}"),
            Scope::ReadRecords => f.write_str("records:read"),
            Scope::EraseRecords => f.write_str("records:erase"),
            Scope::WriteFeedback => f.write_str("feedback:write"),
            Scope::Status => f.write_str("status"),
            Scope::Admin => f.write_str("admin"),
        }
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> String {
        scope.to_string()
    }
}

/// What an endpoint needs of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: health checks, for load balancers.
    Public,
    /// Any valid key (server metadata; a job, which its handler checks is
    /// the caller's own).
    AnyKey,
    /// `invoke:PIPELINE` or `invoke:*`.
    Invoke(String),
    ReadRecords,
    EraseRecords,
    WriteFeedback,
    Status,
    Admin,
}

/// The pipeline a name's scope and quota are kept under: `ride` for
/// `ride` and for each of its versions (`ride@v2`).
pub fn base_pipeline(name: &str) -> &str {
    name.split_once('@').map_or(name, |(base, _)| base)
}

impl Requirement {
    /// What invoking `pipeline` needs: `invoke:` its base name (a version
    /// is the same service to callers).
    pub fn invoke(pipeline: &str) -> Requirement {
        Requirement::Invoke(base_pipeline(pipeline).to_string())
    }

    /// Whether a key holding `scopes` meets this requirement.
    pub fn met_by(&self, scopes: &[Scope]) -> bool {
        if scopes.contains(&Scope::Admin) {
            return true;
        }
        match self {
            Requirement::Public | Requirement::AnyKey => true,
            Requirement::Invoke(pipeline) => scopes.iter().any(|scope| match scope {
                Scope::Invoke(None) => true,
                Scope::Invoke(Some(name)) => name == pipeline,
                _ => false,
            }),
            Requirement::ReadRecords => scopes.contains(&Scope::ReadRecords),
            Requirement::EraseRecords => scopes.contains(&Scope::EraseRecords),
            Requirement::WriteFeedback => scopes.contains(&Scope::WriteFeedback),
            Requirement::Status => scopes.contains(&Scope::Status),
            Requirement::Admin => false,
        }
    }

    /// The scope that would meet it, for messages.
    pub fn scope_text(&self) -> String {
        match self {
            Requirement::Public | Requirement::AnyKey => "any key".into(),
            Requirement::Invoke(pipeline) => format!("`invoke:{pipeline}` or `invoke:*`"),
            Requirement::ReadRecords => "`records:read`".into(),
            Requirement::EraseRecords => "`records:erase`".into(),
            Requirement::WriteFeedback => "`feedback:write`".into(),
            Requirement::Status => "`status`".into(),
            Requirement::Admin => "`admin`".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_bad_ones_are_refused() {
        for text in ["invoke:*", "invoke:digits", "records:read", "records:erase", "status", "admin"] {
            assert_eq!(text.parse::<Scope>().unwrap().to_string(), text);
        }
        for bad in ["", "invoke:", "invoke:a b", "read", "records:*", "Admin", "invoke:../x"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
    }

    #[test]
    fn requirements_need_their_scope_and_admin_meets_all() {
        let digits = vec![Scope::Invoke(Some("digits".into()))];
        assert!(Requirement::Invoke("digits".into()).met_by(&digits));
        assert!(!Requirement::Invoke("other".into()).met_by(&digits));
        assert!(!Requirement::Status.met_by(&digits));
        assert!(!Requirement::ReadRecords.met_by(&[Scope::EraseRecords]));
        assert!(Requirement::Invoke("x".into()).met_by(&[Scope::Invoke(None)]));
        assert!(!Requirement::Admin.met_by(&[Scope::Invoke(None), Scope::Status]));
        for need in [Requirement::Admin, Requirement::Status, Requirement::EraseRecords] {
            assert!(need.met_by(&[Scope::Admin]));
        }
    }
}
