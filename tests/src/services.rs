//! Real services the tests run against, started on loopback from the test
//! itself: a CNCF distribution registry (`docker-registry`). A missing
//! binary skips the test with a message, except with `CI=true`, where it
//! fails: CI must never pass by skipping.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Find `tool` on PATH (or in /usr/sbin, where Debian puts some daemons).
/// `None` means skip; under `CI=true` a missing tool panics instead.
pub fn require(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found =
        path.split(':').chain(["/usr/sbin", "/usr/bin"]).map(|dir| Path::new(dir).join(tool)).find(|p| p.is_file());
    if found.is_none() {
        missing(&format!("`{tool}` is not installed; run scripts/setup.sh"));
    }
    found
}

/// Say why a test is skipped; under `CI=true`, fail it instead.
pub fn missing(message: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message} (CI=true: a missing part fails the test)");
    }
    eprintln!("SKIPPED: {message}");
}

/// Where scripts/setup.sh puts what it fetches (`$WEIR_DATA_DIR`, or
/// `$XDG_DATA_HOME/weir`, or `~/.local/share/weir`).
pub fn data_dir() -> PathBuf {
    std::env::var_os("WEIR_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".local/share"));
        base.join("weir")
    })
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

/// Wait until `child` listens on `port` (it panics if the child exits first).
pub fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on port {port} within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `docker-registry` on a loopback port with its storage in a temp dir.
pub struct TestRegistry {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub storage: PathBuf,
    /// `(user, password)` when started with basic auth.
    pub credentials: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    pub fn start() -> Option<TestRegistry> {
        Self::launch(None)
    }

    /// With basic auth (htpasswd, bcrypt) for `user`/`password`.
    pub fn start_with_auth(user: &str, password: &str) -> Option<TestRegistry> {
        Self::launch(Some((user.into(), password.into())))
    }

