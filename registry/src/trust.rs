//! The operator's trust policy: which keys must have signed the artifacts
//! pulled from where. A TOML file of rules, each a reference prefix
//! (`registry/repository…`) with the public keys any one of which must
//! have signed, or `unsigned = true` to say plainly that none is needed;
//! the longest matching prefix decides, and an artifact no rule covers is
//! refused. Key paths are relative to the policy file.
//!
//! ```toml
//! [[rule]]
//! prefix = "registry.example.com/ml/"
//! keys = ["release.pub"]
//!
//! [[rule]]
//! prefix = "localhost:5000/scratch/"
//! unsigned = true
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::error::RegistryError;
use crate::reference::ArtifactRef;
use crate::signatures::TrustRequirement;
use crate::signing::{KeyError, PublicKey};

/// Rules one policy may hold (it is read whole into memory).
const MAX_RULES: usize = 1024;
/// Largest policy file read.
const MAX_POLICY_BYTES: u64 = 1 << 20;

#[derive(Debug, Error)]
pub enum TrustError {
    #[error("cannot read the trust policy `{path}`: {why}")]
    Read { path: String, why: String },
    #[error("the trust policy `{path}` is not valid: {why}")]
    Invalid { path: String, why: String },
    #[error("the trust policy `{path}`, rule for `{prefix}`: {source}")]
    Key { path: String, prefix: String, source: KeyError },
}

/// A loaded trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    path: PathBuf,
    rules: Vec<TrustRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TrustRule {
    prefix: String,
    /// Empty for a rule that lets unsigned artifacts through.
    keys: Vec<PublicKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    prefix: String,
    #[serde(default)]
    keys: Vec<PathBuf>,
    #[serde(default)]
    unsigned: bool,
}

impl TrustPolicy {
    pub fn load(path: &Path) -> Result<TrustPolicy, TrustError> {
        let shown = path.display().to_string();
        let invalid = |why: String| TrustError::Invalid { path: shown.clone(), why };
        let size = std::fs::metadata(path).map_err(|e| TrustError::Read { path: shown.clone(), why: e.to_string() })?;
        if size.len() > MAX_POLICY_BYTES {
            return Err(invalid(format!("it is {} bytes, over {MAX_POLICY_BYTES}", size.len())));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| TrustError::Read { path: shown.clone(), why: e.to_string() })?;
        let raw: RawPolicy = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if raw.rule.is_empty() {
            return Err(invalid("it has no `[[rule]]`: every artifact would be refused".into()));
        }
        if raw.rule.len() > MAX_RULES {
            return Err(invalid(format!("{} rules, over {MAX_RULES}", raw.rule.len())));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut rules: Vec<TrustRule> = Vec::new();
        for rule in raw.rule {
            let prefix = rule.prefix.trim_start_matches("oci://").to_string();
            if rules.iter().any(|r| r.prefix == prefix) {
                return Err(invalid(format!("two rules for the prefix `{prefix}`")));
            }
            match (rule.keys.is_empty(), rule.unsigned) {
                (true, false) => {
                    return Err(invalid(format!(
                        "the rule for `{prefix}` names no keys; give `keys = [\"release.pub\"]`, or `unsigned = true` \
                         to let unsigned artifacts through"
                    )))
                }
                (false, true) => {
                    return Err(invalid(format!("the rule for `{prefix}` has both keys and `unsigned = true`")))
                }
                _ => {}
            }
            let mut keys = Vec::new();
            for key in &rule.keys {
                let key = PublicKey::from_pem_file(&base.join(key)).map_err(|source| TrustError::Key {
                    path: shown.clone(),
                    prefix: prefix.clone(),
                    source,
                })?;
                keys.push(key);
            }
            rules.push(TrustRule { prefix, keys });
        }
        Ok(TrustPolicy { path: path.to_path_buf(), rules })
    }

    /// What `reference` must be signed by: `None` when its rule lets it
    /// through unsigned; refused when no rule covers it.
    pub fn requirement_for(&self, reference: &ArtifactRef) -> Result<Option<TrustRequirement>, RegistryError> {
        let name = format!("{}/{}", reference.registry(), reference.repository());
        let rule = self.rules.iter().filter(|r| name.starts_with(&r.prefix)).max_by_key(|r| r.prefix.len());
        match rule {
            None => Err(RegistryError::SignatureRequired {
                reference: reference.to_string(),
                why: format!("no rule of the trust policy `{}` covers `{name}`", self.path.display()),
            }),
            Some(rule) if rule.keys.is_empty() => Ok(None),
            Some(rule) => Ok(Some(TrustRequirement {
                keys: rule.keys.clone(),
                from: format!("the trust policy `{}`, rule `{}`", self.path.display(), rule.prefix),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SigningKey;

    fn policy(dir: &Path, text: &str) -> Result<TrustPolicy, TrustError> {
        std::fs::write(dir.join("trust.toml"), text).unwrap();
        TrustPolicy::load(&dir.join("trust.toml"))
    }

    #[test]
    fn the_longest_prefix_decides_and_uncovered_artifacts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        key.save(&dir.path().join("release.key"), &dir.path().join("release.pub")).unwrap();
        let policy = policy(
            dir.path(),
            r#"
[[rule]]
prefix = "oci://localhost:5000/ml/"
keys = ["release.pub"]
[[rule]]
prefix = "localhost:5000/ml/scratch/"
unsigned = true
"#,
        )
        .unwrap();
        let at = |s: &str| s.parse::<ArtifactRef>().unwrap();
        let signed = policy.requirement_for(&at("oci://localhost:5000/ml/digits:1")).unwrap().unwrap();
        assert_eq!(signed.keys, vec![key.public()]);
        assert_eq!(policy.requirement_for(&at("oci://localhost:5000/ml/scratch/x:1")).unwrap(), None);
        let err = policy.requirement_for(&at("oci://localhost:5000/other:1")).unwrap_err().to_string();
        assert!(err.contains("no rule of the trust policy"), "{err}");
    }

    #[test]
    fn a_policy_that_cannot_mean_anything_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            ("", "no `[[rule]]`"),
            ("[[rule]]\nprefix = \"a/\"\n", "names no keys"),
            ("[[rule]]\nprefix = \"a/\"\nkeys = [\"missing.pub\"]\n", "missing.pub"),
            ("[[rule]]\nprefix = \"a/\"\nunsigned = true\n[[rule]]\nprefix = \"a/\"\nunsigned = true\n", "two rules"),
            ("[[rule]]\nprefx = \"a/\"\n", "unknown field"),
        ] {
            let err = policy(dir.path(), text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
