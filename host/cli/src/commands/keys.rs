//! `weir keys`: the API keys callers present to `weir serve`, kept hashed in
//! a key file (`--keys`, default `<data dir>/keys.json`).

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use weir_access::{declaration, Access, AuditEvent, AuditLog, KeyFile, KeyRecord, Keyring, Quota, Scope};

use super::{classified, exit, fail, with_code, Failure};

#[derive(clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    /// The key file (default: `$WEIR_DATA_DIR/keys.json`, else `~/.local/share/weir/keys.json`).
    #[arg(long, global = true)]
    keys: Option<PathBuf>,
    /// Where key changes are recorded (default: `audit.log` next to the default key file).
    #[arg(long, global = true)]
    audit_log: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum KeysCommand {
    /// Make a key; prints it once (only its hash is kept).
    Create {
        /// A name for whoever holds it (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        name: String,
        /// What it may do (repeatable): `invoke:PIPELINE`, `invoke:*`, `records:read`,
        /// `records:erase`, `feedback:write`, `status`, `admin`.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// List keys: id, name, scopes, made, revoked.
    List,
    /// Revoke a key by id (a running server stops accepting it within a second).
    Revoke { id: String },
    /// Print the `[[access.keys]]` lines that declare a key (read from standard input) by its hash.
    Hash,
}

/// A key's quota, counted per pipeline (no flag: no limit).
#[derive(clap::Args)]
struct QuotaArgs {
    /// Requests per second, sustained.
    #[arg(long)]
    rate: Option<f64>,
    /// Requests that may come at once above the rate (default: one second's worth).
    #[arg(long, requires = "rate")]
    burst: Option<u32>,
    /// Invocations running at once.
    #[arg(long)]
    concurrent: Option<u32>,
    /// Requests per --budget-period.
    #[arg(long)]
    budget: Option<u64>,
    /// The budget's period, e.g. `1h`, `30d` (default `1d`).
    #[arg(long, requires = "budget")]
    budget_period: Option<String>,
}

impl QuotaArgs {
    fn quota(&self) -> Result<Quota, Failure> {
        let bad = |flag: &str, why: String| fail(exit::BAD_INPUT)(anyhow!("{flag}: {why}"));
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(bad("--rate", "must be a positive number of requests per second".into()));
        }
        if self.concurrent == Some(0) || self.budget == Some(0) || self.burst == Some(0) {
            return Err(bad("--concurrent/--budget/--burst", "must be at least 1".into()));
        }
        let period = self.budget_period.as_deref().map(weir_core::units::parse_duration).transpose();
        let period = period.map_err(|e| bad("--budget-period", e))?;
        Ok(Quota {
            rate_per_second: self.rate,
            burst: self.burst,
            concurrent: self.concurrent,
            budget: self.budget,
            budget_period_secs: period.map(|p| p.as_secs().max(1)),
        })
    }
}

/// Where keys are kept when `--keys` is not given.
pub fn default_key_file() -> PathBuf {
    weir_core::paths::data_dir().join("keys.json")
}

/// Where the audit log is kept when `--audit-log` is not given.
pub fn default_audit_log() -> PathBuf {
    weir_core::paths::data_dir().join("audit.log")
}

/// Record a key change made on the command line.
fn audit_change(path: &Path, action: String, detail: String) -> Result<(), Failure> {
    let log = AuditLog::open(path).map_err(classified)?;
    log.record(&AuditEvent::now("operator", action, 0, Some(detail))).map_err(classified)
}

