//! `weir compile`: native code for components, made ahead of time for a
//! target (this machine's or another's), to ship with a manifest
//! (`precompiled = [...]`) to hosts that should not compile — an edge
//! device, or a weir built without the compiler.

use std::path::PathBuf;

use clap::Args;

use super::Failure;

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// A component (.wasm), or a manifest (weir.toml) whose every component is compiled.
    input: PathBuf,
    /// Target triple to compile for (repeat for several); default: this machine's.
    #[arg(long = "target", value_name = "TRIPLE")]
    targets: Vec<String>,
    /// Folder to write `<component>.<target>.cwasm` into (default: next to the input; for a manifest, `precompiled/` beside it).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Compile with fuel metering (a manifest decides this itself: on when a step has a fuel limit).
    #[arg(long)]
    fuel: bool,
    /// The `--max-instances` of the `weir serve` that will load the code (0: no pooling allocator).
    #[arg(long, default_value_t = super::serve::DEFAULT_MAX_INSTANCES)]
    max_instances: u32,
}

/// `bytes` (the component `name`) compiled for `target` with `weir serve`'s
/// default engine settings, as a precompiled file (`weir push --precompile`).
pub fn precompile(bytes: &[u8], name: &str, target: &str) -> Result<Vec<u8>, Failure> {
    #[cfg(feature = "compiler")]
    return ahead::precompile(bytes, name, target, &ahead::serve_defaults());
    #[cfg(not(feature = "compiler"))]
    {
        let _ = (bytes, name, target);
        Err(no_compiler())
    }
}

#[cfg(not(feature = "compiler"))]
fn no_compiler() -> Failure {
    super::fail(super::exit::BAD_INPUT)(anyhow::anyhow!(
        "this weir was built without the compiler (cargo feature `compiler`); compile with a full build"
    ))
}

pub fn compile(args: CompileArgs) -> Result<(), Failure> {
    #[cfg(feature = "compiler")]
    return ahead::compile(args);
    // A build without the compiler has nothing to compile with.
    #[cfg(not(feature = "compiler"))]
    {
        let _ = args;
        Err(no_compiler())
    }
}

#[cfg(feature = "compiler")]
mod ahead {
    use std::path::{Path, PathBuf};

    use anyhow::anyhow;
    use weir_executor::artifacts::Resolver;
    use weir_manifest::Manifest;
    use weir_registry::ArtifactKind;
    use weir_sandbox::engine::{self, EngineOptions};
    use weir_sandbox::precompiled;

    use super::super::oci::runtime;
    use super::super::{classified, exit, fail, Failure};
    use super::CompileArgs;

    /// What `weir serve` builds its engine with when not told otherwise.
    pub(super) fn serve_defaults() -> EngineOptions {
        EngineOptions { max_instances: super::super::serve::DEFAULT_MAX_INSTANCES, ..EngineOptions::default() }
    }

    pub(super) fn precompile(
        bytes: &[u8],
        name: &str,
        target: &str,
        options: &EngineOptions,
    ) -> Result<Vec<u8>, Failure> {
        let bad = |message: String| fail(exit::BAD_INPUT)(anyhow!(message));
        let engine = engine::for_target(options, target).map_err(|e| bad(e.to_string()))?;
        precompiled::compile(&engine, options, target, name, bytes).map_err(|e| bad(e.to_string()))
    }

    pub(super) fn compile(args: CompileArgs) -> Result<(), Failure> {
        let bad = |message: String| fail(exit::BAD_INPUT)(anyhow!(message));
        let is_manifest = args.input.extension().is_some_and(|e| e == "toml");
        let (components, fuel, default_dir) = if is_manifest {
            let manifest = read_manifest(&args.input)?;
            let components = manifest_components(&manifest)?;
            let dir = args.input.parent().unwrap_or(Path::new(".")).join("precompiled");
            (components, manifest.needs_fuel(), dir)
        } else {
            let dir = args.input.parent().unwrap_or(Path::new(".")).to_path_buf();
            (vec![(component_name(&args.input), args.input.clone())], args.fuel, dir)
        };
        let options = EngineOptions { max_instances: args.max_instances, fuel, ..EngineOptions::default() };
        let targets = if args.targets.is_empty() { vec![precompiled::host_target()] } else { args.targets.clone() };
        // Every target is checked before anything is written.
        let engines = targets
            .iter()
            .map(|target| engine::for_target(&options, target).map(|engine| (target, engine)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let out_dir = args.output.clone().unwrap_or(default_dir);
        std::fs::create_dir_all(&out_dir).map_err(|e| bad(format!("cannot create `{}`: {e}", out_dir.display())))?;
        for (target, engine) in &engines {
            for (name, path) in &components {
                let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read `{}`: {e}", path.display())))?;
                let code =
                    precompiled::compile(engine, &options, target, name, &bytes).map_err(|e| bad(e.to_string()))?;
                let Some(file_name) = precompiled::file_name(name, target) else {
                    return Err(bad(format!(
                        "component `{name}`: its name is not fit for a file name (letters, digits, `_`, `-`, `.`)"
                    )));
                };
                let file = out_dir.join(file_name);
                // Written aside and renamed: a server reading it never sees half a file.
                let partial = out_dir.join(format!(".{}.partial", std::process::id()));
                std::fs::write(&partial, &code)
                    .and_then(|()| std::fs::rename(&partial, &file))
                    .map_err(|e| fail(exit::INTERNAL)(anyhow!("cannot write `{}`: {e}", file.display())))?;
                println!("{}  {name} for {target} ({} bytes)", file.display(), code.len());
            }
        }
        if is_manifest {
            println!(
                "list them in the manifest: [components.NAME] precompiled = [\"precompiled/NAME.TARGET.cwasm\", ...]"
            );
        }
        Ok(())
    }

    fn read_manifest(path: &Path) -> Result<Manifest, Failure> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(exit::BAD_INPUT)(anyhow!("cannot read `{}`: {e}", path.display())))?;
        // Not `Manifest::load`: the precompiled files it lists may not exist yet.
        weir_manifest::parse(path, &text).map_err(classified)
    }

    /// Each component of the manifest, as a local file (registry ones pulled).
    fn manifest_components(manifest: &Manifest) -> Result<Vec<(String, PathBuf)>, Failure> {
        let resolver = Resolver::default();
        let runtime = runtime()?;
        manifest
            .components
            .values()
            .map(|component| {
                let resolved = runtime
                    .block_on(resolver.resolve(&component.artifact, ArtifactKind::Component))
                    .map_err(classified)?;
                Ok((component.name.clone(), resolved.path))
            })
            .collect()
    }

    fn component_name(path: &Path) -> String {
        path.file_stem().map_or_else(|| "component".into(), |s| s.to_string_lossy().into_owned())
    }
}
