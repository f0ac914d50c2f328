//! The job protocol (`/fedimpute/jobs/1`): how an origin node asks the node hosting a panel to
//! impute, and how the two follow the job to its end.
//!
//! Every message is signed by the node that sends it (`JOB_SIGNING_CONTEXT || canonical(body)`
//! with the key its PeerId embeds); a receiver also checks that the signer is the peer on the
//! other end of the connection. Signed bodies hold no floating-point numbers, because the
//! canonical encoding refuses them: `r2_filter` travels as one of its allowed decimal strings.
//!
//! Flow: `Submit` -> `Accepted` | `Refused`; the host then pulls the inputs over the file
//! protocol ([`crate::transfer`]); it pushes `Status` updates as requests of its own (the
//! origin answers `Ack`), and the origin may ask with `QueryStatus` at any time (after a
//! restart, or when pushes stop). When done the host offers a `ResultManifest`, the origin pulls
//! the files and sends a `DeliveryReceipt`, after which the host deletes its copies. `Cancel`
//! may come at any time before that. The origin chooses the job id, so a retried `Submit` is
//! idempotent.
//!
//! The type tags of [`JobRequest`] and [`JobReply`] are disjoint, so a receiver can tell an
//! origin's request from a host's pushed update by the tag alone ([`JobMessage`]).

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::advert::public_key_of;
use crate::canonical::{CanonicalError, canonicalize};

/// The request-response protocol for jobs.
pub const JOB_PROTOCOL: &str = "/fedimpute/jobs/1";

/// Domain separation for node signatures over job messages.
pub const JOB_SIGNING_CONTEXT: &[u8] = b"fedimpute/job-message/v1\0";

/// The r2 filters a job may ask for, as they travel.
pub const R2_FILTERS: [&str; 5] = ["0", "0.001", "0.1", "0.2", "0.3"];

/// The travelling form of an r2 filter stored as a number: the entry of [`R2_FILTERS`] it
/// equals, or `"0"` (keep all) for any other value.
pub fn r2_filter_text(value: f64) -> &'static str {
    R2_FILTERS.iter().find(|f| f.parse::<f64>().is_ok_and(|v| (v - value).abs() < 1e-9)).copied().unwrap_or("0")
}

/// A file as announced before it is sent: the receiver checks size and hash on arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileManifest {
    /// Shown to people only; never used as a path.
    pub name: String,
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

/// What the researcher asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequestParams {
    pub panel_id: String,
    /// `hg19` or `hg38`.
    pub build: String,
    /// `beagle`, `minimac4`, or the id of an external service the host wraps (lowercase
    /// letters, digits and dashes).
    pub engine: String,
    /// `beagle` or `no_phasing`.
    pub phasing: String,
    pub population: Option<String>,
    /// One of [`R2_FILTERS`].
    pub r2_filter: String,
    /// `imputation`, `qc_only`, or one of a meta-imputation's two rounds ([`META_MODES`]).
    pub mode: String,
}

/// The rounds of a meta-imputation, as a host runs them (always with Minimac4, unchunked):
/// `meta_phase` phases the targets with the host's panel and returns the phased targets and
/// Minimac4's leave-one-out (empirical) file of them; `meta_impute` imputes an already phased
/// input and returns the dose and empirical files.
pub const META_MODES: [&str; 2] = ["meta_phase", "meta_impute"];

impl JobRequestParams {
    /// Checks every field against its allowed values; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let one_of = |field: &str, value: &str, allowed: &[&str]| {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(format!("{field} must be one of {}, got {value:?}", allowed.join(", ")))
            }
        };
        one_of("build", &self.build, &["hg19", "hg38"])?;
        let service_id = (1..=32).contains(&self.engine.len())
            && self.engine.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !service_id {
            return Err(format!("engine must be beagle, minimac4 or a service id, got {:?}", self.engine));
        }
        one_of("phasing", &self.phasing, &["beagle", "no_phasing"])?;
        one_of("r2_filter", &self.r2_filter, &R2_FILTERS)?;
        one_of("mode", &self.mode, &["imputation", "qc_only", META_MODES[0], META_MODES[1]])?;
        if META_MODES.contains(&self.mode.as_str()) && self.engine != "minimac4" {
            return Err(format!("mode {} runs with engine minimac4, got {:?}", self.mode, self.engine));
        }
        if self.panel_id.is_empty() || self.panel_id.len() > 64 {
            return Err("panel_id must have 1 to 64 characters".into());
        }
        Ok(())
    }
}

