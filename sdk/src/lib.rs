//! # weir-sdk — write a weir pipeline step in a few lines
//!
//! A step is a WebAssembly component that exports `weir:pipeline/step`. With
//! this crate a step is a type that implements [`Step`] plus one
//! [`export_step!`] line:
//!
//! ```ignore
//! use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};
//!
//! struct Double;
//!
//! impl Step for Double {
//!     fn process(mut inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
//!         let x = inputs.take("x")?;
//!         let factor: f32 = config::parse_or("factor", 2.0)?;
//!         let y: Vec<f32> = x.view::<f32>()?.iter().map(|v| v * factor).collect();
//!         Ok(vec![Tensor::new("y", x.shape.clone(), &y)?])
//!     }
//! }
//!
//! export_step!(Double);
//! ```
//!
//! Build it with `cargo component build --release` (or
//! `cargo build --release --target wasm32-wasip2`) and run it with
//! `weir run target/.../double.wasm --input request.json`.
//!
//! Tensors carry Open Inference Protocol datatypes; read them with
//! [`Tensor::view`], [`Tensor::to_vec`], [`Tensor::strings`] and
//! [`Tensor::to_bools`], build them with [`Tensor::new`],
//! [`Tensor::from_strings`] and [`Tensor::from_bools`]. Every mismatch between
//! datatype, shape and data becomes a clear [`StepError::InvalidInput`].
//!
//! Steps that run models use [`nn::Model`] (`wasi:nn` underneath); the host
//! runs the model and decides which models a step may load (its grant).
//! Steps granted hosts in the manifest may call them with [`http`].

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "weir:pipeline/nn-step",
        pub_export_macro: true,
        export_macro_name: "__export_step_world",
        default_bindings_module: "weir_sdk::bindings",
        generate_all,
    });
}

pub mod config;
pub mod http;
mod inputs;
mod tensor;

pub use bindings::weir::pipeline::types::{Datatype, StepError, Tensor};
pub use inputs::Inputs;
pub use tensor::{datatype_name, Dim, Element, TensorError};

pub mod nn;
pub mod stats;

impl From<TensorError> for StepError {
    fn from(error: TensorError) -> Self {
        StepError::InvalidInput(error.0)
    }
}

/// A pipeline step: turn input tensors into output tensors.
///
/// A fresh instance serves every call, so a step keeps no state between calls.
pub trait Step {
    fn process(inputs: Inputs) -> Result<Vec<Tensor>, StepError>;
}

#[doc(hidden)]
pub fn __process<S: Step>(inputs: Vec<Tensor>) -> Result<Vec<Tensor>, StepError> {
    S::process(Inputs::new(inputs))
}

/// Export a [`Step`] implementation as the component's `weir:pipeline/step`.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        const _: () = {
            struct __WeirStepExport;

            impl $crate::bindings::exports::weir::pipeline::step::Guest for __WeirStepExport {
                fn process(
                    inputs: ::std::vec::Vec<$crate::Tensor>,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::Tensor>, $crate::StepError> {
                    $crate::__process::<$step>(inputs)
                }
            }

    $crate::bindings::__export_step_world!(__WeirStepExport with_types_in $crate::bindings);
        };
    };
}
