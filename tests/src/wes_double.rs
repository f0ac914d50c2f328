//! A TEST DOUBLE of a hostile GA4GH WES server (Workflow Execution Service API 1.1): it is not a
//! real WES server. It answers the few routes a node uses (`service-info`, `GET /runs`,
//! `POST /runs`, `GET /runs/{id}/status`, `GET /runs/{id}`) with the shapes the API defines,
//! and completes every run at once with the output locations the test chose: `file://` paths
//! to the node's own key files, or addresses on another server. It records what the node sent
//! (form fields, attachment names and sizes, headers), so the test can see what reached it.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Multipart, Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Value, json};

/// One `POST /runs` as the double received it.
#[derive(Debug, Clone, Default)]
pub struct ReceivedRun {
    pub fields: Vec<(String, String)>,
    /// (file name, bytes) of every `workflow_attachment`.
    pub attachments: Vec<(String, Vec<u8>)>,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// The `outputs` object every finished run reports.
    outputs: Value,
    runs: Vec<ReceivedRun>,
}

/// A running double; stops with the test's runtime.
#[derive(Clone)]
pub struct HostileWes {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl HostileWes {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/ga4gh/wes/v1/service-info", get(service_info))
            .route("/ga4gh/wes/v1/runs", get(list_runs).post(submit))
            .route("/ga4gh/wes/v1/runs/{id}/status", get(status))
            .route("/ga4gh/wes/v1/runs/{id}", get(run_log))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, inner }
    }

    /// Sets the outputs every run reports from now on (the CWL output object).
    pub fn answer_with(&self, outputs: Value) {
        self.inner.lock().unwrap().outputs = outputs;
    }

    /// Every run submitted so far.
    pub fn runs(&self) -> Vec<ReceivedRun> {
        self.inner.lock().unwrap().runs.clone()
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

async fn service_info() -> axum::Json<Value> {
    axum::Json(json!({
        "workflow_type_versions": {"CWL": {"workflow_type_version": ["v1.2"]}},
        "supported_wes_versions": ["1.1.0"],
        "system_state_counts": {}
    }))
}

async fn list_runs(State(inner): Shared) -> axum::Json<Value> {
    let n = inner.lock().unwrap().runs.len();
    axum::Json(
        json!({"runs": (0..n).map(|i| json!({"run_id": format!("run{i}"), "state": "COMPLETE"})).collect::<Vec<_>>()}),
    )
}

async fn submit(State(inner): Shared, headers: HeaderMap, mut form: Multipart) -> axum::Json<Value> {
    let mut run = ReceivedRun {
        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from),
        ..Default::default()
    };
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or("").to_string();
        let file = field.file_name().map(String::from);
        let bytes = field.bytes().await.unwrap_or_default().to_vec();
        match file {
            Some(file) if name == "workflow_attachment" => run.attachments.push((file, bytes)),
            _ => run.fields.push((name, String::from_utf8_lossy(&bytes).into_owned())),
        }
    }
    let mut inner = inner.lock().unwrap();
    inner.runs.push(run);
    axum::Json(json!({"run_id": format!("run{}", inner.runs.len() - 1)}))
}

async fn status(Path(id): Path<String>) -> axum::Json<Value> {
    axum::Json(json!({"run_id": id, "state": "COMPLETE"}))
}

async fn run_log(State(inner): Shared, Path(id): Path<String>) -> axum::Json<Value> {
    let outputs = inner.lock().unwrap().outputs.clone();
    axum::Json(json!({
        "run_id": id, "state": "COMPLETE",
        "run_log": {"name": "beagle", "exit_code": 0, "stderr": ""},
        "outputs": outputs
    }))
}
