//! Concurrent inference on one ONNX Runtime session.
//!
//! ONNX Runtime documents `Run` as safe to call from many threads on one
//! session, and that is what makes concurrent invocations of one model run
//! in parallel while sharing one copy of its weights. `ort` 2.0.0-rc.10 only
//! offers `Session::run(&mut self)`, which would force a lock (or a session
//! per caller, a weight copy each); so weir calls the C API's `Run` itself.

use std::ffi::{c_char, CStr, CString};
use std::ptr::{self, NonNull};

use ort::session::{RunOptions, Session};
use ort::sys::OrtValue;
use ort::value::DynValue;
use ort::AsPointer;

/// Run `session` on named inputs and return the named outputs, in order.
/// Takes `&Session`: any number of threads may run the same session at once.
/// `options` is this call's own, so terminating it stops only this call.
pub(crate) fn run_shared(
    session: &Session,
    options: &RunOptions,
    inputs: &[(&CStr, &DynValue)],
    outputs: &[CString],
) -> Result<Vec<DynValue>, String> {
    let api = ort::api();
    let input_names: Vec<*const c_char> = inputs.iter().map(|(name, _)| name.as_ptr()).collect();
    let input_values: Vec<*const OrtValue> = inputs.iter().map(|(_, value)| value.ptr()).collect();
    let output_names: Vec<*const c_char> = outputs.iter().map(|name| name.as_ptr()).collect();
    let mut output_values: Vec<*mut OrtValue> = vec![ptr::null_mut(); outputs.len()];
    // SAFETY: every pointer refers to data borrowed for the whole call (names,
    // input values owned by the caller, the run options, the output array
    // above); `Run` is
    // thread-safe on one session per ONNX Runtime's documentation, and the
    // C API takes the session pointer as mutable only nominally.
    let status = unsafe {
        (api.Run)(
            session.ptr().cast_mut(),
            options.ptr(),
            input_names.as_ptr(),
            input_values.as_ptr(),
            input_values.len(),
            output_names.as_ptr(),
            output_names.len(),
            output_values.as_mut_ptr(),
        )
    };
    if !status.0.is_null() {
        // SAFETY: a non-null status carries a message; it is released once.
        let message = unsafe {
            let message = CStr::from_ptr((api.GetErrorMessage)(status.0)).to_string_lossy().into_owned();
            (api.ReleaseStatus)(status.0);
            message
        };
        return Err(message);
    }
    // SAFETY: on success every output is a new OrtValue that we now own;
    // wrapping it in `Value` releases it when dropped.
    let values: Vec<Option<DynValue>> =
        output_values.into_iter().map(|p| NonNull::new(p).map(|p| unsafe { DynValue::from_ptr(p, None) })).collect();
    if values.iter().any(Option::is_none) {
        return Err("ONNX Runtime returned no value for an output".into());
    }
    Ok(values.into_iter().flatten().collect())
}
