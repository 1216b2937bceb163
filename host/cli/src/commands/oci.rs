//! `weir push` and `weir pull`: components and models to and from OCI registries.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};
use weir_registry::{
    ArtifactRef, BlobStore, Credentials, Progress, Registry, RegistryError, RegistryOptions, SigningKey, TrustPolicy,
};

use weir_core::units;

use super::{exit, fail, with_code, Failure};

/// How far a registry is trusted (shared by push, pull and serve).
#[derive(clap::Args)]
pub struct RegistryLimitArgs {
    /// Give up on a registry that sends nothing for this long (and on a
    /// manifest that takes longer in all).
    #[arg(long, default_value = "60s")]
    registry_timeout: String,
    /// Give up connecting to a registry after this long.
    #[arg(long, default_value = "10s")]
    registry_connect_timeout: String,
    /// Refuse a component or model larger than this before downloading it.
    #[arg(long, default_value = "2GiB")]
    max_artifact_size: String,
    /// The trust policy: which keys must have signed artifacts from where
    /// (docs/registry.md#signed-artifacts). Without it, only `signed_by` in
    /// weir.toml asks for signatures.
    #[arg(long, env = "WEIR_TRUST_POLICY")]
    trust_policy: Option<PathBuf>,
}

impl RegistryLimitArgs {
    /// `options` with these limits.
    pub fn apply(&self, options: RegistryOptions) -> Result<RegistryOptions, Failure> {
        let bad = |flag: &str, e: String| fail(exit::BAD_INPUT)(anyhow!("{flag}: {e}"));
        let duration = |text: &str, flag: &str| units::parse_duration(text).map_err(|e| bad(flag, e));
        Ok(RegistryOptions {
            read_timeout: duration(&self.registry_timeout, "--registry-timeout")?,
            connect_timeout: duration(&self.registry_connect_timeout, "--registry-connect-timeout")?,
            max_blob_bytes: units::parse_bytes(&self.max_artifact_size).map_err(|e| bad("--max-artifact-size", e))?,
            trust: match &self.trust_policy {
                Some(path) => Some(TrustPolicy::load(path).map_err(|e| fail(exit::BAD_INPUT)(e.into()))?),
                None => None,
            },
            ..options
        })
    }
}

/// How to reach the registry (shared by push and pull).
#[derive(clap::Args)]
pub struct RegistryArgs {
    /// User name for basic auth (with --password-stdin). Without it: WEIR_REGISTRY_USERNAME /
    /// WEIR_REGISTRY_PASSWORD, then ~/.docker/config.json, then anonymous.
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the password from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Use plain HTTP (loopback registries always do).
    #[arg(long)]
    insecure: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    limits: RegistryLimitArgs,
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// A component (.wasm) or an ONNX model (.onnx); the kind is told from the bytes.
    file: PathBuf,
    /// Where to push: `[oci://]HOST[:PORT]/REPOSITORY:TAG`.
    reference: String,
    /// Sign what was pushed with this private key (PEM; see `weir signing-key new`).
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// Also compile the component for this target and push the code with it (repeat for several; hosts
    /// take it only when it is signed as the component must be).
    #[arg(long, value_name = "TRIPLE")]
    precompile: Vec<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(clap::Args)]
pub struct PullArgs {
    /// What to pull: `[oci://]HOST[:PORT]/REPOSITORY:TAG` or `…@sha256:DIGEST`.
    reference: String,
    /// Write the artifact here (default: only into the local cache, whose path is printed).
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

impl RegistryArgs {
    pub(super) fn registry(&self) -> Result<Registry, Failure> {
        let credentials = match &self.username {
            Some(username) => {
                let mut password = String::new();
                std::io::stdin().read_to_string(&mut password).map_err(with_code(exit::BAD_INPUT))?;
                let password = password.trim_end_matches(['\n', '\r']).to_string();
                if password.is_empty() {
                    return Err(fail(exit::BAD_INPUT)(anyhow!("--password-stdin: standard input was empty")));
                }
                Credentials::Basic { username: username.clone(), password }
            }
            None => Credentials::Discover,
        };
        let options =
            self.limits.apply(RegistryOptions { credentials, insecure: self.insecure, ..Default::default() })?;
        Ok(Registry::new(BlobStore::new(BlobStore::default_root()), options))
    }

