//! External imputation services a node wraps and advertises like its own engines: Cloudgene
//! servers (Michigan, TOPMed, AfriGen-D) through their published REST API.
//!
//! A registered service is health-checked on a schedule; its status, queue length and panels
//! go into the node's advert, and an unhealthy service is advertised as such (and so not chosen
//! as a host). Jobs for it are run by `jobs::external`.

pub mod cloudgene;

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

/// The kinds of service this node can wrap.
pub const KINDS: [&str; 1] = ["cloudgene"];

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

/// Checks one service now and records the outcome; returns whether its status changed.
pub async fn check(store: &Store, identity: &NodeIdentity, service: &ServiceRow) -> bool {
    let outcome = async {
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
    pub token: Secret,
    pub app: Option<&'a str>,
    pub workflow_url: Option<&'a str>,
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
    if r.kind == "wes" {
        return Err(RegisterError::Invalid(
            "GA4GH WES services cannot be wrapped yet; only kind cloudgene is supported".into(),
        ));
    }
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
    if r.token.expose().trim().is_empty() {
        return Err(RegisterError::Invalid("the token is empty".into()));
    }
    let sealed = credentials::seal(identity, r.id, &r.token)?;
    let new = crate::store::services::NewService {
        id: r.id,
        kind: r.kind,
        url: r.url,
        app: r.app.or(Some("imputationserver2")),
        workflow_url: r.workflow_url,
        sealed_token: Some(&sealed.0),
    };
    store.add_service(&new).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => RegisterError::Exists(r.id.to_string()),
        other => RegisterError::Store(other),
    })
}
