//! Tensors as weir moves them between steps (the host's side of
//! `weir:pipeline/types.tensor`): datatype facts, the validation every
//! tensor crossing the sandbox boundary goes through, and the BYTES codec.

use serde_json::Value;
use thiserror::Error;

/// Element type of a tensor (the WIT `datatype`, in its order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bytes,
}

/// A named tensor: little-endian elements in row-major order; BYTES
/// elements are each a u32 little-endian length followed by the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<u64>,
    pub data: Vec<u8>,
}

impl Datatype {
    /// Open Inference Protocol name (`FP32`, `INT64`, ...).
    pub fn name(self) -> &'static str {
        datatype_name(self)
    }
}

impl std::fmt::Display for Datatype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(datatype_name(*self))
    }
}

impl std::str::FromStr for Datatype {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        parse_datatype(name).ok_or_else(|| {
            let known: Vec<&str> = ALL_DATATYPES.iter().map(|d| d.name()).collect();
            format!("unknown datatype `{name}`; expected one of {}", known.join(", "))
        })
    }
}

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

/// Append one BYTES element (length prefix, then the bytes).
pub fn push_bytes_element(out: &mut Vec<u8>, element: &[u8]) {
    out.extend((element.len() as u32).to_le_bytes());
    out.extend(element);
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

/// A (validated) tensor's elements as JSON values, flat: numbers, booleans,
/// and BYTES elements as strings when UTF-8, else arrays of byte values.
pub fn json_values(tensor: &Tensor) -> Vec<Value> {
    fn chunks<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        data.chunks_exact(N).map(|c| c.try_into().expect("chunks_exact yields N bytes"))
    }
    let d = &tensor.data;
    match tensor.datatype {
        Datatype::Bool => d.iter().map(|&b| Value::Bool(b != 0)).collect(),
        Datatype::Uint8 => d.iter().map(|&b| Value::from(b)).collect(),
        Datatype::Int8 => d.iter().map(|&b| Value::from(b as i8)).collect(),
        Datatype::Uint16 => chunks::<2>(d).map(|c| Value::from(u16::from_le_bytes(c))).collect(),
        Datatype::Int16 => chunks::<2>(d).map(|c| Value::from(i16::from_le_bytes(c))).collect(),
        Datatype::Uint32 => chunks::<4>(d).map(|c| Value::from(u32::from_le_bytes(c))).collect(),
        Datatype::Int32 => chunks::<4>(d).map(|c| Value::from(i32::from_le_bytes(c))).collect(),
        Datatype::Uint64 => chunks::<8>(d).map(|c| Value::from(u64::from_le_bytes(c))).collect(),
        Datatype::Int64 => chunks::<8>(d).map(|c| Value::from(i64::from_le_bytes(c))).collect(),
        Datatype::Fp16 => chunks::<2>(d).map(|c| shortest_float(half::f16::from_le_bytes(c))).collect(),
        Datatype::Fp32 => chunks::<4>(d).map(|c| shortest_float(f32::from_le_bytes(c))).collect(),
        Datatype::Fp64 => chunks::<8>(d).map(|c| Value::from(f64::from_le_bytes(c))).collect(),
        Datatype::Bytes => split_bytes_elements(&tensor.name, d)
            .unwrap_or_default()
            .into_iter()
            .map(|bytes| match std::str::from_utf8(bytes) {
                Ok(text) => Value::from(text),
                Err(_) => Value::from(bytes.to_vec()),
            })
            .collect(),
    }
}

/// A narrow float as the shortest decimal that reads back to it (0.6, not
/// 0.6000000238418579). NaN and infinities have no JSON form: null.
fn shortest_float(value: impl std::fmt::Display) -> Value {
    value.to_string().parse::<f64>().ok().map(Value::from).unwrap_or(Value::Null)
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
                return Err(TensorError::BytesCount {
                    name: name.clone(),
                    shape: tensor.shape.clone(),
                    expected: count,
                    actual,
                });
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
        assert!(matches!(
            validate(&tensor(Datatype::Bool, &[2], vec![1, 2])),
            Err(TensorError::BadBool { index: 1, .. })
        ));
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
