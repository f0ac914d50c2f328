//! `/api/v1/jobs`: imputation jobs of this node's researchers.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower::ServiceExt;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiMultipart, ApiPath, ApiQuery, Auth, ClientIp, Submitter};
use crate::auth::Principal;
use crate::files::FileStoreError;
use crate::imputation::GenomeBuild;
use crate::imputation::combine::best_r2::MergeReport;
use crate::imputation::combine::meta::MetaReport;
use crate::imputation::qc::{InputFile, QcError, check_inputs};
use crate::imputation::repair::{Repair, repair_inputs};
use crate::jobs::federated::select_host;
use crate::jobs::federated::selection::PanelRef;
use crate::jobs::multi_panel::child_label;
use crate::jobs::{JobActionError, JobSummary};
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::jobs::{JobEvent, JobInput, JobParams, JobPlacement, JobResult, JobRole, JobRow};
use crate::store::users::Role;
use crate::time::{now_ms, rfc3339};

pub fn router(max_upload_bytes: u64) -> Router<AppState> {
    Router::new()
        // Uploads are limited per file while they stream (FileStore), not by buffering a body.
        .route(
            "/jobs",
            get(list).post(submit).layer(DefaultBodyLimit::max((max_upload_bytes as usize).saturating_mul(16))),
        )
        .route("/jobs/{id}", get(show))
        .route("/jobs/{id}/events", get(events))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/retry", post(retry))
        .route("/jobs/{id}/archives", post(archives))
        .route("/jobs/{id}/results", get(results))
        .route("/jobs/{id}/results/{file}", get(download))
}

/// A job as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobView {
    id: String,
    name: String,
    /// pending, validating, queued, running, completed, failed, cancelled
    state: String,
    /// Within `running`: qc, phasing, imputing, writing.
    stage: Option<String>,
    /// 0 to 1.
    progress: f64,
    params: JobParams,
    error: Option<String>,
    /// The QC report (its `repairs` lists what was repaired in the uploads).
    #[schema(value_type = Object)]
    qc_report: Option<serde_json::Value>,
    /// What was repaired in the uploads before QC: bgzipped, renamed, split, sorted.
    repairs: Vec<Repair>,
    summary: Option<JobSummary>,
    inputs: Vec<JobInput>,
    attempts: i64,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    owner_id: i64,
    /// `local` (runs here), `origin` (runs at `peer` for a user here), `host` (runs here for
    /// the node `peer`) or `parent` (a multi-panel job).
    role: String,
    /// The other node of a forwarded job (PeerId).
    peer: Option<String>,
    /// Its institution, as the federation config names it.
    peer_institution: Option<String>,
    /// The multi-panel job this one is part of.
    parent_id: Option<String>,
    /// A multi-panel job's one job per panel.
    children: Vec<ChildView>,
    /// A completed multi-panel job's report: variants each panel won, per MAF bin.
    merge_report: Option<MergeReport>,
    /// A completed meta-imputation's report: per chromosome the training sites, per sample its
    /// mean weight for each panel, and the estimated r2 per MAF bin.
    meta_report: Option<MetaReport>,
}

/// One panel's job within a multi-panel job.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChildView {
    id: String,
    /// The panel as the researcher named it.
    panel: String,
    state: String,
    progress: f64,
    /// The node that runs it, if not this one.
    peer: Option<String>,
    error: Option<String>,
    /// `imputation`, or the round of a meta-imputation: `meta_phase`, then `meta_impute`.
    mode: String,
}

