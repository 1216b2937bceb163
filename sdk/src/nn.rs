//! Running models from a step. The host runs them (ONNX Runtime); a step
//! names a model it was granted and passes tensors.
//!
//! ```ignore
//! let model = weir_sdk::nn::Model::load("digits")?;
//! let outputs = model.run(&[("input", &pixels)])?;   // Vec<Tensor>, named as the model names them
//! ```

use crate::tensor::datatype_name;
use crate::{Datatype, StepError, Tensor};

/// The raw `wasi:nn` interfaces, for what [`Model`] does not cover.
pub use crate::bindings::wasi::nn::{errors, graph, inference, tensor as nn_tensor};

/// A model the step was granted, loaded by name.
pub struct Model {
    name: String,
    graph: graph::Graph,
}

fn describe(model: &str, error: errors::Error) -> StepError {
    let message = format!("model `{model}`: {:?}: {}", error.code(), error.data());
    match error.code() {
        // The tensors handed to the model did not match it: the caller's input.
        errors::ErrorCode::InvalidArgument => StepError::InvalidInput(message),
        _ => StepError::Failed(message),
    }
}

impl Model {
    /// Load a model by name. Fails with `not-found` when the step was not
    /// granted it (whether or not it exists).
    pub fn load(name: &str) -> Result<Model, StepError> {
        let graph = graph::load_by_name(name).map_err(|e| describe(name, e))?;
        Ok(Model { name: name.to_string(), graph })
    }

    /// Run the model once. Inputs are `(model input name, tensor)`; outputs
    /// come back under the model's output names.
    pub fn run(&self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>, StepError> {
        let context = self.graph.init_execution_context().map_err(|e| describe(&self.name, e))?;
        let inputs = inputs
            .iter()
            .map(|(name, tensor)| Ok((name.to_string(), to_nn(tensor)?)))
            .collect::<Result<Vec<inference::NamedTensor>, StepError>>()?;
        let outputs = context.compute(inputs).map_err(|e| describe(&self.name, e))?;
        outputs.into_iter().map(|(name, tensor)| from_nn(name, &tensor)).collect()
    }
}

fn to_nn(tensor: &Tensor) -> Result<nn_tensor::Tensor, StepError> {
    let ty = match tensor.datatype {
        Datatype::Fp16 => nn_tensor::TensorType::Fp16,
        Datatype::Fp32 => nn_tensor::TensorType::Fp32,
        Datatype::Fp64 => nn_tensor::TensorType::Fp64,
        Datatype::Uint8 => nn_tensor::TensorType::U8,
        Datatype::Int32 => nn_tensor::TensorType::I32,
        Datatype::Int64 => nn_tensor::TensorType::I64,
        other => {
            return Err(StepError::InvalidInput(format!(
                "tensor `{}` is {}; models take FP16, FP32, FP64, UINT8, INT32 or INT64",
                tensor.name,
                datatype_name(other)
            )))
        }
    };
    let dims = tensor
        .shape
        .iter()
        .map(|&d| {
            u32::try_from(d)
                .map_err(|_| StepError::InvalidInput(format!("tensor `{}`: dimension {d} is too large", tensor.name)))
        })
        .collect::<Result<Vec<u32>, StepError>>()?;
    Ok(nn_tensor::Tensor::new(&dims, ty, &tensor.data))
}

fn from_nn(name: String, tensor: &nn_tensor::Tensor) -> Result<Tensor, StepError> {
    let shape: Vec<u64> = tensor.dimensions().into_iter().map(u64::from).collect();
    let data = tensor.data();
    let (datatype, data) = match tensor.ty() {
        nn_tensor::TensorType::Fp16 => (Datatype::Fp16, data),
        nn_tensor::TensorType::Fp32 => (Datatype::Fp32, data),
        nn_tensor::TensorType::Fp64 => (Datatype::Fp64, data),
        nn_tensor::TensorType::U8 => (Datatype::Uint8, data),
        nn_tensor::TensorType::I32 => (Datatype::Int32, data),
        nn_tensor::TensorType::I64 => (Datatype::Int64, data),
        // Pipelines have no BF16 datatype: widen to FP32, which is lossless.
        nn_tensor::TensorType::Bf16 => (Datatype::Fp32, bf16_to_f32_bytes(&data)),
    };
    Ok(Tensor { name, datatype, shape, data })
}

fn bf16_to_f32_bytes(data: &[u8]) -> Vec<u8> {
    data.chunks_exact(2).flat_map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32().to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    /// BF16 is the top half of an FP32: widening keeps every value exactly.
    #[test]
    fn bf16_widens_to_f32_exactly() {
        let values = [1.5f32, -0.0, f32::INFINITY, -3.0e38, 1.0e-38, 0.15625];
        let bf16: Vec<u8> = values.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect();
        let widened: Vec<f32> = super::bf16_to_f32_bytes(&bf16)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let truncated: Vec<f32> = values.iter().map(|v| f32::from_bits(v.to_bits() & 0xffff_0000)).collect();
        assert_eq!(
            widened.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            truncated.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(widened[0], 1.5);
        assert!(widened[1].is_sign_negative() && widened[1] == 0.0);
        assert_eq!(widened[2], f32::INFINITY);
        let nan = super::bf16_to_f32_bytes(&0x7fc0u16.to_le_bytes());
        assert!(f32::from_le_bytes(nan.try_into().unwrap()).is_nan());
    }
}
