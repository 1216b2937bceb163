//! weir-sandbox: where one step runs, and nothing else.
//!
//! [`Sandbox`] owns the process-wide engine ([`engine`]), the linker with
//! the host interfaces a step may import, and the compiled-component cache
//! ([`compiled`]). [`Sandbox::load_file`] turns a component into a
//! [`StepComponent`] (checked, compiled once, linked); [`Sandbox::invoke`]
//! runs one invocation ([`invoke`]) on a fresh instance with the step's
//! grants and limits, and gives back its outputs, logs ([`logs`]) and
//! measured facts. Engine → component → invocation lifetimes stay apart:
//! a component borrows nothing from a call.

pub mod compiled;
pub mod component;
mod convert;
pub mod egress;
pub mod engine;
pub mod invoke;
pub mod logs;
pub mod precompiled;
mod sandbox;
mod state;

/// Host bindings for the `weir:pipeline` WIT.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "weir:pipeline/plain-step",
        exports: { default: async },
    });
}

pub use component::{LoadError, StepComponent};
pub use egress::EgressEvent;
pub use engine::EngineOptions;
pub use invoke::{InvokeError, StepOutput, StepStats};
pub use sandbox::{Sandbox, SandboxError, SandboxOptions};
pub use weir_core::{StepGrants, StepLimits};
