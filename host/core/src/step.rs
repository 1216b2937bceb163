//! What a step may see and use: the manifest declares it, the sandbox
//! enforces it.

use std::time::Duration;

/// Resource limits of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimits {
    /// Largest linear memory the step may grow to.
    pub memory_bytes: u64,
    /// Wall-clock budget for instantiate + `process`.
    pub timeout: Duration,
    /// Guest instruction budget (needs an engine with fuel on).
    pub fuel: Option<u64>,
}

impl Default for StepLimits {
    fn default() -> Self {
        StepLimits { memory_bytes: 64 << 20, timeout: Duration::from_secs(10), fuel: None }
    }
}

/// What a step may do with `wasi:nn`. Nothing unless granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelGrants {
    /// Models the step may `load-by-name`.
    pub models: Vec<String>,
    /// Whether the step may hand the host raw model bytes (`graph.load`).
    pub load_model_bytes: bool,
}

impl ModelGrants {
    /// The granted model a guest's `load-by-name` of `name` gets: `name`
    /// itself, or the one granted version of it (`name@VERSION`), so a
    /// step's code asks for `eta` while the manifest picks `eta@v2`.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        if let Some(exact) = self.models.iter().find(|m| *m == name) {
            return Some(exact);
        }
        let mut versions = self.models.iter().filter(|m| m.split_once('@').is_some_and(|(base, _)| base == name));
        match (versions.next(), versions.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }
}

/// What a step may see. Everything not granted is denied: no files, no
/// sockets, no environment, no inherited stdio.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepGrants {
    /// Values served through `wasi:config/store`.
    pub config: Vec<(String, String)>,
    /// Models the step may load by name, and whether it may load raw bytes.
    pub nn: ModelGrants,
    /// Host directories the step may read (never write).
    pub dirs: Vec<DirGrant>,
    /// Environment variables the step sees (none else).
    pub env: Vec<(String, String)>,
    /// Hosts and ports the step may send HTTP requests to (`wasi:http`).
    pub http: Vec<HttpGrant>,
}

/// One host and port a step may call over `wasi:http`. The host is a DNS
/// name or an IP literal; every address it resolves to is checked before
/// connecting, and loopback addresses are refused unless `loopback` says
/// the operator means it (a sidecar). Link-local, unspecified and multicast
/// addresses are always refused (cloud metadata services live there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    /// Lower-case host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub loopback: bool,
}

impl std::fmt::Display for HttpGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if self.loopback {
            f.write_str(" (loopback allowed)")?;
        }
        Ok(())
    }
}

/// A host directory a step may read, and where it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: std::path::PathBuf,
    /// An absolute path inside the guest, such as `/data`.
    pub guest: String,
}

#[cfg(test)]
mod tests {
    use super::ModelGrants;

    fn grants(models: &[&str]) -> ModelGrants {
        ModelGrants { models: models.iter().map(|m| m.to_string()).collect(), load_model_bytes: false }
    }

    #[test]
    fn a_base_name_resolves_to_the_one_granted_version() {
        assert_eq!(grants(&["eta"]).resolve("eta"), Some("eta"));
        assert_eq!(grants(&["eta@v2"]).resolve("eta"), Some("eta@v2"));
        assert_eq!(grants(&["eta@v2"]).resolve("eta@v2"), Some("eta@v2"));
        // Two versions granted: the guest must name one.
        assert_eq!(grants(&["eta@v1", "eta@v2"]).resolve("eta"), None);
        assert_eq!(grants(&["eta@v1", "eta@v2"]).resolve("eta@v1"), Some("eta@v1"));
        // Never a prefix match, never an ungranted one.
        assert_eq!(grants(&["etalon@v2"]).resolve("eta"), None);
        assert_eq!(grants(&["acceptance"]).resolve("eta"), None);
    }
}
