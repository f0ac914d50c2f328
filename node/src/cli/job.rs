//! `fedimpute job ...`: the researcher's client for a node's jobs API, from any machine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use comfy_table::{ContentArrangement, Table, presets};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::{Client, NodeArgs, success_or_error};

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Upload VCFs and start a job; prints its id (with --wait, follows it to its end; with
    /// --download, then fetches its results). Exit code with --wait: 0 if the job completed,
    /// 1 if it failed or was cancelled.
    Submit(Box<SubmitArgs>),
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
    /// Queue a failed or cancelled job again, with the inputs it was submitted with (while the
    /// node still keeps them). Exit code 3 if the job cannot be retried (say, it completed).
    Retry {
        #[command(flatten)]
        node: NodeArgs,
        id: String,
        /// Follow the job to its end (exit code 0 if it completed, 1 otherwise).
        #[arg(long)]
        wait: bool,
    },
    /// Make an AES-256 zip of each chromosome's results (dose VCF, index, info file) under a new
    /// password, printed once; `job download` then fetches the archives with the rest.
    Archive {
        #[command(flatten)]
        node: NodeArgs,
        id: String,
    },
    /// List your jobs, newest first.
    List {
        #[command(flatten)]
        node: NodeArgs,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Bgzipped VCF, one chromosome per file.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Panel id from the federation catalog (`fedimpute panels`); `host/panel` to choose the
    /// node that hosts it (its PeerId or institution, as the signed member list names it);
    /// several separated by commas for a multi-panel job (see --combine).
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
    #[arg(long, visible_alias = "watch")]
    wait: bool,
    /// Once the job has ended, download what it left into this folder (implies --wait); with
    /// --json, the download's summary is the job document's `download` field.
    #[arg(long, value_name = "DIR")]
    download: Option<PathBuf>,
}

impl JobCommand {
    /// Whether the command prints JSON (so an error is printed as JSON too).
    pub fn json(&self) -> bool {
        match self {
            JobCommand::Submit(a) => a.node.json,
            JobCommand::Status { node, .. }
            | JobCommand::Watch { node, .. }
            | JobCommand::Download { node, .. }
            | JobCommand::Cancel { node, .. }
            | JobCommand::Retry { node, .. }
            | JobCommand::Archive { node, .. }
            | JobCommand::List { node, .. } => node.json,
        }
    }
}

/// How a result file came to be in the output folder.
enum Fetched {
    AlreadyHere,
    Downloaded { bytes: u64 },
    Resumed { from: u64, bytes: u64 },
}

impl Fetched {
    fn json(&self) -> Value {
        match self {
            Fetched::AlreadyHere => json!({ "fetched": "already_here", "bytes_transferred": 0 }),
            Fetched::Downloaded { bytes } => json!({ "fetched": "downloaded", "bytes_transferred": bytes }),
            Fetched::Resumed { from, bytes } => {
                json!({ "fetched": "resumed", "resumed_from": from, "bytes_transferred": bytes })
            }
        }
    }
}

/// Downloads one result file into `out`, checked against its SHA-256. A file already there with
/// that digest is kept; a partial download (`.NAME.part`) is resumed with a Range request.
async fn download_result(client: &Client, id: &str, result: &ResultFile<'_>, out: &Path) -> anyhow::Result<Fetched> {
    let ResultFile { name, size, sha256 } = *result;
    let target = out.join(name);
    if tokio::fs::metadata(&target).await.is_ok_and(|m| m.len() == size) && file_sha256(&target).await? == sha256 {
        return Ok(Fetched::AlreadyHere);
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
    let resp = success_or_error(request.send().await.context("reaching the node")?).await?;
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
    let mut transferred = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
        transferred += chunk.len() as u64;
        pb.inc(chunk.len() as u64);
    }
    file.sync_all().await?;
    pb.finish();
    if hex::encode(hasher.finalize()) != sha256 {
        let _ = tokio::fs::remove_file(&tmp).await;
        bail!("{name}: the download does not match its SHA-256; try again");
    }
    tokio::fs::rename(&tmp, &target).await?;
    Ok(if have > 0 {
        Fetched::Resumed { from: have, bytes: transferred }
    } else {
        Fetched::Downloaded { bytes: transferred }
    })
}

/// One entry of a job's result list.
#[derive(Clone, Copy)]
struct ResultFile<'a> {
    name: &'a str,
    size: u64,
    sha256: &'a str,
}

