//! A TEST DOUBLE of a Cloudgene imputation server (the software behind the Michigan and TOPMed
//! Imputation Servers and AfriGen-D), written from Cloudgene's published REST API (v2): it is
//! not Cloudgene. No real Cloudgene server can run here, so this double answers as the real
//! server does (the same paths, `X-Auth-Token` header, multipart fields, numeric job states,
//! `positionInQueue`, step logs with typed messages, output parameters with downloadable files,
//! AES-encrypted result zips) and checks every request the client makes, recording anything
//! the real server would refuse as a violation the test asserts is empty.
//!
//! What a job does depends on its reference panel: `1000g-phase-3-v5` succeeds after waiting in
//! the queue, `hapmap-2` fails QC (reported only in the step log), `retired-panel` is retired
//! before its results are fetched, `garbled` answers its status with malformed JSON, and `slow`
//! runs until it is cancelled.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const APP: &str = "imputationserver2";
const PANELS: [(&str, &str); 5] = [
    ("apps@1000g-phase-3-v5@2.0.0", "1000 Genomes Phase 3 (Version 5)"),
    ("apps@hapmap-2@1.0.0", "HapMap 2"),
    ("apps@retired-panel@1.0.0", "A panel whose jobs are retired"),
    ("apps@garbled@1.0.0", "A panel whose job status is malformed"),
    ("apps@slow@1.0.0", "A panel whose jobs run until cancelled"),
];
const POPULATIONS: [&str; 4] = ["afr", "eur", "amr", "mixed"];

/// A job at the double.
#[derive(Debug, Clone)]
pub struct DoubleJob {
    pub refpanel: String,
    pub fields: HashMap<String, String>,
    pub files: Vec<(String, usize)>,
    pub status_polls: u32,
    pub cancelled: bool,
}

#[derive(Default)]
struct Inner {
    token: String,
    jobs: HashMap<String, DoubleJob>,
    requests: Vec<String>,
    violations: Vec<String>,
    next: u32,
}

/// A running double; stops with the test's runtime.
#[derive(Clone)]
pub struct CloudgeneDouble {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl CloudgeneDouble {
    /// Starts the double on a free loopback port, accepting only `token`.
    pub async fn start(token: &str) -> Self {
        let inner = Arc::new(Mutex::new(Inner { token: token.to_string(), ..Default::default() }));
        let app = Router::new()
            .route(&format!("/api/v2/server/apps/{APP}"), get(app_info))
            .route("/api/v2/server/counters", get(counters))
            .route(&format!("/api/v2/jobs/submit/{APP}"), post(submit))
            .route("/api/v2/jobs/{id}/status", get(status))
            .route("/api/v2/jobs/{id}/cancel", get(cancel))
            .route("/api/v2/jobs/{id}", get(details))
            .route("/results/{job}/{param}/{file}", get(download))
            .fallback(|req: axum::extract::Request| async move {
                (StatusCode::NOT_FOUND, format!("no route {} {}", req.method(), req.uri()))
            })
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, inner }
    }

    /// Requests the double refused (wrong header, field or value); empty when the client behaved.
    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    /// Every request, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The jobs submitted, by id.
    pub fn jobs(&self) -> HashMap<String, DoubleJob> {
        self.inner.lock().unwrap().jobs.clone()
    }
}

type Shared = Arc<Mutex<Inner>>;

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"success": false, "message": "The request requires user authentication."})),
    )
        .into_response()
}

/// Records the request and checks its token as Cloudgene does.
fn authorize(state: &Shared, headers: &HeaderMap, what: String) -> bool {
    let mut inner = state.lock().unwrap();
    inner.requests.push(what);
    headers.get("X-Auth-Token").and_then(|v| v.to_str().ok()) == Some(inner.token.as_str())
}

