//! The OpenAPI document, generated from the handlers' annotations and served by the node.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "fedimpute node API", description = "The HTTPS API of one fedimpute node."),
    paths(
        super::auth::login, super::auth::refresh, super::auth::logout,
        super::me::me, super::me::change_password, super::me::list_tokens, super::me::create_token, super::me::revoke_token,
        super::users::list_users, super::users::create_user, super::users::update_user, super::users::reset_password,
        super::audit::list, super::audit::verify,
        super::federation::overview, super::federation::install_config,
        super::federation::panels, super::federation::services,
        super::panels::list, super::panels::add, super::panels::remove,
        super::jobs::submit, super::jobs::list, super::jobs::show, super::jobs::events, super::jobs::cancel,
        super::jobs::retry, super::jobs::archives, super::jobs::results, super::jobs::download,
        super::node::show, super::services::list, super::services::add, super::services::remove,
        super::health::healthz, super::health::readyz, super::health::metrics,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An access JWT from /auth/login, or an API token (fit_...)"))
                    .build(),
            ),
        );
    }
}

/// The document as served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}
