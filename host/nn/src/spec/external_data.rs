//! ONNX external data, checked before ONNX Runtime sees a model.
//!
//! A tensor in an ONNX model may keep its bytes in another file: its
//! `TensorProto.external_data` holds `key`/`value` pairs, one of them
//! `location`, a path that ONNX Runtime opens relative to the model's folder
//! (or to the working directory, for a model given as bytes). Left alone,
//! a model could read any file the host can: `/etc/passwd`, `../../secret`,
//! a symlink out of the folder, or ONNX Runtime's in-memory marker
//! `*/_ORT_MEM_ADDR_/*`. So weir reads the protobuf itself, with a small
//! wire-format scanner (no generated code), and refuses:
//!
//! - any external data at all in a model loaded from bytes (it has no folder);
//! - a `location` that is empty, absolute, has a `..` component, a NUL, a `*`
//!   or ONNX Runtime's memory marker, or that leads out of the model's folder
//!   once symlinks are resolved;
//! - a tensor marked external (`data_location = EXTERNAL`) with no `location`;
//! - bytes that are not a well-formed protobuf (ONNX Runtime would refuse
//!   them too; weir does not guess what they mean).
//!
//! Covered: every `TensorProto` reachable from the `ModelProto`: the graph's
//! initializers and sparse initializers, node attributes (`t`, `tensors`,
//! `sparse_tensor(s)`) and their subgraphs (`g`, `graphs`, recursively),
//! functions (their nodes and attribute defaults), and training info graphs.
//!
//! The scanner never allocates from a length it reads (lengths are checked
//! against the bytes that remain) and nests at most [`MAX_DEPTH`] messages
//! deep (protobuf's own default limit), so no input makes it panic, loop or
//! run out of memory.

use std::path::{Component, Path};

/// How deep messages may nest (protobuf's default recursion limit).
pub const MAX_DEPTH: usize = 100;

/// ONNX Runtime's marker for "the offset is an address in this process".
const ORT_MEMORY_MARKER: &str = "_ORT_MEM_ADDR_";

/// One tensor that keeps (or may keep) its data outside the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    /// The tensor's name, when it has one.
    pub tensor: String,
    /// Every `location` value given (protobuf keeps the last; weir checks all).
    pub locations: Vec<String>,
    /// Whether `data_location` says EXTERNAL.
    pub marked_external: bool,
}

/// Why a model's external data is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalDataError {
    /// The bytes are not a well-formed protobuf message.
    Malformed(String),
    /// A reference that may not be followed.
    Refused(String),
}

/// Every tensor with external data in an ONNX `ModelProto`.
pub fn scan(model: &[u8]) -> Result<Vec<ExternalRef>, ExternalDataError> {
    let mut found = Vec::new();
    walk(model, Kind::Model, 0, &mut found).map_err(ExternalDataError::Malformed)?;
    Ok(found)
}

/// Check a model's external data. `folder` is the folder of a model loaded
/// from a file (`None` for bytes: then any external data is refused).
pub fn check(model: &[u8], folder: Option<&Path>) -> Result<(), ExternalDataError> {
    let refs = scan(model)?;
    let Some(folder) = folder else {
        return match refs.first() {
            None => Ok(()),
            Some(r) => Err(ExternalDataError::Refused(format!(
                "tensor {} keeps its data in an external file{}; a model given as bytes must be self-contained",
                tensor_name(r),
                r.locations.first().map(|l| format!(" (`{}`)", l.escape_debug())).unwrap_or_default()
            ))),
        };
    };
    let canonical_folder = folder.canonicalize().map_err(|e| {
        ExternalDataError::Refused(format!("cannot resolve the model's folder {}: {e}", folder.display()))
    })?;
    for r in &refs {
        if r.locations.is_empty() {
            // Nothing to follow, but nothing ONNX Runtime should try either.
            return Err(ExternalDataError::Refused(format!(
                "tensor {} has external data but names no location",
                tensor_name(r)
            )));
        }
        for location in &r.locations {
            check_location(location, &canonical_folder).map_err(|why| {
                ExternalDataError::Refused(format!(
                    "tensor {} keeps its data at `{}`, {why}; external data must stay in the model's folder",
                    tensor_name(r),
                    location.escape_debug()
                ))
            })?;
        }
    }
    Ok(())
}

fn tensor_name(r: &ExternalRef) -> String {
    if r.tensor.is_empty() {
        "(unnamed)".into()
    } else {
        format!("`{}`", r.tensor.escape_debug())
    }
}

