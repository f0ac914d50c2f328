//! The node's Prometheus metrics: HTTP requests, federation and transfers, and jobs (by state,
//! the queue, engine run times, failures by reason).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransferLabels {
    direction: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EngineLabels {
    engine: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

fn engine_histogram() -> Histogram {
    // 1 s .. ~4.5 h
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~4 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// The node's metric registry and the HTTP families in it.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    adverts: Family<VerdictLabels, Counter>,
    refused_connections: Family<DirectionLabels, Counter>,
    members: Family<StateLabels, Gauge>,
    transfer_bytes: Family<TransferLabels, Counter>,
    file_pulls: Family<ProtocolLabels, Counter>,
    audit_head_mismatches: Gauge,
    config_expiry_days: Gauge,
    data_dir_free_bytes: Gauge,
    jobs: Family<StateLabels, Gauge>,
    queued_jobs: Gauge,
    engine_seconds: Family<EngineLabels, Histogram, fn() -> Histogram>,
    job_failures: Family<ReasonLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("fedimpute");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", latency.clone());
        let adverts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "adverts",
            "Adverts received, by verdict (accept, ignore, reject) and reason",
            adverts.clone(),
        );
        let refused_connections = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "refused_connections",
            "Connections refused because the peer is not a member",
            refused_connections.clone(),
        );
        let members = Family::<StateLabels, Gauge>::default();
        registry.register(
            "federation_members",
            "Members of the current federation config: listed, connected (other than this node), reachable (fresh advert, this node included), incompatible (refused: another protocol major)",
            members.clone(),
        );
        let transfer_bytes = Family::<TransferLabels, Counter>::default();
        registry.register(
            "transfer_bytes",
            "Bytes of job files moved between nodes, by direction (sent, received) and kind (input, result)",
            transfer_bytes.clone(),
        );
        let file_pulls = Family::<ProtocolLabels, Counter>::default();
        registry.register(
            "file_pulls",
            "Files pulled from peers, by protocol: stream (one stream per file) or chunks (a peer without file streams)",
            file_pulls.clone(),
        );
        let audit_head_mismatches = Gauge::default();
        registry.register(
            "audit_head_mismatches",
            "Heads of this node's audit log that peers witnessed and the log no longer holds (0 when intact)",
            audit_head_mismatches.clone(),
        );
        let config_expiry_days = Gauge::default();
        registry.register(
            "federation_config_expiry_days",
            "Whole days until the current federation config expires (0 outside a federation)",
            config_expiry_days.clone(),
        );
        let data_dir_free_bytes = Gauge::default();
        registry.register(
            "data_dir_free_bytes",
            "Bytes free on the data directory's file system",
            data_dir_free_bytes.clone(),
        );
        let jobs = Family::<StateLabels, Gauge>::default();
        registry.register("jobs", "Jobs this node holds, by state (read from the database when scraped)", jobs.clone());
        let queued_jobs = Gauge::default();
        registry.register("job_queue_length", "Jobs queued here, waiting for an engine slot", queued_jobs.clone());
        let engine_seconds =
            Family::<EngineLabels, Histogram, fn() -> Histogram>::new_with_constructor(engine_histogram);
        registry.register(
            "engine_run_seconds",
            "Wall time of each engine task (Beagle, Minimac4, bcftools steps), by engine and outcome (ok, failed, killed)",
            engine_seconds.clone(),
        );
        let job_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "job_failures",
            "Jobs that failed here, by reason: input (QC or the upload), engine, federation (host or transfer), \
             interrupted (the node kept stopping), service (an external service), other",
            job_failures.clone(),
        );
        Arc::new(Self {
            registry,
            requests,
            latency,
            adverts,
            refused_connections,
            members,
            transfer_bytes,
            file_pulls,
            audit_head_mismatches,
            config_expiry_days,
            data_dir_free_bytes,
            jobs,
            queued_jobs,
            engine_seconds,
            job_failures,
        })
    }

    /// Sets the jobs-by-state gauges from `(state, count)` rows; states absent from them read 0.
    pub fn set_jobs_by_state(&self, counts: &[(String, i64)]) {
        for state in crate::store::jobs::JobState::ALL {
            let n = counts.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
            self.jobs.get_or_create(&StateLabels { state: state.as_str().into() }).set(n);
            if state == crate::store::jobs::JobState::Queued {
                self.queued_jobs.set(n);
            }
        }
    }

    /// Records one engine task's wall time.
    pub fn engine_run(&self, engine: &str, outcome: &str, seconds: f64) {
        self.engine_seconds
            .get_or_create(&EngineLabels { engine: engine.into(), outcome: outcome.into() })
            .observe(seconds);
    }

    /// Counts a job that failed, by the kind of reason.
    pub fn job_failed(&self, reason: &str) {
        self.job_failures.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    }

    /// Counts an advert verdict.
    pub fn advert(&self, verdict: &str, reason: &str) {
        self.adverts.get_or_create(&VerdictLabels { verdict: verdict.into(), reason: reason.into() }).inc();
    }

    /// Sets the federation membership gauges (computed when scraped: reachability depends on time).
    pub fn set_members(&self, counts: crate::federation::runtime::MemberCounts) {
        let crate::federation::runtime::MemberCounts { listed, connected, reachable, incompatible } = counts;
        let states =
            [("listed", listed), ("connected", connected), ("reachable", reachable), ("incompatible", incompatible)];
        for (state, value) in states {
            self.members.get_or_create(&StateLabels { state: state.into() }).set(value as i64);
        }
    }

    /// Sets the count of witnessed audit heads the log no longer holds (read from the store when scraped).
    pub fn set_audit_head_mismatches(&self, count: usize) {
        self.audit_head_mismatches.set(count as i64);
    }

    /// Sets the days until the federation config expires (0 when there is none).
    pub fn set_config_expiry_days(&self, days: Option<i64>) {
        self.config_expiry_days.set(days.unwrap_or(0));
    }

    /// Sets the free space of the data directory (0 when it cannot be read).
    pub fn set_free_bytes(&self, bytes: Option<u64>) {
        self.data_dir_free_bytes.set(bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)).unwrap_or(0));
    }

    /// Counts a connection refused to or from a non-member.
    pub fn refused_connection(&self, inbound: bool) {
        let direction = if inbound { "inbound" } else { "outbound" }.to_string();
        self.refused_connections.get_or_create(&DirectionLabels { direction }).inc();
    }

    /// Counts a file pull begun over `protocol` (`stream` or `chunks`).
    pub fn file_pull(&self, protocol: &str) {
        self.file_pulls.get_or_create(&ProtocolLabels { protocol: protocol.into() }).inc();
    }

    /// Counts bytes of job files sent or received.
    pub fn transfer(&self, direction: &str, kind: &str, bytes: u64) {
        self.transfer_bytes
            .get_or_create(&TransferLabels { direction: direction.into(), kind: kind.into() })
            .inc_by(bytes);
    }

    /// Prometheus/OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Metrics {
    /// Records one answered HTTP request under its route template.
    pub fn observe_http(&self, method: String, route: String, status: u16, seconds: f64) {
        self.latency.get_or_create(&RouteLabels { method: method.clone(), route: route.clone() }).observe(seconds);
        self.requests.get_or_create(&RequestLabels { method, route, status: status.to_string() }).inc();
    }
}
