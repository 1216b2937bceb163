//! The trivial step: returns its inputs unchanged. Measures the host's own
//! cost per invocation (instantiate + call + drop).

use weir_sdk::{export_step, Inputs, Step, StepError, Tensor};

struct Noop;

impl Step for Noop {
    fn process(inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        Ok(inputs.into_vec())
    }
}

export_step!(Noop);
