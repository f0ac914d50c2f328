//! `/api/v1/panels`: the reference panels this node hosts. Anyone logged in may list them;
//! admins register and remove them.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminOnly, ApiJson, ApiPath, Auth, ClientIp};
use crate::imputation::GenomeBuild;
use crate::imputation::panels::published::RegistrationReport;
use crate::imputation::panels::{self, PanelError, PanelSpec, check_panel_id};
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::panels::panel_totals;
use crate::time::rfc3339;

pub fn router() -> Router<AppState> {
    Router::new().route("/panels", get(list).post(add)).route("/panels/{id}", delete(remove))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PanelView {
    id: String,
    name: String,
    build: String,
    populations: Vec<String>,
    /// `preparing`, `ready` or `failed`.
    status: String,
    error: Option<String>,
    chromosomes: Vec<String>,
    samples: i64,
    sites: i64,
    has_map: bool,
    created_at: String,
    /// Per chromosome, what registration did: records read, multi-allelic records split,
    /// records excluded per reason.
    registration: Vec<ChromosomeRegistration>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ChromosomeRegistration {
    chromosome: String,
    report: Option<RegistrationReport>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPanelRequest {
    id: String,
    name: String,
    #[schema(value_type = String, example = "hg38")]
    build: GenomeBuild,
    populations: Vec<String>,
    /// File names inside the node's `panels-incoming` folder, one phased VCF per chromosome, as
    /// published (indels and multi-allelic records are split; plain, gzip or bgzip).
    vcfs: Vec<String>,
    /// A file in the same folder with `sample population` rows, for per-population allele
    /// frequencies (the 1000 Genomes `.panel` file is one).
    #[serde(default)]
    sample_populations: Option<String>,
    /// A PLINK genetic map file name in the same folder.
    map: Option<String>,
}

/// The panels this node hosts.
#[utoipa::path(get, operation_id = "listPanels", path = "/api/v1/panels", tag = "panels", security(("bearer" = [])),
    responses((status = 200, body = [PanelView])))]
async fn list(State(state): State<AppState>, _: Auth) -> Result<axum::Json<Vec<PanelView>>, ApiError> {
    let mut out = Vec::new();
    for p in state.store.list_panels().await? {
        let chromosomes = state.store.panel_chromosomes(&p.id).await?;
        let (samples, sites) = panel_totals(&chromosomes);
        out.push(PanelView {
            populations: p.population_list(),
            chromosomes: chromosomes.iter().map(|c| c.chromosome.clone()).collect(),
            registration: chromosomes
                .iter()
                .map(|c| ChromosomeRegistration {
                    chromosome: c.chromosome.clone(),
                    report: c.report.as_deref().and_then(|r| serde_json::from_str(r).ok()),
                })
                .collect(),
            samples,
            sites,
            id: p.id,
            name: p.name,
            build: p.build,
            status: p.status,
            error: p.error,
            has_map: p.has_map,
            created_at: rfc3339(p.created_at),
        });
    }
    Ok(axum::Json(out))
}

/// A file name in the incoming folder; anything that could escape it is refused.
fn incoming(state: &AppState, name: &str) -> Result<std::path::PathBuf, ApiError> {
    let plain = !name.is_empty() && !name.contains('/') && !name.contains('\\') && name != "." && name != "..";
    if !plain {
        return Err(ApiError::Unprocessable(format!(
            "{name:?}: give a file name inside the node's panels-incoming folder"
        )));
    }
    let path = state.config.panels_incoming_dir().join(name);
    if !path.is_file() {
        return Err(ApiError::Unprocessable(format!("{name:?} is not in the node's panels-incoming folder")));
    }
    Ok(path)
}

/// Register a panel from files in the node's `panels-incoming` folder. Validation and
/// conversion run in the background: the panel is listed as `preparing`, then `ready` or
/// `failed` with the reason.
#[utoipa::path(post, operation_id = "addPanel", path = "/api/v1/panels", tag = "panels", security(("bearer" = [])),
    request_body = AddPanelRequest,
    responses((status = 202, body = PanelView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add(
    State(state): State<AppState>,
    auth: Auth<AdminOnly>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<AddPanelRequest>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    check_panel_id(&req.id).map_err(ApiError::Unprocessable)?;
    if state.store.panel(&req.id).await?.is_some() {
        return Err(ApiError::Conflict(format!("panel {} already exists", req.id)));
    }
    let vcfs = req.vcfs.iter().map(|v| incoming(&state, v)).collect::<Result<Vec<_>, _>>()?;
    let map = req.map.as_deref().map(|m| incoming(&state, m)).transpose()?;
    let sample_populations = req.sample_populations.as_deref().map(|m| incoming(&state, m)).transpose()?;
    let spec = PanelSpec {
        id: req.id.clone(),
        name: req.name,
        build: req.build,
        populations: req.populations,
        sample_populations,
        vcfs,
        map,
    };
    let actor = format!("user:{}", auth.principal.user.username);
    let (store, config, identity) = (state.store.clone(), state.config.clone(), state.identity.clone());
    tokio::spawn(async move {
        let id = spec.id.clone();
        let result =
            panels::register(&store, &config, spec, |step| tracing::info!(panel = %id, step, "preparing panel")).await;
        let (outcome, details) = match &result {
            Ok(chromosomes) => (Outcome::Success, json!({ "chromosomes": chromosomes.len() })),
            Err(e) => (Outcome::Failure, json!({ "reason": e.to_string() })),
        };
        let event = AuditEvent::new(actor, ip, "panel.add", outcome).target(&id).details(details);
        if let Err(e) = store.append_audit(&identity, event).await {
            tracing::error!(error = %e, "could not write to the audit log");
        }
    });
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "id": req.id, "status": "preparing" }))))
}

/// Remove a panel and its files.
#[utoipa::path(delete, operation_id = "removePanel", path = "/api/v1/panels/{id}", tag = "panels", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    auth: Auth<AdminOnly>,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    match panels::remove(&state.store, &state.config, &id).await {
        Ok(()) => {}
        Err(PanelError::Store(crate::store::StoreError::NotFound(_))) => {
            return Err(ApiError::NotFound(format!("no panel {id}")));
        }
        Err(PanelError::Invalid(m)) => return Err(ApiError::Unprocessable(m)),
        Err(e) => return Err(ApiError::internal(e)),
    }
    state
        .auth
        .audit(
            AuditEvent::new(format!("user:{}", auth.principal.user.username), ip, "panel.remove", Outcome::Success)
                .target(&id),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
