//! `weir serve` as a child process on a free loopback port, and a tiny HTTP client.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct Server {
    child: Child,
    pub base: String,
    /// `HOST:PORT` of the gRPC listener, when one was asked for.
    pub grpc: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill the server the hard way (SIGKILL: no shutdown code runs).
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(manifest: &Path) -> Server {
    start_with(manifest, &[], &[])
}

/// Start with extra arguments and environment. `WEIR_TEST_BINARY` runs
/// another build instead (an older revision, for before/after figures).
pub fn start_with(manifest: &Path, args: &[&str], env: &[(&str, &Path)]) -> Server {
    let binary = std::env::var_os("WEIR_TEST_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_weir").into());
    let mut command = Command::new(binary);
    command.args(["serve", manifest.to_str().unwrap(), "--listen", "127.0.0.1:0"]).args(args);
    // Access control is tested on its own (access.rs); elsewhere it is off
    // (older builds, for before/after figures, have no such flag).
    if !args.contains(&"--keys") && std::env::var_os("WEIR_TEST_BINARY").is_none() {
        command.arg("--no-auth");
    }
    command
        .env("WEIR_CACHE_DIR", super::shared_cache_dir())
        .env("WEIR_LOG", "warn")
        // No RAPL counters unless a test provides some: energy is modelled.
        .env("WEIR_POWERCAP_ROOT", "/nonexistent");
    for (key, value) in env {
        command.env(key, value);
    }
    spawn(command)
}

/// Run `command` (a `weir serve`, however it is started) until it says
/// where it serves.
pub fn spawn(mut command: Command) -> Server {
    command.stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Warnings (and the gRPC address) may come first; the HTTP address is
    // on the `serving` line.
    let mut grpc = None;
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .inspect(|line| {
            if let Some(rest) = line.strip_prefix("weir: gRPC ") {
                grpc = rest.rsplit(' ').next().map(str::to_string);
            }
        })
        .find(|line| line.starts_with("weir: serving"))
        .expect("weir serve exited before serving");
    let addr = line
        .split("://")
        .nth(1)
        .and_then(|s| s.strip_suffix("/v2"))
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_string();
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, base: format!("http://{addr}"), grpc }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn get(server: &Server, path: &str) -> (u16, Value) {
    let mut response = agent().get(format!("{}{path}", server.base)).call().unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap_or(Value::Null))
}

pub fn post(server: &Server, path: &str, body: &str) -> (u16, Value) {
    let mut response =
        agent().post(format!("{}{path}", server.base)).header("content-type", "application/json").send(body).unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap_or(Value::Null))
}

/// The server's Prometheus text.
pub fn metrics(server: &Server) -> String {
    agent().get(format!("{}/metrics", server.base)).call().unwrap().body_mut().read_to_string().unwrap()
}

/// `weir keys create`, with the audit log next to the key file.
pub fn create_key(keys: &Path, name: &str, scopes: &[&str]) -> String {
    let audit = keys.with_file_name("audit.log");
    let mut args = vec!["keys", "--keys", keys.to_str().unwrap(), "--audit-log", audit.to_str().unwrap()];
    args.extend(["create", "--name", name]);
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `method path` with `key` as a bearer token; POSTs send `body` (asynchronously with `prefer_async`).
pub fn request(server: &Server, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> (u16, Value) {
    call_with(server, method, path, key, body, false)
}

pub fn call_with(
    server: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
    prefer_async: bool,
) -> (u16, Value) {
    let url = format!("{}{path}", server.base);
    let bearer = key.map(|key| format!("Bearer {key}"));
    let mut response = if method == "POST" {
        let mut call = agent().post(&url).header("content-type", "application/json");
        if let Some(bearer) = &bearer {
            call = call.header("authorization", bearer);
        }
        if prefer_async {
            call = call.header("prefer", "respond-async");
        }
        call.send(body.unwrap_or_default())
    } else if method == "DELETE" {
        let mut call = agent().delete(&url);
        if let Some(bearer) = &bearer {
            call = call.header("authorization", bearer);
        }
        call.call()
    } else {
        let mut call = agent().get(&url);
        if let Some(bearer) = &bearer {
            call = call.header("authorization", bearer);
        }
        call.call()
    }
    .unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap_or(Value::Null))
}
