//! Every error a manifest can get, as files: `tests/ui/NAME.toml` and the
//! exact text weir prints for it in `tests/ui/NAME.stderr` (`ok` when the
//! manifest is valid). The manifest is parsed and every trigger reads its
//! section, as `weir serve` does; whether local sources exist is a separate
//! pass, tested below. `WEIR_BLESS=1` rewrites the expected files.

use std::path::{Path, PathBuf};

use weir_manifest::Manifest;
use weir_triggers::Triggers;

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ui")
}

fn check(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let result = weir_manifest::parse(path, &text).and_then(|manifest| Triggers::from_manifest(&manifest).map(drop));
    match result {
        Ok(()) => "ok\n".to_string(),
        Err(error) => {
            // Name the file as a reader sees it in the folder.
            let name = path.file_name().unwrap().to_string_lossy();
            format!("{}\n", error.to_string().replacen(&path.display().to_string(), &name, 1))
        }
    }
}

#[test]
fn every_manifest_error_is_located_and_explained() {
    let bless = std::env::var("WEIR_BLESS").is_ok_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(ui_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "the ui cases are missing: {}", ui_dir().display());
    let mut wrong = Vec::new();
    for case in &cases {
        let got = check(case);
        let expected_path = case.with_extension("stderr");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            wrong.push(format!("{}:\n  expected: {}  got:      {}", case.display(), expected, got));
        }
        let valid = case.file_name().unwrap().to_string_lossy().starts_with("valid");
        assert_eq!(got == "ok\n", valid, "{}: only valid-* cases may pass: {got}", case.display());
        if !valid {
            // Every error names a place (file:line:col) except a few that
            // concern the whole file.
            assert!(got.contains(".toml:"), "{}: {got}", case.display());
        }
    }
    assert!(wrong.is_empty(), "{} case(s) differ (WEIR_BLESS=1 rewrites them):\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn missing_local_sources_are_found_by_the_file_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, "[models.m]\nsource = \"m.onnx\"\n\n[components.c]\nsource = \"c.wasm\"\n").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest = weir_manifest::parse(&path, &text).expect("parsing reads no files");
    let error = manifest.check_files().unwrap_err();
    assert_eq!((error.line, error.column), (5, 10), "{error}");
    assert!(
        error.message.contains("components.c.source: file") && error.message.contains("(build it first?)"),
        "{error}"
    );
    std::fs::write(dir.path().join("c.wasm"), b"").unwrap();
    let error = Manifest::load(&path).unwrap_err();
    assert_eq!(error.line, 2, "then the model: {error}");
    std::fs::write(dir.path().join("m.onnx"), b"").unwrap();
    Manifest::load(&path).expect("both exist");
}
