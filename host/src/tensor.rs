//! The host's view of `weir:pipeline/types.tensor`: datatype facts and the
//! validation every tensor crossing the sandbox boundary goes through.

use thiserror::Error;

pub use crate::bindings::weir::pipeline::types::{Datatype, StepError, Tensor};

/// Every datatype, in WIT order.
pub const ALL_DATATYPES: [Datatype; 13] = [
    Datatype::Bool,
    Datatype::Uint8,
    Datatype::Uint16,
    Datatype::Uint32,
    Datatype::Uint64,
    Datatype::Int8,
    Datatype::Int16,
    Datatype::Int32,
    Datatype::Int64,
    Datatype::Fp16,
    Datatype::Fp32,
    Datatype::Fp64,
    Datatype::Bytes,
];

/// Open Inference Protocol name (`FP32`, `INT64`, ...).
pub fn datatype_name(datatype: Datatype) -> &'static str {
    match datatype {
        Datatype::Bool => "BOOL",
        Datatype::Uint8 => "UINT8",
        Datatype::Uint16 => "UINT16",
        Datatype::Uint32 => "UINT32",
        Datatype::Uint64 => "UINT64",
        Datatype::Int8 => "INT8",
        Datatype::Int16 => "INT16",
        Datatype::Int32 => "INT32",
        Datatype::Int64 => "INT64",
        Datatype::Fp16 => "FP16",
        Datatype::Fp32 => "FP32",
        Datatype::Fp64 => "FP64",
        Datatype::Bytes => "BYTES",
    }
}

/// Parse an Open Inference Protocol datatype name (case-sensitive, as the spec).
pub fn parse_datatype(name: &str) -> Option<Datatype> {
    ALL_DATATYPES.into_iter().find(|dt| datatype_name(*dt) == name)
}

/// Size of one element in bytes; `None` for variable-length BYTES.
pub fn element_size(datatype: Datatype) -> Option<usize> {
    Some(match datatype {
        Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => 1,
        Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 => 2,
        Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => 4,
        Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => 8,
        Datatype::Bytes => return None,
    })
}

/// Why a tensor is malformed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TensorError {
    #[error("a tensor has an empty name")]
    EmptyName,
    #[error("tensor `{0}` appears more than once")]
    DuplicateName(String),
    #[error("tensor `{name}`: shape {shape:?} has too many elements")]
    ShapeOverflow { name: String, shape: Vec<u64> },
    #[error("tensor `{name}`: shape {shape:?} of {datatype} needs {expected} bytes of data, got {actual}")]
    DataLength { name: String, shape: Vec<u64>, datatype: &'static str, expected: usize, actual: usize },
    #[error("tensor `{name}`: BOOL element {index} is {value}, not 0 or 1")]
    BadBool { name: String, index: usize, value: u8 },
    #[error("tensor `{name}`: BYTES data is not a sequence of length-prefixed elements: {reason}")]
    BadBytes { name: String, reason: String },
    #[error("tensor `{name}`: shape {shape:?} holds {expected} elements, BYTES data holds {actual}")]
    BytesCount { name: String, shape: Vec<u64>, expected: usize, actual: usize },
}

/// Number of elements a shape holds, if it fits in `usize`.
pub fn element_count(shape: &[u64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
}

/// Split BYTES data (u32 little-endian length + bytes, per element).
pub fn split_bytes_elements<'a>(name: &str, mut data: &'a [u8]) -> Result<Vec<&'a [u8]>, TensorError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let Some((len, tail)) = data.split_first_chunk::<4>() else {
            return Err(TensorError::BadBytes { name: name.into(), reason: "truncated length prefix".into() });
        };
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            return Err(TensorError::BadBytes {
                name: name.into(),
                reason: format!("element {} claims {len} bytes, {} remain", out.len(), tail.len()),
            });
        }
        out.push(&tail[..len]);
        data = &tail[len..];
    }
    Ok(out)
}