    fn launch(credentials: Option<(String, String)>) -> Option<TestRegistry> {
        let binary = require("docker-registry")?;
        let dir = tempfile::tempdir().expect("a temp dir");
        let storage = dir.path().join("storage");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((user, password)) = &credentials {
            let htpasswd = require("htpasswd")?;
            let out = Command::new(htpasswd).args(["-Bbn", user, password]).output().expect("htpasswd runs");
            assert!(out.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            config += &format!("auth:\n  htpasswd:\n    realm: weir-test\n    path: {}\n", file.display());
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(binary)
            .args(["serve", config_path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        wait_for_port(port, &mut child, "docker-registry");
        Some(TestRegistry { child, addr: format!("127.0.0.1:{port}"), storage, credentials, _dir: dir })
    }

    /// `oci://127.0.0.1:PORT/<path>`
    pub fn reference(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.addr)
    }

    /// Where the registry keeps the blob with this `sha256:` digest on disk.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `nats-server` with JetStream on a loopback port, its store in a temp dir.
pub struct TestNats {
    child: Child,
    /// `nats://127.0.0.1:PORT`
    pub url: String,
    _dir: tempfile::TempDir,
}

impl TestNats {
    pub fn start() -> Option<TestNats> {
        let binary = require("nats-server")?;
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = dir.path().join("jetstream");
        let port = free_port();
        let mut child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd", store.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        wait_for_port(port, &mut child, "nats-server");
        Some(TestNats { child, url: format!("nats://127.0.0.1:{port}"), _dir: dir })
    }
}

impl TestNats {
    /// Where JetStream keeps its streams on disk.
    pub fn store_dir(&self) -> PathBuf {
        self._dir.path().join("jetstream")
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three (or `n`) `nats-server` processes with JetStream, clustered over
/// loopback routes: streams can be replicated and survive a node's death.
pub struct TestNatsCluster {
    nodes: Vec<Option<Child>>,
    /// `nats://127.0.0.1:PORT` of each node.
    pub urls: Vec<String>,
    /// Each node's HTTP monitoring port (`/connz`, `/jsz`).
    pub monitors: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl TestNatsCluster {
    pub fn start(n: usize) -> Option<TestNatsCluster> {
        let binary = require("nats-server")?;
        // A node that cannot bind (a port taken meanwhile) exits: start again.
        for _ in 0..3 {
            if let Some(cluster) = Self::try_start(&binary, n) {
                return Some(cluster);
            }
        }
        panic!("a three-node nats-server cluster did not start in three tries");
    }

    fn try_start(binary: &Path, n: usize) -> Option<TestNatsCluster> {
        let dir = tempfile::tempdir().expect("a temp dir");
        // All ports held at once while chosen, so that they differ.
        let listeners: Vec<TcpListener> =
            (0..n * 3).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port")).collect();
        let all: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(listeners);
        let ports: Vec<[u16; 3]> = all.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
        let routes =
            ports.iter().map(|[_, route, _]| format!("nats://127.0.0.1:{route}")).collect::<Vec<_>>().join(",");
        let mut nodes = Vec::new();
        for (i, [client, route, monitor]) in ports.iter().enumerate() {
            let store = dir.path().join(format!("node{i}"));
            let child = Command::new(binary)
                .args(["-a", "127.0.0.1", "-p", &client.to_string(), "-m", &monitor.to_string()])
                .args(["-n", &format!("node{i}"), "--cluster_name", "weir-test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{route}"), "--routes", &routes])
                .args(["-js", "-sd", store.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server starts");
            nodes.push(Some(child));
        }
        let mut cluster = TestNatsCluster {
            nodes,
            urls: ports.iter().map(|[client, ..]| format!("nats://127.0.0.1:{client}")).collect(),
            monitors: ports.iter().map(|[.., monitor]| *monitor).collect(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for (i, [client, _, monitor]) in ports.iter().enumerate() {
            while TcpStream::connect(("127.0.0.1", *client)).is_err()
                || TcpStream::connect(("127.0.0.1", *monitor)).is_err()
            {
                let exited = cluster.nodes[i].as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some());
                if exited || Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Some(cluster)
    }

    /// Every node's URL, comma-separated (what `triggers.nats.url` takes).
    pub fn url(&self) -> String {
        self.urls.join(",")
    }

    /// Kill node `i` the hard way (SIGKILL: no lame-duck mode, no goodbye).
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestNatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

/// The Python of the environment scripts/setup.sh makes for the
/// interoperability tests (tritonclient, gRPC and HTTP). `None` means skip;
/// under `CI=true` a missing environment panics instead.
pub fn tritonclient_python() -> Option<PathBuf> {
    setup_python("import tritonclient.grpc, tritonclient.http, numpy", "tritonclient")
}

/// The same environment's data tools (pyarrow, onnx, numpy), for the
/// export and retraining tests; `None` means skip, a panic under `CI=true`.
pub fn data_python() -> Option<PathBuf> {
    setup_python("import pyarrow.parquet, onnx, numpy", "pyarrow and onnx")
}

/// The same environment's Kubernetes tools (kubernetes-validate, PyYAML,
/// jsonschema), for scripts/validate-deploy.py; `None` means skip.
pub fn deploy_python() -> Option<PathBuf> {
    setup_python("import kubernetes_validate, yaml, jsonschema", "kubernetes-validate")
}

/// The same environment's ORAS Python SDK (`oras`), for the registry
/// interop tests; `None` means skip.
pub fn oras_python() -> Option<PathBuf> {
    setup_python("import oras.client", "oras (ORAS's Python SDK)")
}

fn setup_python(imports: &str, what: &str) -> Option<PathBuf> {
    let python = data_dir().join("pyenv/bin/python");
    let works = Command::new(&python)
        .args(["-c", imports])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        missing(&format!("{what} is not installed at {}; run scripts/setup.sh", python.display()));
        return None;
    }
    Some(python)
}
