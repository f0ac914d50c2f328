//! External imputation services a node wraps and advertises like its own engines: Cloudgene
//! servers (Michigan, TOPMed, AfriGen-D) through their published REST API, and GA4GH WES
//! servers running a CWL workflow (`configs/wes/beagle-impute.cwl`).
//!
//! A registered service is health-checked on a schedule; its status, queue length and panels
//! go into the node's advert, and an unhealthy service is advertised as such (and so not chosen
//! as a host). Jobs for it are run by `jobs::external`.

pub mod cloudgene;
pub mod wes;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::credentials::{self, Secret};
use crate::identity::NodeIdentity;
use crate::store::Store;
use crate::store::services::ServiceRow;

/// Something an external service did not do, in words for the researcher or the admin. Never
/// contains the service's credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("{service} refused the credentials (HTTP {status}); the node's admin must register a valid token")]
    Unauthorized { service: String, status: u16 },
    #[error("{service} cannot be reached: {reason}")]
    Unreachable { service: String, reason: String },
    #[error("{service} answered HTTP {status}: {message}")]
    Http { service: String, status: u16, message: String },
    #[error("{service} sent an answer that does not parse ({what}): {reason}")]
    Malformed { service: String, what: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// A request that did not reach `service`. reqwest's message, without the URL (and never the
/// headers, so no token).
pub(crate) fn unreachable(service: &str, e: reqwest::Error) -> ServiceError {
    ServiceError::Unreachable { service: service.to_string(), reason: e.without_url().to_string() }
}

/// Passes a successful response through; otherwise the error: refused credentials for 401 and
/// 403, else the status with the service's own message (the first of `message_keys` in a JSON
/// body) or the start of the body.
pub(crate) async fn check_status(
    service: &str,
    resp: reqwest::Response,
    message_keys: &[&str],
) -> Result<reqwest::Response, ServiceError> {
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(ServiceError::Unauthorized { service: service.to_string(), status: status.as_u16() });
    }
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| message_keys.iter().find_map(|k| v[*k].as_str().map(String::from)))
        .unwrap_or_else(|| body.chars().take(200).collect());
    Err(ServiceError::Http { service: service.to_string(), status: status.as_u16(), message })
}

/// An HTTP client for one service: its credentials go only to the origin (scheme, host and
/// port) it was registered with, so a redirect elsewhere is refused rather than followed.
pub(crate) fn http_client(service: &str, base: &str) -> Result<reqwest::Client, ServiceError> {
    let origin =
        reqwest::Url::parse(base).map_err(|e| ServiceError::Other(format!("{service}: url {base:?}: {e}")))?.origin();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if attempt.url().origin() == origin {
            attempt.follow()
        } else {
            attempt.error("a redirect to another origin (the service's token goes only to its own)")
        }
    });
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(600))
        .redirect(policy)
        .build()
        .map_err(|e| ServiceError::Other(e.to_string()))
}

/// Whether `location` is on the service's own origin (scheme, host and port of `base`).
pub(crate) fn same_origin(base: &str, location: &str) -> bool {
    match (reqwest::Url::parse(base), reqwest::Url::parse(location)) {
        (Ok(a), Ok(b)) => a.origin().is_tuple() && a.origin() == b.origin(),
        _ => false,
    }
}

/// Streams a response body from `service` into `dest`, at most `limit` bytes; past it (or when
/// the announced length is already past it) the partial file is deleted and the fetch fails.
pub(crate) async fn save_bounded(
    service: &str,
    resp: reqwest::Response,
    dest: &std::path::Path,
    limit: u64,
) -> Result<u64, ServiceError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let too_large =
        || ServiceError::Other(format!("{service} sent a file larger than this node's limit of {limit} bytes"));
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let io = |e: std::io::Error| ServiceError::Other(format!("writing {}: {e}", dest.display()));
    let mut out = tokio::fs::File::create(dest).await.map_err(io)?;
    let mut stream = resp.bytes_stream();
    let mut written = 0u64;
    let result = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| unreachable(service, e))?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(too_large());
            }
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        Ok(written)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
    }
    result
}