/// Check that a tensor's data matches its shape and datatype.
pub fn validate(tensor: &Tensor) -> Result<(), TensorError> {
    let name = &tensor.name;
    if name.is_empty() {
        return Err(TensorError::EmptyName);
    }
    let count = element_count(&tensor.shape)
        .ok_or_else(|| TensorError::ShapeOverflow { name: name.clone(), shape: tensor.shape.clone() })?;
    match element_size(tensor.datatype) {
        Some(size) => {
            let expected = count
                .checked_mul(size)
                .ok_or_else(|| TensorError::ShapeOverflow { name: name.clone(), shape: tensor.shape.clone() })?;
            if tensor.data.len() != expected {
                return Err(TensorError::DataLength {
                    name: name.clone(),
                    shape: tensor.shape.clone(),
                    datatype: datatype_name(tensor.datatype),
                    expected,
                    actual: tensor.data.len(),
                });
            }
            if tensor.datatype == Datatype::Bool {
                if let Some((index, &value)) = tensor.data.iter().enumerate().find(|(_, &b)| b > 1) {
                    return Err(TensorError::BadBool { name: name.clone(), index, value });
                }
            }
        }
        None => {
            let actual = split_bytes_elements(name, &tensor.data)?.len();
            if actual != count {
                return Err(TensorError::BytesCount { name: name.clone(), shape: tensor.shape.clone(), expected: count, actual });
            }
        }
    }
    Ok(())
}

/// Validate a list of tensors: each well-formed, names unique.
pub fn validate_all(tensors: &[Tensor]) -> Result<(), TensorError> {
    let mut seen = std::collections::HashSet::with_capacity(tensors.len());
    for tensor in tensors {
        validate(tensor)?;
        if !seen.insert(tensor.name.as_str()) {
            return Err(TensorError::DuplicateName(tensor.name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(datatype: Datatype, shape: &[u64], data: Vec<u8>) -> Tensor {
        Tensor { name: "t".into(), datatype, shape: shape.to_vec(), data }
    }

    #[test]
    fn names_round_trip() {
        for dt in ALL_DATATYPES {
            assert_eq!(parse_datatype(datatype_name(dt)), Some(dt));
        }
        assert_eq!(parse_datatype("FLOAT32"), None);
        assert_eq!(parse_datatype("fp32"), None);
    }

    #[test]
    fn data_length_must_match_shape() {
        assert!(validate(&tensor(Datatype::Fp32, &[2, 2], vec![0; 16])).is_ok());
        let err = validate(&tensor(Datatype::Fp32, &[4], vec![0; 12])).unwrap_err();
        assert!(matches!(err, TensorError::DataLength { expected: 16, actual: 12, .. }), "{err}");
        assert!(validate(&tensor(Datatype::Int64, &[], vec![0; 8])).is_ok(), "scalar");
        assert!(matches!(
            validate(&tensor(Datatype::Uint8, &[u64::MAX, 4], vec![])),
            Err(TensorError::ShapeOverflow { .. })
        ));
    }

    #[test]
    fn bools_and_bytes_are_checked() {
        assert!(matches!(validate(&tensor(Datatype::Bool, &[2], vec![1, 2])), Err(TensorError::BadBool { index: 1, .. })));
        let mut data = 3u32.to_le_bytes().to_vec();
        data.extend_from_slice(b"abc");
        data.extend_from_slice(&0u32.to_le_bytes());
        assert!(validate(&tensor(Datatype::Bytes, &[2], data.clone())).is_ok());
        assert!(matches!(validate(&tensor(Datatype::Bytes, &[3], data.clone())), Err(TensorError::BytesCount { .. })));
        data.truncate(5);
        assert!(matches!(validate(&tensor(Datatype::Bytes, &[1], data)), Err(TensorError::BadBytes { .. })));
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let t = tensor(Datatype::Uint8, &[1], vec![1]);
        assert_eq!(validate_all(&[t.clone(), t]), Err(TensorError::DuplicateName("t".into())));
    }
}