/// Downloads every result of an ended job into `out`: the summary document `--json` prints,
/// and whether the job completed. A job still going is refused (exit code 3).
async fn download_all(client: &Client, id: &str, out: &Path, quiet: bool) -> anyhow::Result<(Value, bool)> {
    let job = client.get(&format!("/jobs/{id}")).await?;
    let state = job["state"].as_str().unwrap_or("unknown").to_string();
    if !matches!(state.as_str(), "completed" | "failed" | "cancelled") {
        return Err(NotReady { id: id.to_string(), state }.into());
    }
    tokio::fs::create_dir_all(&out).await.with_context(|| format!("creating {}", out.display()))?;
    let listed = client.get(&format!("/jobs/{id}/results")).await?;
    let mut files = Vec::new();
    for r in listed.as_array().into_iter().flatten() {
        let result = ResultFile {
            name: r["name"].as_str().unwrap_or_default(),
            size: r["size"].as_u64().unwrap_or(0),
            sha256: r["sha256"].as_str().unwrap_or(""),
        };
        // Names come from the node; still, never let one be a path.
        if result.name.is_empty() || result.name.contains('/') || result.name.starts_with('.') {
            bail!("the node listed an unsafe result name {:?}", result.name);
        }
        let fetched = download_result(client, id, &result, out).await?;
        if !quiet && matches!(fetched, Fetched::AlreadyHere) {
            println!("{}: already here", result.name);
        }
        let mut entry = json!({ "name": result.name, "size": result.size, "sha256": result.sha256 });
        if let (Some(e), Value::Object(f)) = (entry.as_object_mut(), fetched.json()) {
            e.extend(f);
        }
        files.push(entry);
    }
    if !quiet {
        println!("downloaded {} files to {}", files.len(), out.display());
        if state != "completed" {
            eprintln!("job {id} {state}: these are the files it left (logs, QC report), not imputed results");
        }
    }
    let completed = state == "completed";
    Ok((json!({ "job_id": id, "state": state, "out": out, "files": files }), completed))
}

/// A download asked for before the job ended (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("job {id} is {state}: its results are not ready; try again once it has ended")]
pub struct NotReady {
    id: String,
    state: String,
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

/// The jobs as a table for humans.
fn jobs_table(jobs: &[Value]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(["Job", "Name", "State", "Progress", "Panel", "Runs at", "Submitted"]);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    for j in jobs {
        let state = match j["stage"].as_str() {
            Some(stage) => format!("{} ({stage})", text(&j["state"])),
            None => text(&j["state"]),
        };
        t.add_row([
            text(&j["id"]),
            text(&j["name"]),
            state,
            format!("{:.0}%", j["progress"].as_f64().unwrap_or(0.0) * 100.0),
            text(&j["params"]["panel_id"]),
            j["peer_institution"].as_str().unwrap_or("here").to_string(),
            text(&j["created_at"]),
        ]);
    }
    t
}

/// Prints `doc` as the one JSON document on stdout.
fn print_json(doc: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(doc)?);
    Ok(())
}

/// Follows the job to its end, then shows it: exit code 0 if it completed, else 1.
async fn wait_and_show(client: &Client, id: &str, json: bool) -> anyhow::Result<(Value, ExitCode)> {
    let state = watch(client, id).await?;
    let job = client.get(&format!("/jobs/{id}")).await?;
    if !json {
        print_job(&job);
    }
    Ok((job, if state == "completed" { ExitCode::SUCCESS } else { ExitCode::FAILURE }))
}

