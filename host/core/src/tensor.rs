//! Tensors as weir moves them between steps (the host's side of
//! `weir:pipeline/types.tensor`): datatype facts, the validation every
//! tensor crossing the sandbox boundary goes through, and the BYTES codec.

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

impl Tensor {
    /// The elements of an FP32 or FP64 tensor as `f64`; `None` for other datatypes.
    pub fn float_values(&self) -> Option<Vec<f64>> {
        match self.datatype {
            Datatype::Fp32 => {
                Some(self.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect())
            }
            Datatype::Fp64 => Some(
                self.data
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .collect(),
            ),
            _ => None,
        }
    }
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
    #[error("tensor `{name}`: BOOL element {index} is not 0 or 1")]
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

/// Property tests: the validator and the BYTES codec take any input without
/// panicking, and the codec round-trips.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn datatype() -> impl Strategy<Value = Datatype> {
        prop::sample::select(ALL_DATATYPES.to_vec())
    }

    /// Dimensions from tiny to absurd: 0, small, near the `usize` limits.
    fn dim() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0u64..8,
            1 => Just(0),
            1 => any::<u64>(),
            1 => prop::sample::select(vec![u32::MAX as u64, 1 << 32, 1 << 62, u64::MAX / 2, u64::MAX]),
        ]
    }

    fn shape() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(dim(), 0..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any shape, any data: an answer, never a panic; and `Ok` only when
        /// the data matches what the shape asks for.
        #[test]
        fn validate_never_panics(
            name in prop_oneof![Just(String::new()), "[a-z]{1,4}"],
            datatype in datatype(),
            shape in shape(),
            data in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let tensor = Tensor { name, datatype, shape, data };
            if validate(&tensor).is_ok() {
                let count = element_count(&tensor.shape).expect("a valid tensor's count fits");
                match element_size(datatype) {
                    Some(size) => prop_assert_eq!(tensor.data.len(), count * size),
                    None => prop_assert_eq!(split_bytes_elements("t", &tensor.data).unwrap().len(), count),
                }
            }
            let _ = validate_all(&[tensor.clone(), tensor]);
        }

        /// Data built for the shape is accepted (small shapes only).
        #[test]
        fn well_formed_tensors_are_valid(
            datatype in datatype(),
            shape in prop::collection::vec(0u64..4, 0..4),
            seed in any::<u8>(),
        ) {
            let count = element_count(&shape).unwrap();
            let data = match element_size(datatype) {
                Some(size) if datatype == Datatype::Bool => vec![seed & 1; count * size],
                Some(size) => vec![seed; count * size],
                None => {
                    let mut out = Vec::new();
                    for i in 0..count {
                        push_bytes_element(&mut out, &vec![seed; i % 3]);
                    }
                    out
                }
            };
            prop_assert_eq!(validate(&Tensor { name: "t".into(), datatype, shape, data }), Ok(()));
        }

        /// Whatever elements go in come back out, in order.
        #[test]
        fn bytes_codec_round_trips(
            elements in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..20),
        ) {
            let mut data = Vec::new();
            for element in &elements {
                push_bytes_element(&mut data, element);
            }
            let split = split_bytes_elements("t", &data).unwrap();
            prop_assert_eq!(split, elements.iter().map(Vec::as_slice).collect::<Vec<_>>());
            let shape = vec![elements.len() as u64];
            prop_assert_eq!(validate(&Tensor { name: "t".into(), datatype: Datatype::Bytes, shape, data }), Ok(()));
        }

        /// Arbitrary bytes split or fail cleanly; a successful split re-encodes to
        /// the same bytes.
        #[test]
        fn arbitrary_bytes_data_splits_or_fails(data in prop::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(elements) = split_bytes_elements("t", &data) {
                let mut again = Vec::new();
                for element in elements {
                    push_bytes_element(&mut again, element);
                }
                prop_assert_eq!(again, data);
            }
        }
    }
}
