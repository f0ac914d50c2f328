//! `node.toml`: the node's configuration, typed and validated, with defaults.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), and every error
//! names the file and the key. Relative paths are resolved against the node's data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the node configuration inside the data directory.
pub const CONFIG_FILE: &str = "node.toml";
/// The SQLite database's file name inside the data directory.
pub const DATABASE_FILE: &str = "fedimpute.db";

/// Everything a node reads from `node.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub p2p: P2pSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub logging: LoggingSection,
    #[serde(default)]
    pub engines: EnginesSection,
    #[serde(default)]
    pub qc: crate::imputation::qc::QcSettings,
    #[serde(default)]
    pub jobs: JobsSection,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub transfer: TransferSection,
    #[serde(default)]
    pub chunking: crate::imputation::chunks::ChunkingSection,
    #[serde(default)]
    pub executor: crate::imputation::executor::ExecutorSection,
    /// Mails to researchers when their jobs end; none without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<crate::mail::SmtpSection>,
}

/// Jobs forwarded between nodes: how files move and how long a silent peer is waited for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferSection {
    /// Bytes asked for per request when pulling a file by chunks, from a peer that offers no
    /// file streams (at most 4 MiB).
    pub chunk_bytes: u32,
    /// Chunk requests in flight per file.
    pub parallel_chunks: u32,
    /// Cap on the rate of each file this node pulls, bytes per second (0: none).
    pub max_bytes_per_sec: u64,
    /// Cap on the rate of each file this node sends on a file stream, bytes per second (0: none).
    pub max_send_bytes_per_sec: u64,
    /// Seconds a peer may stay unreachable before its jobs fail (or, if the researcher allowed
    /// it, move to another host of the panel).
    pub peer_timeout_secs: u64,
    /// Seconds between status questions to a host, besides the updates it pushes.
    pub poll_secs: u64,
}

impl Default for TransferSection {
    fn default() -> Self {
        Self {
            chunk_bytes: 256 * 1024,
            parallel_chunks: 32,
            max_bytes_per_sec: 0,
            max_send_bytes_per_sec: 0,
            peer_timeout_secs: 30 * 60,
            poll_secs: 10,
        }
    }
}

/// Data policy: who may send jobs to this node, and where this node's data may go. Selectors
/// are an institution name, a PeerId, or `tag=value` (e.g. `jurisdiction=ZA`) matched against
/// the federation config's member list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// As a host: members whose jobs this node accepts; empty means every member.
    pub accept_from: Vec<String>,
    /// As an origin: members this node's researchers' data may be sent to; empty means every member.
    pub send_to: Vec<String>,
    /// As a host: jobs from one origin node running here at once, and receiving their inputs
    /// at once (0: no limit beyond capacity).
    pub max_concurrent_per_origin: u32,
    /// As a host: jobs one origin node may submit in 30 days (0: no limit).
    pub max_jobs_per_origin_per_month: u32,
    /// As a host: jobs of one origin node not yet ended here (receiving, queued, running,
    /// delivering); beyond it a new one is refused (0: no limit).
    pub max_jobs_in_flight_per_origin: u32,
    /// As a host: bytes of inputs and results one origin node's jobs may hold here at once; a
    /// job that would pass it is refused (0: no limit).
    pub max_stored_bytes_per_origin: u64,
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            accept_from: Vec::new(),
            send_to: Vec::new(),
            max_concurrent_per_origin: 2,
            max_jobs_per_origin_per_month: 500,
            max_jobs_in_flight_per_origin: 16,
            max_stored_bytes_per_origin: 100 * 1024 * 1024 * 1024,
        }
    }
}

/// Job submission limits and retention.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsSection {
    /// Largest single input file, in bytes (413 beyond it).
    pub max_upload_bytes: u64,
    /// Jobs one user may submit in 30 days.
    pub max_jobs_per_month: u32,
    /// Bytes of inputs and results one user may hold on the node at once.
    pub max_stored_bytes_per_user: u64,
    /// Delete a job's inputs as soon as it ends.
    pub delete_inputs_when_done: bool,
    /// Days results are kept after a job ends.
    pub results_retention_days: u32,
    /// How often expired results are looked for, in seconds.
    pub retention_sweep_secs: u64,
    /// Times a job may be started on this node: one interrupted by the node stopping more often
    /// than that fails instead of being re-queued (it may be what stops the node).
    pub max_attempts: u32,
    /// Below this many free bytes in the data directory, `/readyz` reports the node degraded.
    pub min_free_disk_bytes: u64,
}