async fn view(state: &AppState, job: JobRow) -> Result<JobView, ApiError> {
    let inputs = state.store.job_inputs(&job.id).await?;
    async fn report<T: serde::de::DeserializeOwned>(path: PathBuf) -> Option<T> {
        serde_json::from_slice(&tokio::fs::read(path).await.ok()?).ok()
    }
    let (children, merge_report, meta_report) = if job.role() == JobRole::Parent {
        let children = state.store.child_jobs(&job.id).await?;
        let results = state.jobs.results_dir(&job.id);
        let (merge, meta) =
            (report(results.join("merge_report.json")).await, report(results.join("meta_report.json")).await);
        let labels = crate::jobs::meta_rounds::round_labels(&children);
        let children = children
            .into_iter()
            .map(|c| ChildView {
                panel: labels.get(&c.id).cloned().unwrap_or_else(|| child_label(&c)),
                id: c.id,
                state: c.state,
                progress: c.progress,
                peer: c.peer,
                error: c.error,
                mode: c.mode,
            })
            .collect();
        (children, merge, meta)
    } else {
        (Vec::new(), None, None)
    };
    let repairs: Vec<Repair> =
        job.input_repairs.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
    let mut qc_report: Option<serde_json::Value> = job.qc_report.as_deref().and_then(|r| serde_json::from_str(r).ok());
    // A host's report does not know what this node repaired before sending the files.
    if let Some(serde_json::Value::Object(report)) = qc_report.as_mut()
        && !repairs.is_empty()
    {
        report.insert("repairs".into(), serde_json::to_value(&repairs).unwrap_or_default());
    }
    Ok(JobView {
        params: job.params(),
        qc_report,
        repairs,
        summary: job.summary.as_deref().and_then(|s| serde_json::from_str(s).ok()),
        inputs,
        created_at: rfc3339(job.created_at),
        started_at: job.started_at.map(rfc3339),
        finished_at: job.finished_at.map(rfc3339),
        id: job.id,
        name: job.name,
        state: job.state,
        stage: job.stage,
        progress: job.progress,
        error: job.error,
        attempts: job.attempts,
        owner_id: job.owner_id,
        peer_institution: job.peer.as_deref().and_then(|p| {
            state.federation.federation.current().and_then(|c| c.doc().member(p).map(|m| m.institution.clone()))
        }),
        role: job.role,
        peer: job.peer,
        parent_id: job.parent_id,
        children,
        merge_report,
        meta_report,
    })
}

/// What a caller wants of a job.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Its metadata: state, QC report, events, the list of result files.
    Read,
    /// To act on it (cancel, retry) or read its genotypes (result files).
    Act,
}

/// The job, if `principal` may have `access` to it: its owner and admins may do anything;
/// auditors may read every job's metadata, never its genotypes and never act on it (the route's
/// `Auth<Submitter>` keeps them out of acting at all). Anyone else gets 404, so job ids of
/// others are not confirmed.
async fn visible_job(state: &AppState, principal: &Principal, id: &str, access: Access) -> Result<JobRow, ApiError> {
    let job = state.store.job(id).await?.ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    let others = match principal.user.role {
        Role::Admin => true,
        Role::Auditor => access == Access::Read,
        Role::Researcher | Role::Viewer => false,
    };
    if job.owner_id != principal.user.id && !others {
        return Err(ApiError::NotFound(format!("no job {id}")));
    }
    Ok(job)
}

/// A user's file name, kept only to show it: a plain name, never a path.
fn display_name(raw: Option<&str>, index: usize) -> Result<String, ApiError> {
    let name = raw.unwrap_or("").trim();
    if name.is_empty() {
        return Ok(format!("input-{}.vcf.gz", index + 1));
    }
    if name.contains('/')
        || name.contains('\\')
        || name.starts_with('.')
        || name.chars().any(char::is_control)
        || name.len() > 200
    {
        return Err(ApiError::Unprocessable(format!(
            "file name {name:?} is not a plain file name (no folders, not starting with a dot)"
        )));
    }
    Ok(name.to_string())
}

/// `beagle` (the default), `minimac4`, or the id of an external service (here or at a host).
fn engine_field(value: Option<String>) -> Result<String, ApiError> {
    let engine = value.unwrap_or_else(|| "beagle".into());
    if matches!(engine.as_str(), "beagle" | "minimac4") || crate::imputation::external::valid_service_id(&engine) {
        Ok(engine)
    } else {
        Err(ApiError::Unprocessable(format!(
            "engine must be beagle, minimac4 or the id of an imputation service in the catalog, got {engine:?}"
        )))
    }
}

fn choice(field: &str, value: &str, allowed: &[&str]) -> Result<String, ApiError> {
    if allowed.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(ApiError::Unprocessable(format!("{field} must be one of {}, got {value:?}", allowed.join(", "))))
    }
}