/// The kinds of service this node can wrap.
pub const KINDS: [&str; 2] = ["cloudgene", "wes"];

/// A service's id: what jobs name as their engine. Lowercase letters, digits and dashes.
pub fn valid_service_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !matches!(id, "beagle" | "minimac4")
}

/// The token of a registered service, opened with the node key.
pub fn token_of(identity: &NodeIdentity, service: &ServiceRow) -> Result<Option<Secret>, ServiceError> {
    service
        .sealed_token
        .as_deref()
        .map(|sealed| credentials::open(identity, &service.id, sealed))
        .transpose()
        .map_err(|e| ServiceError::Other(format!("{}: {e}", service.id)))
}

/// A client for a registered Cloudgene service.
pub fn cloudgene_client(identity: &NodeIdentity, service: &ServiceRow) -> Result<cloudgene::Client, ServiceError> {
    let token =
        token_of(identity, service)?.ok_or_else(|| ServiceError::Other(format!("{} has no token", service.id)))?;
    cloudgene::Client::new(&service.id, &service.url, service.app.as_deref().unwrap_or("imputationserver2"), token)
}

/// A client for a registered WES service.
pub fn wes_client(identity: &NodeIdentity, service: &ServiceRow) -> Result<wes::Client, ServiceError> {
    let outputs_dir = service.outputs_dir.as_deref().map(std::path::PathBuf::from);
    wes::Client::new(&service.id, &service.url, token_of(identity, service)?, outputs_dir)
}

/// Checks one service now and records the outcome; returns whether its status changed.
pub async fn check(store: &Store, identity: &NodeIdentity, service: &ServiceRow) -> bool {
    let outcome = async {
        if service.kind == "wes" {
            let client = wes_client(identity, service)?;
            client.service_info().await?;
            // The reference server reports no state counts; its run list has the states.
            let runs = client.list_runs().await?;
            let busy = runs.iter().filter(|(_, s)| matches!(s.as_str(), "QUEUED" | "INITIALIZING" | "RUNNING")).count();
            return Ok::<_, ServiceError>((busy as i64, service.panels()));
        }
        let client = cloudgene_client(identity, service)?;
        let queue = client.queue_size().await?;
        let panels = client.app().await?.panels;
        Ok::<_, ServiceError>((queue, panels))
    }
    .await;
    let (status, queue, panels, error) = match outcome {
        Ok((queue, panels)) => ("available", queue, Some(panels), None),
        Err(e) => ("unavailable", 0, None, Some(e.to_string())),
    };
    if let Some(e) = &error {
        tracing::warn!(service = %service.id, error = %e, "external service health check failed");
    }
    if let Err(e) = store.record_service_health(&service.id, status, queue, panels.as_deref(), error.as_deref()).await {
        tracing::error!(service = %service.id, error = %e, "cannot record a health check");
    }
    status != service.status || panels.is_some_and(|p| p != service.panels())
}

