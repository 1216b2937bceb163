//! Tiny ONNX models written byte by byte (protobuf wire format), for tests
//! that need a model of a known cost without a model file in the repository.

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }

    fn int(mut self, field: u64, value: u64) -> Self {
        self.varint(field << 3);
        self.varint(value);
        self
    }

    fn bytes(mut self, field: u64, value: &[u8]) -> Self {
        self.varint((field << 3) | 2);
        self.varint(value.len() as u64);
        self.0.extend_from_slice(value);
        self
    }

    fn text(self, field: u64, value: &str) -> Self {
        self.bytes(field, value.as_bytes())
    }

    fn message(self, field: u64, value: Message) -> Self {
        self.bytes(field, &value.0)
    }
}

const FLOAT: u64 = 1;
const INT64: u64 = 7;

/// `ValueInfoProto` of a tensor with `elem_type` and fixed `dims`.
fn value_info(name: &str, elem_type: u64, dims: &[u64]) -> Message {
    let shape = dims.iter().fold(Message::default(), |shape, &d| shape.message(1, Message::default().int(1, d)));
    let tensor = Message::default().int(1, elem_type).message(2, shape);
    Message::default().text(1, name).message(2, Message::default().message(1, tensor))
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Message {
    let node = inputs.iter().fold(Message::default(), |m, i| m.text(1, i));
    outputs.iter().fold(node, |m, o| m.text(2, o)).text(3, &format!("{op}_{}", outputs[0])).text(4, op)
}

/// A model whose cost the caller picks at run time: input `n` (INT64 `[1]`)
/// makes an `n`×`n` matrix of zeros and multiplies it by itself, `rounds`
/// times in a chain; output `sum` (FLOAT `[1, 1]`). About `rounds`·2n³
/// floating-point operations, from a file of a few hundred bytes.
pub fn matmul_chain(rounds: usize) -> Vec<u8> {
    let mut graph = Message::default()
        .message(1, node("Concat", &["n", "n"], &["shape"]).message(5, attribute_int("axis", 0)))
        .message(1, node("ConstantOfShape", &["shape"], &["m0"]));
    for round in 0..rounds {
        let (from, to) = (format!("m{round}"), format!("m{}", round + 1));
        graph = graph.message(1, node("MatMul", &[&from, &from], &[&to]));
    }
    let last = format!("m{rounds}");
    graph = graph
        .message(1, node("ReduceSum", &[&last], &["sum"]))
        .text(2, "matmul_chain")
        .message(11, value_info("n", INT64, &[1]))
        .message(12, value_info("sum", FLOAT, &[1, 1]));
    // ir_version 8, opset 13.
    Message::default().int(1, 8).message(7, graph).message(8, Message::default().text(1, "").int(2, 13)).0
}

/// `AttributeProto` of type INT.
fn attribute_int(name: &str, value: u64) -> Message {
    Message::default().text(1, name).int(3, value).int(20, 2)
}