async fn app_info(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if !authorize(&state, &headers, format!("GET /api/v2/server/apps/{APP}")) {
        return unauthorized();
    }
    let values = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>();
    let populations: Vec<(&str, &str)> = POPULATIONS.iter().map(|p| (*p, *p)).collect();
    axum::Json(json!({
        "id": APP, "name": "Genotype Imputation (Minimac4)", "version": "2.0.7",
        "params": [
            {"id": "files", "type": "local_folder", "description": "Input Files (VCF)"},
            {"id": "refpanel", "type": "app_list", "description": "Reference Panel", "values": values(&PANELS)},
            {"id": "build", "type": "list", "description": "Array Build", "values": values(&[("hg19", "GRCh37/hg19"), ("hg38", "GRCh38/hg38")])},
            {"id": "r2Filter", "type": "list", "values": values(&[("0", "off"), ("0.001", "0.001"), ("0.1", "0.1"), ("0.2", "0.2"), ("0.3", "0.3")])},
            {"id": "phasing", "type": "list", "values": values(&[("eagle", "Eagle v2.4 (phased output)"), ("no_phasing", "No phasing")])},
            {"id": "population", "type": "list", "values": values(&populations)},
            {"id": "mode", "type": "list", "values": values(&[("qconly", "Quality Control Only"), ("imputation", "Quality Control & Imputation"), ("phasing", "Quality Control & Phasing Only")])},
            {"id": "password", "type": "text", "visible": false}
        ]
    }))
    .into_response()
}

async fn counters(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if !authorize(&state, &headers, "GET /api/v2/server/counters".into()) {
        return unauthorized();
    }
    let waiting = state.lock().unwrap().jobs.values().filter(|j| j.status_polls < 2 && !j.cancelled).count();
    axum::Json(json!({"complete": {"runs": 12}, "running": {"runs": 1}, "waiting": {"runs": waiting}, "users": 3, "queue": {"size": waiting}}))
        .into_response()
}

async fn submit(State(state): State<Shared>, headers: HeaderMap, mut multipart: Multipart) -> Response {
    if !authorize(&state, &headers, format!("POST /api/v2/jobs/submit/{APP}")) {
        return unauthorized();
    }
    let mut fields = HashMap::new();
    let mut files = Vec::new();
    let mut problems = Vec::new();
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().unwrap_or("").to_string();
        if name == "files" {
            let file_name = field.file_name().unwrap_or("").to_string();
            let bytes = field.bytes().await.unwrap_or_default();
            if bytes.len() < 2 || bytes[..2] != [0x1f, 0x8b] {
                problems.push(format!("file {file_name:?} is not gzip-compressed"));
            }
            files.push((file_name, bytes.len()));
        } else {
            let text = field.text().await.unwrap_or_default();
            if fields.insert(name.clone(), text).is_some() {
                problems.push(format!("field {name} sent twice"));
            }
        }
    }
    let allowed: [(&str, Vec<&str>); 6] = [
        ("refpanel", PANELS.iter().map(|(k, _)| *k).collect()),
        ("build", vec!["hg19", "hg38"]),
        ("phasing", vec!["eagle", "no_phasing"]),
        ("population", POPULATIONS.to_vec()),
        ("mode", vec!["qconly", "imputation", "phasing"]),
        ("r2Filter", vec!["0", "0.001", "0.1", "0.2", "0.3"]),
    ];
    for (name, values) in &allowed {
        match fields.get(*name) {
            None => problems.push(format!("field {name} missing")),
            Some(v) if !values.contains(&v.as_str()) => problems.push(format!("field {name}={v:?} not allowed")),
            _ => {}
        }
    }
    if fields.get("password").is_none_or(|p| p.len() < 8) {
        problems.push("field password missing or short".into());
    }
    for name in fields.keys() {
        if !allowed.iter().any(|(a, _)| a == name) && name != "password" {
            problems.push(format!("unknown field {name}"));
        }
    }
    if files.is_empty() {
        problems.push("no files".into());
    }
    let mut inner = state.lock().unwrap();
    if !problems.is_empty() {
        inner.violations.extend(problems.iter().cloned());
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"success": false, "message": problems.join("; ")})))
            .into_response();
    }
    inner.next += 1;
    let id = format!("job-20261129-1200{:02}", inner.next);
    let refpanel = fields["refpanel"].clone();
    inner.jobs.insert(id.clone(), DoubleJob { refpanel, fields, files, status_polls: 0, cancelled: false });
    axum::Json(json!({"id": id, "message": "Your job was successfully added to the job queue.", "success": true}))
        .into_response()
}

