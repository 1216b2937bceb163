//! `weir experiment …` and `weir reload`: a running server's experiments
//! and manifest, through its admin API.

use std::time::Duration;

use serde_json::Value;

use super::{exit, fail, Failure};

/// Where the server is and who asks.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// An API key (`status` to look, `admin` to act).
    #[arg(long, env = "WEIR_API_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
}

#[derive(clap::Args)]
pub struct ExperimentArgs {
    #[command(subcommand)]
    action: ExperimentCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand)]
enum ExperimentCommand {
    /// Every experiment: mode, phase and who serves what share.
    List,
    /// One experiment's figures per variant, its gate and its decisions (JSON).
    Show { name: String },
    /// (Re)start: counts cleared, a canary back at its first stage.
    Start { name: String },
    /// Stop: the champion serves every request, nothing is shadowed.
    Stop { name: String },
    /// Send every request to a challenger.
    Promote {
        name: String,
        /// The challenger (needed when there are several).
        #[arg(long)]
        variant: Option<String>,
    },
    /// Send every request back to the champion.
    Rollback { name: String },
}

#[derive(clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    server: ServerArgs,
}

impl ServerArgs {
    fn call(&self, method: &str, path: &str) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        let mut response = match (method, &self.key) {
            ("POST", Some(key)) => agent.post(&url).header("authorization", format!("Bearer {key}")).send_empty(),
            ("POST", None) => agent.post(&url).send_empty(),
            (_, Some(key)) => agent.get(&url).header("authorization", format!("Bearer {key}")).call(),
            (_, None) => agent.get(&url).call(),
        }
        .map_err(|e| fail(exit::INTERNAL)(anyhow::anyhow!("{method} {url}: {e}")))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status != 200 {
            let error = body.get("error").and_then(Value::as_str).map_or_else(|| body.to_string(), str::to_string);
            let code = if status >= 500 { exit::INTERNAL } else { exit::BAD_INPUT };
            let hint = if status == 401 || status == 403 { " (pass --key or WEIR_API_KEY)" } else { "" };
            return Err(fail(code)(anyhow::anyhow!("{method} {url} answered {status}: {error}{hint}")));
        }
        Ok(body)
    }
}

pub fn experiment(args: ExperimentArgs) -> Result<(), Failure> {
    let server = &args.server;
    let body = match &args.action {
        ExperimentCommand::List => {
            let list = server.call("GET", "/v2/experiments")?;
            for e in list.as_array().into_iter().flatten() {
                let shares: Vec<String> = e["serving"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|pair| format!("{} {}%", pair[0].as_str().unwrap_or("?"), pair[1].as_f64().unwrap_or(0.0)))
                    .collect();
                println!(
                    "{:<20} {:<10} {:<8} {:<12} {}",
                    e["name"].as_str().unwrap_or("?"),
                    e["pipeline"].as_str().unwrap_or("?"),
                    e["mode"].as_str().unwrap_or("?"),
                    e["phase"].as_str().unwrap_or("?"),
                    shares.join(", ")
                );
            }
            return Ok(());
        }
        ExperimentCommand::Show { name } => server.call("GET", &format!("/v2/experiments/{name}"))?,
        ExperimentCommand::Start { name } => server.call("POST", &format!("/v2/experiments/{name}/start"))?,
        ExperimentCommand::Stop { name } => server.call("POST", &format!("/v2/experiments/{name}/stop"))?,
        ExperimentCommand::Rollback { name } => server.call("POST", &format!("/v2/experiments/{name}/rollback"))?,
        ExperimentCommand::Promote { name, variant } => {
            let query = variant.as_ref().map(|v| format!("?variant={v}")).unwrap_or_default();
            server.call("POST", &format!("/v2/experiments/{name}/promote{query}"))?
        }
    };
    println!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
    Ok(())
}

pub fn reload(args: ReloadArgs) -> Result<(), Failure> {
    let done = args.server.call("POST", "/v2/admin/reload")?;
    println!("{}", serde_json::to_string_pretty(&done).unwrap_or_default());
    Ok(())
}
