//! A tensor's elements as JSON: numbers, booleans, and BYTES elements as
//! strings when UTF-8, else arrays of byte values. [`JsonElements`] writes
//! them straight into a serializer (a response never holds one
//! `serde_json::Value` per element); [`json_values`] builds values for the
//! few places that keep them (provenance records).

use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::Value;

use crate::tensor::{element_size, split_bytes_elements, Datatype, Tensor};

/// One element of a tensor, borrowed from its data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Element<'a> {
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    /// A float as the shortest decimal that reads back to it; `None` for
    /// NaN and infinities, which have no JSON form (written as `null`).
    Float(Option<f64>),
    /// An FP32 element, kept narrow: written as the shortest decimal that
    /// reads back to it as an `f32` (0.6, not 0.6000000238418579), with no
    /// detour through a string.
    Float32(f32),
    Text(&'a str),
    Binary(&'a [u8]),
}

impl Serialize for Element<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Element::Bool(b) => serializer.serialize_bool(b),
            Element::Unsigned(u) => serializer.serialize_u64(u),
            Element::Signed(i) => serializer.serialize_i64(i),
            Element::Float(Some(f)) => serializer.serialize_f64(f),
            Element::Float(None) => serializer.serialize_unit(),
            Element::Float32(f) if f.is_finite() => serializer.serialize_f32(f),
            Element::Float32(_) => serializer.serialize_unit(),
            Element::Text(text) => serializer.serialize_str(text),
            Element::Binary(bytes) => serializer.collect_seq(bytes),
        }
    }
}

impl From<Element<'_>> for Value {
    fn from(element: Element<'_>) -> Value {
        match element {
            Element::Bool(b) => Value::Bool(b),
            Element::Unsigned(u) => Value::from(u),
            Element::Signed(i) => Value::from(i),
            Element::Float(f) => f.map(Value::from).unwrap_or(Value::Null),
            Element::Float32(f) => widened(f).map(Value::from).unwrap_or(Value::Null),
            Element::Text(text) => Value::from(text),
            Element::Binary(bytes) => Value::from(bytes.to_vec()),
        }
    }
}

/// Call `each` on every element of a (validated) tensor, in order.
pub fn for_each_element<'a, E>(
    tensor: &'a Tensor,
    mut each: impl FnMut(Element<'a>) -> Result<(), E>,
) -> Result<(), E> {
    fn chunks<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        data.chunks_exact(N).map(|c| c.try_into().expect("chunks_exact yields N bytes"))
    }
    let d = &tensor.data;
    let mut all = |elements: &mut dyn Iterator<Item = Element<'a>>| {
        for element in elements {
            each(element)?;
        }
        Ok(())
    };
    match tensor.datatype {
        Datatype::Bool => all(&mut d.iter().map(|&b| Element::Bool(b != 0))),
        Datatype::Uint8 => all(&mut d.iter().map(|&b| Element::Unsigned(b.into()))),
        Datatype::Int8 => all(&mut d.iter().map(|&b| Element::Signed((b as i8).into()))),
        Datatype::Uint16 => all(&mut chunks::<2>(d).map(|c| Element::Unsigned(u16::from_le_bytes(c).into()))),
        Datatype::Int16 => all(&mut chunks::<2>(d).map(|c| Element::Signed(i16::from_le_bytes(c).into()))),
        Datatype::Uint32 => all(&mut chunks::<4>(d).map(|c| Element::Unsigned(u32::from_le_bytes(c).into()))),
        Datatype::Int32 => all(&mut chunks::<4>(d).map(|c| Element::Signed(i32::from_le_bytes(c).into()))),
        Datatype::Uint64 => all(&mut chunks::<8>(d).map(|c| Element::Unsigned(u64::from_le_bytes(c)))),
        Datatype::Int64 => all(&mut chunks::<8>(d).map(|c| Element::Signed(i64::from_le_bytes(c)))),
        Datatype::Fp16 => all(&mut chunks::<2>(d).map(|c| shortest_float(half::f16::from_le_bytes(c)))),
        Datatype::Fp32 => all(&mut chunks::<4>(d).map(|c| Element::Float32(f32::from_le_bytes(c)))),
        Datatype::Fp64 => {
            all(&mut chunks::<8>(d).map(|c| Element::Float(Some(f64::from_le_bytes(c)).filter(|f| f.is_finite()))))
        }
        Datatype::Bytes => {
            all(&mut split_bytes_elements(&tensor.name, d).unwrap_or_default().into_iter().map(|bytes| {
                match std::str::from_utf8(bytes) {
                    Ok(text) => Element::Text(text),
                    Err(_) => Element::Binary(bytes),
                }
            }))
        }
    }
}

/// A narrow float as the shortest decimal that reads back to it (0.6, not
/// 0.6000000238418579).
fn shortest_float<'a>(value: impl std::fmt::Display) -> Element<'a> {
    Element::Float(value.to_string().parse::<f64>().ok().filter(|f| f.is_finite()))
}