impl Default for JobsSection {
    fn default() -> Self {
        Self {
            max_upload_bytes: 4 * 1024 * 1024 * 1024,
            max_jobs_per_month: 100,
            max_stored_bytes_per_user: 50 * 1024 * 1024 * 1024,
            delete_inputs_when_done: true,
            results_retention_days: 7,
            retention_sweep_secs: 3600,
            max_attempts: 3,
            min_free_disk_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// The imputation engines and tools, run as child processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnginesSection {
    pub java: PathBuf,
    pub beagle_jar: PathBuf,
    pub bref3_jar: PathBuf,
    pub minimac4: PathBuf,
    pub bcftools: PathBuf,
    pub tabix: PathBuf,
    /// Java heap for Beagle (`-Xmx`), e.g. `4g`; Debian's wrapper sets none, so the jar is run directly.
    pub java_heap: String,
    /// Threads per engine run.
    pub threads: u32,
    /// Engine runs at once on this node.
    pub max_concurrent_jobs: u32,
    /// Seconds between health checks of the external services this node wraps.
    pub service_check_secs: u64,
    /// Largest file fetched from an external service, in bytes (a download past it fails the job).
    pub service_max_download_bytes: u64,
    /// Most bytes a service's result archives of one job may unpack to.
    pub service_max_unpacked_bytes: u64,
    /// Highest unpacked-to-packed size ratio of an archive entry (a zip bomb fails the job).
    pub service_max_compression_ratio: u32,
}

impl Default for EnginesSection {
    fn default() -> Self {
        Self {
            java: PathBuf::from("java"),
            beagle_jar: PathBuf::from("/usr/share/beagle/beagle.jar"),
            bref3_jar: PathBuf::from("/usr/share/beagle/bref3.jar"),
            minimac4: PathBuf::from("minimac4"),
            bcftools: PathBuf::from("bcftools"),
            tabix: PathBuf::from("tabix"),
            java_heap: "2g".into(),
            threads: 2,
            max_concurrent_jobs: 1,
            service_check_secs: 60,
            service_max_download_bytes: 64 * 1024 * 1024 * 1024,
            service_max_unpacked_bytes: 256 * 1024 * 1024 * 1024,
            service_max_compression_ratio: 100,
        }
    }
}

/// Who this node is and where it keeps its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Display name of the node, shown to the federation.
    pub name: String,
    /// The institution that runs the node.
    pub institution: String,
    /// Directory holding the database, keys and files. Absolute.
    pub data_dir: PathBuf,
}

/// The HTTPS API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Address the HTTPS API listens on; port 0 picks a free port (written to `api.addr`).
    pub listen: SocketAddr,
    /// PEM certificate chain, relative to the data directory unless absolute.
    pub tls_cert: PathBuf,
    /// PEM private key, relative to the data directory unless absolute.
    pub tls_key: PathBuf,
    /// Largest request body accepted by JSON endpoints, in bytes.
    pub max_body_bytes: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Seconds a client has to send a request's headers, and that an idle keep-alive
    /// connection is kept.
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may stall between two reads before the request is dropped.
    pub body_stall_timeout_secs: u64,
    /// Open connections one client address may hold; further ones are closed at once.
    pub max_connections_per_address: usize,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed. From
    /// any other peer the header is ignored: throttling and audit see the TCP peer.
    pub trusted_proxies: Vec<ProxyNet>,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: PathBuf::from("tls/api.crt"),
            tls_key: PathBuf::from("tls/api.key"),
            max_body_bytes: 1024 * 1024,
            shutdown_grace_secs: 10,
            header_read_timeout_secs: 30,
            body_stall_timeout_secs: 60,
            max_connections_per_address: 64,
            trusted_proxies: Vec::new(),
        }
    }
}

/// A trusted proxy: one address (`10.0.0.5`) or a CIDR block (`10.0.0.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProxyNet(pub ipnet::IpNet);

impl ProxyNet {
    pub fn contains(&self, ip: &std::net::IpAddr) -> bool {
        self.0.contains(ip)
    }
}

impl TryFrom<String> for ProxyNet {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            return Ok(ProxyNet(net));
        }
        text.parse::<std::net::IpAddr>()
            .map(|ip| ProxyNet(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR block"))
    }
}

