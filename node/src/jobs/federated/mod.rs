//! Jobs that cross nodes: a local researcher's job run at the node hosting its panel (this
//! node is the *origin*), and another node's job run here (this node is the *host*).
//!
//! Both sides keep the job in the `jobs` table and move it only through
//! [`JobsService::transition`], so every step is in SQLite before it is acted on. Each live
//! forwarded job has one driver task that looks at the stored state, does the next step (choose a
//! host, submit, follow, pull results, confirm delivery) and loops; after a restart the drivers
//! start again from what is stored. Messages are signed ([`SignedJobMessage`]) and files are
//! pulled by their receiver ([`transfer`]), so an interrupted transfer resumes where it stopped.

mod frames;
mod host;
mod origin;
pub mod selection;
mod serving;

pub use origin::select_host;
mod transfer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fedimpute_protocol::federation::Member;
use fedimpute_protocol::jobs::{FileManifest, JobMessage, JobReply, SignedJobMessage};
use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use super::JobsService;
use crate::federation::runtime::FederationHandle;
use crate::identity::NodeIdentity;
use crate::metrics::Metrics;
use crate::p2p::{JobNetworkEvent, Network, NetworkError};
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::jobs::{JobRole, JobRow};

/// A job message exchange that did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The peer is not reachable now: try again later.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The answer is not authentic or not a reply.
    #[error("unusable answer from the peer: {0}")]
    Protocol(String),
}

/// The federated side of the jobs core; cheap to clone.
#[derive(Clone)]
pub struct Federated {
    jobs: JobsService,
    network: Network,
    federation: FederationHandle,
    identity: NodeIdentity,
    metrics: Arc<Metrics>,
    /// One wake-up per job that has a driver running.
    drivers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    /// Per origin PeerId, the input pulls it may have running here at once.
    input_pulls: Arc<Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>>,
    /// Per peer, the file streams being served to it.
    stream_slots: serving::StreamSlots,
}

