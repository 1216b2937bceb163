//! A response's `parameters`. The receipt is written straight from its type
//! into the response body: no JSON value tree is built for it per request.
//! Other entries (a trace, `wall_us`) are JSON values. A response read back
//! (a finished job's) holds every entry, the receipt too, as values.

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use weir_observe::receipts::{CompactReceipt, Receipt};

/// The receipt a response carries: the totals, or every step's too.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiptParameter {
    Compact(CompactReceipt),
    Full(Receipt),
}

impl Serialize for ReceiptParameter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ReceiptParameter::Compact(receipt) => receipt.serialize(serializer),
            ReceiptParameter::Full(receipt) => receipt.serialize(serializer),
        }
    }
}

/// `parameters` of an inference response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResponseParameters {
    /// Written as `receipt` (it takes the place of a `receipt` value).
    pub receipt: Option<ReceiptParameter>,
    pub values: Map<String, Value>,
}

impl ResponseParameters {
    pub fn is_empty(&self) -> bool {
        self.receipt.is_none() && self.values.is_empty()
    }

    /// Every entry as a JSON value, the receipt's too: for protocols that
    /// carry parameters one by one (gRPC).
    pub fn into_values(self) -> Map<String, Value> {
        let mut values = self.values;
        if let Some(receipt) = self.receipt {
            values.insert("receipt".into(), serde_json::to_value(&receipt).unwrap_or(Value::Null));
        }
        values
    }
}

impl Serialize for ResponseParameters {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let replaced = |key: &str| self.receipt.is_some() && key == "receipt";
        let others = self.values.keys().filter(|key| !replaced(key)).count();
        let mut map = serializer.serialize_map(Some(others + usize::from(self.receipt.is_some())))?;
        // `receipt` sorts before every other key weir writes, as it did
        // when it was one of the values.
        if let Some(receipt) = &self.receipt {
            map.serialize_entry("receipt", receipt)?;
        }
        for (key, value) in self.values.iter().filter(|(key, _)| !replaced(key)) {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ResponseParameters {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(ResponseParameters { receipt: None, values: Map::deserialize(deserializer)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use weir_observe::receipts::receipt;

    #[test]
    fn the_typed_receipt_writes_what_its_value_would() {
        let full = receipt("inv-1".into(), Duration::from_micros(1234), Duration::from_micros(5), vec![]);
        let mut values = Map::new();
        values.insert("wall_us".into(), Value::from(7));
        values.insert("receipt".into(), Value::from("replaced"));
        for typed in [ReceiptParameter::Compact(full.compact()), ReceiptParameter::Full(full.clone())] {
            let as_value = serde_json::to_value(&typed).unwrap();
            let parameters = ResponseParameters { receipt: Some(typed), values: values.clone() };
            let written = serde_json::to_string(&parameters).unwrap();
            let expected = serde_json::json!({"receipt": as_value, "wall_us": 7});
            assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), expected);
            assert!(written.starts_with(r#"{"receipt":{"#), "{written}");
            // Read back, every entry is a value, and says the same.
            let read: ResponseParameters = serde_json::from_str(&written).unwrap();
            assert!(read.receipt.is_none());
            let rewritten = serde_json::to_string(&read).unwrap();
            assert_eq!(serde_json::from_str::<Value>(&rewritten).unwrap(), expected);
            assert_eq!(read.into_values(), parameters.into_values());
        }
    }
}
