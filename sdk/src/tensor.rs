//! Typed views over the byte buffers of `weir:pipeline/types.tensor`, so a
//! step author never packs bytes by hand.

use std::borrow::Cow;
use std::fmt;

use crate::bindings::weir::pipeline::types::{Datatype, Tensor};

/// A tensor was not what the code reading it expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorError(pub String);

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TensorError {}

/// Open Inference Protocol name of a datatype (`FP32`, `INT64`, ...).
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

/// A Rust type that is the element type of one tensor datatype.
pub trait Element: bytemuck::Pod {
    const DATATYPE: Datatype;
}

macro_rules! elements {
    ($($ty:ty => $dt:ident),* $(,)?) => {
        $(impl Element for $ty { const DATATYPE: Datatype = Datatype::$dt; })*
    };
}

elements! {
    u8 => Uint8, u16 => Uint16, u32 => Uint32, u64 => Uint64,
    i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64,
    half::f16 => Fp16, f32 => Fp32, f64 => Fp64,
}

/// One dimension of an expected shape: a fixed size, or any size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Any,
    Fixed(u64),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Any => f.write_str("-1"),
            Dim::Fixed(n) => write!(f, "{n}"),
        }
    }
}

fn element_count(shape: &[u64]) -> Result<usize, TensorError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
        .ok_or_else(|| TensorError(format!("shape {shape:?} has too many elements")))
}

/// Borrow little-endian bytes as `[T]` when aligned; copy them when not.
fn cast_or_copy<T: Element>(bytes: &[u8]) -> Cow<'_, [T]> {
    match bytemuck::try_cast_slice(bytes) {
        Ok(slice) => Cow::Borrowed(slice),
        Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(bytes)),
    }
}

impl Tensor {
    /// A tensor of `values` laid out row-major in `shape`.
    pub fn new<T: Element>(
        name: impl Into<String>,
        shape: impl Into<Vec<u64>>,
        values: &[T],
    ) -> Result<Tensor, TensorError> {
        let name = name.into();
        let shape = shape.into();
        let count = element_count(&shape)?;
        if count != values.len() {
            return Err(TensorError(format!(
                "tensor `{name}`: shape {shape:?} holds {count} elements but {} values were given",
                values.len()
            )));
        }
        Ok(Tensor { name, datatype: T::DATATYPE, shape, data: bytemuck::cast_slice(values).to_vec() })
    }

    /// A BOOL tensor.
    pub fn from_bools(
        name: impl Into<String>,
        shape: impl Into<Vec<u64>>,
        values: &[bool],
    ) -> Result<Tensor, TensorError> {
        let bytes: Vec<u8> = values.iter().map(|&b| b as u8).collect();
        let mut tensor = Tensor::new(name, shape, &bytes)?;
        tensor.datatype = Datatype::Bool;
        Ok(tensor)
    }

    /// A BYTES tensor: one byte string per element.
    pub fn from_strings<S: AsRef<[u8]>>(
        name: impl Into<String>,
        shape: impl Into<Vec<u64>>,
        values: &[S],
    ) -> Result<Tensor, TensorError> {
        let name = name.into();
        let shape = shape.into();
        let count = element_count(&shape)?;
        if count != values.len() {
            return Err(TensorError(format!(
                "tensor `{name}`: shape {shape:?} holds {count} elements but {} strings were given",
                values.len()
            )));
        }
        let mut data = Vec::new();
        for value in values {
            let value = value.as_ref();
            let len = u32::try_from(value.len())
                .map_err(|_| TensorError(format!("tensor `{name}`: a string is over 4 GiB")))?;
            data.extend_from_slice(&len.to_le_bytes());
            data.extend_from_slice(value);
        }
        Ok(Tensor { name, datatype: Datatype::Bytes, shape, data })
    }

    /// Number of elements the shape holds.
    pub fn len(&self) -> usize {
        element_count(&self.shape).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_datatype(&self, expected: Datatype) -> Result<(), TensorError> {
        if self.datatype != expected {
            return Err(TensorError(format!(
                "tensor `{}`: expected datatype {}, got {}",
                self.name,
                datatype_name(expected),
                datatype_name(self.datatype)
            )));
        }
        Ok(())
    }

    /// The elements as `&[T]` (borrowed when the buffer is aligned, copied
    /// otherwise). Fails when the datatype is not `T`'s or the buffer length
    /// does not match the shape.
    pub fn view<T: Element>(&self) -> Result<Cow<'_, [T]>, TensorError> {
        self.check_datatype(T::DATATYPE)?;
        let count = element_count(&self.shape)?;
        let expected = count * std::mem::size_of::<T>();
        if self.data.len() != expected {
            return Err(TensorError(format!(
                "tensor `{}`: shape {:?} of {} needs {expected} bytes, data has {}",
                self.name,
                self.shape,
                datatype_name(self.datatype),
                self.data.len()
            )));
        }
        Ok(cast_or_copy(&self.data))
    }