impl Federated {
    pub fn new(
        jobs: JobsService,
        network: Network,
        federation: FederationHandle,
        identity: NodeIdentity,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            jobs,
            network,
            federation,
            identity,
            metrics,
            drivers: Arc::default(),
            input_pulls: Arc::default(),
            stream_slots: Default::default(),
        }
    }

    /// Starts the drivers of every forwarded job that has something left to do, and the tasks
    /// that answer peers and follow local job events.
    pub fn start(&self, events: mpsc::Receiver<JobNetworkEvent>, file_streams: libp2p_stream::IncomingStreams) {
        let this = self.clone();
        tokio::spawn(async move { this.route(events).await });
        let this = self.clone();
        tokio::spawn(async move { this.serve_file_streams(file_streams).await });
        let this = self.clone();
        tokio::spawn(async move { this.follow_job_events().await });
        let this = self.clone();
        tokio::spawn(async move { this.recover().await });
    }

    async fn recover(&self) {
        match self.jobs.store.origin_jobs_to_drive().await {
            Ok(jobs) => jobs.into_iter().for_each(|j| self.drive(&j)),
            Err(e) => tracing::error!(error = %e, "cannot list forwarded jobs"),
        }
        self.recover_host_jobs().await;
    }

    /// Makes sure the job's driver runs (starting it, or waking it).
    fn drive(&self, job: &JobRow) {
        let role = job.role();
        if !matches!(role, JobRole::Origin | JobRole::Host) {
            return;
        }
        let mut drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wake) = drivers.get(&job.id) {
            wake.notify_one();
            return;
        }
        let wake = Arc::new(Notify::new());
        drivers.insert(job.id.clone(), wake.clone());
        let (this, id) = (self.clone(), job.id.clone());
        tokio::spawn(async move {
            match role {
                JobRole::Origin => this.drive_origin(&id, &wake).await,
                _ => this.drive_host(&id, &wake).await,
            }
            this.drivers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
    }

    /// Wakes drivers on local transitions (a cancel, a retry, a queued job) and tells origins
    /// about their jobs' progress here.
    async fn follow_job_events(&self) {
        let mut events = self.jobs.subscribe();
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "job events lagged");
                    continue;
                }
                Err(_) => return,
            };
            let Ok(Some(job)) = self.jobs.store.job(&event.job_id).await else { continue };
            match job.role() {
                JobRole::Origin => self.drive(&job),
                JobRole::Host => {
                    let this = self.clone();
                    tokio::spawn(async move { this.push_status(&job).await });
                }
                _ => {}
            }
        }
    }

    async fn serve_file_streams(&self, mut incoming: libp2p_stream::IncomingStreams) {
        use futures_util::StreamExt;
        while let Some((peer, stream)) = incoming.next().await {
            let this = self.clone();
            tokio::spawn(async move { this.serve_stream(peer, stream).await });
        }
    }

    async fn route(&self, mut events: mpsc::Receiver<JobNetworkEvent>) {
        while let Some(event) = events.recv().await {
            let this = self.clone();
            match event {
                JobNetworkEvent::Message { peer, message, channel } => {
                    tokio::spawn(async move { this.on_message(peer, message, channel).await });
                }
                JobNetworkEvent::Chunk { peer, request, channel } => {
                    tokio::spawn(async move {
                        let response = this.serve_chunk(peer, request).await;
                        this.network.respond_chunk(channel, response).await;
                    });
                }
                JobNetworkEvent::Connected { peer } => {
                    // A host that was given up on may still hold inputs of jobs that moved away
                    // or ended here meanwhile: tell it, so it deletes them.
                    let this = self.clone();
                    let host = peer.to_string();
                    tokio::spawn(async move { this.tell_about_jobs_left(&host).await });
                    // Jobs waiting on this peer can go on now rather than at their next retry.
                    let peer = peer.to_string();
                    let drivers: Vec<Arc<Notify>> =
                        self.drivers.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
                    tracing::debug!(%peer, drivers = drivers.len(), "peer connected: waking job drivers");
                    drivers.iter().for_each(|w| w.notify_one());
                }
            }
        }
    }

    async fn on_message(&self, peer: PeerId, message: SignedJobMessage, channel: ResponseChannel<SignedJobMessage>) {
        let reply = match message.open::<JobMessage>(&peer) {
            Err(e) => {
                tracing::warn!(%peer, error = %e, "refused a job message that is not authentic");
                self.audit(
                    AuditEvent::new(format!("peer:{peer}"), "p2p", "job.message_rejected", Outcome::Denied)
                        .details(serde_json::json!({ "reason": e.to_string() })),
                )
                .await;
                JobReply::Refused { job_id: String::new(), reason: format!("message not authentic: {e}") }
            }
            Ok(JobMessage::Request(request)) => self.on_request(peer, request).await,
            Ok(JobMessage::Reply(update)) => self.on_update(peer, update).await,
        };
        match self.sign(&reply) {
            Ok(signed) => self.network.respond_job(channel, signed).await,
            Err(e) => tracing::error!(error = %e, "cannot sign a job reply"),
        }
    }

    fn sign<T: Serialize>(&self, body: &T) -> Result<SignedJobMessage, AskError> {
        SignedJobMessage::sign(body, &self.identity.peer_id(), |m| self.identity.sign(m))
            .map_err(|e| AskError::Protocol(e.to_string()))
    }

    /// Sends a signed message to `peer` and opens its signed answer.
    async fn ask<T: Serialize>(&self, peer: &str, body: &T) -> Result<JobReply, AskError> {
        let peer: PeerId = peer.parse().map_err(|_| AskError::Protocol(format!("{peer:?} is not a PeerId")))?;
        let answer = self.network.job_request(peer, self.sign(body)?).await?;
        answer.open::<JobReply>(&peer).map_err(|e| AskError::Protocol(e.to_string()))
    }

    /// Sends a cancel for every job `host` may still hold although this node is done with it
    /// there; the host purges what it has (or answers that it has nothing).
    async fn tell_about_jobs_left(&self, host: &str) {
        let keep_ms = i64::from(self.jobs.config.jobs.results_retention_days.max(1)) * 86_400_000;
        let jobs = self.jobs.store.jobs_left_at(host, crate::time::now_ms() - keep_ms).await.unwrap_or_default();
        for job_id in jobs {
            match self.ask(host, &fedimpute_protocol::jobs::JobRequest::Cancel { job_id: job_id.clone() }).await {
                Ok(JobReply::Ack { .. }) => {
                    tracing::info!(job = %job_id, %host, "told a returning host to delete a job it no longer runs")
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(job = %job_id, %host, error = %e, "could not reach a returning host"),
            }
        }
    }

    /// A pull of `file` of job `job_id` from `peer`, with this node's transfer settings;
    /// `kind` (`input` or `result`) labels its bytes in the metrics.
    fn pull<'a>(&'a self, peer: PeerId, job_id: &'a str, file: &'a FileManifest, kind: &'a str) -> transfer::Pull<'a> {
        transfer::Pull {
            network: &self.network,
            metrics: &self.metrics,
            settings: &self.jobs.config.transfer,
            peer,
            job_id,
            file,
            kind,
        }
    }

    /// The member with this PeerId in the current federation config.
    fn member(&self, peer: &str) -> Option<Member> {
        self.federation.federation.current()?.doc().member(peer).cloned()
    }

    async fn audit(&self, event: AuditEvent) {
        self.jobs.audit(event).await;
    }
}