/// The parts of a job submission (`multipart/form-data`), for the OpenAPI document; `submit`
/// reads them as they stream in.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct JobSubmission {
    /// One or more VCFs (bgzipped or plain; repaired unless `repair=false`): repeat the part.
    #[schema(value_type = Vec<String>, format = Binary)]
    files: Vec<Vec<u8>>,
    /// A panel id from the federation catalog, `host/panel` to choose its host (by PeerId,
    /// institution or a `tag=value` of the signed member list); up to eight for a multi-panel
    /// job, repeated or separated by commas.
    #[schema(example = "sim-afr")]
    panel: String,
    /// Genome build of the input.
    #[schema(example = "hg38", pattern = "^(hg19|hg38)$")]
    build: String,
    /// `beagle` (default), `minimac4`, or the id of an imputation service in the catalog.
    engine: Option<String>,
    /// `beagle` (default) or `no_phasing` (the input is phased already).
    #[schema(pattern = "^(beagle|no_phasing)$")]
    phasing: Option<String>,
    /// Population, for the allele-frequency check and for services that ask for one.
    population: Option<String>,
    /// Keep only variants whose estimated r2 is at least this: `0` (default), `0.001`, `0.1`,
    /// `0.2` or `0.3`.
    #[schema(example = "0.3")]
    r2_filter: Option<String>,
    /// `imputation` (default) or `qc_only`.
    #[schema(pattern = "^(imputation|qc_only)$")]
    mode: Option<String>,
    /// The job's name (default `job <id>`).
    name: Option<String>,
    /// `true` (default): repair plain, unsorted, misnamed or multi-chromosome VCFs and report
    /// it; `false`: refuse them instead.
    repair: Option<bool>,
    /// `true`: if the host is lost, move the job to another host of the panel.
    allow_resubmit: Option<bool>,
    /// A multi-panel job's combination: `best_r2` (default: per variant, the panel with the
    /// highest estimated r2) or `meta` (meta-imputation: per haplotype and along the
    /// chromosome, weights learnt from each panel's leave-one-out dosages at the typed sites;
    /// Minimac4 at every host).
    #[schema(pattern = "^(best_r2|meta)$")]
    combine: Option<String>,
}

/// Submit a job: multipart with one or more `files` (bgzipped VCF, one chromosome each) and the
/// fields `panel`, `build`, `phasing`, `population`, `r2_filter`, `mode`, `engine`, `name`,
/// `combine`.
/// The input is checked before the job is accepted; a refusal says what to fix and keeps nothing.
#[utoipa::path(post, operation_id = "submitJob", path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])),
    request_body(content = JobSubmission, content_type = "multipart/form-data", description = "files + job fields"),
    responses((status = 201, body = JobView), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, description = "monthly job or storage quota reached", body = ErrorBody)))]
