//! `/api/v1/node`: this node as its admins see it: identity and the data policy it applies
//! (read-only; set in node.toml).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use super::AppState;
use super::extract::{AdminOnly, Auth};
use crate::config::{JobsSection, PolicySection, TransferSection};

pub fn router() -> Router<AppState> {
    Router::new().route("/node", get(show))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NodeView {
    name: String,
    institution: String,
    peer_id: String,
    #[schema(value_type = Object)]
    policy: PolicySection,
    #[schema(value_type = Object)]
    jobs: JobsSection,
    #[schema(value_type = Object)]
    transfer: TransferSection,
}

/// This node's name, PeerId, data policy, job limits and transfer settings.
#[utoipa::path(get, operation_id = "getNode", path = "/api/v1/node", tag = "node", security(("bearer" = [])),
    responses((status = 200, body = NodeView), (status = 403, description = "admins only")))]
async fn show(State(state): State<AppState>, _: Auth<AdminOnly>) -> axum::Json<NodeView> {
    let c = &state.config;
    axum::Json(NodeView {
        name: c.node.name.clone(),
        institution: c.node.institution.clone(),
        peer_id: state.identity.peer_id().to_string(),
        policy: c.policy.clone(),
        jobs: c.jobs.clone(),
        transfer: c.transfer,
    })
}