/// One `location`, written relative to `folder` (already canonical).
pub fn check_location(location: &str, folder: &Path) -> Result<(), String> {
    check_location_text(location)?;
    // Symlinks: the deepest part of the path that exists must resolve
    // inside the folder (the rest cannot lead anywhere yet).
    let mut candidate = folder.join(location);
    loop {
        match candidate.canonicalize() {
            Ok(real) if real.starts_with(folder) => return Ok(()),
            Ok(real) => return Err(format!("which resolves to {}, outside it", real.display())),
            Err(_) => {
                if !candidate.pop() || !candidate.starts_with(folder) {
                    return Ok(());
                }
            }
        }
    }
}

/// The checks that need no file system.
pub fn check_location_text(location: &str) -> Result<(), String> {
    if location.is_empty() {
        return Err("an empty path".into());
    }
    if location.contains('\0') {
        return Err("a path with a NUL byte".into());
    }
    if location.contains('*') || location.contains(ORT_MEMORY_MARKER) {
        return Err("ONNX Runtime's in-memory marker (or a `*`)".into());
    }
    let path = Path::new(location);
    // `\` and a drive letter are separators and roots on Windows.
    let windows_root = location.starts_with('\\') || location.as_bytes().get(1) == Some(&b':');
    if path.is_absolute() || path.has_root() || windows_root {
        return Err("an absolute path".into());
    }
    let dotdot = location.split(['/', '\\']).any(|part| part == "..")
        || path.components().any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)));
    if dotdot {
        return Err("a path with a `..` component".into());
    }
    Ok(())
}

/// The message types the scanner descends into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    SparseTensor,
    Function,
    TrainingInfo,
}

/// Which fields of `kind` are messages worth a look, and of what kind.
fn child(kind: Kind, field: u64) -> Option<Kind> {
    use Kind::*;
    Some(match (kind, field) {
        // ModelProto: graph = 7, training_info = 20, functions = 25.
        (Model, 7) => Graph,
        (Model, 20) => TrainingInfo,
        (Model, 25) => Function,
        // GraphProto: node = 1, initializer = 5, sparse_initializer = 15.
        (Graph, 1) => Node,
        (Graph, 5) => Tensor,
        (Graph, 15) => SparseTensor,
        // NodeProto: attribute = 5.
        (Node, 5) => Attribute,
        // AttributeProto: t = 5, g = 6, tensors = 10, graphs = 11,
        // sparse_tensor = 22, sparse_tensors = 23.
        (Attribute, 5 | 10) => Tensor,
        (Attribute, 6 | 11) => Graph,
        (Attribute, 22 | 23) => SparseTensor,
        // SparseTensorProto: values = 1, indices = 2.
        (SparseTensor, 1 | 2) => Tensor,
        // FunctionProto: node = 7, attribute_proto = 11.
        (Function, 7) => Node,
        (Function, 11) => Attribute,
        // TrainingInfoProto: initialization = 1, algorithm = 2.
        (TrainingInfo, 1 | 2) => Graph,
        // (TensorProto's external_data = 13 is read by `walk` itself.)
        _ => return None,
    })
}

/// TensorProto fields read as values.
const TENSOR_NAME: u64 = 8;
const TENSOR_DATA_LOCATION: u64 = 14;
const EXTERNAL: u64 = 1;

fn walk(bytes: &[u8], kind: Kind, depth: usize, found: &mut Vec<ExternalRef>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("messages nest more than {MAX_DEPTH} deep"));
    }
    let mut reader = Reader { bytes, at: 0 };
    let mut tensor = ExternalRef { tensor: String::new(), locations: Vec::new(), marked_external: false };
    let mut has_external_data = false;
    while let Some((field, value)) = reader.field()? {
        match value {
            Value::Bytes(inner) => match (kind, field) {
                (Kind::Tensor, TENSOR_NAME) => tensor.tensor = String::from_utf8_lossy(inner).into_owned(),
                (Kind::Tensor, 13) => {
                    has_external_data = true;
                    tensor.locations.extend(entry_locations(inner)?);
                }
                _ => {
                    if let Some(kind) = child(kind, field) {
                        walk(inner, kind, depth + 1, found)?;
                    }
                }
            },
            // Protobuf reads an enum as a 64-bit varint cut to 32 bits.
            Value::Varint(v) if kind == Kind::Tensor && field == TENSOR_DATA_LOCATION => {
                tensor.marked_external |= v as u32 == EXTERNAL as u32;
            }
            _ => {}
        }
    }
    if kind == Kind::Tensor && (has_external_data || tensor.marked_external) {
        found.push(tensor);
    }
    Ok(())
}