/// From the origin to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobRequest {
    /// Run this job; its inputs follow over the file protocol.
    Submit {
        job_id: String,
        params: JobRequestParams,
        inputs: Vec<FileManifest>,
        /// A stable pseudonym of the researcher at the origin (never their user name), for the
        /// host's per-origin quotas and audit.
        pseudonymous_user: String,
    },
    /// Where is the job? (The host answers with `Status` or `ResultManifest`.)
    QueryStatus { job_id: String },
    /// Stop the job and kill its engine.
    Cancel { job_id: String },
    /// The origin holds these result files, verified; the host may delete its copies.
    DeliveryReceipt { job_id: String, files: Vec<FileManifest> },
}

/// From the host to the origin (answers, and pushed status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobReply {
    Accepted {
        job_id: String,
    },
    /// Not accepted, with a reason for the researcher (policy, quota, panel, QC).
    Refused {
        job_id: String,
        reason: String,
    },
    Status {
        job_id: String,
        state: String,
        stage: Option<String>,
        /// Thousandths (0 to 1000): the canonical encoding has no floats.
        progress_permille: u32,
        message: Option<String>,
        /// The host's QC report once there is one, as JSON text (a string): its call rates are
        /// fractions, and a signed body holds no floats.
        qc_report: Option<Value>,
    },
    /// The results are ready to fetch.
    ResultManifest {
        job_id: String,
        files: Vec<FileManifest>,
    },
    /// Receipt of a cancel or a delivery receipt.
    Ack {
        job_id: String,
    },
}

/// Any job message, as a receiver reads a signed body: an origin's request or a host's reply
/// (answer or pushed update).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobMessage {
    Request(JobRequest),
    Reply(JobReply),
}

/// A job message as it travels: the body as sent, its sender and the sender's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedJobMessage {
    pub body: Value,
    /// The sender's PeerId.
    pub sender: String,
    /// Hex ed25519 signature.
    pub signature: String,
}

/// Why a job message is not authentic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobMessageError {
    #[error("message does not parse: {0}")]
    Schema(String),
    #[error("sender {0:?} is not a PeerId with an embedded ed25519 key")]
    BadSender(String),
    #[error("signed by {signed_by}, but it came from {connected}")]
    WrongPeer { signed_by: String, connected: String },
    #[error("signature does not verify")]
    BadSignature,
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

fn signing_bytes(body: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut bytes = JOB_SIGNING_CONTEXT.to_vec();
    bytes.extend(canonicalize(body)?);
    Ok(bytes)
}

