//! A client of the GA4GH Workflow Execution Service API (1.0 and 1.1): `service-info`,
//! `POST /runs` (multipart: `workflow_url`, `workflow_type`, `workflow_type_version`,
//! `workflow_params`, `workflow_attachment`), run status and log, `POST /runs/{id}/cancel`, with
//! a bearer token when one is configured.
//!
//! Known behaviours of the reference server (`wes-service`) it copes with: `GET /runs` answers
//! `workflows` instead of `runs`; cancel is a no-op (the caller reports "cancel requested", not
//! "cancelled"); outputs are `file://` locations on the server's machine.
//!
//! A WES server is not trusted with the node's files: the workflow it runs is one shipped with
//! fedimpute (by name) or an http(s) URL, never a file on the node; outputs come only from the
//! server's own origin, or (for a server on this machine) from inside the one folder its admin
//! named, canonical and without symlinks; downloads are bounded.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::ServiceError;
use crate::credentials::Secret;

/// WES run states, as the API defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Unknown,
    Queued,
    Initializing,
    Running,
    Paused,
    Complete,
    ExecutorError,
    SystemError,
    Canceled,
    Canceling,
    Preempted,
}

impl RunState {
    pub fn parse(state: &str) -> Self {
        match state {
            "QUEUED" => RunState::Queued,
            "INITIALIZING" => RunState::Initializing,
            "RUNNING" => RunState::Running,
            "PAUSED" => RunState::Paused,
            "COMPLETE" => RunState::Complete,
            "EXECUTOR_ERROR" => RunState::ExecutorError,
            "SYSTEM_ERROR" => RunState::SystemError,
            "CANCELED" => RunState::Canceled,
            "CANCELING" => RunState::Canceling,
            "PREEMPTED" => RunState::Preempted,
            _ => RunState::Unknown,
        }
    }
}

/// A run's log: its state, the runner's stderr and exit code, and its outputs.
#[derive(Debug, Clone, Deserialize)]
pub struct RunLog {
    pub state: String,
    #[serde(default)]
    pub run_log: Option<Log>,
    #[serde(default)]
    pub outputs: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Log {
    #[serde(default)]
    pub stderr: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i64>,
}

/// The CWL workflows shipped in the repository's `configs/wes/`, built into the binary.
pub const SHIPPED_WORKFLOWS: [(&str, &str); 1] =
    [("beagle-impute.cwl", include_str!("../../../../configs/wes/beagle-impute.cwl"))];

/// The workflow a WES service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workflow {
    /// One of [`SHIPPED_WORKFLOWS`], attached to every run.
    Shipped { name: &'static str, text: &'static str },
    /// An http(s) URL the server fetches itself.
    Url(String),
}

impl Workflow {
    /// A registration's `workflow_url`: a shipped workflow's name, or an http(s) URL. A path on
    /// the node is refused: the node would upload whatever file it names to the service.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some((name, body)) = SHIPPED_WORKFLOWS.iter().find(|(name, _)| *name == text) {
            return Ok(Workflow::Shipped { name, text: body });
        }
        match reqwest::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                Ok(Workflow::Url(text.to_string()))
            }
            _ => Err(format!(
                "workflow {text:?} must be a workflow shipped with fedimpute ({}) or an http(s) URL; \
                 the node never uploads a file of its own to a service",
                SHIPPED_WORKFLOWS.map(|(n, _)| n).join(", ")
            )),
        }
    }
}

/// The folder a WES server on this machine may hand outputs back from, as registered: absolute,
/// existing, canonical (symlinks resolved), and only for a server on a loopback address.
pub fn outputs_dir(service_url: &reqwest::Url, dir: &str) -> Result<String, String> {
    if !is_loopback(service_url) {
        return Err(format!("--outputs-dir is only for a WES server on this machine, not {service_url}"));
    }
    let path = Path::new(dir);
    if !path.is_absolute() {
        return Err(format!("outputs folder {dir:?} must be an absolute path"));
    }
    let canonical = std::fs::canonicalize(path).map_err(|e| format!("outputs folder {dir}: {e}"))?;
    if !canonical.is_dir() {
        return Err(format!("outputs folder {dir} is not a folder"));
    }
    canonical.to_str().map(String::from).ok_or_else(|| format!("outputs folder {dir} is not UTF-8"))
}

fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|h| {
        h == "localhost" || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

/// What a run needs.
pub struct RunRequest<'a> {
    pub workflow: &'a Workflow,
    pub params: Value,
    /// Files attached to the run (the inputs), under their names.
    pub attachments: &'a [(String, PathBuf)],
}

