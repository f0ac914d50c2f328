//! `fedimpute job ...`: the researcher's client for a node's jobs API, from any machine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::exit::REFUSED as EXIT_REFUSED;

#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The node's base URL, e.g. https://imputation.example.org:8443
    #[arg(long, env = "FEDIMPUTE_NODE")]
    node: String,
    /// An API token (`fit_...`, made at /api/v1/me/tokens) or an access token.
    #[arg(long, env = "FEDIMPUTE_TOKEN", hide_env_values = true)]
    token: String,
    /// PEM certificate to trust for the node (for a node with a self-signed certificate).
    #[arg(long, env = "FEDIMPUTE_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Upload VCFs and start a job; prints its id (and follows it with --watch).
    Submit {
        #[command(flatten)]
        node: NodeArgs,
        /// Bgzipped VCF, one chromosome per file.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Panel id from the federation catalog; `host/panel` to choose the node that hosts it
        /// (its PeerId or institution, as the signed member list names it); several separated
        /// by commas for a multi-panel job (see --combine).
        #[arg(long)]
        panel: String,
        /// hg19 or hg38.
        #[arg(long)]
        build: String,
        /// beagle (the default) or minimac4; meta-imputation runs with minimac4.
        #[arg(long)]
        engine: Option<String>,
        /// How a multi-panel job combines its panels: best_r2 (the default: per variant, the
        /// call with the highest estimated r2) or meta (meta-imputation: per sample and along
        /// the chromosome, the panels weighted by how well each predicted the sample's own
        /// typed alleles; approaches a pooled panel when the samples' ancestries differ).
        #[arg(long, value_parser = ["best_r2", "meta"])]
        combine: Option<String>,
        /// beagle or no_phasing.
        #[arg(long, default_value = "beagle")]
        phasing: String,
        #[arg(long)]
        population: Option<String>,
        /// 0, 0.001, 0.1, 0.2 or 0.3.
        #[arg(long, default_value = "0")]
        r2_filter: String,
        /// imputation or qc_only.
        #[arg(long, default_value = "imputation")]
        mode: String,
        #[arg(long)]
        name: Option<String>,
        /// If the node hosting the panel becomes unreachable, let the job move to another
        /// host of the same panel.
        #[arg(long)]
        allow_resubmit: bool,
        /// Refuse files with everyday problems (plain VCF, unsorted, `chr20` vs `20`, several
        /// chromosomes in one file) instead of repairing them; repairs are listed in the QC report.
        #[arg(long)]
        no_repair: bool,
        /// Follow the job until it ends.
        #[arg(long)]
        watch: bool,
    },
    /// Show a job's state, QC outcome and summary.
    Status {
        #[command(flatten)]
        node: NodeArgs,
        id: String,
    },
    /// Follow a job live until it ends: a progress bar on a terminal, else (a script, a CI log)
    /// one line on stderr per change of state or stage and per 10% of progress. A dropped
    /// connection is reopened where it left off (Last-Event-ID), for up to about five minutes.
    /// Exit code 0 if the job completed, 1 otherwise.
    Watch {
        #[command(flatten)]
        node: NodeArgs,
        id: String,
    },
    /// Download a job's result files, checking each against its SHA-256. Files already there
    /// are kept and interrupted downloads resume. Exit code 0: the job completed and every file
    /// is here; 1: an error, or the job failed or was cancelled (the files it left, such as its
    /// QC report and log, are downloaded); 3: the job has not ended yet.
    Download {
        #[command(flatten)]
        node: NodeArgs,
        id: String,
        /// Folder to write to (created if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Cancel a job.
    Cancel {
        #[command(flatten)]
        node: NodeArgs,
        id: String,
    },
    /// Make an AES-256 zip of each chromosome's results (dose VCF, index, info file) under a new
    /// password, printed once; `job download` then fetches the archives with the rest.
    Archive {
        #[command(flatten)]
        node: NodeArgs,
        id: String,
    },
    /// List your jobs.
    List {
        #[command(flatten)]
        node: NodeArgs,
    },
}

pub(super) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// An HTTPS client for a node's API, trusting `ca_cert` besides the system's roots.
pub(super) fn http_client(ca_cert: Option<&PathBuf>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(20));
    if let Some(ca) = ca_cert {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        builder = builder
            .tls_certs_merge([reqwest::Certificate::from_pem(&pem).context("the CA file is not a PEM certificate")?]);
    }
    Ok(builder.build()?)
}

/// A node's answer that is not a success, with its message.
#[derive(Debug, thiserror::Error)]
#[error("the node answered {status}: {message}")]
pub struct NodeAnswer {
    pub status: reqwest::StatusCode,
    pub message: String,
}

/// The answer if it is a success, else a [`NodeAnswer`] error carrying the node's message.
pub(super) async fn success_or_error(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let message = body["error"]["message"].as_str().unwrap_or("no details").to_string();
    Err(NodeAnswer { status, message }.into())
}