async fn submit(
    State(state): State<AppState>,
    auth: Auth<Submitter>,
    ClientIp(ip): ClientIp,
    ApiMultipart(mut multipart): ApiMultipart,
) -> Result<(StatusCode, axum::Json<JobView>), ApiError> {
    let user = &auth.principal.user;
    let limits = &state.config.jobs;
    let since = now_ms() - 30 * 86_400_000;
    if state.store.jobs_submitted_since(user.id, since).await? >= i64::from(limits.max_jobs_per_month) {
        return Err(ApiError::QuotaExceeded(format!(
            "you have submitted {} jobs in the last 30 days, the most this node allows",
            limits.max_jobs_per_month
        )));
    }
    let job_id = hex::encode(crate::secrets::random_bytes::<12>());
    let mut fields = std::collections::HashMap::new();
    let mut panels: Vec<String> = Vec::new();
    let mut stored: Vec<JobInput> = Vec::new();
    let result: Result<(), ApiError> = async {
        while let Some(field) = multipart.next_field().await.map_err(|e| ApiError::BadRequest(e.body_text()))? {
            let name = field.name().unwrap_or("").to_string();
            if name == "files" {
                let display = display_name(field.file_name(), stored.len())?;
                let dest = state.jobs.files.input_path(&job_id, stored.len() as i64);
                let file =
                    state.jobs.files.put_stream(field, limits.max_upload_bytes, &dest).await.map_err(|e| match e {
                        FileStoreError::TooLarge { limit } => {
                            ApiError::PayloadTooLarge.with_detail(format!("{display} is larger than {limit} bytes"))
                        }
                        other => ApiError::BadRequest(other.to_string()),
                    })?;
                stored.push(JobInput {
                    idx: stored.len() as i64,
                    name: display,
                    sha256: file.sha256,
                    size: file.size as i64,
                });
            } else {
                let text = field.text().await.map_err(|e| ApiError::BadRequest(e.body_text()))?;
                if name == "panel" {
                    panels.extend(text.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from));
                } else {
                    fields.insert(name, text);
                }
            }
        }
        Ok(())
    }
    .await;
    let outcome = async {
        result?;
        if stored.is_empty() {
            return Err(ApiError::Unprocessable("no input: send one or more `files`".into()));
        }
        let held = state.store.stored_bytes_of(user.id).await? as u64;
        let upload: u64 = stored.iter().map(|s| s.size as u64).sum();
        if held + upload > limits.max_stored_bytes_per_user {
            return Err(ApiError::QuotaExceeded(format!(
                "this upload ({upload} bytes) would bring your stored data to {} bytes, over your quota of {}; \
                 download and let older results expire, or ask the node's admin",
                held + upload,
                limits.max_stored_bytes_per_user
            )));
        }
        let field = |k: &str| fields.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let panel_refs = panels
            .iter()
            .map(|p| PanelRef::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::Unprocessable)?;
        if panel_refs.is_empty() || panel_refs.len() > MAX_PANELS {
            return Err(ApiError::Unprocessable(format!(
                "`panel` is required: one panel, or up to {MAX_PANELS} (repeated, or separated by commas)"
            )));
        }
        if let Some(dup) = panels.iter().enumerate().find(|(i, p)| panels[..*i].contains(p)) {
            return Err(ApiError::Unprocessable(format!("panel {:?} is listed twice", dup.1)));
        }
        let panel_id = panels.join(",");
        let allow_resubmit = match field("allow_resubmit").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::Unprocessable(format!("allow_resubmit must be true or false, got {other:?}")));
            }
        };
        let build: GenomeBuild = field("build").unwrap_or_default().parse().map_err(ApiError::Unprocessable)?;
        let r2_filter = choice(
            "r2_filter",
            &field("r2_filter").unwrap_or_else(|| "0".into()),
            &fedimpute_protocol::jobs::R2_FILTERS,
        )?;
        let combine = choice("combine", &field("combine").unwrap_or_else(|| "best_r2".into()), &COMBINE_RULES)?;
        let meta = combine == "meta";
        let mut params = JobParams {
            name: field("name").unwrap_or_else(|| format!("job {}", &job_id[..8])),
            build: build.as_str().to_string(),
            // Meta-imputation runs with Minimac4 everywhere.
            engine: engine_field(field("engine").or_else(|| meta.then(|| "minimac4".into())))?,
            phasing: choice(
                "phasing",
                &field("phasing").unwrap_or_else(|| "beagle".into()),
                &["beagle", "no_phasing"],
            )?,
            mode: choice("mode", &field("mode").unwrap_or_else(|| "imputation".into()), &["imputation", "qc_only"])?,
            population: field("population"),
            r2_filter: r2_filter.parse().unwrap_or(0.0),
            panel_id,
        };
        if meta {
            check_meta_request(&params, panel_refs.len())?;
        }
        let mut placements = Vec::new();
        for panel_ref in &panel_refs {
            placements.push(place(&state, panel_ref, &params, upload, allow_resubmit).await?);
        }
        let repair = match field("repair").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => return Err(ApiError::Unprocessable(format!("repair must be true or false, got {other:?}"))),
        };
        let mut inputs: Vec<InputFile> = stored
            .iter()
            .map(|i| InputFile { path: state.jobs.files.input_path(&job_id, i.idx), name: i.name.clone() })
            .collect();
        // Everyday problems (plain VCF, unsorted, chr naming, several chromosomes) are repaired
        // and reported, unless the researcher asked for a refusal instead.
        let mut repairs = Vec::new();
        if repair {
            let (bcftools, dir, files) =
                (state.config.engines.bcftools.clone(), state.jobs.job_dir(&job_id).join("repair"), inputs.clone());
            let repaired = tokio::task::spawn_blocking(move || repair_inputs(&files, build, &bcftools, &dir))
                .await
                .map_err(ApiError::internal)?;
            let repaired = match repaired {
                Ok(r) => r,
                Err(e @ QcError::Input { .. }) => return Err(ApiError::Unprocessable(e.to_string())),
                Err(e) => return Err(ApiError::internal(e)),
            };
            if !repaired.repairs.is_empty() {
                let paths: Vec<PathBuf> = repaired.inputs.iter().map(|i| i.path.clone()).collect();
                let files =
                    state.jobs.files.replace_inputs(&job_id, stored.len(), &paths).await.map_err(ApiError::internal)?;
                let _ = tokio::fs::remove_dir_all(state.jobs.job_dir(&job_id).join("repair")).await;
                stored = repaired
                    .inputs
                    .iter()
                    .zip(files)
                    .enumerate()
                    .map(|(idx, (input, file))| JobInput {
                        idx: idx as i64,
                        name: input.name.clone(),
                        sha256: file.sha256,
                        size: file.size as i64,
                    })
                    .collect();
                inputs = stored
                    .iter()
                    .map(|i| InputFile { path: state.jobs.files.input_path(&job_id, i.idx), name: i.name.clone() })
                    .collect();
                repairs = repaired.repairs;
            }
        }
        // Every check that needs no panel, before anything is queued.
        let settings = state.config.qc;
        let checked = tokio::task::spawn_blocking(move || check_inputs(&inputs, build, &settings))
            .await
            .map_err(ApiError::internal)?;
        match checked {
            // A chrX ploidy problem is the input's, whatever the panel: refused before it goes on.
            Ok(report) if report.chrx.as_ref().is_some_and(|x| x.refusal.is_some()) => {
                let reason = report.chrx.and_then(|x| x.refusal).unwrap_or_default();
                return Err(ApiError::Unprocessable(reason));
            }
            Ok(_) => {}
            Err(e @ QcError::Input { .. }) => return Err(ApiError::Unprocessable(e.to_string())),
            Err(e) => return Err(ApiError::internal(e)),
        }
        let repairs_json = (!repairs.is_empty()).then(|| serde_json::to_string(&repairs).unwrap_or_default());
        if let [placement] = placements.as_slice() {
            let single = JobParams { panel_id: panel_refs[0].panel_id.clone(), ..params.clone() };
            state.store.create_job(&job_id, user.id, &single, &stored, placement).await?;
            if let Some(r) = &repairs_json {
                state.store.set_input_repairs(&job_id, r).await?;
            }
            return Ok((params, Vec::new()));
        }
        // Several panels: a parent, and a child per panel that does the work.
        if meta {
            params.mode = crate::jobs::meta_rounds::META_PARENT_MODE.into();
        }
        let parent = JobPlacement { role: JobRole::Parent, ..Default::default() };
        state.store.create_job(&job_id, user.id, &params, &stored, &parent).await?;
        if let Some(r) = &repairs_json {
            state.store.set_input_repairs(&job_id, r).await?;
        }
        let mut children = Vec::new();
        for (panel_ref, placement) in panel_refs.iter().zip(placements) {
            let child_id = hex::encode(crate::secrets::random_bytes::<12>());
            let mut child_params = JobParams {
                name: format!("{} [{}]", params.name, panel_ref.text()),
                panel_id: panel_ref.panel_id.clone(),
                ..params.clone()
            };
            if meta {
                // The first round: each panel phases the targets (every site kept, whatever
                // its r2; the combination is filtered).
                child_params.name = format!("{} [{}, phasing]", params.name, panel_ref.text());
                child_params.mode = fedimpute_protocol::jobs::META_MODES[0].into();
                child_params.r2_filter = 0.0;
            }
            let placement = JobPlacement { parent_id: Some(job_id.clone()), ..placement };
            state.jobs.files.share_inputs(&job_id, &child_id, stored.len()).await.map_err(ApiError::internal)?;
            state.store.create_job(&child_id, user.id, &child_params, &stored, &placement).await?;
            if let Some(r) = &repairs_json {
                state.store.set_input_repairs(&child_id, r).await?;
            }
            children.push(child_id);
        }
        Ok((params, children))
    }
    .await;
    let (params, children) = match outcome {
        Ok(p) => p,
        Err(err) => {
            tracing::info!(reason = %err, files = stored.len(), "job submission refused");
            // Refused: keep nothing of the upload.
            let _ = tokio::fs::remove_dir_all(state.jobs.job_dir(&job_id)).await;
            state
                .auth
                .audit(
                    AuditEvent::new(format!("user:{}", user.username), &ip, "job.submit", Outcome::Denied)
                        .details(json!({ "reason": err.to_string() })),
                )
                .await?;
            return Err(err);
        }
    };
    state
        .auth
        .audit(
            AuditEvent::new(format!("user:{}", user.username), &ip, "job.submit", Outcome::Success)
                .target(&job_id)
                .details(json!({ "panel": params.panel_id, "engine": params.engine, "files": stored.len(),
                                 "bytes": stored.iter().map(|s| s.size).sum::<i64>() })),
        )
        .await?;
    state.jobs.enqueue(&job_id).await?;
    for child in &children {
        state.jobs.enqueue(child).await?;
    }
    let job = state.store.job(&job_id).await?.ok_or_else(|| ApiError::internal("job vanished"))?;
    Ok((StatusCode::CREATED, axum::Json(view(&state, job).await?)))
}

