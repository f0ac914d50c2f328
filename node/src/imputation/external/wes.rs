//! A client of the GA4GH Workflow Execution Service API (1.0 and 1.1): `service-info`,
//! `POST /runs` (multipart: `workflow_url`, `workflow_type`, `workflow_type_version`,
//! `workflow_params`, `workflow_attachment`), run status and log, `POST /runs/{id}/cancel`, with
//! a bearer token when one is configured.
//!
//! Known behaviours of the reference server (`wes-service`) it copes with: `GET /runs` answers
//! `workflows` instead of `runs`; cancel is a no-op (the caller reports "cancel requested", not
//! "cancelled"); outputs are `file://` locations on the server's machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// What a run needs.
pub struct RunRequest<'a> {
    /// The workflow: a local file attached to the run, or an http(s) URL the server fetches.
    pub workflow: &'a str,
    pub params: Value,
    /// Files attached to the run (the inputs), under their names.
    pub attachments: &'a [(String, PathBuf)],
}

pub struct Client {
    service: String,
    base: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(service: &str, url: &str, token: Option<Secret>) -> Result<Self, ServiceError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| ServiceError::Other(e.to_string()))?;
        Ok(Self { service: service.to_string(), base: url.trim_end_matches('/').to_string(), token, http })
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
        let local_workflow = !(r.workflow.starts_with("http://") || r.workflow.starts_with("https://"));
        if local_workflow {
            let path = Path::new(r.workflow.strip_prefix("file://").unwrap_or(r.workflow));
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("workflow.cwl").to_string();
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|e| ServiceError::Other(format!("reading the workflow {}: {e}", path.display())))?;
            form = form
                .text("workflow_url", name.clone())
                .part("workflow_attachment", reqwest::multipart::Part::bytes(bytes).file_name(name));
        } else {
            form = form.text("workflow_url", r.workflow.to_string());
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

    /// Fetches an output `location` into `dest`: http(s) with the token, or `file://` when the
    /// server runs on this machine (its URL is a loopback address), as the reference server does.
    pub async fn fetch(&self, location: &str, dest: &Path) -> Result<(), ServiceError> {
        if let Some(path) = location.strip_prefix("file://") {
            let loopback = reqwest::Url::parse(&self.base)
                .ok()
                .and_then(|u| {
                    u.host_str()
                        .map(|h| h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
                })
                .unwrap_or(false);
            if !loopback {
                return Err(ServiceError::Other(format!(
                    "{} gave a local file ({location}) but does not run on this machine",
                    self.service
                )));
            }
            tokio::fs::copy(path, dest).await.map_err(|e| ServiceError::Other(format!("copying {location}: {e}")))?;
            return Ok(());
        }
        let req = self.http.get(location);
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
        let bytes = resp.bytes().await.map_err(|e| super::unreachable(&self.service, e))?;
        tokio::fs::write(dest, bytes).await.map_err(|e| ServiceError::Other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_as_the_api_defines_them() {
        assert_eq!(RunState::parse("COMPLETE"), RunState::Complete);
        assert_eq!(RunState::parse("EXECUTOR_ERROR"), RunState::ExecutorError);
        assert_eq!(RunState::parse("something else"), RunState::Unknown);
    }
}
