//! `weir new`: scaffold a step component crate.

use std::path::PathBuf;

use super::{exit, with_code, Failure};

#[derive(clap::Args)]
pub struct NewArgs {
    /// Crate name of the new component (e.g. `my-step`).
    name: String,
    /// Folder to create it in.
    #[arg(long, default_value = ".")]
    path: PathBuf,
    /// Path of the weir-sdk crate (default: the checkout weir was built from).
    #[arg(long, env = "WEIR_SDK_PATH")]
    sdk_path: Option<PathBuf>,
}

pub fn new_component(args: NewArgs) -> Result<(), Failure> {
    let sdk = args.sdk_path.unwrap_or_else(crate::scaffold::default_sdk_path);
    let root = crate::scaffold::scaffold(&args.name, &args.path, &sdk).map_err(with_code(exit::BAD_INPUT))?;
    println!("Created {}. Next:", root.display());
    println!("  cd {} && cargo component build --release", root.display());
    println!("  weir run target/wasm32-wasip1/release/{}.wasm --input input.json", args.name.replace('-', "_"));
    Ok(())
}
