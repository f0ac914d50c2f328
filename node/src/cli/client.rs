//! The researcher's connection to a node's API: which node, which token, and which certificate
//! to trust, from the command line, the environment or a saved profile (`fedimpute login`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use super::profile::{self, Profiles};
pub(super) use crate::tls::fingerprint;

/// Which node to talk to and as whom; shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The node's base URL, e.g. https://imputation.example.org:8443 (default: the profile's).
    #[arg(long, env = "FEDIMPUTE_NODE")]
    node: Option<String>,
    /// An API token (`fit_...`, made at /api/v1/me/tokens) or an access token (default: the
    /// profile's, for the profile's node only).
    #[arg(long, env = "FEDIMPUTE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM certificate to trust for the node (for a node with a self-signed certificate).
    #[arg(long, env = "FEDIMPUTE_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// The saved login to use (made by `fedimpute login --profile NAME`); `default` if not given.
    #[arg(long, env = "FEDIMPUTE_PROFILE")]
    profile: Option<String>,
    /// Print one JSON document on stdout and nothing else (progress and notes go to stderr).
    #[arg(long)]
    pub json: bool,
}

/// A command line that cannot be acted on as given (exit code 2, as clap's own usage errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// How the client decides to trust the node's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Trust {
    /// The system's certificate authorities.
    System,
    /// A PEM certificate (a CA, or the node's own self-signed one), besides the system's.
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256 fingerprint, saved at `fedimpute login`.
    Pinned(String),
}

impl NodeArgs {
    /// The node, token and trust these arguments name. Explicit flags and environment
    /// variables win over the profile; the profile's token and certificate are only ever used
    /// with the profile's own node, so `--node` elsewhere never sends them there.
    pub(super) fn resolve(&self) -> anyhow::Result<(String, String, Trust)> {
        let profiles = Profiles::load()?;
        let name = self.profile.as_deref().unwrap_or(profile::DEFAULT);
        let saved = profiles.get(name);
        if self.profile.is_some() && saved.is_none() {
            return Err(UsageError(format!(
                "no profile {name:?} in {}; make it with `fedimpute login --profile {name} --node URL --user NAME`",
                profiles.path().display()
            ))
            .into());
        }
        let Some(node) = self.node.clone().or_else(|| saved.map(|p| p.node.clone())) else {
            return Err(UsageError(
                "no node given: log in once with `fedimpute login --node URL --user NAME`, or pass --node and --token"
                    .into(),
            )
            .into());
        };
        let node = normalise_url(&node);
        let same_node = saved.filter(|p| normalise_url(&p.node) == node);
        let Some(token) = self.token.clone().or_else(|| same_node.map(|p| p.token.clone())) else {
            return Err(UsageError(format!(
                "no token for {node}: log in with `fedimpute login --node {node} --user NAME`, or pass --token"
            ))
            .into());
        };
        let trust = match (&self.ca_cert, same_node) {
            (Some(ca), _) => Trust::CaFile(ca.clone()),
            (None, Some(p)) => p.trust(),
            (None, None) => Trust::System,
        };
        Ok((node, token, trust))
    }
}

/// A base URL without trailing slashes, so `https://n:8443/` and `https://n:8443` are one node.
pub(super) fn normalise_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

/// An HTTPS client for a node's API that trusts the node's certificate as `trust` says.
pub(super) fn http_client(trust: &Trust) -> anyhow::Result<reqwest::Client> {
    let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(20));
    let builder = match trust {
        Trust::System => builder,
        Trust::CaFile(ca) => {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            builder.tls_certs_merge([
                reqwest::Certificate::from_pem(&pem).context("the CA file is not a PEM certificate")?
            ])
        }
        Trust::Pinned(fingerprint) => builder.tls_backend_preconfigured(pinned_tls_config(fingerprint)?),
    };
    Ok(builder.build()?)
}

/// A fingerprint as typed (any case, with or without colons) in the form [`fingerprint`] makes.
pub(super) fn normalise_fingerprint(text: &str) -> anyhow::Result<String> {
    let hex: String = text.trim().trim_start_matches("SHA256:").chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&hex).ok().filter(|b| b.len() == 32).with_context(|| {
        format!("{text:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed, as openssl prints it)")
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

/// TLS that accepts the one certificate whose fingerprint was pinned, and nothing else; the
/// handshake's signatures are still checked against that certificate's key.
fn pinned_tls_config(fingerprint: &str) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = PinnedCertificate { fingerprint: normalise_fingerprint(fingerprint)?, provider: provider.clone() };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[derive(Debug)]
struct PinnedCertificate {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity);
        if presented == self.fingerprint {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the node's certificate changed: its SHA-256 fingerprint is {presented}, the profile pinned {}; \
                 if the node's admin confirms the new one, run `fedimpute login` again",
                self.fingerprint
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate a node presents, fetched without trusting it (only `/healthz` is asked for,
/// and nothing is sent), so `fedimpute login` can show its fingerprint.
pub(super) async fn presented_certificate(base: &str) -> anyhow::Result<Vec<u8>> {
    let probe = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .tls_danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()?;
    let resp = probe.get(format!("{base}/healthz")).send().await.context("reaching the node")?;
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
        .context("the node presented no certificate (is the URL https://?)")
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

/// An authenticated client of one node's `/api/v1`.
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    base: String,
    pub(super) token: String,
}

impl Client {
    pub(super) fn new(args: &NodeArgs) -> anyhow::Result<Self> {
        let (base, token, trust) = args.resolve()?;
        if !base.starts_with("https://") {
            bail!("{base}: the node's URL must start with https://");
        }
        Ok(Self { http: http_client(&trust)?, base, token })
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self.http.get(self.url(path)).bearer_auth(&self.token).send().await.context("reaching the node")?;
        Ok(success_or_error(resp).await?.json().await?)
    }

    /// POST without a body; the node's JSON answer.
    pub(super) async fn post(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self.http.post(self.url(path)).bearer_auth(&self.token).send().await.context("reaching the node")?;
        Ok(success_or_error(resp).await?.json().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_compared_in_one_form_whatever_the_case_or_colons() {
        let fp = fingerprint(b"a certificate");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert_eq!(normalise_fingerprint(&fp.to_lowercase().replace(':', "")).unwrap(), fp);
        assert_eq!(normalise_fingerprint(&format!("SHA256:{fp}")).unwrap(), fp);
        assert!(normalise_fingerprint("AB:CD").is_err(), "too short");
        assert!(normalise_fingerprint(&"zz".repeat(32)).is_err(), "not hex");
    }
}