async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.node)?;
    let json = args.node.json;
    let mut form = reqwest::multipart::Form::new();
    for path in &args.files {
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
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len).file_name(file_name);
        form = form.part("files", part);
    }
    for (k, v) in [
        ("panel", Some(args.panel)),
        ("build", Some(args.build)),
        ("engine", args.engine),
        ("combine", args.combine),
        ("phasing", Some(args.phasing)),
        ("population", args.population),
        ("r2_filter", Some(args.r2_filter)),
        ("mode", Some(args.mode)),
        ("name", args.name),
        ("allow_resubmit", Some(args.allow_resubmit.to_string())),
        ("repair", Some((!args.no_repair).to_string())),
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
    let job: Value = success_or_error(resp).await?.json().await?;
    let id = job["id"].as_str().context("the node's answer has no job id")?.to_string();
    if !(args.wait || args.download.is_some()) {
        if json {
            print_json(&job)?
        } else {
            println!("{id}")
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        println!("{id}");
    }
    let (mut job, code) = wait_and_show(&client, &id, json).await?;
    if let Some(dir) = &args.download {
        let (download, _) = download_all(&client, &id, dir, json).await?;
        job["download"] = download;
    }
    if json {
        print_json(&job)?;
    }
    Ok(code)
}

pub async fn run(cmd: JobCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JobCommand::Submit(args) => return submit(*args).await,
        JobCommand::Status { node, id } => {
            let job = Client::new(&node)?.get(&format!("/jobs/{id}")).await?;
            if node.json { print_json(&job)? } else { print_job(&job) }
        }
        JobCommand::Watch { node, id } => {
            let (job, code) = wait_and_show(&Client::new(&node)?, &id, node.json).await?;
            if node.json {
                print_json(&job)?;
            }
            return Ok(code);
        }
        JobCommand::Download { node, id, out } => {
            let (summary, completed) = download_all(&Client::new(&node)?, &id, &out, node.json).await?;
            if node.json {
                print_json(&summary)?;
            }
            if !completed {
                return Ok(ExitCode::FAILURE);
            }
        }
        JobCommand::Cancel { node, id } => {
            let job = Client::new(&node)?.post(&format!("/jobs/{id}/cancel")).await?;
            if node.json { print_json(&job)? } else { println!("cancelled {id}") }
        }
        JobCommand::Retry { node, id, wait } => {
            let client = Client::new(&node)?;
            let job = client.post(&format!("/jobs/{id}/retry")).await?;
            if wait {
                if !node.json {
                    println!("{id} queued again");
                }
                let (job, code) = wait_and_show(&client, &id, node.json).await?;
                if node.json {
                    print_json(&job)?;
                }
                return Ok(code);
            }
            if node.json { print_json(&job)? } else { println!("{id} queued again") }
        }
        JobCommand::Archive { node, id } => {
            let made = Client::new(&node)?.post(&format!("/jobs/{id}/archives")).await?;
            if node.json {
                print_json(&made)?;
                return Ok(ExitCode::SUCCESS);
            }
            for name in made["archives"].as_array().cloned().unwrap_or_default() {
                println!("made {}", name.as_str().unwrap_or_default());
            }
            println!(
                "password (shown only now; keep it apart from the files): {}",
                made["password"].as_str().unwrap_or_default()
            );
        }
        JobCommand::List { node, limit } => {
            let jobs = Client::new(&node)?.get(&format!("/jobs?limit={limit}")).await?;
            if node.json {
                print_json(&jobs)?;
            } else {
                let rows = jobs.as_array().cloned().unwrap_or_default();
                if rows.is_empty() {
                    eprintln!("no jobs yet");
                } else {
                    println!("{}", jobs_table(&rows));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