/// Most panels one submission may name.
const MAX_PANELS: usize = 8;

/// How a multi-panel job combines its panels: per variant, the panel with the best estimated r2;
/// or per haplotype, by meta-imputation.
const COMBINE_RULES: [&str; 2] = ["best_r2", "meta"];

/// What meta-imputation needs of a submission.
fn check_meta_request(params: &JobParams, panels: usize) -> Result<(), ApiError> {
    let refuse = |why: String| Err(ApiError::Unprocessable(format!("combine=meta {why}")));
    if panels < 2 {
        return refuse(format!("combines two or more panels; {panels} was named"));
    }
    if params.engine != "minimac4" {
        return refuse(format!("runs with engine minimac4 at every host, not {:?}", params.engine));
    }
    if params.mode != "imputation" {
        return refuse(format!("imputes; mode {:?} is not available with it", params.mode));
    }
    if params.phasing != "beagle" {
        return refuse(
            "phases the targets with each panel and gives each sample the phasing that fits it best; \
             phasing=no_phasing is not available with it"
                .into(),
        );
    }
    Ok(())
}

/// Where a job on `panel_ref` runs: here if this node hosts the panel (and the researcher did
/// not name another host), else at the best host in the federation within both sides' data
/// policy. If there is none, the researcher hears why before anything is kept.
async fn place(
    state: &AppState,
    panel_ref: &PanelRef,
    params: &JobParams,
    upload: u64,
    allow_resubmit: bool,
) -> Result<JobPlacement, ApiError> {
    // This node, named as the signed member list names it (or, outside a federation, as its
    // own config does).
    let me = state.identity.peer_id().to_string();
    let signed_self = state.federation.federation.current().and_then(|c| c.doc().member(&me).cloned());
    let pinned_here = panel_ref.host.as_deref().is_none_or(|h| match &signed_self {
        Some(member) => crate::federation::policy::selects(h, member),
        None => h == me || h == state.config.node.name || h.eq_ignore_ascii_case(&state.config.node.institution),
    });
    // An external service this node wraps: the job runs here, through it.
    if let Some(service) = state.store.service(&params.engine).await?
        && pinned_here
    {
        return match crate::jobs::federated::external_offer(&service, &panel_ref.panel_id, &params.build) {
            Ok(()) => Ok(JobPlacement::default()),
            Err(reason) => Err(ApiError::Unprocessable(reason)),
        };
    }
    let local_panel = state.store.panel(&panel_ref.panel_id).await?.filter(|p| p.status == "ready");
    match local_panel {
        Some(panel) if pinned_here => {
            if panel.build != params.build {
                return Err(ApiError::Unprocessable(format!(
                    "panel {} is {}, not {}",
                    panel.id, panel.build, params.build
                )));
            }
            Ok(JobPlacement::default())
        }
        _ => {
            select_host(&state.federation, &state.config, panel_ref, &params.build, &params.engine, upload, &[])
                .map_err(ApiError::Unprocessable)?;
            Ok(JobPlacement {
                role: JobRole::Origin,
                pinned_host: panel_ref.host.clone(),
                allow_resubmit,
                ..Default::default()
            })
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// At most this many (default 100).
    limit: Option<i64>,
}

/// Jobs, newest first: your own; admins and auditors see everyone's.
#[utoipa::path(get, operation_id = "listJobs", path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = [JobView])))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<axum::Json<Vec<JobView>>, ApiError> {
    let privileged = matches!(auth.principal.user.role, Role::Admin | Role::Auditor);
    let owner = (!privileged).then_some(auth.principal.user.id);
    let mut out = Vec::new();
    for job in state.store.list_jobs(owner, p.limit.unwrap_or(100).clamp(1, 1000)).await? {
        out.push(view(&state, job).await?);
    }
    Ok(axum::Json(out))
}

/// One job: state, progress, timestamps, QC report, summary, error.
#[utoipa::path(get, operation_id = "getJob", path = "/api/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<JobView>, ApiError> {
    let job = visible_job(&state, &auth.principal, &id, Access::Read).await?;
    Ok(axum::Json(view(&state, job).await?))
}