/// Checks every registered service every `every`, and asks for a new advert when something
/// changed (or `wake` is notified: a service was added).
pub async fn health_loop(
    store: Store,
    identity: NodeIdentity,
    every: Duration,
    wake: Arc<Notify>,
    changed: Arc<Notify>,
) {
    loop {
        let mut any = false;
        for service in store.services().await.unwrap_or_default() {
            any |= check(&store, &identity, &service).await;
        }
        if any {
            changed.notify_one();
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// A service to register.
pub struct Registration<'a> {
    pub kind: &'a str,
    pub id: &'a str,
    pub url: &'a str,
    /// Required for Cloudgene; optional for WES (sent as a bearer token).
    pub token: Option<Secret>,
    pub app: Option<&'a str>,
    pub workflow_url: Option<&'a str>,
    /// WES on this machine: the one folder its `file://` outputs may come from.
    pub outputs_dir: Option<&'a str>,
    /// WES: the panels the workflow can use (Cloudgene lists its own).
    pub panels: Vec<crate::store::services::ServicePanel>,
}

/// Why a registration was refused, in words for the admin.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{0}")]
    Invalid(String),
    #[error("a service with id {0:?} is already registered")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Credential(#[from] credentials::CredentialError),
}

/// Checks and stores a registration, with the token sealed.
pub async fn register(store: &Store, identity: &NodeIdentity, r: &Registration<'_>) -> Result<(), RegisterError> {
    if !KINDS.contains(&r.kind) {
        return Err(RegisterError::Invalid(format!("kind must be one of {}, got {:?}", KINDS.join(", "), r.kind)));
    }
    if !valid_service_id(r.id) {
        return Err(RegisterError::Invalid(format!(
            "service id {:?}: 1 to 32 lowercase letters, digits or dashes, not beagle or minimac4",
            r.id
        )));
    }
    let url = reqwest::Url::parse(r.url).map_err(|e| RegisterError::Invalid(format!("url {:?}: {e}", r.url)))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(RegisterError::Invalid(format!("url {:?} must be http(s)://host[:port][/path]", r.url)));
    }
    let token = r.token.as_ref().filter(|t| !t.expose().trim().is_empty());
    if r.kind == "cloudgene" && token.is_none() {
        return Err(RegisterError::Invalid("a Cloudgene service needs its API token".into()));
    }
    let mut outputs_dir = None;
    if r.kind == "wes" {
        let Some(workflow) = r.workflow_url.map(str::trim).filter(|w| !w.is_empty()) else {
            return Err(RegisterError::Invalid("a WES service needs --workflow-url (the CWL workflow to run)".into()));
        };
        wes::Workflow::parse(workflow).map_err(RegisterError::Invalid)?;
        if r.panels.is_empty() {
            return Err(RegisterError::Invalid("a WES service needs at least one --panel".into()));
        }
        if let Some(dir) = r.outputs_dir.map(str::trim).filter(|d| !d.is_empty()) {
            outputs_dir = Some(wes::outputs_dir(&url, dir).map_err(RegisterError::Invalid)?);
        }
    } else if r.outputs_dir.is_some() {
        return Err(RegisterError::Invalid("--outputs-dir is for WES services on this machine".into()));
    }
    let sealed = token.map(|t| credentials::seal(identity, r.id, t)).transpose()?;
    let panels = (r.kind == "wes").then(|| serde_json::to_string(&r.panels).unwrap_or_else(|_| "[]".into()));
    let new = crate::store::services::NewService {
        id: r.id,
        kind: r.kind,
        url: r.url,
        app: if r.kind == "cloudgene" { r.app.or(Some("imputationserver2")) } else { None },
        workflow_url: r.workflow_url.map(str::trim),
        outputs_dir: outputs_dir.as_deref(),
        sealed_token: sealed.as_ref().map(|s| s.0.as_slice()),
        panels: panels.as_deref(),
    };
    store.add_service(&new).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => RegisterError::Exists(r.id.to_string()),
        other => RegisterError::Store(other),
    })
}

/// A WES panel as given on the command line: `id=ID,build=hg19,ref=LOCATION[,map=LOCATION]`.
pub fn parse_panel(text: &str) -> Result<crate::store::services::ServicePanel, RegisterError> {
    let mut fields = std::collections::HashMap::new();
    for part in text.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| RegisterError::Invalid(format!("panel {text:?}: {part:?} is not key=value")))?;
        fields.insert(k.trim().to_string(), v.trim().to_string());
    }
    let get = |k: &str| fields.get(k).cloned().filter(|v| !v.is_empty());
    let id = get("id").ok_or_else(|| RegisterError::Invalid(format!("panel {text:?} has no id=")))?;
    let build = get("build").unwrap_or_else(|| "hg19".into());
    if !matches!(build.as_str(), "hg19" | "hg38") {
        return Err(RegisterError::Invalid(format!("panel {id}: build must be hg19 or hg38")));
    }
    let reference = get("ref").ok_or_else(|| RegisterError::Invalid(format!("panel {id} has no ref=")))?;
    Ok(crate::store::services::ServicePanel {
        key: reference,
        name: get("name").unwrap_or_else(|| id.clone()),
        id,
        populations: get("population").map(|p| vec![p]).unwrap_or_default(),
        builds: vec![build],
        map: get("map"),
    })
}
