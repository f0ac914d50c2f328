//! A client of the Cloudgene REST API (v2) that Michigan Imputation Server, the TOPMed
//! Imputation Server and AfriGen-D run, as their API documentation describes it: the
//! `X-Auth-Token` header; the application's parameters from `GET /api/v2/server/apps/{app}`;
//! `POST /api/v2/jobs/submit/{app}` as multipart; `GET /api/v2/jobs/{id}/status` and
//! `GET /api/v2/jobs/{id}` (steps with their log messages, output files); `GET
//! /api/v2/jobs/{id}/cancel`; the queue size from `GET /api/v2/server/counters`; result files
//! from `GET /results/{path}`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::ServiceError;
use crate::credentials::Secret;
use crate::store::services::ServicePanel;

/// Cloudgene's numeric job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Dead,
    Waiting,
    Running,
    Exporting,
    Success,
    Failed,
    Canceled,
    Retired,
    SuccessNotified,
    FailedNotified,
    Deleted,
    Unknown(i64),
}

impl State {
    pub fn from_code(code: i64) -> Self {
        match code {
            -1 => State::Dead,
            1 => State::Waiting,
            2 => State::Running,
            3 => State::Exporting,
            4 => State::Success,
            5 => State::Failed,
            6 => State::Canceled,
            7 => State::Retired,
            8 => State::SuccessNotified,
            9 => State::FailedNotified,
            10 => State::Deleted,
            other => State::Unknown(other),
        }
    }

    pub fn is_success(self) -> bool {
        matches!(self, State::Success | State::SuccessNotified)
    }
}

/// A job's status.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: State,
    pub position_in_queue: i64,
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    state: i64,
    #[serde(default, rename = "positionInQueue")]
    position_in_queue: i64,
}

/// One step of a job and its log messages (type 0 ok, 1 error, 2 warning, 3 running).
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "logMessages")]
    pub log_messages: Vec<LogMessage>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogMessage {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub kind: i64,
}

/// A result file.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputFile {
    pub name: String,
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutputParam {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub files: Vec<OutputFile>,
}

/// A job's details.
#[derive(Debug, Clone, Deserialize)]
pub struct Details {
    pub state: i64,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default, rename = "outputParams")]
    pub output_params: Vec<OutputParam>,
}

impl Details {
    /// The first error message of any step: where Cloudgene reports QC failures.
    pub fn error_message(&self) -> Option<String> {
        self.steps
            .iter()
            .flat_map(|s| s.log_messages.iter().map(move |m| (s, m)))
            .find(|(_, m)| m.kind == 1)
            .map(|(s, m)| format!("{}: {}", s.name, strip_html(&m.message)))
    }

    /// The step under way, for progress messages.
    pub fn current_step(&self) -> Option<&str> {
        self.steps.last().map(|s| s.name.as_str())
    }
}

/// Cloudgene log messages may carry HTML (`<br>`, `<b>`): plain text for our job log.
fn strip_html(text: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the application accepts.
#[derive(Debug, Clone, Default)]
pub struct AppInfo {
    pub panels: Vec<ServicePanel>,
    pub populations: Vec<String>,
    pub builds: Vec<String>,
}

/// The parameters of a submission.
pub struct Submission<'a> {
    pub files: &'a [(String, std::path::PathBuf)],
    pub refpanel: &'a str,
    pub build: &'a str,
    /// `eagle` or `no_phasing`.
    pub phasing: &'a str,
    pub population: &'a str,
    /// `imputation` or `qconly`.
    pub mode: &'a str,
    pub r2_filter: &'a str,
    /// Encrypts the result archives.
    pub password: &'a Secret,
}

pub struct Client {
    service: String,
    base: String,
    app: String,
    token: Secret,
    http: reqwest::Client,
}

/// Our id for a Cloudgene panel key: `apps@1000g-phase-3-v5@2.0.0` is `1000g-phase-3-v5`.
pub fn panel_id(key: &str) -> String {
    let key = key.strip_prefix("apps@").unwrap_or(key);
    key.split('@').next().unwrap_or(key).to_string()
}