/// The job's state after `polls` status requests: it waits, runs, exports, then ends as its
/// panel dictates.
fn state_of(job: &DoubleJob) -> (i64, i64) {
    if job.cancelled {
        return (6, 0);
    }
    match job.status_polls {
        0 | 1 => (1, 2 - i64::from(job.status_polls)),
        2 => (2, 0),
        3 => (3, 0),
        _ => match job.refpanel.as_str() {
            "apps@hapmap-2@1.0.0" => (5, 0),
            "apps@retired-panel@1.0.0" => (7, 0),
            "apps@slow@1.0.0" => (2, 0),
            _ => (4, 0),
        },
    }
}

async fn status(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorize(&state, &headers, format!("GET /api/v2/jobs/{id}/status")) {
        return unauthorized();
    }
    let mut inner = state.lock().unwrap();
    let Some(job) = inner.jobs.get_mut(&id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"success": false, "message": format!("Job {id} not found.")})),
        )
            .into_response();
    };
    if job.refpanel == "apps@garbled@1.0.0" {
        return (StatusCode::OK, "{\"state\": <html>oops").into_response();
    }
    let (state_code, position) = state_of(job);
    job.status_polls += 1;
    axum::Json(json!({
        "application": "Genotype Imputation (Minimac4) 2.0.7", "applicationId": APP, "deletedOn": -1,
        "id": id, "name": id, "positionInQueue": position, "running": state_code == 2, "state": state_code,
        "outputParams": [], "steps": [], "logs": ""
    }))
    .into_response()
}

fn steps(job: &DoubleJob) -> Value {
    let mut steps = vec![json!({"name": "Input Validation", "logMessages": [
        {"message": format!("{} valid VCF file(s) found.<br><br>Samples: 100<br>Chromosomes: 20", job.files.len()), "type": 0, "time": 0}]})];
    if job.status_polls >= 3 {
        let qc = if job.refpanel == "apps@hapmap-2@1.0.0" {
            json!({"message": "<b>Error:</b> More than 100 obvious strand flips have been detected. Please check strand. Imputation cannot be started!", "type": 1, "time": 0})
        } else {
            json!({"message": "Calculating QC Statistics<br>Remaining sites in total: 345", "type": 0, "time": 0})
        };
        steps.push(json!({"name": "Quality Control", "logMessages": [qc]}));
    }
    if job.status_polls >= 4 && job.refpanel != "apps@hapmap-2@1.0.0" {
        steps.push(json!({"name": "Pre-phasing and Imputation", "logMessages": [{"message": "Chromosome 20: imputed", "type": 0, "time": 0}]}));
    }
    Value::Array(steps)
}

async fn details(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorize(&state, &headers, format!("GET /api/v2/jobs/{id}")) {
        return unauthorized();
    }
    let inner = state.lock().unwrap();
    let Some(job) = inner.jobs.get(&id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"success": false, "message": format!("Job {id} not found.")})),
        )
            .into_response();
    };
    let (state_code, position) = state_of(job);
    let outputs = if state_code == 4 {
        json!([
            {"name": "qcreport", "description": "Quality-Control Report", "files": [
                {"name": "qcreport.html", "path": format!("{id}/qcreport/qcreport.html"), "size": "1 KB", "hash": "x1", "count": -1}]},
            {"name": "local", "description": "Imputation Results", "files": [
                {"name": "chr_20.zip", "path": format!("{id}/local/chr_20.zip"), "size": "2 KB", "hash": "x2", "count": -1}]}
        ])
    } else {
        json!([])
    };
    axum::Json(json!({
        "application": "Genotype Imputation (Minimac4) 2.0.7", "applicationId": APP, "id": id, "name": id,
        "positionInQueue": position, "state": state_code, "steps": steps(job), "outputParams": outputs, "username": "fedimpute-node"
    }))
    .into_response()
}