fn sse_event(e: &JobEvent) -> Event {
    Event::default().id(e.id.to_string()).event("job").data(serde_json::to_string(e).unwrap_or_default())
}

/// Server-Sent Events: every recorded step of the job so far (after `Last-Event-ID`, when a
/// client reconnects with it), then each new one live, until the job ends.
#[utoipa::path(get, operation_id = "streamJobEvents", path = "/api/v1/jobs/{id}/events", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path), ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event received: only later ones are sent")),
    responses((status = 200, content_type = "text/event-stream", description = "events named `job` with a JobEvent as data")))]
async fn events(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let job = visible_job(&state, &auth.principal, &id, Access::Read).await?;
    // A reconnecting client names the last event it has (the EventSource rule); anything
    // else there is taken as "from the start".
    let after: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .filter(|v: &i64| *v >= 0)
        .unwrap_or(0);
    // Subscribe before reading history, so no event falls in between.
    let live = state.jobs.subscribe();
    let history = state.store.job_events(&job.id, after).await?;
    let last_seen = history.last().map(|e| e.id).unwrap_or(after);
    let done = job.state().is_final();
    let past = futures_util::stream::iter(history.iter().map(|e| Ok(sse_event(e))).collect::<Vec<_>>());
    let job_id = job.id.clone();
    let for_this_job = tokio_stream::wrappers::BroadcastStream::new(live).filter_map(move |e| {
        let keep = match e {
            Ok(e) if e.job_id == job_id && e.id > last_seen => Some(e),
            _ => None,
        };
        async move { keep }
    });
    // Ends right after the event that puts the job in a final state.
    let live_part = futures_util::stream::unfold((Box::pin(for_this_job), false), |(mut events, ended)| async move {
        if ended {
            return None;
        }
        let e = events.next().await?;
        let is_final = e.state.parse::<crate::store::jobs::JobState>().map(|s| s.is_final()).unwrap_or(true);
        Some((Ok(sse_event(&e)), (events, is_final)))
    });
    let stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Event, Infallible>> + Send>> =
        if done { Box::pin(past) } else { Box::pin(past.chain(live_part)) };
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn action_error(e: JobActionError) -> ApiError {
    match e {
        JobActionError::NotFound(id) => ApiError::NotFound(format!("no job {id}")),
        e @ JobActionError::WrongState { .. } => ApiError::Conflict(e.to_string()),
        JobActionError::Store(e) => ApiError::internal(e),
    }
}

/// Cancel a job; its engine is killed. Its owner or an admin.
#[utoipa::path(post, operation_id = "cancelJob", path = "/api/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel(
    State(state): State<AppState>,
    auth: Auth<Submitter>,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<JobView>, ApiError> {
    job_action(&state, &auth, &ip, &id, JobAction::Cancel).await
}

/// Run a failed or cancelled job again. Its owner or an admin.
#[utoipa::path(post, operation_id = "retryJob", path = "/api/v1/jobs/{id}/retry", tag = "jobs", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn retry(
    State(state): State<AppState>,
    auth: Auth<Submitter>,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<JobView>, ApiError> {
    job_action(&state, &auth, &ip, &id, JobAction::Retry).await
}

enum JobAction {
    Cancel,
    Retry,
}

/// Cancels or retries a job the caller may see, answering with the job as it is afterwards.
async fn job_action(
    state: &AppState,
    auth: &Auth<Submitter>,
    ip: &str,
    id: &str,
    action: JobAction,
) -> Result<axum::Json<JobView>, ApiError> {
    visible_job(state, &auth.principal, id, Access::Act).await?;
    let actor = format!("user:{}", auth.principal.user.username);
    match action {
        JobAction::Cancel => state.jobs.cancel(id, &actor, ip).await,
        JobAction::Retry => state.jobs.retry(id, &actor, ip).await,
    }
    .map_err(action_error)?;
    Ok(axum::Json(view(state, visible_job(state, &auth.principal, id, Access::Read).await?).await?))
}

/// Password-protected archives of a completed job's results, made on request.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ArchivesMade {
    /// The archives' one password: shown this once and kept nowhere.
    password: String,
    /// One AES-256 zip per chromosome (its dose VCF, index and info file), now among the results.
    archives: Vec<String>,
}

