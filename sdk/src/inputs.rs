//! The input tensors of one call, looked up by name.

use crate::{StepError, Tensor};

/// The tensors a step was called with.
#[derive(Debug, Clone)]
pub struct Inputs {
    tensors: Vec<Tensor>,
}

impl Inputs {
    pub fn new(tensors: Vec<Tensor>) -> Self {
        Inputs { tensors }
    }

    /// Names of the tensors present, in call order.
    pub fn names(&self) -> Vec<&str> {
        self.tensors.iter().map(|t| t.name.as_str()).collect()
    }

    /// Borrow the tensor called `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor, StepError> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| self.missing(name))
    }

    /// Take the tensor called `name` out of the inputs.
    pub fn take(&mut self, name: &str) -> Result<Tensor, StepError> {
        match self.tensors.iter().position(|t| t.name == name) {
            Some(index) => Ok(self.tensors.swap_remove(index)),
            None => Err(self.missing(name)),
        }
    }

    /// Take the only input tensor, whatever its name.
    pub fn take_single(&mut self) -> Result<Tensor, StepError> {
        if self.tensors.len() != 1 {
            return Err(StepError::InvalidInput(format!(
                "expected exactly one input tensor, got {} ({:?})",
                self.tensors.len(),
                self.names()
            )));
        }
        Ok(self.tensors.remove(0))
    }

    /// All tensors, in call order.
    pub fn into_vec(self) -> Vec<Tensor> {
        self.tensors
    }

    fn missing(&self, name: &str) -> StepError {
        StepError::InvalidInput(format!("missing input tensor `{name}` (got {:?})", self.names()))
    }
}