async fn cancel(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorize(&state, &headers, format!("GET /api/v2/jobs/{id}/cancel")) {
        return unauthorized();
    }
    let mut inner = state.lock().unwrap();
    match inner.jobs.get_mut(&id) {
        Some(job) => {
            job.cancelled = true;
            axum::Json(json!({"id": id, "state": 6})).into_response()
        }
        None => {
            (StatusCode::NOT_FOUND, axum::Json(json!({"success": false, "message": format!("Job {id} not found.")})))
                .into_response()
        }
    }
}

/// A minimac4-style dosage VCF of chromosome 20, bgzipped (by the `bgzip` of tabix).
fn dose_vcf() -> Vec<u8> {
    let text = "##fileformat=VCFv4.1\n\
        ##INFO=<ID=MAF,Number=1,Type=Float,Description=\"Estimated Alternate Allele Frequency\">\n\
        ##INFO=<ID=R2,Number=1,Type=Float,Description=\"Estimated Imputation Accuracy (R-square)\">\n\
        ##INFO=<ID=IMPUTED,Number=0,Type=Flag,Description=\"Marker was imputed\">\n\
        ##INFO=<ID=TYPED,Number=0,Type=Flag,Description=\"Marker was genotyped\">\n\
        ##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n\
        ##FORMAT=<ID=DS,Number=1,Type=Float,Description=\"Estimated Alternate Allele Dosage\">\n\
        ##contig=<ID=20>\n\
        #CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n\
        20\t60000\t.\tA\tG\t.\tPASS\tMAF=0.2;R2=0.91;IMPUTED\tGT:DS\t0|1:0.98\n\
        20\t60100\t.\tC\tT\t.\tPASS\tMAF=0.03;R2=0.75;IMPUTED\tGT:DS\t0|0:0.05\n\
        20\t60200\t.\tG\tA\t.\tPASS\tMAF=0.4;R2=1;TYPED\tGT:DS\t1|1:2\n";
    let mut child = std::process::Command::new("bgzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("bgzip (tabix) is installed");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    child.wait_with_output().expect("bgzip").stdout
}

/// An AES-256 encrypted zip of the dosage VCF, with the job's password, as Cloudgene makes.
fn encrypted_zip(password: &str) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .with_aes_encryption(zip::AesMode::Aes256, password);
    zip.start_file("chr20.dose.vcf.gz", options).expect("zip entry");
    zip.write_all(&dose_vcf()).expect("zip write");
    zip.finish().expect("zip finish");
    buf.into_inner()
}

async fn download(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((job, param, file)): Path<(String, String, String)>,
) -> Response {
    if !authorize(&state, &headers, format!("GET /results/{job}/{param}/{file}")) {
        return unauthorized();
    }
    let password = {
        let inner = state.lock().unwrap();
        match inner.jobs.get(&job) {
            Some(j) if state_of(j).0 == 4 => j.fields.get("password").cloned().unwrap_or_default(),
            _ => return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "download not found."}))).into_response(),
        }
    };
    match (param.as_str(), file.as_str()) {
        ("qcreport", "qcreport.html") => "<html><body><h1>QC report</h1>345 sites</body></html>".into_response(),
        ("local", "chr_20.zip") => encrypted_zip(&password).into_response(),
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"message": "download not found."}))).into_response(),
    }
}
