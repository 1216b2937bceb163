//! Helpers shared by weir's integration tests.
#![allow(dead_code)]

pub mod server;

use weir::tensor::split_bytes_elements;
use weir::{Datatype, Tensor};

pub fn f32_tensor(name: &str, shape: &[u64], values: &[f32]) -> Tensor {
    Tensor {
        name: name.into(),
        datatype: Datatype::Fp32,
        shape: shape.to_vec(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

pub fn f32_values(tensor: &Tensor) -> Vec<f32> {
    assert_eq!(tensor.datatype, Datatype::Fp32, "tensor `{}`", tensor.name);
    tensor.data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// The single string of a BYTES tensor.
pub fn only_string(tensor: &Tensor) -> String {
    let elements = split_bytes_elements(&tensor.name, &tensor.data).unwrap();
    assert_eq!(elements.len(), 1);
    String::from_utf8(elements[0].to_vec()).unwrap()
}

pub fn config(pairs: &[(&str, &str)]) -> weir::StepGrants {
    weir::StepGrants {
        config: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

/// A compiled-component cache shared by the tests (keyed by digest and engine
/// settings, so sharing is safe); tests about the cache itself use their own.
pub fn shared_cache_dir() -> std::path::PathBuf {
    std::path::Path::new(weir_test_guests::GUEST_TARGET_DIR).join("compiled-cache")
}