/// Make an AES-256 zip of each chromosome's results under a new password, shown once. Its owner
/// or an admin; asking again replaces the archives and their password.
#[utoipa::path(post, operation_id = "makeResultArchives", path = "/api/v1/jobs/{id}/archives", tag = "jobs", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 201, body = ArchivesMade), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn archives(
    State(state): State<AppState>,
    auth: Auth<Submitter>,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, axum::Json<ArchivesMade>), ApiError> {
    let job = visible_job(&state, &auth.principal, &id, Access::Act).await?;
    if job.state() != crate::store::jobs::JobState::Completed || job.results_deleted_at.is_some() {
        return Err(ApiError::Conflict(format!("job {id} has no results to archive (it is {})", job.state)));
    }
    let results = state.store.job_results(&job.id).await?;
    let prefixes = crate::jobs::archives::prefixes(results.iter().map(|r| r.name.as_str()));
    if prefixes.is_empty() {
        return Err(ApiError::Conflict(format!("job {id} has no imputed chromosomes to archive")));
    }
    let password = crate::secrets::random_password();
    let (dir, list, secret) = (state.jobs.results_dir(&job.id), prefixes.clone(), password.clone());
    let written = tokio::task::spawn_blocking(move || crate::jobs::archives::write(&dir, &list, &secret))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let mut names = Vec::new();
    for path in &written {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let file = crate::files::hash_file(path).await.map_err(ApiError::internal)?;
        state
            .store
            .add_job_result(&job.id, &JobResult { name: name.clone(), size: file.size as i64, sha256: file.sha256 })
            .await?;
        names.push(name);
    }
    state
        .auth
        .audit(
            AuditEvent::new(
                format!("user:{}", auth.principal.user.username),
                &ip,
                "job.archives_made",
                Outcome::Success,
            )
            .target(&job.id)
            .details(json!({ "archives": names })),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(ArchivesMade { password, archives: names })))
}