impl Client {
    pub fn new(service: &str, url: &str, app: &str, token: Secret) -> Result<Self, ServiceError> {
        let http = super::http_client(service, url)?;
        Ok(Self {
            service: service.to_string(),
            base: url.trim_end_matches('/').to_string(),
            app: app.to_string(),
            token,
            http,
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> ServiceError {
        super::unreachable(&self.service, e)
    }

    async fn checked(
        &self,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, ServiceError> {
        let resp = resp.map_err(|e| self.unreachable(e))?;
        super::check_status(&self.service, resp, &["message"]).await
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, path: &str, what: &str) -> Result<T, ServiceError> {
        let resp =
            self.http.get(format!("{}{path}", self.base)).header("X-Auth-Token", self.token.expose()).send().await;
        let text = self.checked(resp).await?.text().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_str(&text).map_err(|e| ServiceError::Malformed {
            service: self.service.clone(),
            what: what.to_string(),
            reason: e.to_string(),
        })
    }

    /// The application's reference panels, populations and builds.
    pub async fn app(&self) -> Result<AppInfo, ServiceError> {
        let body: Value = self.get_json(&format!("/api/v2/server/apps/{}", self.app), "application").await?;
        let params = body["params"].as_array().ok_or_else(|| ServiceError::Malformed {
            service: self.service.clone(),
            what: "application".into(),
            reason: "no `params` list".into(),
        })?;
        let values = |id: &str| -> Vec<(String, String)> {
            params
                .iter()
                .find(|p| p["id"] == id)
                .and_then(|p| p["values"].as_array())
                .map(|vs| {
                    vs.iter()
                        .filter_map(|v| {
                            Some((v["key"].as_str()?.to_string(), v["value"].as_str().unwrap_or("").to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let builds: Vec<String> = values("build").into_iter().map(|(k, _)| k).collect();
        let populations: Vec<String> = values("population").into_iter().map(|(k, _)| k).collect();
        let panels = values("refpanel")
            .into_iter()
            .map(|(key, name)| ServicePanel {
                id: panel_id(&key),
                name: if name.is_empty() { key.clone() } else { name },
                key,
                populations: populations.clone(),
                builds: builds.clone(),
                map: None,
            })
            .collect();
        Ok(AppInfo { panels, populations, builds })
    }

    /// Jobs waiting in the service's queue.
    pub async fn queue_size(&self) -> Result<i64, ServiceError> {
        let body: Value = self.get_json("/api/v2/server/counters", "counters").await?;
        body["queue"]["size"].as_i64().ok_or_else(|| ServiceError::Malformed {
            service: self.service.clone(),
            what: "counters".into(),
            reason: "no `queue.size`".into(),
        })
    }

    /// Submits a job; returns its id at the service.
    pub async fn submit(&self, s: &Submission<'_>) -> Result<String, ServiceError> {
        let mut form = reqwest::multipart::Form::new();
        for (name, path) in s.files {
            let file = tokio::fs::File::open(path).await.map_err(|e| ServiceError::Other(format!("{name}: {e}")))?;
            let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
            form = form.part("files", reqwest::multipart::Part::stream_with_length(body, len).file_name(name.clone()));
        }
        for (k, v) in [
            ("refpanel", s.refpanel),
            ("build", s.build),
            ("phasing", s.phasing),
            ("population", s.population),
            ("mode", s.mode),
            ("r2Filter", s.r2_filter),
            ("password", s.password.expose()),
        ] {
            form = form.text(k, v.to_string());
        }
        let resp = self
            .http
            .post(format!("{}/api/v2/jobs/submit/{}", self.base, self.app))
            .header("X-Auth-Token", self.token.expose())
            .multipart(form)
            .send()
            .await;
        let body: Value = self.checked(resp).await?.json().await.map_err(|e| ServiceError::Malformed {
            service: self.service.clone(),
            what: "submission".into(),
            reason: e.to_string(),
        })?;
        if body["success"] == false {
            return Err(ServiceError::Other(format!(
                "{} refused the job: {}",
                self.service,
                body["message"].as_str().unwrap_or("no reason given")
            )));
        }
        body["id"].as_str().map(String::from).ok_or_else(|| ServiceError::Malformed {
            service: self.service.clone(),
            what: "submission".into(),
            reason: "no job `id`".into(),
        })
    }

    pub async fn status(&self, id: &str) -> Result<Status, ServiceError> {
        let body: StatusBody = self.get_json(&format!("/api/v2/jobs/{id}/status"), "job status").await?;
        Ok(Status { state: State::from_code(body.state), position_in_queue: body.position_in_queue })
    }

    pub async fn details(&self, id: &str) -> Result<Details, ServiceError> {
        self.get_json(&format!("/api/v2/jobs/{id}"), "job details").await
    }

    pub async fn cancel(&self, id: &str) -> Result<(), ServiceError> {
        let resp = self
            .http
            .get(format!("{}/api/v2/jobs/{id}/cancel", self.base))
            .header("X-Auth-Token", self.token.expose())
            .send()
            .await;
        self.checked(resp).await.map(|_| ())
    }

    /// Downloads a result file to `dest`, streaming, at most `limit` bytes.
    pub async fn download(&self, file: &OutputFile, dest: &Path, limit: u64) -> Result<u64, ServiceError> {
        if file.path.split('/').any(|p| p == ".." || p.is_empty()) || file.path.contains(['?', '#', '\\']) {
            return Err(ServiceError::Other(format!(
                "{} listed an unusable result path {:?}",
                self.service, file.path
            )));
        }
        let resp = self
            .http
            .get(format!("{}/results/{}", self.base, file.path))
            .header("X-Auth-Token", self.token.expose())
            .send()
            .await;
        let resp = self.checked(resp).await?;
        super::save_bounded(&self.service, resp, dest, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_keys_states_and_step_errors_are_read_as_cloudgene_writes_them() {
        assert_eq!(panel_id("apps@1000g-phase-3-v5@2.0.0"), "1000g-phase-3-v5");
        assert_eq!(panel_id("hapmap-2"), "hapmap-2");
        assert_eq!(State::from_code(7), State::Retired);
        assert!(State::from_code(8).is_success() && !State::from_code(5).is_success());
        let details: Details = serde_json::from_value(serde_json::json!({
            "state": 5,
            "steps": [
                {"name": "Input Validation", "logMessages": [{"message": "1 valid VCF file(s) found.", "type": 0}]},
                {"name": "Quality Control", "logMessages": [{"message": "<b>Error:</b> only 12 SNPs<br>overlap", "type": 1}]}
            ],
            "outputParams": []
        }))
        .unwrap();
        assert_eq!(details.error_message().unwrap(), "Quality Control: Error: only 12 SNPs overlap");
        assert_eq!(details.current_step(), Some("Quality Control"));
    }
}