impl From<ProxyNet> for String {
    fn from(net: ProxyNet) -> String {
        net.0.to_string()
    }
}

/// The peer-to-peer side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pSection {
    /// libp2p multiaddrs to listen on.
    pub listen: Vec<String>,
    /// `direct` (members can dial this node) or `outbound` (a firewall lets this node only dial
    /// out: it takes a reservation at the federation's relays and is reached through them).
    #[serde(default)]
    pub reachability: Reachability,
    /// PeerIds of the relays an `outbound` node may use; empty: every member that serves as one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<String>,
    /// Members this node stays connected to for gossip, however big the federation: it dials
    /// half of them (its ring neighbours) and the others dial it. Connections for jobs and
    /// transfers open on demand besides. 0: every member (a full mesh).
    #[serde(default = "default_gossip_peers")]
    pub gossip_peers: usize,
    /// An on-demand connection (not a gossip neighbour) closes once idle this long, in seconds.
    #[serde(default = "default_idle_connection_secs")]
    pub idle_connection_secs: u64,
    /// Serving as a relay for members that cannot accept connections.
    #[serde(default)]
    pub relay: RelaySection,
}

fn default_gossip_peers() -> usize {
    12
}

fn default_idle_connection_secs() -> u64 {
    60
}

impl Default for P2pSection {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/127.0.0.1/tcp/4001".to_string()],
            reachability: Reachability::default(),
            relays: Vec::new(),
            gossip_peers: default_gossip_peers(),
            idle_connection_secs: default_idle_connection_secs(),
            relay: RelaySection::default(),
        }
    }
}

/// Whether other members can open connections to this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    #[default]
    Direct,
    Outbound,
}

/// A relay (libp2p circuit relay v2) for members behind firewalls. It serves only members of the
/// current signed list; what crosses it is TLS between the two members, which it cannot read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
    /// Offer the relay. The node must be listed with an address members can dial.
    pub serve: bool,
    /// Members that may hold a reservation (be reachable through this relay) at once.
    pub max_reservations: usize,
    /// Relayed connections open at once, over all members, and per member.
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    /// Bytes one relayed connection may carry (both ways) before the relay closes it.
    pub max_circuit_bytes: u64,
    /// How long one relayed connection may stay open, in seconds.
    pub max_circuit_duration_secs: u64,
}

impl Default for RelaySection {
    fn default() -> Self {
        Self {
            serve: false,
            max_reservations: 64,
            max_circuits: 32,
            max_circuits_per_peer: 8,
            // A whole-genome input or result set is a few GiB.
            max_circuit_bytes: 16 << 30,
            max_circuit_duration_secs: 24 * 3600,
        }
    }
}

