//! A step that misbehaves on purpose, chosen by config `mode`. The host must
//! contain every one of these without crashing, hanging or leaking access.
//!
//! Modes that probe the sandbox (`read-file`, `read-env`, `socket`) return a
//! BYTES tensor `outcome` that starts with `denied:` when the host refused,
//! or `LEAKED:` when the guest got through.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use weir_sdk::{config, export_step, Datatype, Inputs, Step, StepError, Tensor};

struct Hostile;

static CALLS: AtomicU64 = AtomicU64::new(0);

impl Step for Hostile {
    fn process(inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        let mode = config::require::<String>("mode")?;
        match mode.as_str() {
            "echo" => Ok(inputs.into_vec()),
            "infinite-loop" => loop {
                black_box(0u64);
            },
            // Parks in a host call (wasi:clocks), where epochs cannot reach;
            // for an hour, or config `ms` milliseconds.
            "sleep" => {
                let ms = config::parse_or::<u64>("ms", 3_600_000)?;
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(inputs.into_vec())
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            // Deep recursion of small frames: exhausts the wasm call stack.
            "stack-overflow" => Ok(vec![outcome(&format!("{}", recurse(black_box(1))))?]),
            // Big frames: exhausts Rust's shadow stack in linear memory first.
            "shadow-stack-overflow" => Ok(vec![outcome(&format!("{}", recurse_big(black_box(1))))?]),
            "panic" => panic!("hostile guest panics on purpose"),
            "malformed-output" => Ok(vec![Tensor {
                name: "bad".into(),
                datatype: Datatype::Fp32,
                shape: vec![4],
                data: vec![0; 12],
            }]),
            "read-file" => {
                let path = config::parse_or::<String>("path", "/etc/passwd".into())?;
                Ok(vec![outcome(&match std::fs::read(&path) {
                    Ok(bytes) => format!("LEAKED: read {} bytes of {path}", bytes.len()),
                    Err(e) => format!("denied: {e}"),
                })?])
            }
            "read-env" => {
                let var = config::require::<String>("var")?;
                let all: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                Ok(vec![outcome(&match std::env::var(&var) {
                    Ok(value) => format!("LEAKED: {var}={value}"),
                    Err(_) if !all.is_empty() => format!("LEAKED: environment has {all:?}"),
                    Err(e) => format!("denied: {e}"),
                })?])
            }
            "socket" => {
                let addr = config::require::<String>("addr")?;
                Ok(vec![outcome(&match std::net::TcpStream::connect(&addr) {
                    Ok(_) => format!("LEAKED: connected to {addr}"),
                    Err(e) => format!("denied: {e}"),
                })?])
            }
            // GET `url`, following up to `follow` redirects itself (each a
            // new request the host checks). Outcome `LEAKED: <status> <body>`
            // when a response came back.
            "http-get" => {
                let mut url = config::require::<String>("url")?;
                let follow = config::parse_or::<u32>("follow", 0)?;
                let mut outcome = String::new();
                for hop in 0..=follow {
                    match weir_sdk::http::get(&url) {
                        Ok(response) if (300..400).contains(&response.status) && hop < follow => {
                            url = response.header("location").unwrap_or_default().to_string();
                        }
                        Ok(response) => {
                            outcome = format!("LEAKED: {} {}", response.status, String::from_utf8_lossy(&response.body));
                            break;
                        }
                        Err(e) => {
                            outcome = format!("denied: {e} (at {url})");
                            break;
                        }
                    }
                }
                Ok(vec![self::outcome(&outcome)?])
            }
            // Load a model by name: must fail unless granted.
            "nn-load-by-name" => {
                let model = config::require::<String>("model")?;
                Ok(vec![outcome(&match weir_sdk::nn::Model::load(&model) {
                    Ok(_) => format!("LEAKED: loaded model {model}"),
                    Err(e) => format!("denied: {e:?}"),
                })?])
            }
            // Hand the host raw model bytes: must fail unless granted.
            "nn-load-bytes" => {
                use weir_sdk::nn::graph::{load, ExecutionTarget, GraphEncoding};
                let bytes = config::parse_or::<String>("bytes", "not a model".into())?;
                Ok(vec![outcome(&match load(&[bytes.into_bytes()], GraphEncoding::Onnx, ExecutionTarget::Cpu) {
                    Ok(_) => "LEAKED: loaded model bytes".to_string(),
                    Err(e) => format!("denied: {:?}: {}", e.code(), e.data()),
                })?])
            }
            // Run the model named by config `model` on every input, under
            // the input's own name; answer its outputs.
            "nn-run" => {
                let model = weir_sdk::nn::Model::load(&config::require::<String>("model")?)?;
                let inputs = inputs.into_vec();
                let named: Vec<(&str, &Tensor)> = inputs.iter().map(|t| (t.name.as_str(), t)).collect();
                model.run(&named)
            }
            // Make the host hold wasi:nn resources without bound (each kept,
            // never dropped): tensors of `mib` MiB copied from one buffer,
            // execution contexts, or inference outputs. Needs no model grant
            // for tensors. Ends only when the host refuses.
            "nn-tensor-flood" => {
                use weir_sdk::nn::nn_tensor::{Tensor as NnTensor, TensorType};
                let mib = config::parse_or::<u32>("mib", 4)?;
                let buffer = vec![7u8; mib as usize * (1 << 20)];
                let mut hoard = Vec::new();
                loop {
                    hoard.push(NnTensor::new(&[mib * (1 << 18)], TensorType::Fp32, &buffer));
                }
            }
            "nn-context-flood" => {
                let model = config::require::<String>("model")?;
                let graph = weir_sdk::nn::graph::load_by_name(&model)
                    .map_err(|e| StepError::Failed(format!("{:?}: {}", e.code(), e.data())))?;
                let mut hoard = Vec::new();
                loop {
                    hoard.push(graph.init_execution_context());
                }
            }
            "nn-output-flood" => {
                use weir_sdk::nn::nn_tensor::{Tensor as NnTensor, TensorType};
                let model = config::require::<String>("model")?;
                let input = config::require::<String>("input")?;
                let graph = weir_sdk::nn::graph::load_by_name(&model)
                    .map_err(|e| StepError::Failed(format!("{:?}: {}", e.code(), e.data())))?;
                let context = graph.init_execution_context().map_err(|e| StepError::Failed(e.data()))?;
                let x = inputs.get(&input)?;
                let dims: Vec<u32> = x.shape.iter().map(|&d| d as u32).collect();
                let mut hoard = Vec::new();
                loop {
                    let tensor = NnTensor::new(&dims, TensorType::Fp32, &x.data);
                    let outputs =
                        context.compute(vec![(input.clone(), tensor)]).map_err(|e| StepError::Failed(e.data()))?;
                    hoard.push(outputs);
                }
            }
            // Keep a core busy for `ms` milliseconds, then echo.
            "busy" => {
                let ms = config::parse_or::<u64>("ms", 100)?;
                let started = std::time::Instant::now();
                while started.elapsed() < std::time::Duration::from_millis(ms) {
                    black_box(0u64);
                }
                Ok(inputs.into_vec())
            }
            // A fixed amount of work (not of time): its CPU cost does not
            // depend on how busy the machine is.
            "work" => {
                let iterations = config::parse_or::<u64>("iterations", 1_000_000)?;
                let mut x = black_box(1u64);
                for _ in 0..iterations {
                    x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
                }
                black_box(x);
                Ok(inputs.into_vec())
            }
            "counter" => {
                // State kept in the instance: a fresh instance per call must
                // always answer 1.
                let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(vec![Tensor::new("calls", vec![1], &[calls])?])
            }
            "chatty" => {
                println!("hello from stdout");
                eprintln!("hello from stderr");
                Ok(inputs.into_vec())
            }
            // Writes config `bytes` (default 4 MiB) to stdout in 1 KiB lines,
            // without panicking when the host stops taking them; says how
            // far it got.
            "flood" => {
                use std::io::Write;
                let bytes = config::parse_or::<usize>("bytes", 4 << 20)?;
                let line = format!("{}\n", "x".repeat(1023));
                let mut stdout = std::io::stdout();
                let mut written = 0;
                let mut refused = None;
                while written < bytes {
                    match stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush()) {
                        Ok(()) => written += line.len(),
                        Err(e) => {
                            refused = Some(e.to_string());
                            break;
                        }
                    }
                }
                Ok(vec![outcome(&format!("wrote {written} bytes; refused: {refused:?}"))?])
            }
            other => Err(StepError::InvalidInput(format!("unknown mode `{other}`"))),
        }
    }
}

fn outcome(text: &str) -> Result<Tensor, StepError> {
    Ok(Tensor::from_strings("outcome", vec![1], &[text])?)
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    recurse(depth.wrapping_mul(3).wrapping_add(1)).wrapping_mul(depth) ^ depth
}

#[allow(unconditional_recursion)]
fn recurse_big(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    recurse_big(black_box(frame[7] + 1)) + frame[3]
}

export_step!(Hostile);
