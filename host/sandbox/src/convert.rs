//! Tensors across the sandbox boundary: weir-core's `Tensor` on the host,
//! the WIT `tensor` record in the bindings. Fields are moved, never copied.

use weir_core::{Datatype, Tensor};

use crate::bindings::weir::pipeline::types as wit;

pub(crate) fn to_guest(tensor: Tensor) -> wit::Tensor {
    let Tensor { name, datatype, shape, data } = tensor;
    wit::Tensor { name, datatype: datatype_to_guest(datatype), shape, data }
}

pub(crate) fn from_guest(tensor: wit::Tensor) -> Tensor {
    let wit::Tensor { name, datatype, shape, data } = tensor;
    Tensor { name, datatype: datatype_from_guest(datatype), shape, data }
}

fn datatype_to_guest(datatype: Datatype) -> wit::Datatype {
    match datatype {
        Datatype::Bool => wit::Datatype::Bool,
        Datatype::Uint8 => wit::Datatype::Uint8,
        Datatype::Uint16 => wit::Datatype::Uint16,
        Datatype::Uint32 => wit::Datatype::Uint32,
        Datatype::Uint64 => wit::Datatype::Uint64,
        Datatype::Int8 => wit::Datatype::Int8,
        Datatype::Int16 => wit::Datatype::Int16,
        Datatype::Int32 => wit::Datatype::Int32,
        Datatype::Int64 => wit::Datatype::Int64,
        Datatype::Fp16 => wit::Datatype::Fp16,
        Datatype::Fp32 => wit::Datatype::Fp32,
        Datatype::Fp64 => wit::Datatype::Fp64,
        Datatype::Bytes => wit::Datatype::Bytes,
    }
}

fn datatype_from_guest(datatype: wit::Datatype) -> Datatype {
    match datatype {
        wit::Datatype::Bool => Datatype::Bool,
        wit::Datatype::Uint8 => Datatype::Uint8,
        wit::Datatype::Uint16 => Datatype::Uint16,
        wit::Datatype::Uint32 => Datatype::Uint32,
        wit::Datatype::Uint64 => Datatype::Uint64,
        wit::Datatype::Int8 => Datatype::Int8,
        wit::Datatype::Int16 => Datatype::Int16,
        wit::Datatype::Int32 => Datatype::Int32,
        wit::Datatype::Int64 => Datatype::Int64,
        wit::Datatype::Fp16 => Datatype::Fp16,
        wit::Datatype::Fp32 => Datatype::Fp32,
        wit::Datatype::Fp64 => Datatype::Fp64,
        wit::Datatype::Bytes => Datatype::Bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datatype_crosses_both_ways() {
        for datatype in weir_core::tensor::ALL_DATATYPES {
            let tensor = Tensor { name: "t".into(), datatype, shape: vec![1], data: vec![0] };
            assert_eq!(from_guest(to_guest(tensor.clone())), tensor);
        }
    }
}