/// Sessions, tokens and login throttling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Lifetime of an access JWT, in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, in seconds.
    pub refresh_token_ttl_secs: u64,
    /// Failed logins of one user name from one client address before each further attempt
    /// waits (1 s, doubling up to `max_login_delay_secs`); other addresses are not slowed.
    pub max_failed_logins: u32,
    /// Failed logins from one client address, over every user name, before that address waits.
    pub address_failure_budget: u32,
    /// Failures older than this are forgotten, in seconds.
    pub failed_login_window_secs: u64,
    /// Longest wait a throttled client is given, in seconds.
    pub max_login_delay_secs: u64,
    /// Password checks (argon2, about 19 MiB and tens of milliseconds each) run at once; a few
    /// more may wait briefly, the rest get 429 at once. 0: the number of cores, at most 4.
    pub parallel_password_checks: usize,
    /// Longest lifetime of an API token, in days, for every role.
    pub max_api_token_days: u32,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 7 * 24 * 3600,
            max_failed_logins: 5,
            address_failure_budget: 10,
            failed_login_window_secs: 15 * 60,
            max_login_delay_secs: 15 * 60,
            parallel_password_checks: 0,
            max_api_token_days: 90,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// `text` or `json`; `fedimpute run --log-format` overrides it.
    #[serde(default)]
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A configuration that could not be read or does not hold.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration in {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl NodeConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let config: NodeConfig = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(smtp) = &self.smtp {
            smtp.validate()?;
        }
        if self.node.name.trim().is_empty() {
            return Err("key `node.name` must not be empty".into());
        }
        if self.node.institution.trim().is_empty() {
            return Err("key `node.institution` must not be empty".into());
        }
        if !self.node.data_dir.is_absolute() {
            return Err(format!("key `node.data_dir` must be an absolute path, got {}", self.node.data_dir.display()));
        }
        for (i, addr) in self.p2p.listen.iter().enumerate() {
            addr.parse::<multiaddr::Multiaddr>()
                .map_err(|e| format!("key `p2p.listen[{i}]`: {addr:?} is not a multiaddr: {e}"))?;
        }
        for (i, relay) in self.p2p.relays.iter().enumerate() {
            relay
                .parse::<libp2p::PeerId>()
                .map_err(|e| format!("key `p2p.relays[{i}]`: {relay:?} is not a PeerId: {e}"))?;
        }
        if self.p2p.idle_connection_secs == 0 {
            return Err("key `p2p.idle_connection_secs` must be at least 1".into());
        }
        let relay = &self.p2p.relay;
        if relay.serve && (relay.max_reservations == 0 || relay.max_circuits == 0 || relay.max_circuits_per_peer == 0) {
            return Err("keys `p2p.relay.max_*` must be at least 1 when the relay is served".into());
        }
        if relay.max_circuit_duration_secs == 0 || relay.max_circuit_duration_secs > u64::from(u32::MAX) {
            return Err("key `p2p.relay.max_circuit_duration_secs` must be between 1 and 2^32 - 1".into());
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.refresh_token_ttl_secs == 0 {
            return Err("keys `auth.*_ttl_secs` must be positive".into());
        }
        if self.auth.max_failed_logins == 0 {
            return Err("key `auth.max_failed_logins` must be at least 1".into());
        }
        let heap_ok = self.engines.java_heap.len() > 1
            && self.engines.java_heap[..self.engines.java_heap.len() - 1].parse::<u32>().is_ok()
            && matches!(self.engines.java_heap.chars().last(), Some('m' | 'g' | 'M' | 'G'));
        if !heap_ok {
            return Err(format!("key `engines.java_heap`: {:?} is not like 512m or 4g", self.engines.java_heap));
        }
        if self.jobs.max_attempts == 0 {
            return Err("key `jobs.max_attempts` must be at least 1".into());
        }
        if self.engines.service_max_compression_ratio == 0 {
            return Err("key `engines.service_max_compression_ratio` must be at least 1".into());
        }
        if self.engines.threads == 0 || self.engines.max_concurrent_jobs == 0 {
            return Err("keys `engines.threads` and `engines.max_concurrent_jobs` must be at least 1".into());
        }
        let q = &self.qc;
        if [q.min_variant_call_rate, q.min_sample_call_rate, q.min_panel_overlap]
            .iter()
            .any(|r| !(0.0..=1.0).contains(r))
        {
            return Err("keys `qc.min_*_call_rate` and `qc.min_panel_overlap` are shares between 0 and 1".into());
        }
        if self.api.max_body_bytes < 1024 {
            return Err("key `api.max_body_bytes` must be at least 1024".into());
        }
        let t = &self.transfer;
        if t.chunk_bytes < 1024 || t.chunk_bytes > fedimpute_protocol::transfer::MAX_CHUNK_BYTES {
            return Err("key `transfer.chunk_bytes` must be between 1024 and 4194304".into());
        }
        if t.parallel_chunks == 0 || t.parallel_chunks > 64 {
            return Err("key `transfer.parallel_chunks` must be between 1 and 64".into());
        }
        if t.peer_timeout_secs == 0 || t.poll_secs == 0 {
            return Err("keys `transfer.peer_timeout_secs` and `transfer.poll_secs` must be positive".into());
        }
        Ok(())
    }

    /// Renders the config as TOML, for `init` to write.
    pub fn to_toml(&self) -> String {
        // Serializing plain structs of strings, numbers and arrays cannot fail.
        toml::to_string_pretty(self).expect("node config serializes to TOML")
    }

    /// Resolves a configured path against the data directory.
    pub fn data_path(&self, relative: &Path) -> PathBuf {
        if relative.is_absolute() { relative.to_path_buf() } else { self.node.data_dir.join(relative) }
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.node.data_dir.join(DATABASE_FILE)
    }

    /// Where an admin puts panel files to register them through the API (which reads nothing
    /// outside this folder).
    pub fn panels_incoming_dir(&self) -> PathBuf {
        self.node.data_dir.join("panels-incoming")
    }

    /// Where registered reference panels and their engine formats live.
    pub fn panels_dir(&self) -> PathBuf {
        self.node.data_dir.join("panels")
    }

    /// The node's ed25519 identity key.
    pub fn node_key_path(&self) -> PathBuf {
        self.node.data_dir.join("node.key")
    }

    /// The HMAC key that signs access JWTs.
    pub fn jwt_key_path(&self) -> PathBuf {
        self.node.data_dir.join("jwt.key")
    }

    /// Where a running node writes its libp2p listen addresses (one per line, with /p2p/<PeerId>).
    pub fn p2p_addr_path(&self) -> PathBuf {
        self.node.data_dir.join("p2p.addr")
    }

    /// Where a running node writes the address its API actually listens on.
    pub fn api_addr_path(&self) -> PathBuf {
        self.node.data_dir.join("api.addr")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[node]
name = "n1"
institution = "Inst"
data_dir = "/var/lib/fedimpute"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = NodeConfig::parse(MINIMAL, Path::new("node.toml")).unwrap();
        assert_eq!(c.auth.max_failed_logins, 5);
        assert_eq!(c.api.listen.port(), 8443);
        assert_eq!(c.data_path(Path::new("tls/api.crt")), Path::new("/var/lib/fedimpute/tls/api.crt"));
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let text = format!("{MINIMAL}\n[api]\nlisten = \"127.0.0.1:1\"\nlisen_typo = 3\n");
        let err = NodeConfig::parse(&text, Path::new("/etc/x/node.toml")).unwrap_err().to_string();
        assert!(err.contains("/etc/x/node.toml"), "{err}");
        assert!(err.contains("lisen_typo"), "{err}");
    }

    #[test]
    fn bad_socket_address_is_named() {
        let text = format!("{MINIMAL}\n[api]\nlisten = \"127.0.0.1:notaport\"\n");
        let err = NodeConfig::parse(&text, Path::new("node.toml")).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn bad_multiaddr_is_named() {
        let text = format!("{MINIMAL}\n[p2p]\nlisten = [\"/ip4/127.0.0.1/tcp/1\", \"tcp:4001\"]\n");
        let err = NodeConfig::parse(&text, Path::new("node.toml")).unwrap_err().to_string();
        assert!(err.contains("p2p.listen[1]"), "{err}");
    }

    #[test]
    fn an_outbound_node_and_a_relay_are_configured_under_p2p() {
        let text = format!(
            "{MINIMAL}\n[p2p]\nlisten = []\nreachability = \"outbound\"\nrelays = [\"{}\"]\n[p2p.relay]\nserve = true\nmax_circuits = 4\n",
            libp2p::PeerId::random()
        );
        let config = NodeConfig::parse(&text, Path::new("node.toml")).unwrap();
        assert_eq!(config.p2p.reachability, Reachability::Outbound);
        assert_eq!(config.p2p.relays.len(), 1);
        assert!(config.p2p.relay.serve);
        assert_eq!(config.p2p.relay.max_circuits, 4);
        // Unset: a directly reachable node that relays for nobody.
        let plain = NodeConfig::parse(&format!("{MINIMAL}\n[p2p]\nlisten = []\n"), Path::new("node.toml")).unwrap();
        assert_eq!(plain.p2p.reachability, Reachability::Direct);
        assert!(!plain.p2p.relay.serve);
    }

    #[test]
    fn a_relay_that_is_not_a_peer_id_is_named() {
        let text = format!("{MINIMAL}\n[p2p]\nlisten = []\nrelays = [\"relay.example.org\"]\n");
        let err = NodeConfig::parse(&text, Path::new("node.toml")).unwrap_err().to_string();
        assert!(err.contains("p2p.relays[0]"), "{err}");
        let text = format!("{MINIMAL}\n[p2p]\nlisten = []\nreachability = \"sometimes\"\n");
        assert!(NodeConfig::parse(&text, Path::new("node.toml")).is_err());
    }

    #[test]
    fn the_documented_example_config_is_valid() {
        let text = include_str!("../../configs/node.example.toml");
        let c = NodeConfig::parse(text, Path::new("configs/node.example.toml")).unwrap();
        assert_eq!(c.api.listen.port(), 8443);
    }

    #[test]
    fn relative_data_dir_is_refused() {
        let text = MINIMAL.replace("/var/lib/fedimpute", "relative/dir");
        let err = NodeConfig::parse(&text, Path::new("node.toml")).unwrap_err().to_string();
        assert!(err.contains("node.data_dir"), "{err}");
    }
}
