//! `weir new`: scaffold a component crate wired to weir-sdk that builds with
//! `cargo component build` as it is.

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ScaffoldError {
    #[error(
        "`{0}` is not a valid component name: use lowercase letters, digits, `-` and `_`, \
         starting with a letter (e.g. `my-step`)"
    )]
    BadName(String),
    #[error("`{}` already exists; choose another name or remove it", .0.display())]
    Exists(PathBuf),
    #[error(
        "weir-sdk was not found at `{}`; pass `--sdk-path PATH` (or set WEIR_SDK_PATH) to the \
         `sdk/` folder of a weir checkout",
        .0.display()
    )]
    SdkMissing(PathBuf),
    #[error("writing `{}`: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// The SDK of the checkout this binary was built from.
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join("sdk")
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn camel_case(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// Create `<parent>/<name>/` with a ready-to-build step crate; returns its path.
pub fn scaffold(name: &str, parent: &Path, sdk_path: &Path) -> Result<PathBuf, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::BadName(name.into()));
    }
    let sdk = sdk_path
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .ok_or_else(|| ScaffoldError::SdkMissing(sdk_path.to_path_buf()))?;
    let root = parent.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    let type_name = camel_case(name);
    let sdk = sdk.display().to_string().replace('\\', "/");
    let files = [
        ("Cargo.toml", CARGO_TOML.replace("{name}", name).replace("{sdk}", &sdk)),
        ("src/lib.rs", LIB_RS.replace("{name}", name).replace("{Type}", &type_name)),
        ("input.json", INPUT_JSON.to_string()),
        ("README.md", README_MD.replace("{name}", name).replace("{crate}", &name.replace('-', "_"))),
        (".gitignore", "/target\n".to_string()),
    ];
    for (relative, contents) in files {
        let path = root.join(relative);
        let write = |path: &Path| -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().expect("files live in folders"))?;
            std::fs::write(path, &contents)
        };
        write(&path).map_err(|source| ScaffoldError::Write { path: path.clone(), source })?;
    }
    Ok(root)
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
weir-sdk = { path = "{sdk}" }

[profile.release]
opt-level = "s"

# A component crate stands alone, outside any enclosing workspace.
[workspace]
"#;

const LIB_RS: &str = r#"//! `{name}`: a weir pipeline step.

use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};

struct {Type};

impl Step for {Type} {
    fn process(mut inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        // Multiply the FP32 input `x` by the configured `factor` (default 2).
        let x = inputs.take("x")?;
        let factor: f32 = config::parse_or("factor", 2.0)?;
        let y: Vec<f32> = x.view::<f32>()?.iter().map(|v| v * factor).collect();
        Ok(vec![Tensor::new("y", x.shape.clone(), &y)?])
    }
}

export_step!({Type});
"#;

const INPUT_JSON: &str = r#"{
  "inputs": [
    { "name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0] }
  ]
}
"#;

const README_MD: &str = r#"# {name}

A weir pipeline step (a WebAssembly component written with weir-sdk).

```sh
cargo component build --release
weir run target/wasm32-wasip1/release/{crate}.wasm --input input.json --config factor=3
```

`cargo build --release --target wasm32-wasip2` builds the same step without cargo-component
(the component is then under `target/wasm32-wasip2/release/`).
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("my-step_2"));
        for bad in ["", "2step", "My", "a b", "../x", "-x"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(camel_case("my-step_two"), "MyStepTwo");
    }

    #[test]
    fn refuses_to_overwrite_and_checks_the_sdk() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = default_sdk_path();
        let made = scaffold("demo", dir.path(), &sdk).unwrap();
        assert!(made.join("src/lib.rs").is_file());
        assert!(matches!(scaffold("demo", dir.path(), &sdk), Err(ScaffoldError::Exists(_))));
        assert!(matches!(scaffold("other", dir.path(), Path::new("/nonexistent")), Err(ScaffoldError::SdkMissing(_))));
    }
}