/// A finite `f32` as the `f64` of its shortest decimal (0.6, not
/// 0.6000000238418579); `None` for NaN and infinities.
fn widened(value: f32) -> Option<f64> {
    value.is_finite().then(|| ryu::Buffer::new().format_finite(value).parse::<f64>().ok()).flatten()
}

/// A (validated) tensor's elements as a flat JSON array, serialised element
/// by element.
#[derive(Debug, Clone, Copy)]
pub struct JsonElements<'a>(pub &'a Tensor);

impl Serialize for JsonElements<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for_each_element(self.0, |element| seq.serialize_element(&element))?;
        seq.end()
    }
}

/// A (validated) tensor's elements as JSON values, flat.
pub fn json_values(tensor: &Tensor) -> Vec<Value> {
    let mut values = Vec::new();
    let _ = for_each_element(tensor, |element| {
        values.push(Value::from(element));
        Ok::<(), std::convert::Infallible>(())
    });
    values
}

/// A numeric tensor's elements as `f64` (booleans as 0/1); empty for BYTES.
pub fn numbers(tensor: &Tensor) -> Vec<f64> {
    let mut out = Vec::new();
    let _ = for_each_element(tensor, |e| {
        out.push(match e {
            Element::Bool(b) => f64::from(u8::from(b)),
            Element::Unsigned(u) => u as f64,
            Element::Signed(i) => i as f64,
            Element::Float(f) => f.unwrap_or(f64::NAN),
            Element::Float32(f) => widened(f).unwrap_or(f64::NAN),
            Element::Text(_) | Element::Binary(_) => return Err(()),
        });
        Ok::<(), ()>(())
    });
    out
}

/// Numbers written as `datatype` elements (integers rounded and clamped).
pub fn encode(datatype: Datatype, values: &[f64]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(values.len() * element_size(datatype)?);
    for &v in values {
        let r = v.round();
        match datatype {
            Datatype::Bool => out.push(u8::from(v >= 0.5)),
            Datatype::Uint8 => out.push(r.clamp(0.0, u8::MAX as f64) as u8),
            Datatype::Int8 => out.extend((r.clamp(i8::MIN as f64, i8::MAX as f64) as i8).to_le_bytes()),
            Datatype::Uint16 => out.extend((r.clamp(0.0, u16::MAX as f64) as u16).to_le_bytes()),
            Datatype::Int16 => out.extend((r.clamp(i16::MIN as f64, i16::MAX as f64) as i16).to_le_bytes()),
            Datatype::Uint32 => out.extend((r.clamp(0.0, u32::MAX as f64) as u32).to_le_bytes()),
            Datatype::Int32 => out.extend((r.clamp(i32::MIN as f64, i32::MAX as f64) as i32).to_le_bytes()),
            Datatype::Uint64 => out.extend((r.max(0.0) as u64).to_le_bytes()),
            Datatype::Int64 => out.extend((r as i64).to_le_bytes()),
            Datatype::Fp16 => out.extend(half::f16::from_f64(v).to_le_bytes()),
            Datatype::Fp32 => out.extend((v as f32).to_le_bytes()),
            Datatype::Fp64 => out.extend(v.to_le_bytes()),
            Datatype::Bytes => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_and_built_values_agree() {
        let mut bytes = Vec::new();
        crate::tensor::push_bytes_element(&mut bytes, "héllo".as_bytes());
        crate::tensor::push_bytes_element(&mut bytes, &[0xff, 0]);
        let cases = [
            Tensor {
                name: "f".into(),
                datatype: Datatype::Fp32,
                shape: vec![8],
                data: [0.6f32, f32::NAN, -1.0, 1e-7, 3.4028235e38, f32::MIN_POSITIVE, 123456.79, f32::INFINITY]
                    .iter()
                    .flat_map(|f| f.to_le_bytes())
                    .collect(),
            },
            Tensor {
                name: "i".into(),
                datatype: Datatype::Int16,
                shape: vec![2],
                data: [-2i16, 7].iter().flat_map(|f| f.to_le_bytes()).collect(),
            },
            Tensor { name: "b".into(), datatype: Datatype::Bytes, shape: vec![2], data: bytes },
        ];
        for tensor in &cases {
            let streamed = serde_json::to_string(&JsonElements(tensor)).unwrap();
            let built = serde_json::to_string(&json_values(tensor)).unwrap();
            assert_eq!(streamed, built, "{}", tensor.name);
        }
        assert_eq!(
            serde_json::to_string(&JsonElements(&cases[0])).unwrap(),
            "[0.6,null,-1.0,1e-7,3.4028235e+38,1.1754944e-38,123456.79,null]"
        );
        // Each written float reads back to the same f32.
        let written: Vec<Option<f64>> =
            serde_json::from_str(&serde_json::to_string(&JsonElements(&cases[0])).unwrap()).unwrap();
        for (w, c) in written.iter().zip(cases[0].data.chunks_exact(4)) {
            let original = f32::from_le_bytes(c.try_into().unwrap());
            assert_eq!(w.map(|w| w as f32), original.is_finite().then_some(original));
        }
        assert_eq!(serde_json::to_string(&JsonElements(&cases[2])).unwrap(), r#"["héllo",[255,0]]"#);
    }
}