/// A `StringStringEntryProto` (`key = 1`, `value = 2`): its values when
/// any of its keys is `location`. Protobuf keeps the last key and the last
/// value; every one is returned so that each is checked (and an entry with
/// no value at all is the empty location, protobuf's default).
fn entry_locations(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut reader = Reader { bytes, at: 0 };
    let mut is_location = false;
    let mut values = Vec::new();
    while let Some((field, value)) = reader.field()? {
        if let Value::Bytes(text) = value {
            match field {
                1 => is_location |= text == b"location",
                2 => values.push(String::from_utf8_lossy(text).into_owned()),
                _ => {}
            }
        }
    }
    if !is_location {
        return Ok(Vec::new());
    }
    if values.is_empty() {
        values.push(String::new());
    }
    Ok(values)
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Protobuf's wire format, read forward; every length is checked against
/// what remains.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err(format!("a varint runs past the end at byte {}", self.at));
            };
            self.at += 1;
            if i == 9 && byte > 1 {
                return Err(format!("a varint overflows 64 bits at byte {}", self.at));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("a varint is longer than 10 bytes at byte {}", self.at))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let left = self.bytes.len() - self.at;
        if n > left as u64 {
            return Err(format!("a field claims {n} bytes at byte {}, {left} remain", self.at));
        }
        let start = self.at;
        self.at += n as usize;
        Ok(&self.bytes[start..self.at])
    }

    /// The next field, `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let at = self.at;
        let tag = self.varint()?;
        if tag > u64::from(u32::MAX) || tag >> 3 == 0 {
            return Err(format!("bad field tag {tag} at byte {at}"));
        }
        let field = tag >> 3;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            3 => {
                self.skip_group(field)?;
                Value::Fixed
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            other => return Err(format!("wire type {other} at byte {at} is not protobuf")),
        };
        Ok(Some((field, value)))
    }

    /// A (deprecated) group: fields up to its end tag; no nesting beyond
    /// `MAX_DEPTH`.
    fn skip_group(&mut self, field: u64) -> Result<(), String> {
        let mut open = vec![field];
        while let Some(&current) = open.last() {
            let at = self.at;
            let tag = self.varint()?;
            if tag > u64::from(u32::MAX) || tag >> 3 == 0 {
                return Err(format!("bad field tag {tag} at byte {at}"));
            }
            match tag & 7 {
                0 => drop(self.varint()?),
                1 => drop(self.take(8)?),
                2 => {
                    let n = self.varint()?;
                    self.take(n)?;
                }
                3 => {
                    if open.len() >= MAX_DEPTH {
                        return Err(format!("groups nest more than {MAX_DEPTH} deep"));
                    }
                    open.push(tag >> 3);
                }
                4 if tag >> 3 == current => drop(open.pop()),
                5 => drop(self.take(4)?),
                _ => return Err(format!("a group is not closed properly at byte {at}")),
            }
        }
        Ok(())
    }
}

/// A protobuf encoder just large enough to build ONNX models in tests.
#[cfg(test)]
pub(crate) mod encode {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    pub fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }

    /// A `TensorProto` named `name`, its data at `location` (EXTERNAL).
    pub fn external_tensor(name: &str, location: &str) -> Vec<u8> {
        let mut tensor = Vec::new();
        varint_field(&mut tensor, 1, 4); // dims
        varint_field(&mut tensor, 2, 1); // data_type FLOAT
        bytes_field(&mut tensor, 8, name.as_bytes());
        for (key, value) in [("location", location), ("offset", "0"), ("length", "16")] {
            let mut entry = Vec::new();
            bytes_field(&mut entry, 1, key.as_bytes());
            bytes_field(&mut entry, 2, value.as_bytes());
            bytes_field(&mut tensor, 13, &entry);
        }
        varint_field(&mut tensor, 14, 1); // data_location EXTERNAL
        tensor
    }

    /// A `ModelProto` whose graph has `initializers` (encoded TensorProtos).
    pub fn model(initializers: &[Vec<u8>]) -> Vec<u8> {
        let mut graph = Vec::new();
        bytes_field(&mut graph, 2, b"g");
        for tensor in initializers {
            bytes_field(&mut graph, 5, tensor);
        }
        model_with_graph(&graph)
    }

    pub fn model_with_graph(graph: &[u8]) -> Vec<u8> {
        let mut model = Vec::new();
        varint_field(&mut model, 1, 9); // ir_version
        bytes_field(&mut model, 2, b"weir-test"); // producer_name
        bytes_field(&mut model, 7, graph);
        model
    }
}

#[cfg(test)]
mod tests;