impl SignedJobMessage {
    /// Signs `body` as `sender` with `sign` (the sender's node key).
    pub fn sign<T: Serialize>(
        body: &T,
        sender: &PeerId,
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<Self, JobMessageError> {
        let value = serde_json::to_value(body).map_err(|e| JobMessageError::Schema(e.to_string()))?;
        let signature = hex::encode(sign(&signing_bytes(&value)?));
        Ok(Self { body: value, sender: sender.to_string(), signature })
    }

    /// Checks the signature and that the signer is `connected`, the peer it came from, and
    /// parses the body.
    pub fn open<T: for<'de> Deserialize<'de>>(&self, connected: &PeerId) -> Result<T, JobMessageError> {
        let sender: PeerId = self.sender.parse().map_err(|_| JobMessageError::BadSender(self.sender.clone()))?;
        if &sender != connected {
            return Err(JobMessageError::WrongPeer {
                signed_by: self.sender.clone(),
                connected: connected.to_string(),
            });
        }
        let key = public_key_of(&sender).ok_or_else(|| JobMessageError::BadSender(self.sender.clone()))?;
        let sig = hex::decode(&self.signature).map_err(|_| JobMessageError::BadSignature)?;
        if !key.verify(&signing_bytes(&self.body)?, &sig) {
            return Err(JobMessageError::BadSignature);
        }
        serde_json::from_value(self.body.clone()).map_err(|e| JobMessageError::Schema(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(seed: u8) -> libp2p_identity::Keypair {
        let mut bytes = [seed; 32];
        libp2p_identity::Keypair::ed25519_from_bytes(&mut bytes).unwrap()
    }

    fn submit() -> JobRequest {
        JobRequest::Submit {
            job_id: "3f9c".into(),
            params: JobRequestParams {
                panel_id: "afr-v1".into(),
                build: "hg38".into(),
                engine: "beagle".into(),
                phasing: "beagle".into(),
                population: Some("AFR".into()),
                r2_filter: "0.3".into(),
                mode: "imputation".into(),
            },
            inputs: vec![FileManifest { name: "chr20.vcf.gz".into(), size: 14235, sha256: "ab".repeat(32) }],
            pseudonymous_user: "u-5e1d".into(),
        }
    }

    #[test]
    fn a_signed_message_opens_only_from_its_sender() {
        let (origin, other) = (keypair(1), keypair(2));
        let origin_id = origin.public().to_peer_id();
        let msg = SignedJobMessage::sign(&submit(), &origin_id, |m| origin.sign(m).unwrap()).unwrap();
        assert_eq!(msg.open::<JobRequest>(&origin_id).unwrap(), submit());
        let err = msg.open::<JobRequest>(&other.public().to_peer_id()).unwrap_err();
        assert!(matches!(err, JobMessageError::WrongPeer { .. }), "{err}");
    }

    #[test]
    fn a_tampered_or_forged_message_is_refused() {
        let (origin, mallory) = (keypair(1), keypair(2));
        let origin_id = origin.public().to_peer_id();
        let mut msg = SignedJobMessage::sign(&submit(), &origin_id, |m| origin.sign(m).unwrap()).unwrap();
        msg.body["params"]["panel_id"] = "other-panel".into();
        assert_eq!(msg.open::<JobRequest>(&origin_id), Err(JobMessageError::BadSignature));
        // Signed by someone else while claiming to be the origin.
        let forged = SignedJobMessage::sign(&submit(), &origin_id, |m| mallory.sign(m).unwrap()).unwrap();
        assert_eq!(forged.open::<JobRequest>(&origin_id), Err(JobMessageError::BadSignature));
    }

    #[test]
    fn messages_have_a_stable_wire_form() {
        let reply = JobReply::Status {
            job_id: "3f9c".into(),
            state: "running".into(),
            stage: Some("phasing".into()),
            progress_permille: 420,
            message: None,
            qc_report: None,
        };
        let bytes = canonicalize(&serde_json::to_value(&reply).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"job_id":"3f9c","message":null,"progress_permille":420,"qc_report":null,"stage":"phasing","state":"running","type":"status"}"#
        );
    }

    #[test]
    fn requests_and_replies_are_told_apart_by_their_tag() {
        let query = serde_json::to_value(JobRequest::QueryStatus { job_id: "j".into() }).unwrap();
        assert!(matches!(serde_json::from_value(query).unwrap(), JobMessage::Request(JobRequest::QueryStatus { .. })));
        let status = serde_json::to_value(JobReply::Status {
            job_id: "j".into(),
            state: "queued".into(),
            stage: None,
            progress_permille: 0,
            message: None,
            qc_report: None,
        })
        .unwrap();
        assert!(matches!(serde_json::from_value(status).unwrap(), JobMessage::Reply(JobReply::Status { .. })));
    }

    #[test]
    fn stored_r2_filters_travel_as_their_listed_text() {
        assert_eq!(r2_filter_text(0.3), "0.3");
        assert_eq!(r2_filter_text(0.001), "0.001");
        assert_eq!(r2_filter_text(0.0), "0");
        assert_eq!(r2_filter_text(0.25), "0");
    }

    #[test]
    fn parameters_are_checked_field_by_field() {
        let JobRequest::Submit { mut params, .. } = submit() else { unreachable!() };
        assert_eq!(params.validate(), Ok(()));
        params.r2_filter = "0.25".into();
        assert!(params.validate().unwrap_err().contains("r2_filter"));
        params.r2_filter = "0".into();
        params.engine = "Impute5/../x".into();
        assert!(params.validate().unwrap_err().contains("engine"));
        params.engine = "michigan".into();
        assert_eq!(params.validate(), Ok(()), "an external service's id");
        params.mode = "meta_phase".into();
        assert!(params.validate().unwrap_err().contains("minimac4"), "a meta round runs with Minimac4 only");
        params.engine = "minimac4".into();
        assert_eq!(params.validate(), Ok(()));
        params.mode = "meta".into();
        assert!(params.validate().unwrap_err().contains("mode"), "the origin's parent mode never travels");
    }
}