pub fn keys(args: KeysArgs) -> Result<(), Failure> {
    let path = args.keys.unwrap_or_else(default_key_file);
    let audit = args.audit_log.unwrap_or_else(default_audit_log);
    let mut file = KeyFile::load(&path).map_err(classified)?;
    match args.command {
        KeysCommand::Create { name, scopes, quota } => {
            let scopes = scopes.iter().map(|s| s.parse::<Scope>()).collect::<Result<Vec<_>, _>>();
            let scopes = scopes.map_err(|e| fail(exit::BAD_INPUT)(anyhow!("--scope: {e}")))?;
            let (record, key) = file.create(&name, scopes, quota.quota()?).map_err(classified)?;
            file.save(&path).map_err(classified)?;
            let scopes: Vec<String> = record.scopes.iter().map(Scope::to_string).collect();
            audit_change(&audit, "keys create".into(), format!("{} ({name}): {}", record.id, scopes.join(" ")))?;
            eprintln!("made key {} ({name}) in {}; it is shown once, keep it secret:", record.id, path.display());
            println!("{key}");
        }
        KeysCommand::List => {
            println!("{:<16}  {:<20}  {:<8}  scopes", "id", "name", "state");
            for key in &file.keys {
                let scopes: Vec<String> = key.scopes.iter().map(Scope::to_string).collect();
                let state = if key.active() { "active" } else { "revoked" };
                let quota = if key.quota.is_unlimited() {
                    String::new()
                } else {
                    format!("  quota {}", serde_json::to_string(&key.quota).unwrap_or_default())
                };
                println!("{:<16}  {:<20}  {state:<8}  {}{quota}", key.id, key.name, scopes.join(" "));
            }
        }
        KeysCommand::Hash => {
            let mut key = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut key).map_err(with_code(exit::BAD_INPUT))?;
            let lines = declaration(key.trim()).ok_or_else(|| {
                fail(exit::BAD_INPUT)(anyhow!("standard input is not a weir key (`weir_<16 hex>_<64 hex>`)"))
            })?;
            println!("{lines}");
        }
        KeysCommand::Revoke { id } => {
            let name = file.revoke(&id).map_err(classified)?.name.clone();
            file.save(&path).map_err(classified)?;
            audit_change(&audit, "keys revoke".into(), format!("{id} ({name})"))?;
            eprintln!("revoked key {id} ({name}) in {}", path.display());
        }
    }
    Ok(())
}

/// Whether `listen` (`HOST:PORT`) only accepts connections from this machine.
fn loopback(listen: &str) -> bool {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => listen.rsplit_once(':').is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

/// Access control for `weir serve`: keys from `path`, or none at all when
/// the operator says `--no-auth` on a loopback listener. A server that
/// would let nobody in (no keys) or everybody in (`--no-auth` reachable
/// from other machines) refuses to start.
pub fn access(path: &Path, declared: Vec<KeyRecord>, no_auth: bool, listeners: &[&str]) -> Result<Access, Failure> {
    if no_auth {
        if let Some(listen) = listeners.iter().find(|listen| !loopback(listen)) {
            return Err(fail(exit::BAD_INPUT)(anyhow!(
                "--no-auth is only allowed on a loopback listener (127.0.0.1, [::1], localhost), not `{listen}`: \
                 anyone who reaches it could call everything; create keys with `weir keys create` instead"
            )));
        }
        tracing::warn!(?listeners, "access control is off (--no-auth): every local caller may do everything");
        return Ok(Access::Off);
    }
    let keyring = Keyring::open(path).map_err(classified)?;
    let keyring = keyring.with_declared(declared).map_err(|e| fail(exit::BAD_INPUT)(anyhow!("[access] keys: {e}")))?;
    if keyring.active_keys() == 0 {
        return Err(fail(exit::BAD_INPUT)(anyhow!(
            "no API keys in {}: make one with `weir keys create --name NAME --scope invoke:*` (and pass the same \
             --keys), or, on a loopback listener only, run with --no-auth",
            path.display()
        )));
    }
    Ok(Access::Keys(keyring))
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_listeners_are_told_apart() {
        for yes in ["127.0.0.1:8080", "[::1]:80", "localhost:8080", "127.0.0.2:1"] {
            assert!(super::loopback(yes), "{yes}");
        }
        for no in ["0.0.0.0:8080", "[::]:80", "10.0.0.1:80", "example.com:80", "garbage"] {
            assert!(!super::loopback(no), "{no}");
        }
    }
}
