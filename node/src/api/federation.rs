//! `/api/v1/federation` and `/api/v1/catalog`: membership, connection state and what the
//! federation offers. Any logged-in user may read; only admins may install a config.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use fedimpute_protocol::advert::{PanelAdvert, ServiceAdvert};
use fedimpute_protocol::federation::{ConfigRejection, FederationConfig, rfc3339};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminOnly, ApiQuery, Auth, ClientIp};
use crate::auth::service::Actor;
use crate::federation::catalog::CatalogEntry;
use crate::federation::naming::{SelfDescription, self_description};
use crate::federation::policy::selects;
use crate::federation::{Adoption, ConfigSource, FederationStatus, OfferError};
use crate::time::now_ms;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/federation", get(overview))
        .route("/federation/config", post(install_config))
        .route("/catalog/panels", get(panels))
        .route("/catalog/services", get(services))
}

/// A member as this node sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberView {
    peer_id: String,
    institution: String,
    addresses: Vec<String>,
    roles: Vec<String>,
    tags: BTreeMap<String, String>,
    /// `self`, `connected`, `disconnected` or `incompatible` (refused: another protocol major).
    connection: &'static str,
    /// Why an `incompatible` member was refused, naming both sides' versions.
    refused_because: Option<String>,
    /// How a connected member is reached: `direct`, or `relayed` through `relayed_via`.
    reached: Option<&'static str>,
    /// The relay (a member) a relayed connection runs through.
    relayed_via: Option<RelayView>,
    last_seen: Option<String>,
    rtt_ms: Option<f64>,
    /// Seconds since the member's newest advert was issued.
    advert_age_secs: Option<i64>,
    /// When that advert was issued (by its author's clock) and received here.
    advert_issued_at: Option<String>,
    advert_received_at: Option<String>,
    /// False when no advert arrived within the federation's time to live.
    reachable: bool,
    /// What the member's newest advert says about itself (not signed by the admins; the
    /// institution above is the signed one).
    advertised: Option<SelfDescription>,
    /// The most audit-log rows this node has seen the member sign for (its audit head).
    witnessed_audit_rows: Option<i64>,
}

/// The member a relayed connection runs through.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RelayView {
    peer_id: String,
    institution: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FederationView {
    /// `standalone`, `active` or `frozen`.
    status: &'static str,
    /// Why the node is frozen.
    reason: Option<String>,
    peer_id: String,
    federation_id: Option<String>,
    version: Option<u64>,
    issued_at: Option<String>,
    expires_at: Option<String>,
    /// Whole days until the config expires.
    expires_in_days: Option<i64>,
    /// Set from 30 days before the config expires: what admins must do.
    expiry_warning: Option<String>,
    admin_threshold: Option<u32>,
    admin_keys: Option<usize>,
    members: Vec<MemberView>,
}

fn reachable(entry: Option<&CatalogEntry>, config: &FederationConfig, now: i64) -> bool {
    entry.is_some_and(|e| e.is_fresh(config, now))
}

/// The federation this node belongs to, and each member's connection.
#[utoipa::path(get, operation_id = "getFederation", path = "/api/v1/federation", tag = "federation", security(("bearer" = [])),
    responses((status = 200, body = FederationView), (status = 401, body = ErrorBody)))]