pub struct Client {
    service: String,
    base: String,
    token: Option<Secret>,
    /// Where `file://` outputs may come from (none: never).
    outputs_dir: Option<PathBuf>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(
        service: &str,
        url: &str,
        token: Option<Secret>,
        outputs_dir: Option<PathBuf>,
    ) -> Result<Self, ServiceError> {
        let http = super::http_client(service, url)?;
        let base = url.trim_end_matches('/').to_string();
        Ok(Self { service: service.to_string(), base, token, outputs_dir, http })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}/ga4gh/wes/v1{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        }
    }

    async fn json(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value, ServiceError> {
        let resp = req.send().await.map_err(|e| super::unreachable(&self.service, e))?;
        let resp = super::check_status(&self.service, resp, &["msg", "detail"]).await?;
        let text = resp.text().await.unwrap_or_default();
        serde_json::from_str(&text).map_err(|e| ServiceError::Malformed {
            service: self.service.clone(),
            what: what.to_string(),
            reason: e.to_string(),
        })
    }

    /// `service-info`: the health check. Returns the runs queued or running, when reported.
    pub async fn service_info(&self) -> Result<i64, ServiceError> {
        let info = self.json(self.request(reqwest::Method::GET, "/service-info"), "service-info").await?;
        if !info["workflow_type_versions"].is_object() {
            return Err(ServiceError::Malformed {
                service: self.service.clone(),
                what: "service-info".into(),
                reason: "no workflow_type_versions".into(),
            });
        }
        let counts = &info["system_state_counts"];
        Ok(["QUEUED", "INITIALIZING", "RUNNING"].iter().filter_map(|s| counts[*s].as_i64()).sum())
    }

    /// The runs the server knows, as (id, state); reads `runs` (the API) or `workflows` (what
    /// the reference server answers).
    pub async fn list_runs(&self) -> Result<Vec<(String, String)>, ServiceError> {
        let body = self.json(self.request(reqwest::Method::GET, "/runs"), "run list").await?;
        let list = body["runs"].as_array().or(body["workflows"].as_array()).cloned().unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|r| {
                Some((r["run_id"].as_str()?.to_string(), r["state"].as_str().unwrap_or("UNKNOWN").to_string()))
            })
            .collect())
    }

    /// Starts a run; returns its id.
    pub async fn run(&self, r: &RunRequest<'_>) -> Result<String, ServiceError> {
        let mut form = reqwest::multipart::Form::new()
            .text("workflow_type", "CWL")
            .text("workflow_type_version", "v1.2")
            .text("workflow_params", r.params.to_string());
        match r.workflow {
            Workflow::Shipped { name, text } => {
                form = form.text("workflow_url", name.to_string()).part(
                    "workflow_attachment",
                    reqwest::multipart::Part::bytes(text.as_bytes()).file_name(name.to_string()),
                );
            }
            Workflow::Url(url) => form = form.text("workflow_url", url.clone()),
        }
        for (name, path) in r.attachments {
            let file = tokio::fs::File::open(path).await.map_err(|e| ServiceError::Other(format!("{name}: {e}")))?;
            let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
            form = form.part(
                "workflow_attachment",
                reqwest::multipart::Part::stream_with_length(body, len).file_name(name.clone()),
            );
        }
        let body = self.json(self.request(reqwest::Method::POST, "/runs").multipart(form), "run submission").await?;
        body["run_id"].as_str().map(String::from).ok_or_else(|| ServiceError::Malformed {
            service: self.service.clone(),
            what: "run submission".into(),
            reason: "no run_id".into(),
        })
    }

    pub async fn status(&self, id: &str) -> Result<RunState, ServiceError> {
        let body = self.json(self.request(reqwest::Method::GET, &format!("/runs/{id}/status")), "run status").await?;
        Ok(RunState::parse(body["state"].as_str().unwrap_or("UNKNOWN")))
    }

    pub async fn log(&self, id: &str) -> Result<RunLog, ServiceError> {
        let body = self.json(self.request(reqwest::Method::GET, &format!("/runs/{id}")), "run log").await?;
        serde_json::from_value(body).map_err(|e| ServiceError::Malformed {
            service: self.service.clone(),
            what: "run log".into(),
            reason: e.to_string(),
        })
    }

    pub async fn cancel(&self, id: &str) -> Result<(), ServiceError> {
        self.json(self.request(reqwest::Method::POST, &format!("/runs/{id}/cancel")), "cancel").await.map(|_| ())
    }

    /// Fetches an output `location` into `dest`, at most `limit` bytes: from the service's own
    /// origin (with its token), or a `file://` location inside the service's outputs folder.
    /// Anything else is refused before a byte is read or a request sent.
    pub async fn fetch(&self, location: &str, dest: &Path, limit: u64) -> Result<u64, ServiceError> {
        let refuse =
            |why: &str| ServiceError::Other(format!("{} gave an output location that {why}: {location}", self.service));
        let url = reqwest::Url::parse(location).map_err(|_| refuse("is not a URL"))?;
        match url.scheme() {
            "file" => {
                let path = url.to_file_path().map_err(|_| refuse("is not a local path"))?;
                let Some(outputs) = &self.outputs_dir else {
                    return Err(refuse("is a local file, and no outputs folder was registered for the service"));
                };
                self.copy_output(&path, outputs, dest, limit).await.map_err(|why| refuse(&why))
            }
            "http" | "https" if super::same_origin(&self.base, location) => {
                let req = self.http.get(url);
                let req = match &self.token {
                    Some(t) => req.bearer_auth(t.expose()),
                    None => req,
                };
                let resp = req.send().await.map_err(|e| super::unreachable(&self.service, e))?;
                if !resp.status().is_success() {
                    return Err(ServiceError::Http {
                        service: self.service.clone(),
                        status: resp.status().as_u16(),
                        message: format!("fetching an output of the run ({location})"),
                    });
                }
                super::save_bounded(&self.service, resp, dest, limit).await
            }
            "http" | "https" => Err(refuse("is not on the service's own origin")),
            _ => Err(refuse("has a scheme this node does not fetch")),
        }
    }

    /// Copies a regular file from inside `outputs` (no symlink anywhere on its path, no `..`).
    async fn copy_output(&self, path: &Path, outputs: &Path, dest: &Path, limit: u64) -> Result<u64, String> {
        use tokio::io::AsyncReadExt;
        let canonical = tokio::fs::canonicalize(path).await.map_err(|e| format!("cannot be read ({e})"))?;
        if canonical != path {
            return Err("goes through a symlink or a relative part".into());
        }
        if !canonical.starts_with(outputs) {
            return Err(format!("is outside the service's outputs folder {}", outputs.display()));
        }
        let mut options = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::custom_flags(options.read(true), libc::O_NOFOLLOW);
        let file = options.open(&canonical).map_err(|e| format!("cannot be opened ({e})"))?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("is not a regular file".into());
        }
        if meta.len() > limit {
            return Err(format!("is larger than this node's limit of {limit} bytes"));
        }
        let mut source = tokio::fs::File::from_std(file).take(limit);
        let mut out = tokio::fs::File::create(dest).await.map_err(|e| e.to_string())?;
        tokio::io::copy(&mut source, &mut out).await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflows_are_shipped_names_or_web_addresses_never_node_paths() {
        assert!(matches!(Workflow::parse("beagle-impute.cwl"), Ok(Workflow::Shipped { .. })));
        assert_eq!(
            Workflow::parse("https://example.org/w.cwl").unwrap(),
            Workflow::Url("https://example.org/w.cwl".into())
        );
        for bad in ["/var/lib/fedimpute/node.key", "file:///var/lib/fedimpute/node.key", "node.key", "ftp://x/w.cwl"] {
            assert!(Workflow::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn file_outputs_come_only_from_inside_the_outputs_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let outputs = root.join("outputs");
        std::fs::create_dir_all(outputs.join("run1")).unwrap();
        std::fs::write(outputs.join("run1/imputed.vcf.gz"), b"imputed").unwrap();
        std::fs::write(root.join("node.key"), b"secret key").unwrap();
        std::os::unix::fs::symlink(root.join("node.key"), outputs.join("run1/link.vcf.gz")).unwrap();
        let client = Client::new("wes", "http://127.0.0.1:9", None, Some(outputs.clone())).unwrap();
        let dest = root.join("fetched");
        let url = |p: &Path| format!("file://{}", p.display());
        assert_eq!(client.fetch(&url(&outputs.join("run1/imputed.vcf.gz")), &dest, 100).await.unwrap(), 7);
        for bad in [
            url(&root.join("node.key")),
            url(&outputs.join("run1/link.vcf.gz")),
            format!("file://{}/run1/../../node.key", outputs.display()),
            "http://127.0.0.1:10/elsewhere".to_string(),
        ] {
            let _ = std::fs::remove_file(&dest);
            let err = client.fetch(&bad, &dest, 100).await.unwrap_err().to_string();
            assert!(err.contains("output location"), "{bad}: {err}");
            assert!(!std::fs::read(&dest).is_ok_and(|b| b == b"secret key"), "{bad} was copied");
        }
        assert!(client.fetch(&url(&outputs.join("run1/imputed.vcf.gz")), &dest, 3).await.is_err(), "over the limit");
        let unconfined = Client::new("wes", "http://127.0.0.1:9", None, None).unwrap();
        assert!(unconfined.fetch(&url(&outputs.join("run1/imputed.vcf.gz")), &dest, 100).await.is_err());
    }

    #[test]
    fn states_parse_as_the_api_defines_them() {
        assert_eq!(RunState::parse("COMPLETE"), RunState::Complete);
        assert_eq!(RunState::parse("EXECUTOR_ERROR"), RunState::ExecutorError);
        assert_eq!(RunState::parse("something else"), RunState::Unknown);
    }
}
