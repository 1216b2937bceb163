//! `weir signing-key`, `weir sign` and `weir verify`: cosign-compatible
//! signatures on artifacts in a registry (docs/registry.md#signed-artifacts).

use std::path::PathBuf;

use anyhow::anyhow;
use weir_registry::{ArtifactRef, PublicKey, SigningKey, TrustRequirement};

use super::oci::{registry_failure, runtime, RegistryArgs};
use super::{exit, fail, Failure};

#[derive(clap::Args)]
pub struct SigningKeyArgs {
    #[command(subcommand)]
    command: SigningKeyCommand,
}

#[derive(clap::Subcommand)]
enum SigningKeyCommand {
    /// Make a key pair: NAME.key (private, mode 0600) and NAME.pub (public, for `signed_by`).
    New {
        /// Path prefix of the two files; neither may exist yet.
        name: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// The artifact to sign: `[oci://]HOST[:PORT]/REPOSITORY:TAG` or `…@sha256:DIGEST`.
    reference: String,
    /// The private key (PEM: PKCS#8 or SEC1, P-256).
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The artifact to check.
    reference: String,
    /// Public keys to trust (any one suffices); without any, the trust
    /// policy (`--trust-policy`) decides.
    #[arg(long)]
    key: Vec<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn signing_key(args: SigningKeyArgs) -> Result<(), Failure> {
    let SigningKeyCommand::New { name } = args.command;
    let with = |extension: &str| {
        let mut path = name.clone().into_os_string();
        path.push(extension);
        PathBuf::from(path)
    };
    let (private, public) = (with(".key"), with(".pub"));
    for path in [&private, &public] {
        if path.exists() {
            return Err(fail(exit::BAD_INPUT)(anyhow!("`{}` exists; weir never overwrites a key", path.display())));
        }
    }
    let key = SigningKey::generate();
    key.save(&private, &public).map_err(|e| fail(exit::INTERNAL)(e.into()))?;
    println!(
        "private key {} (keep it secret: it signs artifacts)\npublic key  {} (key id {}; name it in `signed_by` or a trust policy)",
        private.display(),
        public.display(),
        key.public().id()
    );
    Ok(())
}

pub fn sign(args: SignArgs) -> Result<(), Failure> {
    let reference: ArtifactRef = args.reference.parse().map_err(registry_failure)?;
    let key = SigningKey::from_pem_file(&args.key).map_err(|e| fail(exit::BAD_INPUT)(e.into()))?;
    let registry = args.registry.registry()?;
    let runtime = runtime()?;
    let manifest = runtime.block_on(registry.manifest_digest(&reference)).map_err(registry_failure)?;
    let signature = runtime.block_on(registry.sign(&reference, &manifest, &key)).map_err(registry_failure)?;
    println!("signed {reference}\n  manifest  {manifest}\n  key       {}\n  signature {signature}", key.public().id());
    Ok(())
}

/// Exit 0 when the signature holds, 5 (registry) when it does not.
pub fn verify(args: VerifyArgs) -> Result<(), Failure> {
    let reference: ArtifactRef = args.reference.parse().map_err(registry_failure)?;
    let mut keys = Vec::new();
    for path in &args.key {
        keys.push(PublicKey::from_pem_file(path).map_err(|e| fail(exit::BAD_INPUT)(e.into()))?);
    }
    let registry = args.registry.registry()?;
    let requirement = match (keys.is_empty(), &registry.options().trust) {
        (false, _) => Some(TrustRequirement { keys, from: "--key".into() }),
        (true, Some(policy)) => policy.requirement_for(&reference).map_err(registry_failure)?,
        (true, None) => {
            return Err(fail(exit::BAD_INPUT)(anyhow!("give the keys to trust with --key, or a --trust-policy")));
        }
    };
    let runtime = runtime()?;
    let manifest = runtime.block_on(registry.manifest_digest(&reference)).map_err(registry_failure)?;
    let Some(requirement) = requirement else {
        println!("{reference}: the trust policy lets it through unsigned (manifest {manifest})");
        return Ok(());
    };
    let key =
        runtime.block_on(registry.verify_signature(&reference, &manifest, &requirement)).map_err(registry_failure)?;
    println!("verified {reference}\n  manifest {manifest}\n  signed by key {}", key.id());
    Ok(())
}
