//! Registry credentials, looked up the way `docker` and `skopeo` users expect:
//! given explicitly, from the environment, or from `~/.docker/config.json`
//! (inline `auths`, `credHelpers` and `credsStore`); anonymous otherwise.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::error::RegistryError;

pub const USERNAME_ENV: &str = "WEIR_REGISTRY_USERNAME";
pub const PASSWORD_ENV: &str = "WEIR_REGISTRY_PASSWORD";

/// How to authenticate to registries.
#[derive(Clone, Default)]
pub enum Credentials {
    /// Environment, then the Docker config, then anonymous.
    #[default]
    Discover,
    /// This user and password for every registry.
    Basic {
        username: String,
        password: String,
    },
    Anonymous,
}

impl std::fmt::Debug for Credentials {
    // Never print a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Discover => f.write_str("Discover"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

impl Credentials {
    pub(crate) fn resolve(&self, registry: &str) -> Result<RegistryAuth, RegistryError> {
        match self {
            Credentials::Basic { username, password } => Ok(RegistryAuth::Basic(username.clone(), password.clone())),
            Credentials::Anonymous => Ok(RegistryAuth::Anonymous),
            Credentials::Discover => {
                if let (Ok(username), Ok(password)) = (std::env::var(USERNAME_ENV), std::env::var(PASSWORD_ENV)) {
                    return Ok(RegistryAuth::Basic(username, password));
                }
                from_docker_config(registry)
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, DockerAuth>,
    #[serde(default)]
    cred_helpers: std::collections::HashMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json")),
    }
}

fn from_docker_config(registry: &str) -> Result<RegistryAuth, RegistryError> {
    let Some(path) = docker_config_path() else { return Ok(RegistryAuth::Anonymous) };
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(RegistryAuth::Anonymous) };
    let fail = |why: String| RegistryError::Credentials {
        registry: registry.into(),
        why: format!("{}: {why}", path.display()),
    };
    let config: DockerConfig = serde_json::from_str(&text).map_err(|e| fail(format!("not valid JSON: {e}")))?;
    // Docker writes keys as `host`, `https://host` or `http://host/v1/`.
    let entry = config.auths.iter().find(|(key, _)| {
        let key = key.trim_start_matches("https://").trim_start_matches("http://");
        key.split('/').next() == Some(registry)
    });
    if let Some((_, entry)) = entry {
        if let Some(encoded) = &entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| fail(format!("the `auth` of `{registry}` is not base64: {e}")))?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| fail(format!("the `auth` of `{registry}` is not UTF-8")))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| fail(format!("the `auth` of `{registry}` is not `user:password`")))?;
            return Ok(RegistryAuth::Basic(username.into(), password.into()));
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(RegistryAuth::Basic(username.clone(), password.clone()));
        }
    }
    match config.cred_helpers.get(registry).or(config.creds_store.as_ref()) {
        Some(helper) => credential_helper(helper, registry).map_err(fail),
        None => Ok(RegistryAuth::Anonymous),
    }
}

/// Ask `docker-credential-<helper> get`, as Docker does.
fn credential_helper(helper: &str, registry: &str) -> Result<RegistryAuth, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Reply {
        username: String,
        secret: String,
    }
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run credential helper `{program}`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let output = child.wait_with_output().map_err(|e| format!("credential helper `{program}`: {e}"))?;
    if !output.status.success() {
        // Helpers answer "credentials not found" with a failure: that is anonymous.
        return Ok(RegistryAuth::Anonymous);
    }
    let reply: Reply = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("credential helper `{program}` answered something else than JSON: {e}"))?;
    Ok(RegistryAuth::Basic(reply.username, reply.secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inline_docker_auths() {
        let dir = tempfile::tempdir().unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let config = format!(
            r#"{{"auths": {{"https://127.0.0.1:5999": {{"auth": "{encoded}"}}, "other.io": {{"username": "bob", "password": "pw"}}}}}}"#
        );
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        // Only this test touches DOCKER_CONFIG in this crate's test binary.
        unsafe { std::env::set_var("DOCKER_CONFIG", dir.path()) };
        assert_eq!(from_docker_config("127.0.0.1:5999").unwrap(), RegistryAuth::Basic("alice".into(), "s3cret".into()));
        assert_eq!(from_docker_config("other.io").unwrap(), RegistryAuth::Basic("bob".into(), "pw".into()));
        assert_eq!(from_docker_config("nowhere.io").unwrap(), RegistryAuth::Anonymous);
        std::fs::write(dir.path().join("config.json"), r#"{"auths": {"x.io": {"auth": "!!"}}}"#).unwrap();
        let error = from_docker_config("x.io").unwrap_err().to_string();
        assert!(error.contains("not base64") && error.contains("config.json"), "{error}");

        // Credential helpers, as Docker runs them: `docker-credential-NAME get`
        // with the registry on stdin, per registry (`credHelpers`) or for all
        // (`credsStore`); a helper that fails means "no credentials".
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for (name, script) in [
            ("per", "read r; printf '{\"Username\":\"per-%s\",\"Secret\":\"p1\"}' \"$r\""),
            ("store", "read r; printf '{\"Username\":\"store-%s\",\"Secret\":\"p2\"}' \"$r\""),
            ("broken", "echo 'credentials not found' >&2; exit 1"),
            ("liar", "echo not json"),
        ] {
            let path = bin.join(format!("docker-credential-{name}"));
            std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let path = std::env::var("PATH").unwrap_or_default();
        unsafe { std::env::set_var("PATH", format!("{}:{path}", bin.display())) };
        let config = r#"{"credHelpers": {"a.io": "per", "b.io": "broken", "c.io": "liar"}, "credsStore": "store"}"#;
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        assert_eq!(from_docker_config("a.io").unwrap(), RegistryAuth::Basic("per-a.io".into(), "p1".into()));
        assert_eq!(from_docker_config("z.io").unwrap(), RegistryAuth::Basic("store-z.io".into(), "p2".into()));
        assert_eq!(from_docker_config("b.io").unwrap(), RegistryAuth::Anonymous);
        let error = from_docker_config("c.io").unwrap_err().to_string();
        assert!(error.contains("docker-credential-liar") && error.contains("JSON"), "{error}");
        unsafe { std::env::set_var("PATH", path) };
        unsafe { std::env::remove_var("DOCKER_CONFIG") };
    }

    #[test]
    fn debug_never_shows_the_password() {
        let credentials = Credentials::Basic { username: "u".into(), password: "hunter2".into() };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
