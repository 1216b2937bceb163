//! An input's `data` (nested or flat JSON arrays) decoded straight into
//! little-endian tensor bytes, element by element: no `serde_json::Value`
//! per element, nothing allocated from the shape before the data has shown
//! it holds that many elements, and the first surplus element is an error.

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use weir_core::tensor::{element_size, push_bytes_element};
use weir_core::Datatype;

/// What one leaf was, for error messages.
enum Leaf<'a> {
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(&'a str),
}

/// What kind of element it is, never its value: error messages are
/// logged and exported, and must not carry the data they are about.
impl fmt::Display for Leaf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leaf::Bool(_) => f.write_str("a boolean"),
            Leaf::Unsigned(_) | Leaf::Signed(_) => f.write_str("an integer"),
            Leaf::Float(_) => f.write_str("a fractional number"),
            Leaf::Text(t) => write!(f, "a string of {} bytes", t.len()),
        }
    }
}

/// Decoding state shared by every nesting level.
struct Decoder {
    datatype: Datatype,
    expected: usize,
    count: usize,
    out: Vec<u8>,
    /// Why decoding stopped, when it was an element (serde carries only text).
    failure: Option<DataError>,
}

/// Why `data` could not be decoded (the caller adds where).
#[derive(Debug)]
pub(crate) enum DataError {
    /// More leaves than the shape holds (counting stopped at the first extra).
    TooMany,
    /// Fewer leaves than the shape holds.
    TooFew(usize),
    /// Element `index` has the wrong type or is out of range.
    Element { index: usize, found: String, expected: &'static str },
    /// Not JSON, or an object/null where an element belongs.
    Json(String),
}

/// Decode `raw` (the JSON text of `data`) as `expected` elements of `datatype`.
pub(crate) fn decode_data(raw: &str, datatype: Datatype, expected: usize) -> Result<Vec<u8>, DataError> {
    // Every element takes at least one byte of JSON, so the body bounds what
    // is reserved here, whatever the shape claims.
    let reserve = match element_size(datatype) {
        Some(size) => expected.min(raw.len()).saturating_mul(size),
        None => raw.len(),
    };
    let mut decoder = Decoder { datatype, expected, count: 0, out: Vec::with_capacity(reserve), failure: None };
    let mut json = serde_json::Deserializer::from_str(raw);
    let result = Level(&mut decoder).deserialize(&mut json).and_then(|()| json.end());
    if let Err(error) = result {
        return Err(decoder.failure.take().unwrap_or_else(|| DataError::Json(error.to_string())));
    }
    if decoder.count != expected {
        return Err(DataError::TooFew(decoder.count));
    }
    Ok(decoder.out)
}

const INTEGER: &str = "an integer in range";
const NUMBER: &str = "a number";
const BOOLEAN: &str = "true or false";
const STRING: &str = "a string";

/// One nesting level of `data`.
struct Level<'a>(&'a mut Decoder);

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Level<'_> {
    fn leaf<E: de::Error>(self, leaf: Leaf<'_>) -> Result<(), E> {
        let decoder = self.0;
        let index = decoder.count;
        decoder.count += 1;
        let failure = if decoder.count > decoder.expected {
            DataError::TooMany
        } else {
            match encode(decoder.datatype, &leaf, &mut decoder.out) {
                Ok(()) => return Ok(()),
                Err(expected) => DataError::Element { index, found: leaf.to_string(), expected },
            }
        };
        decoder.failure = Some(failure);
        Err(E::custom("stopped at an element"))
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let decoder = self.0;
        while seq.next_element_seed(Level(&mut *decoder))?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.leaf(Leaf::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.leaf(Leaf::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.leaf(Leaf::Signed(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.leaf(Leaf::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.leaf(Leaf::Text(v))
    }
}

/// Append one element in little-endian; on mismatch say what was expected.
fn encode(datatype: Datatype, leaf: &Leaf<'_>, out: &mut Vec<u8>) -> Result<(), &'static str> {
    fn int<T: TryFrom<i64> + TryFrom<u64>>(leaf: &Leaf<'_>) -> Result<T, &'static str> {
        match *leaf {
            Leaf::Unsigned(u) => T::try_from(u).map_err(|_| INTEGER),
            Leaf::Signed(i) => T::try_from(i).map_err(|_| INTEGER),
            _ => Err(INTEGER),
        }
    }
    fn float(leaf: &Leaf<'_>) -> Result<f64, &'static str> {
        match *leaf {
            Leaf::Unsigned(u) => Ok(u as f64),
            Leaf::Signed(i) => Ok(i as f64),
            Leaf::Float(x) => Ok(x),
            _ => Err(NUMBER),
        }
    }
    match datatype {
        Datatype::Bool => match leaf {
            Leaf::Bool(b) => out.push(u8::from(*b)),
            _ => return Err(BOOLEAN),
        },
        Datatype::Uint8 => out.extend(int::<u8>(leaf)?.to_le_bytes()),
        Datatype::Uint16 => out.extend(int::<u16>(leaf)?.to_le_bytes()),
        Datatype::Uint32 => out.extend(int::<u32>(leaf)?.to_le_bytes()),
        Datatype::Uint64 => out.extend(int::<u64>(leaf)?.to_le_bytes()),
        Datatype::Int8 => out.extend(int::<i8>(leaf)?.to_le_bytes()),
        Datatype::Int16 => out.extend(int::<i16>(leaf)?.to_le_bytes()),
        Datatype::Int32 => out.extend(int::<i32>(leaf)?.to_le_bytes()),
        Datatype::Int64 => out.extend(int::<i64>(leaf)?.to_le_bytes()),
        Datatype::Fp16 => out.extend(half::f16::from_f64(float(leaf)?).to_le_bytes()),
        Datatype::Fp32 => out.extend((float(leaf)? as f32).to_le_bytes()),
        Datatype::Fp64 => out.extend(float(leaf)?.to_le_bytes()),
        Datatype::Bytes => match leaf {
            Leaf::Text(text) if u32::try_from(text.len()).is_ok() => push_bytes_element(out, text.as_bytes()),
            _ => return Err(STRING),
        },
    }
    Ok(())
}