    /// The elements copied into a `Vec<T>`.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, TensorError> {
        self.view::<T>().map(Cow::into_owned)
    }

    /// The elements of a BOOL tensor.
    pub fn to_bools(&self) -> Result<Vec<bool>, TensorError> {
        self.check_datatype(Datatype::Bool)?;
        let mut as_u8 = self.clone();
        as_u8.datatype = Datatype::Uint8;
        let bytes = as_u8.view::<u8>()?;
        bytes
            .iter()
            .map(|&b| match b {
                0 => Ok(false),
                1 => Ok(true),
                other => Err(TensorError(format!("tensor `{}`: BOOL element holds {other}, not 0 or 1", self.name))),
            })
            .collect()
    }

    /// The elements of a BYTES tensor, one byte string each.
    pub fn strings(&self) -> Result<Vec<&[u8]>, TensorError> {
        self.check_datatype(Datatype::Bytes)?;
        let count = element_count(&self.shape)?;
        let mut out = Vec::with_capacity(count);
        let mut rest: &[u8] = &self.data;
        while !rest.is_empty() {
            let (len, tail) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| TensorError(format!("tensor `{}`: truncated BYTES length prefix", self.name)))?;
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                return Err(TensorError(format!("tensor `{}`: BYTES element runs past the buffer", self.name)));
            }
            out.push(&tail[..len]);
            rest = &tail[len..];
        }
        if out.len() != count {
            return Err(TensorError(format!(
                "tensor `{}`: shape {:?} holds {count} elements, data holds {}",
                self.name,
                self.shape,
                out.len()
            )));
        }
        Ok(out)
    }

    /// Check the shape against an expected one; `Dim::Any` matches any size.
    pub fn expect_shape(&self, expected: &[Dim]) -> Result<(), TensorError> {
        let matches = self.shape.len() == expected.len()
            && self.shape.iter().zip(expected).all(|(&got, want)| match want {
                Dim::Any => true,
                Dim::Fixed(n) => got == *n,
            });
        if matches {
            return Ok(());
        }
        let want: Vec<String> = expected.iter().map(Dim::to_string).collect();
        Err(TensorError(format!("tensor `{}`: expected shape [{}], got {:?}", self.name, want.join(", "), self.shape)))
    }

    /// The same tensor under another name.
    pub fn renamed(mut self, name: impl Into<String>) -> Tensor {
        self.name = name.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_round_trip() {
        let t = Tensor::new("x", vec![2, 2], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(t.datatype, Datatype::Fp32);
        assert_eq!(t.data.len(), 16);
        assert_eq!(&*t.view::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
        let i = Tensor::new("i", vec![3], &[-1i64, 0, 7]).unwrap();
        assert_eq!(i.to_vec::<i64>().unwrap(), vec![-1, 0, 7]);
    }

    #[test]
    fn mismatches_are_clear_errors() {
        let err = Tensor::new("x", vec![3], &[1.0f32]).unwrap_err();
        assert!(err.0.contains("holds 3 elements but 1 values"), "{err}");
        let t = Tensor::new("x", vec![2], &[1i32, 2]).unwrap();
        assert!(t.view::<f32>().unwrap_err().0.contains("expected datatype FP32, got INT32"));
        let short = Tensor { name: "s".into(), datatype: Datatype::Fp32, shape: vec![4], data: vec![0; 12] };
        assert!(short.view::<f32>().unwrap_err().0.contains("needs 16 bytes, data has 12"));
        assert!(t.expect_shape(&[Dim::Any, Dim::Fixed(2)]).unwrap_err().0.contains("expected shape [-1, 2], got [2]"));
        assert!(t.expect_shape(&[Dim::Fixed(2)]).is_ok());
    }

    #[test]
    fn unaligned_buffers_are_copied_not_misread() {
        let mut words = [0u32; 3];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        bytes[1..9].copy_from_slice(&[1.5f32.to_le_bytes(), 2.5f32.to_le_bytes()].concat());
        let unaligned = &bytes[1..9];
        let values = cast_or_copy::<f32>(unaligned);
        assert!(matches!(values, Cow::Owned(_)));
        assert_eq!(&*values, &[1.5, 2.5]);
        assert!(matches!(cast_or_copy::<f32>(&bytes[4..12]), Cow::Borrowed(_)));
    }

    #[test]
    fn strings_and_bools() {
        let s = Tensor::from_strings("s", vec![2], &["héllo", ""]).unwrap();
        assert_eq!(s.strings().unwrap(), vec!["héllo".as_bytes(), b"".as_slice()]);
        let b = Tensor::from_bools("b", vec![3], &[true, false, true]).unwrap();
        assert_eq!(b.to_bools().unwrap(), vec![true, false, true]);
        let bad = Tensor { name: "b".into(), datatype: Datatype::Bool, shape: vec![1], data: vec![7] };
        assert!(bad.to_bools().unwrap_err().0.contains("not 0 or 1"));
    }
}
