//! The external-data scanner against hand-built protobufs and arbitrary bytes.

use proptest::prelude::*;

use super::encode::*;
use super::*;

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/ok.bin"), [0u8; 16]).unwrap();
    dir
}

fn refused(model: &[u8], folder: Option<&Path>) -> String {
    match check(model, folder) {
        Err(ExternalDataError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn locations_out_of_the_folder_are_refused() {
    let dir = folder();
    let at = |location: &str| model(&[external_tensor("w", location)]);
    assert_eq!(check(&at("sub/ok.bin"), Some(dir.path())), Ok(()));
    assert_eq!(check(&at("sub/not-yet.bin"), Some(dir.path())), Ok(()), "missing: ORT's error to give");
    assert!(refused(&at("/etc/passwd"), Some(dir.path())).contains("`/etc/passwd`, an absolute path"));
    assert!(refused(&at("../x"), Some(dir.path())).contains("a `..` component"));
    assert!(refused(&at("sub/../../x"), Some(dir.path())).contains("a `..` component"));
    assert!(refused(&at("sub\\..\\x"), Some(dir.path())).contains("a `..` component"));
    assert!(refused(&at(""), Some(dir.path())).contains("an empty path"));
    assert!(refused(&at("*/_ORT_MEM_ADDR_/*"), Some(dir.path())).contains("in-memory marker"));
    let why = refused(&at("../x"), Some(dir.path()));
    assert_eq!(
        why,
        "tensor `w` keeps its data at `../x`, a path with a `..` component; external data must stay in the \
         model's folder"
    );
}

#[test]
fn symlinks_out_of_the_folder_are_refused() {
    let dir = folder();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link.bin")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("sub/ok.bin"), dir.path().join("inside.bin")).unwrap();
    let at = |location: &str| model(&[external_tensor("w", location)]);
    assert!(refused(&at("link.bin"), Some(dir.path())).contains("outside it"));
    assert!(refused(&at("elsewhere/secret"), Some(dir.path())).contains("outside it"));
    assert!(refused(&at("elsewhere/not-there"), Some(dir.path())).contains("outside it"), "the folder escapes");
    assert_eq!(check(&at("inside.bin"), Some(dir.path())), Ok(()));
}

#[test]
fn models_from_bytes_may_have_no_external_data() {
    let why = refused(&model(&[external_tensor("w", "sub/ok.bin")]), None);
    assert!(why.contains("tensor `w` keeps its data in an external file (`sub/ok.bin`)"), "{why}");
    assert_eq!(check(&model(&[]), None), Ok(()));
    // Marked external with no entries at all.
    let mut tensor = Vec::new();
    bytes_field(&mut tensor, 8, b"m");
    varint_field(&mut tensor, 14, 1);
    assert!(refused(&model(&[tensor.clone()]), None).contains("tensor `m`"));
    let dir = folder();
    assert!(refused(&model(&[tensor]), Some(dir.path())).contains("names no location"));
    // An enum is cut to 32 bits: 2^32 + 1 reads as EXTERNAL.
    let mut tensor = Vec::new();
    varint_field(&mut tensor, 14, (1 << 32) + 1);
    assert!(matches!(check(&model(&[tensor]), None), Err(ExternalDataError::Refused(_))));
}

#[test]
fn every_place_a_tensor_can_hide_is_scanned() {
    let bad = external_tensor("w", "/etc/passwd");
    // A node attribute `t` (a Constant).
    let mut attribute = Vec::new();
    bytes_field(&mut attribute, 1, b"value");
    bytes_field(&mut attribute, 5, &bad);
    let mut node = Vec::new();
    bytes_field(&mut node, 4, b"Constant");
    bytes_field(&mut node, 5, &attribute);
    let mut graph = Vec::new();
    bytes_field(&mut graph, 1, &node);
    assert_eq!(scan(&model_with_graph(&graph)).unwrap()[0].locations, ["/etc/passwd"]);
    // A subgraph (an If's `then_branch`) holding that graph.
    let mut attribute = Vec::new();
    bytes_field(&mut attribute, 6, &graph);
    let mut node = Vec::new();
    bytes_field(&mut node, 5, &attribute);
    let mut outer = Vec::new();
    bytes_field(&mut outer, 1, &node);
    assert_eq!(scan(&model_with_graph(&outer)).unwrap().len(), 1);
    // A sparse initializer's values.
    let mut sparse = Vec::new();
    bytes_field(&mut sparse, 1, &bad);
    let mut graph = Vec::new();
    bytes_field(&mut graph, 15, &sparse);
    assert_eq!(scan(&model_with_graph(&graph)).unwrap().len(), 1);
    // A function's node.
    let mut function = Vec::new();
    bytes_field(&mut function, 7, &node);
    let mut m = Vec::new();
    bytes_field(&mut m, 25, &function);
    assert_eq!(scan(&m).unwrap().len(), 1);
    // A training graph.
    let mut training = Vec::new();
    bytes_field(&mut training, 2, &outer);
    let mut m = Vec::new();
    bytes_field(&mut m, 20, &training);
    assert_eq!(scan(&m).unwrap().len(), 1);
    // A second `location` value in one entry: both are checked.
    let mut entry = Vec::new();
    bytes_field(&mut entry, 1, b"location");
    bytes_field(&mut entry, 2, b"sub/ok.bin");
    bytes_field(&mut entry, 2, b"../../etc/passwd");
    let mut tensor = Vec::new();
    bytes_field(&mut tensor, 13, &entry);
    let dir = folder();
    assert!(refused(&model(&[tensor]), Some(dir.path())).contains("`..`"));
}

#[test]
fn malformed_protobuf_is_an_error_not_a_panic() {
    let good = model(&[external_tensor("w", "sub/ok.bin")]);
    for cut in 0..good.len() {
        let _ = scan(&good[..cut]);
    }
    assert!(matches!(scan(b"not an onnx model"), Err(ExternalDataError::Malformed(_))));
    // A length far past the end.
    let mut huge = Vec::new();
    varint(&mut huge, 7 << 3 | 2);
    varint(&mut huge, u64::MAX >> 1);
    assert!(matches!(scan(&huge), Err(ExternalDataError::Malformed(_))));
    // Graphs nested past the limit.
    let mut graph = Vec::new();
    for _ in 0..=MAX_DEPTH {
        let mut attribute = Vec::new();
        bytes_field(&mut attribute, 6, &graph);
        let mut node = Vec::new();
        bytes_field(&mut node, 5, &attribute);
        graph.clear();
        bytes_field(&mut graph, 1, &node);
    }
    let why = match scan(&model_with_graph(&graph)) {
        Err(ExternalDataError::Malformed(why)) => why,
        other => panic!("{other:?}"),
    };
    assert!(why.contains("nest more than"), "{why}");
    // Groups are skipped, even nested; unclosed ones are errors.
    let mut grouped = Vec::new();
    varint(&mut grouped, 30 << 3 | 3);
    varint(&mut grouped, 31 << 3 | 3);
    varint_field(&mut grouped, 2, 5);
    varint(&mut grouped, 31 << 3 | 4);
    varint(&mut grouped, 30 << 3 | 4);
    assert_eq!(scan(&grouped), Ok(vec![]));
    assert!(scan(&grouped[..grouped.len() - 1]).is_err());
}

#[test]
fn the_example_models_have_no_external_data() {
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    for name in ["digits.onnx", "breast_cancer.onnx", "dtypes.onnx"] {
        let bytes = std::fs::read(models.join(name)).unwrap();
        assert_eq!(scan(&bytes), Ok(vec![]), "{name}");
        assert_eq!(check(&bytes, None), Ok(()), "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = scan(&bytes);
        let _ = check(&bytes, None);
    }

    #[test]
    fn mutated_models_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        location in "[a-z./\\\\*_]{0,12}",
    ) {
        let mut bytes = model(&[external_tensor("w", &location), external_tensor("v", "sub/ok.bin")]);
        for (index, byte) in edits {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = scan(&bytes);
        let _ = check(&bytes, None);
    }

    #[test]
    fn bytes_models_with_any_location_are_refused(location in ".{0,40}") {
        let bytes = model(&[external_tensor("w", &location)]);
        prop_assert!(matches!(check(&bytes, None), Err(ExternalDataError::Refused(_))));
    }
}