impl Client {
    pub(super) fn new(args: &NodeArgs) -> anyhow::Result<Self> {
        Ok(Self {
            http: http_client(args.ca_cert.as_ref())?,
            base: args.node.trim_end_matches('/').to_string(),
            token: args.token.clone(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        success_or_error(resp).await
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self.http.get(self.url(path)).bearer_auth(&self.token).send().await.context("reaching the node")?;
        Ok(Self::check(resp).await?.json().await?)
    }
}

/// Downloads one result file into `out`, checked against its SHA-256. A file already there with
/// that digest is kept; a partial download (`.NAME.part`) is resumed with a Range request.
async fn download_result(
    client: &Client,
    id: &str,
    name: &str,
    size: u64,
    sha256: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let target = out.join(name);
    if tokio::fs::metadata(&target).await.is_ok_and(|m| m.len() == size) && file_sha256(&target).await? == sha256 {
        println!("{name}: already here");
        return Ok(());
    }
    let tmp = out.join(format!(".{name}.part"));
    let mut hasher = Sha256::new();
    let mut have = match tokio::fs::metadata(&tmp).await {
        Ok(m) if m.len() < size => m.len(),
        _ => 0,
    };
    if have > 0 {
        let mut part = tokio::fs::File::open(&tmp).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = part.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    let mut request = client.http.get(client.url(&format!("/jobs/{id}/results/{name}"))).bearer_auth(&client.token);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = Client::check(request.send().await?).await?;
    let mut file = if have > 0 && resp.status() == reqwest::StatusCode::PARTIAL_CONTENT {
        tokio::fs::OpenOptions::new().append(true).open(&tmp).await?
    } else {
        // The node sent the whole file: start over.
        (have, hasher) = (0, Sha256::new());
        tokio::fs::File::create(&tmp).await?
    };
    let mut pb = super::progress::ByteProgress::new(size, name);
    pb.set_position(have);
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
        pb.inc(chunk.len() as u64);
    }
    file.sync_all().await?;
    pb.finish();
    if hex::encode(hasher.finalize()) != sha256 {
        let _ = tokio::fs::remove_file(&tmp).await;
        bail!("{name}: the download does not match its SHA-256; try again");
    }
    tokio::fs::rename(&tmp, &target).await?;
    Ok(())
}

async fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let (mut hasher, mut buf) = (Sha256::new(), vec![0u8; 1 << 20]);
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

fn print_job(job: &Value) {
    println!("job {} ({})", job["id"].as_str().unwrap_or("?"), job["name"].as_str().unwrap_or(""));
    println!(
        "  state:    {}{}",
        job["state"].as_str().unwrap_or("?"),
        job["stage"].as_str().map(|s| format!(" ({s})")).unwrap_or_default()
    );
    println!("  progress: {:.0}%", job["progress"].as_f64().unwrap_or(0.0) * 100.0);
    let p = &job["params"];
    println!(
        "  panel {} ({}), engine {}, mode {}",
        p["panel_id"].as_str().unwrap_or(""),
        p["build"].as_str().unwrap_or(""),
        p["engine"].as_str().unwrap_or(""),
        p["mode"].as_str().unwrap_or("")
    );
    if let Some(host) = job["peer_institution"].as_str().filter(|_| job["role"] == "origin") {
        println!("  runs at:  {host}");
    }
    for child in job["children"].as_array().into_iter().flatten() {
        println!(
            "  panel {}: {} ({:.0}%){}",
            child["panel"].as_str().unwrap_or(""),
            child["state"].as_str().unwrap_or(""),
            child["progress"].as_f64().unwrap_or(0.0) * 100.0,
            child["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    if let Some(e) = job["error"].as_str() {
        println!("  error:    {e}");
    }
    if let Some(qc) = job["qc_report"].as_object() {
        println!(
            "  QC:       {} ({} of {} variants kept)",
            qc["status"].as_str().unwrap_or(""),
            qc["variants_kept"],
            qc["variants_total"]
        );
    }
    if let Some(bins) = job["summary"]["imputed_by_maf"].as_object() {
        println!("  imputed:  {} variants; mean estimated r2 by MAF:", job["summary"]["variants_imputed"]);
        for (bin, v) in bins {
            println!("    {bin:<6} {:>8} variants  r2 {:.3}", v["variants"], v["mean_r2"].as_f64().unwrap_or(0.0));
        }
    }
}

/// Follows the job's event stream until it ends; returns its final state.
async fn watch(client: &Client, id: &str) -> anyhow::Result<String> {
    super::watch::follow(&client.http, &client.url(&format!("/jobs/{id}/events")), &client.token, id).await
}

pub async fn run(cmd: JobCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JobCommand::Submit {
            node,
            files,
            panel,
            build,
            engine,
            combine,
            phasing,
            population,
            r2_filter,
            mode,
            name,
            allow_resubmit,
            no_repair,
            watch: follow,
        } => {
            let client = Client::new(&node)?;
            let mut form = reqwest::multipart::Form::new();
            for path in &files {
                let file = tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?;
                let len = file.metadata().await?.len();
                let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("input.vcf.gz").to_string();
                let mut pb = super::progress::ByteProgress::new(len, &format!("uploading {file_name}"));
                let stream = tokio_util::io::ReaderStream::new(file).map(move |chunk| {
                    if let Ok(c) = &chunk {
                        pb.inc(c.len() as u64);
                        if pb.position() >= len {
                            pb.finish();
                        }
                    }
                    chunk
                });
                let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
                    .file_name(file_name);
                form = form.part("files", part);
            }
            for (k, v) in [
                ("panel", Some(panel)),
                ("build", Some(build)),
                ("engine", engine),
                ("combine", combine),
                ("phasing", Some(phasing)),
                ("population", population),
                ("r2_filter", Some(r2_filter)),
                ("mode", Some(mode)),
                ("name", name),
                ("allow_resubmit", Some(allow_resubmit.to_string())),
                ("repair", Some((!no_repair).to_string())),
            ] {
                if let Some(v) = v {
                    form = form.text(k, v);
                }
            }
            let resp = client
                .http
                .post(client.url("/jobs"))
                .bearer_auth(&client.token)
                .multipart(form)
                .send()
                .await
                .context("reaching the node")?;
            let job: Value = Client::check(resp).await?.json().await?;
            let id = job["id"].as_str().unwrap_or_default().to_string();
            println!("{id}");
            if follow {
                let state = watch(&client, &id).await?;
                print_job(&client.get(&format!("/jobs/{id}")).await?);
                return Ok(if state == "completed" { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
        }
        JobCommand::Status { node, id } => print_job(&Client::new(&node)?.get(&format!("/jobs/{id}")).await?),
        JobCommand::Watch { node, id } => {
            let client = Client::new(&node)?;
            let state = watch(&client, &id).await?;
            print_job(&client.get(&format!("/jobs/{id}")).await?);
            return Ok(if state == "completed" { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        JobCommand::Download { node, id, out } => {
            let client = Client::new(&node)?;
            let job = client.get(&format!("/jobs/{id}")).await?;
            let state = job["state"].as_str().unwrap_or("unknown");
            if !matches!(state, "completed" | "failed" | "cancelled") {
                eprintln!("job {id} is {state}: its results are not ready; try again once it has completed");
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
            tokio::fs::create_dir_all(&out).await?;
            let results = client.get(&format!("/jobs/{id}/results")).await?;
            let results = results.as_array().cloned().unwrap_or_default();
            for r in &results {
                let name = r["name"].as_str().unwrap_or_default();
                // Names come from the node; still, never let one be a path.
                if name.is_empty() || name.contains('/') || name.starts_with('.') {
                    bail!("the node listed an unsafe result name {name:?}");
                }
                download_result(
                    &client,
                    &id,
                    name,
                    r["size"].as_u64().unwrap_or(0),
                    r["sha256"].as_str().unwrap_or(""),
                    &out,
                )
                .await?;
            }
            println!("downloaded {} files to {}", results.len(), out.display());
            if state != "completed" {
                eprintln!("job {id} {state}: these are the files it left (logs, QC report), not imputed results");
                return Ok(ExitCode::FAILURE);
            }
        }
        JobCommand::Cancel { node, id } => {
            let client = Client::new(&node)?;
            let resp =
                client.http.post(client.url(&format!("/jobs/{id}/cancel"))).bearer_auth(&client.token).send().await?;
            Client::check(resp).await?;
            println!("cancelled {id}");
        }
        JobCommand::Archive { node, id } => {
            let client = Client::new(&node)?;
            let resp =
                client.http.post(client.url(&format!("/jobs/{id}/archives"))).bearer_auth(&client.token).send().await?;
            let made: serde_json::Value = Client::check(resp).await?.json().await?;
            for name in made["archives"].as_array().cloned().unwrap_or_default() {
                println!("made {}", name.as_str().unwrap_or_default());
            }
            println!(
                "password (shown only now; keep it apart from the files): {}",
                made["password"].as_str().unwrap_or_default()
            );
        }
        JobCommand::List { node } => {
            let jobs = Client::new(&node)?.get("/jobs").await?;
            println!("{:<26} {:<10} {:>5}  {:<12} name", "id", "state", "%", "panel");
            for j in jobs.as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<26} {:<10} {:>4.0}%  {:<12} {}",
                    j["id"].as_str().unwrap_or(""),
                    j["state"].as_str().unwrap_or(""),
                    j["progress"].as_f64().unwrap_or(0.0) * 100.0,
                    j["params"]["panel_id"].as_str().unwrap_or(""),
                    j["name"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