/// Whether the external `service` can take a job on `panel_id` for `build` now; the error is
/// the reason the researcher sees.
pub fn external_offer(service: &crate::store::services::ServiceRow, panel_id: &str, build: &str) -> Result<(), String> {
    if service.status != "available" {
        return Err(format!(
            "service {} is {} ({})",
            service.id,
            service.status,
            service.last_error.as_deref().unwrap_or("not checked yet")
        ));
    }
    let panels = service.panels();
    let Some(panel) = panels.iter().find(|p| p.id == panel_id || p.key == panel_id) else {
        return Err(format!("service {} does not offer panel {panel_id}", service.id));
    };
    if !panel.builds.is_empty() && !panel.builds.iter().any(|b| b == build) {
        return Err(format!("service {} takes panel {panel_id} only for {}", service.id, panel.builds.join(", ")));
    }
    Ok(())
}

/// A stable pseudonym of a local user for other nodes: derived from the node key (an ed25519
/// signature is deterministic), so it cannot be traced back to the user without that key.
pub fn pseudonym(identity: &NodeIdentity, user_id: i64) -> String {
    use sha2::{Digest, Sha256};
    let mut message = b"fedimpute/pseudonym/v1\0".to_vec();
    message.extend(user_id.to_be_bytes());
    format!("u-{}", &hex::encode(Sha256::digest(identity.sign(&message)))[..16])
}

/// A job id from a peer, safe to use as a folder name: 8 to 64 lowercase hex digits.
fn valid_job_id(id: &str) -> bool {
    (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A SHA-256 from a peer, in the form this node writes: 64 lowercase hex digits.
fn valid_sha256(digest: &str) -> bool {
    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A file name from a peer, safe to use inside a job folder: plain, no folders, no dot first.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_peers_are_checked_before_they_become_paths() {
        assert!(valid_job_id("0123456789abcdef01234567"));
        assert!(!valid_job_id("../../etc") && !valid_job_id("ABCDEF0123") && !valid_job_id("abc"));
        assert!(plain_file_name("chr20.dose.vcf.gz"));
        assert!(
            !plain_file_name("../x") && !plain_file_name(".hidden") && !plain_file_name("a/b") && !plain_file_name("")
        );
    }

    #[test]
    fn pseudonyms_are_stable_per_user_and_differ_between_users_and_nodes() {
        let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
        assert_eq!(pseudonym(&a, 7), pseudonym(&a, 7));
        assert_ne!(pseudonym(&a, 7), pseudonym(&a, 8));
        assert_ne!(pseudonym(&a, 7), pseudonym(&b, 7));
    }
}
