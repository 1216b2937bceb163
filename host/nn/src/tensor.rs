//! wasi-nn tensors on the host side, and their conversion to and from ONNX
//! Runtime values for every type wasi-nn has.

use std::fmt;

use ort::tensor::TensorElementType;
use ort::value::{DynValue, Tensor};

use crate::error::NnError;

/// The element types of `wasi:nn/tensor.tensor-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NnType {
    Fp16,
    Fp32,
    Fp64,
    Bf16,
    U8,
    I32,
    I64,
}

impl NnType {
    pub fn size(self) -> usize {
        match self {
            NnType::U8 => 1,
            NnType::Fp16 | NnType::Bf16 => 2,
            NnType::Fp32 | NnType::I32 => 4,
            NnType::Fp64 | NnType::I64 => 8,
        }
    }

    /// The wasi-nn type for an ONNX element type, if wasi-nn can carry it.
    pub fn from_onnx(ty: TensorElementType) -> Option<NnType> {
        Some(match ty {
            TensorElementType::Float16 => NnType::Fp16,
            TensorElementType::Float32 => NnType::Fp32,
            TensorElementType::Float64 => NnType::Fp64,
            TensorElementType::Bfloat16 => NnType::Bf16,
            TensorElementType::Uint8 => NnType::U8,
            TensorElementType::Int32 => NnType::I32,
            TensorElementType::Int64 => NnType::I64,
            _ => return None,
        })
    }
}

impl fmt::Display for NnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NnType::Fp16 => "FP16",
            NnType::Fp32 => "FP32",
            NnType::Fp64 => "FP64",
            NnType::Bf16 => "BF16",
            NnType::U8 => "U8",
            NnType::I32 => "I32",
            NnType::I64 => "I64",
        })
    }
}

/// A tensor as a guest hands it over: dimensions, type, little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NnTensor {
    pub dims: Vec<u32>,
    pub ty: NnType,
    pub data: Vec<u8>,
}

impl NnTensor {
    pub fn element_count(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
    }

    /// An ONNX Runtime value holding a copy of the data (copied so that an
    /// unaligned guest buffer can never be misread).
    pub(crate) fn to_ort(&self) -> Result<DynValue, ort::Error> {
        fn make<T: bytemuck::Pod + ort::tensor::PrimitiveTensorElementType + std::fmt::Debug>(
            shape: Vec<i64>,
            data: &[u8],
        ) -> Result<DynValue, ort::Error> {
            Ok(Tensor::<T>::from_array((shape, bytemuck::pod_collect_to_vec::<u8, T>(data)))?.into_dyn())
        }
        let shape: Vec<i64> = self.dims.iter().map(|&d| i64::from(d)).collect();
        match self.ty {
            NnType::Fp16 => make::<half::f16>(shape, &self.data),
            NnType::Fp32 => make::<f32>(shape, &self.data),
            NnType::Fp64 => make::<f64>(shape, &self.data),
            NnType::Bf16 => make::<half::bf16>(shape, &self.data),
            NnType::U8 => make::<u8>(shape, &self.data),
            NnType::I32 => make::<i32>(shape, &self.data),
            NnType::I64 => make::<i64>(shape, &self.data),
        }
    }
}

/// Copy outputs (in declaration order) out of ONNX Runtime into wasi-nn tensors.
pub(crate) fn outputs_from_ort(
    model: &str,
    names: &[&str],
    outputs: &[DynValue],
) -> Result<Vec<(String, NnTensor)>, NnError> {
    names.iter().zip(outputs).map(|(name, value)| Ok((name.to_string(), from_ort(model, name, value)?))).collect()
}

fn from_ort(model: &str, name: &str, value: &DynValue) -> Result<NnTensor, NnError> {
    fn take<T: bytemuck::Pod + ort::tensor::PrimitiveTensorElementType>(
        value: &DynValue,
        ty: NnType,
    ) -> Result<NnTensor, String> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| e.to_string())?;
        let dims = shape
            .iter()
            .map(|&d| u32::try_from(d).map_err(|_| format!("dimension {d} does not fit wasi-nn's u32")))
            .collect::<Result<Vec<u32>, String>>()?;
        Ok(NnTensor { dims, ty, data: bytemuck::cast_slice(data).to_vec() })
    }
    let element = match value.dtype() {
        ort::value::ValueType::Tensor { ty, .. } => *ty,
        other => {
            return Err(NnError::unsupported(format!(
                "output `{name}` of model `{model}` is a {other:?}, not a tensor; wasi-nn carries only tensors"
            )))
        }
    };
    let ty = NnType::from_onnx(element).ok_or_else(|| {
        NnError::unsupported(format!(
            "output `{name}` of model `{model}` has element type {element:?}, which wasi-nn cannot carry"
        ))
    })?;
    let result = match ty {
        NnType::Fp16 => take::<half::f16>(value, ty),
        NnType::Fp32 => take::<f32>(value, ty),
        NnType::Fp64 => take::<f64>(value, ty),
        NnType::Bf16 => take::<half::bf16>(value, ty),
        NnType::U8 => take::<u8>(value, ty),
        NnType::I32 => take::<i32>(value, ty),
        NnType::I64 => take::<i64>(value, ty),
    };
    result.map_err(|e| NnError::runtime(format!("reading output `{name}` of model `{model}`: {e}")))
}