/// The job's result files.
#[utoipa::path(get, operation_id = "listJobResults", path = "/api/v1/jobs/{id}/results", tag = "jobs", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = [JobResult])))]
async fn results(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<Vec<JobResult>>, ApiError> {
    let job = visible_job(&state, &auth.principal, &id, Access::Read).await?;
    Ok(axum::Json(state.store.job_results(&job.id).await?))
}

/// Download a result file (streamed; `Range` requests supported). Its owner or an admin: result
/// files are genotypes.
#[utoipa::path(get, operation_id = "downloadJobResult", path = "/api/v1/jobs/{id}/results/{file}", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path), ("file" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream"), (status = 206), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn download(
    State(state): State<AppState>,
    auth: Auth<Submitter>,
    ApiPath((id, file)): ApiPath<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &auth.principal, &id, Access::Act).await?;
    // Only names this node wrote and recorded are served; the name is never trusted as a path.
    let known = state.store.job_results(&job.id).await?.into_iter().any(|r| r.name == file);
    if !known {
        return Err(ApiError::NotFound(format!("job {id} has no result {file:?}")));
    }
    let path = state.jobs.results_dir(&job.id).join(&file);
    let response = tower_http::services::ServeFile::new(path).oneshot(request).await.map_err(ApiError::internal)?;
    let mut response = response.into_response();
    if let Ok(v) = format!("attachment; filename=\"{file}\"").parse() {
        response.headers_mut().insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    // A result page (ours, or one an external service sent) must never run as this node's site.
    response.headers_mut().insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"),
    );
    Ok(response)
}
