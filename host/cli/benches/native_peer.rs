//! The native limit, as a benchmark peer (not part of weir): a minimal axum
//! server speaking the same OIP v2 JSON as `weir serve` for the digits
//! model — parse the request, pixels / 16, one ONNX Runtime run, the label
//! and the top-3 scores back — with no Wasm, no pipeline, no receipts.
//! `scripts/bench-layered.sh` runs it beside weir.
//!
//!     cargo bench -p weir-cli --bench native_peer -- 127.0.0.1:18090 examples/models/digits.onnx

use std::sync::{Arc, Mutex};

// The same allocator as `weir`, so the comparison is of the work, not of mallocs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use ort::session::Session;
use ort::value::Tensor as OrtTensor;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    inputs: Vec<InputTensor>,
}

#[derive(Deserialize)]
struct InputTensor {
    shape: Vec<i64>,
    data: Vec<f32>,
}

#[derive(Serialize)]
struct InferResponse {
    model_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    outputs: Vec<OutputTensor>,
}

#[derive(Serialize)]
struct OutputTensor {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<usize>,
    data: serde_json::Value,
}

/// One session per core, each behind its own lock (a session runs one call at a time).
struct Sessions(Vec<Mutex<Session>>);

impl Sessions {
    fn run(&self, rows: usize, pixels: Vec<f32>) -> Result<(Vec<i64>, Vec<f32>), String> {
        let slot = self.0.iter().find_map(|s| s.try_lock().ok());
        let mut session = match slot {
            Some(session) => session,
            None => self.0[0].lock().map_err(|e| e.to_string())?,
        };
        let input = OrtTensor::<f32>::from_array((vec![rows as i64, 64], pixels)).map_err(|e| e.to_string())?;
        let outputs = session.run(ort::inputs!["input" => input]).map_err(|e| e.to_string())?;
        let (_, labels) = outputs["label"].try_extract_tensor::<i64>().map_err(|e| e.to_string())?;
        let (_, probabilities) = outputs["probabilities"].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        Ok((labels.to_vec(), probabilities.to_vec()))
    }
}

async fn infer(
    State(sessions): State<Arc<Sessions>>,
    Json(request): Json<InferRequest>,
) -> Result<Json<InferResponse>, (StatusCode, String)> {
    let bad = |why: &str| (StatusCode::BAD_REQUEST, why.to_string());
    let tensor = request.inputs.into_iter().next().ok_or_else(|| bad("no input"))?;
    let rows = *tensor.shape.first().ok_or_else(|| bad("no shape"))? as usize;
    if tensor.shape != [rows as i64, 64] || tensor.data.len() != rows * 64 {
        return Err(bad("pixels must be [n, 64]"));
    }
    let pixels: Vec<f32> = tensor.data.iter().map(|v| v / 16.0).collect();
    let (labels, probabilities) = sessions.run(rows, pixels).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?;
    // Top 3 per row, as the digits pipeline's `topk` step answers.
    let (mut indices, mut scores) = (Vec::new(), Vec::new());
    for row in probabilities.chunks(10) {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|a, b| row[*b].total_cmp(&row[*a]));
        for &class in &order[..3] {
            indices.push(class as i64);
            scores.push(row[class]);
        }
    }
    Ok(Json(InferResponse {
        model_name: "digits",
        id: request.id,
        outputs: vec![
            OutputTensor { name: "label", datatype: "INT64", shape: vec![rows], data: labels.into() },
            OutputTensor { name: "top_classes", datatype: "INT64", shape: vec![rows, 3], data: indices.into() },
            OutputTensor { name: "top_scores", datatype: "FP32", shape: vec![rows, 3], data: scores.into() },
        ],
    }))
}

fn main() {
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let listen = args.first().cloned().unwrap_or_else(|| "127.0.0.1:18090".into());
    let model = args.get(1).cloned().unwrap_or_else(|| "examples/models/digits.onnx".into());
    weir_nn::library::init().expect("ONNX Runtime (run scripts/setup.sh)");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sessions = (0..cores)
        .map(|_| {
            let session = Session::builder().unwrap().with_intra_threads(1).unwrap().commit_from_file(&model).unwrap();
            Mutex::new(session)
        })
        .collect();
    let app = Router::new()
        .route("/v2/models/digits/infer", post(infer))
        .route("/v2/health/ready", get(|| async { "ok" }))
        .with_state(Arc::new(Sessions(sessions)));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
        eprintln!("native peer: serving on http://{listen}");
        axum::serve(listener, app).await.unwrap();
    });
}
