//! The documentation's manifest examples are run: every ```toml block in
//! README.md and docs/*.md is read as weir reads a manifest, and every
//! trigger reads its section. A block that is a fragment (a pipeline's
//! extra keys, a trigger of the digits example) is read added to the digits
//! example it extends. Any error left (an unknown key, a bad unit, a broken
//! route, TOML syntax) fails.

use std::path::{Path, PathBuf};

use weir_triggers::Triggers;

/// The digits example without its own `[pipelines.digits]` and
/// `[triggers.http]` tables, for fragments to extend.
fn digits_base() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits/weir.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut base = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = line == "[pipelines.digits]" || line == "[triggers.http]";
        }
        if !skipping {
            base.push_str(line);
            base.push('\n');
        }
    }
    base
}

fn check(text: &str) -> Result<(), weir_manifest::ManifestError> {
    let manifest = weir_manifest::parse(Path::new("weir.toml"), text)?;
    Triggers::from_manifest(&manifest).map(drop)
}

fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs")).unwrap().map(|e| e.unwrap().path()).collect();
    docs.retain(|p| p.extension().is_some_and(|e| e == "md"));
    docs.sort();
    pages.extend(docs);
    pages
}

/// The ```toml blocks of a page, with the line each starts on.
fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence.starts_with("```toml") => current = Some((index + 1, String::new())),
            (Some(_), fence) if fence.starts_with("```") => blocks.extend(current.take()),
            (Some((_, block)), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn manifest_examples_in_the_docs_are_valid() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (line, block) in toml_blocks(&text) {
            checked += 1;
            let at = format!("{}:{line}", page.display());
            let result = check(&block).or_else(|_| check(&format!("{}\n{block}", digits_base())));
            if let Err(error) = result {
                wrong.push(format!("{at}: {error}"));
            }
        }
    }
    assert!(checked >= 10, "only {checked} manifest examples found in the docs");
    assert!(wrong.is_empty(), "manifest examples in the docs that weir refuses:\n{}", wrong.join("\n"));
}

/// Every script, training program and bench target the docs name — the
/// commands that produce their figures — exists, so no figure points at
/// a way to reproduce it that is gone.
#[test]
fn every_command_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let benches: Vec<String> = std::fs::read_dir(root.join("host/cli/benches"))
        .unwrap()
        .filter_map(|e| e.unwrap().path().file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let mut named = 0;
    let mut missing = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (number, line) in text.lines().enumerate() {
            let at = format!("{}:{}", page.display(), number + 1);
            for word in line.split(|c: char| c.is_whitespace() || "`()[]<>,;'\"".contains(c)) {
                let word = word.trim_end_matches(['.', ':']);
                let path = ["scripts/", "examples/", "host/", "tests/"].iter().any(|p| word.starts_with(p))
                    && [".sh", ".py", ".rs", ".proto"].iter().any(|e| word.ends_with(e));
                if path {
                    named += 1;
                    if !root.join(word).is_file() {
                        missing.push(format!("{at}: {word}"));
                    }
                }
            }
            for bench in line.split("--bench ").skip(1).filter_map(|rest| rest.split_whitespace().next()) {
                named += 1;
                let bench = bench.trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
                if !benches.iter().any(|b| b == bench) {
                    missing.push(format!("{at}: cargo bench --bench {bench}"));
                }
            }
        }
    }
    assert!(named >= 30, "only {named} commands named in the docs: is the scan broken?");
    assert!(missing.is_empty(), "the docs name commands that do not exist:\n{}", missing.join("\n"));
}