async fn overview(State(state): State<AppState>, _: Auth) -> axum::Json<FederationView> {
    let fed = &state.federation;
    let me = state.identity.peer_id().to_string();
    let (status, reason) = match fed.federation.status(OffsetDateTime::now_utc()) {
        FederationStatus::Standalone => ("standalone", None),
        FederationStatus::Active { .. } => ("active", None),
        FederationStatus::Frozen { reason } => ("frozen", Some(reason)),
    };
    let config = fed.federation.current();
    let now = now_ms();
    let witnessed = state.store.witnessed_audit_rows().await.unwrap_or_default();
    let members = config
        .as_ref()
        .map(|c| {
            c.doc()
                .members
                .iter()
                .map(|m| {
                    let peer = fed.peers.get(&m.peer_id);
                    let entry = fed.catalog.get(&m.peer_id);
                    let is_self = m.peer_id == me;
                    MemberView {
                        peer_id: m.peer_id.clone(),
                        institution: m.institution.clone(),
                        addresses: m.addresses.clone(),
                        roles: m.roles.clone(),
                        tags: m.tags.clone(),
                        connection: if is_self {
                            "self"
                        } else if peer.connected {
                            "connected"
                        } else if peer.incompatible.is_some() {
                            "incompatible"
                        } else {
                            "disconnected"
                        },
                        refused_because: peer.incompatible.clone(),
                        reached: (!is_self && peer.connected).then_some(if peer.relayed_via.is_some() {
                            "relayed"
                        } else {
                            "direct"
                        }),
                        relayed_via: peer.relayed_via.as_ref().filter(|_| peer.connected).map(|r| RelayView {
                            peer_id: r.clone(),
                            institution: c.doc().member(r).map(|m| m.institution.clone()),
                        }),
                        last_seen: if is_self {
                            Some(crate::time::rfc3339(now))
                        } else {
                            peer.last_seen_ms.map(crate::time::rfc3339)
                        },
                        rtt_ms: peer.rtt_ms,
                        advert_age_secs: entry.as_ref().map(|e| e.age_ms(now) / 1000),
                        advert_issued_at: entry.as_ref().map(|e| crate::time::rfc3339(e.advert.issued_at_ms)),
                        advert_received_at: entry.as_ref().map(|e| crate::time::rfc3339(e.received_at_ms)),
                        reachable: reachable(entry.as_ref(), c, now),
                        advertised: entry.map(|e| self_description(&e.advert, c.doc())),
                        witnessed_audit_rows: witnessed.get(&m.peer_id).copied(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    axum::Json(FederationView {
        status,
        reason,
        peer_id: me,
        federation_id: config.as_ref().map(|c| c.doc().federation_id.clone()),
        version: config.as_ref().map(|c| c.doc().version),
        issued_at: config.as_ref().map(|c| rfc3339(c.doc().issued_at)),
        expires_at: config.as_ref().map(|c| rfc3339(c.doc().expires_at)),
        expires_in_days: config
            .as_ref()
            .map(|c| crate::federation::expiry::days_left(c, time::OffsetDateTime::now_utc())),
        expiry_warning: config
            .as_ref()
            .and_then(|c| crate::federation::expiry::warning(c, time::OffsetDateTime::now_utc())),
        admin_threshold: config.as_ref().map(|c| c.doc().admins.threshold),
        admin_keys: config.as_ref().map(|c| c.doc().admins.keys.len()),
        members,
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InstallResponse {
    version: u64,
    /// False when the node already ran this version.
    adopted: bool,
}

/// Install a signed federation config (the first, or the next version). The body is the config
/// file as `fedimpute federation` writes it.
#[utoipa::path(post, operation_id = "installFederationConfig", path = "/api/v1/federation/config", tag = "federation", security(("bearer" = [])),
    request_body(content = Object, description = "a signed federation config document"),
    responses((status = 200, body = InstallResponse), (status = 409, description = "refused by the version rules (rollback, skipped version, expired)", body = ErrorBody),
              (status = 422, description = "malformed, or not signed by enough admins", body = ErrorBody)))]
async fn install_config(
    State(state): State<AppState>,
    auth: Auth<AdminOnly>,
    ClientIp(ip): ClientIp,
    body: String,
) -> Result<axum::Json<InstallResponse>, ApiError> {
    let candidate = FederationConfig::from_json(&body).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let version = candidate.doc().version;
    let actor = Actor::user(&auth.principal.user.username, &ip);
    let source = ConfigSource::Api { actor: actor.name, ip };
    match state.federation.federation.offer(candidate, source).await {
        Ok(Adoption::Adopted { version }) => Ok(axum::Json(InstallResponse { version, adopted: true })),
        Ok(Adoption::AlreadyCurrent) => Ok(axum::Json(InstallResponse { version, adopted: false })),
        Err(OfferError::Rejected(
            r @ (ConfigRejection::Malformed(_) | ConfigRejection::NotEnoughSignatures { .. }),
        )) => Err(ApiError::Unprocessable(r.to_string())),
        Err(OfferError::Rejected(r)) => Err(ApiError::Conflict(r.to_string())),
        Err(OfferError::Raced) => Err(ApiError::Conflict(OfferError::Raced.to_string())),
        Err(OfferError::NoTrustedConfig) => Err(ApiError::Conflict(OfferError::NoTrustedConfig.to_string())),
        Err(OfferError::Store(e)) => Err(ApiError::internal(e)),
    }
}

/// A node hosting something, with its health and data policy.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct HostView {
    peer_id: String,
    /// As the signed member list names it.
    institution: String,
    /// What its advert says about itself, flagged when that differs from the signed entry.
    advertised: SelfDescription,
    reachable: bool,
    advert_age_secs: i64,
    /// Who may submit to it (institutions or tag=value; empty: every member).
    accepts_from: Vec<String>,
    /// Largest input it takes, in bytes (0: not stated).
    max_input_bytes: u64,
    /// Days it keeps results.
    retention_days: u32,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CatalogPanelView {
    id: String,
    name: String,
    build: String,
    populations: Vec<String>,
    samples: u64,
    sites: u64,
    chromosomes: Vec<String>,
    engines: Vec<String>,
    hosts: Vec<HostView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CatalogServiceView {
    id: String,
    kind: String,
    /// `available`, `degraded` or `unavailable` as the host reports it.
    status: String,
    queue_length: u32,
    capacity: u32,
    host: HostView,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogFilter {
    /// `hg19` or `hg38`.
    build: Option<String>,
    /// A population the panel covers.
    population: Option<String>,
    /// A hosting node: its PeerId, institution or `tag=value`, as the signed member list has it.
    node: Option<String>,
    /// A service kind.
    kind: Option<String>,
}

/// A catalog entry's host, named by its signed member entry; `None` for an advert of a node
/// that is no longer a member.
fn host_view(entry: &CatalogEntry, config: &FederationConfig, now: i64) -> Option<HostView> {
    let member = config.doc().member(&entry.advert.peer_id)?;
    Some(HostView {
        peer_id: entry.advert.peer_id.clone(),
        institution: member.institution.clone(),
        advertised: self_description(&entry.advert, config.doc()),
        reachable: reachable(Some(entry), config, now),
        advert_age_secs: entry.age_ms(now) / 1000,
        accepts_from: entry.advert.data_policy.accepts_from.clone(),
        max_input_bytes: entry.advert.data_policy.max_input_bytes,
        retention_days: entry.advert.data_policy.retention_days,
    })
}

/// The catalog's hosts that match `filter.node`, by signed name, in a stable order.
fn hosts(state: &AppState, node: &Option<String>) -> Vec<(CatalogEntry, HostView)> {
    let Some(config) = state.federation.federation.current() else { return Vec::new() };
    let now = now_ms();
    let mut hosts: Vec<(CatalogEntry, HostView)> = state
        .federation
        .catalog
        .entries()
        .into_iter()
        .filter(|e| node.as_ref().is_none_or(|n| config.doc().member(&e.advert.peer_id).is_some_and(|m| selects(n, m))))
        .filter_map(|e| host_view(&e, &config, now).map(|h| (e, h)))
        .collect();
    hosts.sort_by(|(_, a), (_, b)| a.institution.cmp(&b.institution).then(a.peer_id.cmp(&b.peer_id)));
    hosts
}

/// Reference panels across the federation, each with the node(s) hosting it.
#[utoipa::path(get, operation_id = "listCatalogPanels", path = "/api/v1/catalog/panels", tag = "federation", security(("bearer" = [])),
    params(CatalogFilter), responses((status = 200, body = [CatalogPanelView])))]
async fn panels(
    State(state): State<AppState>,
    _: Auth,
    ApiQuery(filter): ApiQuery<CatalogFilter>,
) -> axum::Json<Vec<CatalogPanelView>> {
    let mut by_id: BTreeMap<String, CatalogPanelView> = BTreeMap::new();
    for (entry, host) in hosts(&state, &filter.node) {
        let wanted = |p: &&PanelAdvert| {
            filter.build.as_ref().is_none_or(|b| *b == p.build)
                && filter
                    .population
                    .as_ref()
                    .is_none_or(|pop| p.populations.iter().any(|x| x.eq_ignore_ascii_case(pop)))
        };
        for p in entry.advert.panels.iter().filter(wanted) {
            by_id
                .entry(p.id.clone())
                .or_insert_with(|| CatalogPanelView {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    build: p.build.clone(),
                    populations: p.populations.clone(),
                    samples: p.samples,
                    sites: p.sites,
                    chromosomes: p.chromosomes.clone(),
                    engines: p.engines.clone(),
                    hosts: Vec::new(),
                })
                .hosts
                .push(host.clone());
        }
    }
    axum::Json(by_id.into_values().collect())
}

/// Imputation services across the federation, with their hosts' health.
#[utoipa::path(get, operation_id = "listCatalogServices", path = "/api/v1/catalog/services", tag = "federation", security(("bearer" = [])),
    params(CatalogFilter), responses((status = 200, body = [CatalogServiceView])))]
async fn services(
    State(state): State<AppState>,
    _: Auth,
    ApiQuery(filter): ApiQuery<CatalogFilter>,
) -> axum::Json<Vec<CatalogServiceView>> {
    let mut out = Vec::new();
    for (entry, host) in hosts(&state, &filter.node) {
        for s in
            entry.advert.services.iter().filter(|s: &&ServiceAdvert| filter.kind.as_ref().is_none_or(|k| *k == s.kind))
        {
            out.push(CatalogServiceView {
                id: s.id.clone(),
                kind: s.kind.clone(),
                status: serde_json::to_value(s.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                queue_length: s.queue_length,
                capacity: s.capacity,
                host: host.clone(),
            });
        }
    }
    axum::Json(out)
}