    pub(super) fn progress(&self) -> Bar {
        Bar(if self.quiet || !std::io::stderr().is_terminal() { None } else { Some(ProgressBar::no_length()) })
    }
}

/// A progress bar on stderr, only when a person is watching.
pub(super) struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn begin(&self, what: &str, total_bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total_bytes);
            bar.set_position(0);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(what.to_string());
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }

    fn end(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Exit codes: 2 for what the user typed, 5 for what the registry said.
pub(super) fn registry_failure(error: RegistryError) -> Failure {
    super::classified(error)
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(with_code(exit::INTERNAL))
}

pub fn push(args: PushArgs) -> Result<(), Failure> {
    let reference: ArtifactRef = args.reference.parse().map_err(registry_failure)?;
    let bytes = std::fs::read(&args.file)
        .map_err(|e| fail(exit::BAD_INPUT)(anyhow!("cannot read `{}`: {e}", args.file.display())))?;
    // A key that cannot be read stops the push before anything is sent.
    let key = match &args.sign {
        Some(path) => Some(SigningKey::from_pem_file(path).map_err(|e| fail(exit::BAD_INPUT)(e.into()))?),
        None => None,
    };
    let registry = args.registry.registry()?;
    let file_name = args.file.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = file_name.clone().unwrap_or_else(|| "component".into());
    // Compiled before anything is sent: a bad target stops the push.
    let precompiled = args
        .precompile
        .iter()
        .map(|target| super::compile::precompile(&bytes, &name, target).map(|code| (target, code)))
        .collect::<Result<Vec<_>, _>>()?;
    let runtime = runtime()?;
    let pushed = runtime
        .block_on(registry.push(bytes, file_name.as_deref(), &reference, &args.registry.progress()))
        .map_err(registry_failure)?;
    println!(
        "pushed {} {} ({} bytes)\n  manifest {}\n  content  {}\n  pin with: source = \"{}\", digest = \"{}\"",
        pushed.kind, pushed.reference, pushed.size, pushed.manifest, pushed.content, pushed.reference, pushed.manifest
    );
    if let Some(key) = &key {
        let signature = runtime.block_on(registry.sign(&reference, &pushed.manifest, key)).map_err(registry_failure)?;
        println!("  signed   by key {} ({signature})", key.public().id());
    }
    for (target, code) in precompiled {
        let file = format!("{name}.{target}.cwasm");
        let code = runtime
            .block_on(registry.push_precompiled(code, &file, &pushed, &args.registry.progress()))
            .map_err(registry_failure)?;
        println!("  precompiled for {target}: {} ({} bytes)", code.reference, code.size);
        if let Some(key) = &key {
            runtime.block_on(registry.sign(&code.reference, &code.manifest, key)).map_err(registry_failure)?;
            println!("    signed by key {}", key.public().id());
        }
    }
    Ok(())
}

pub fn pull(args: PullArgs) -> Result<(), Failure> {
    let reference: ArtifactRef = args.reference.parse().map_err(registry_failure)?;
    let registry = args.registry.registry()?;
    let fetched = runtime()?
        .block_on(registry.fetch(&reference, None, None, &args.registry.progress()))
        .map_err(registry_failure)?;
    let path = match &args.output {
        Some(output) => {
            std::fs::copy(&fetched.path, output)
                .map_err(|e| fail(exit::INTERNAL)(anyhow!("cannot write `{}`: {e}", output.display())))?;
            output.clone()
        }
        None => fetched.path.clone(),
    };
    let manifest = fetched.manifest.as_ref().map_or("-".to_string(), ToString::to_string);
    let how = if fetched.downloaded == 0 { "from the local cache" } else { "downloaded" };
    println!(
        "pulled {} {reference} ({} bytes, {how})\n  manifest {manifest}\n  content  {}\n  path     {}",
        fetched.kind,
        fetched.size,
        fetched.content,
        path.display()
    );
    Ok(())
}
