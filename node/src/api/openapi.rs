//! The OpenAPI document, generated from the handlers' annotations and served by the node.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ResponseBuilder};

#[derive(OpenApi)]
#[openapi(
    info(title = "fedimpute node API", description = "The HTTPS API of one fedimpute node."),
    paths(
        super::auth::login, super::auth::refresh, super::auth::logout,
        super::me::me, super::me::update_me, super::me::change_password, super::me::list_tokens, super::me::create_token, super::me::revoke_token,
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
    modifiers(&BearerAuth, &CommonErrors),
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

/// The error answers every operation of a kind can give, added where a handler's annotation
/// does not list them itself: so the document describes every answer a client can get, and each
/// handler lists only the errors of its own logic.
struct CommonErrors;

impl CommonErrors {
    /// (status, description, applies to the operation)
    fn rules(op: &Operation) -> Vec<(&'static str, &'static str)> {
        let secured = op.security.as_ref().is_some_and(|reqs| !reqs.is_empty());
        let has_body = op.request_body.is_some();
        let json_body = op.request_body.as_ref().is_some_and(|b| b.content.contains_key("application/json"));
        let params = op.parameters.iter().flatten();
        let (mut in_path, mut in_query) = (false, false);
        for p in params {
            match p.parameter_in {
                ParameterIn::Path => in_path = true,
                ParameterIn::Query => in_query = true,
                _ => {}
            }
        }
        let mut out = Vec::new();
        if has_body || in_query || in_path {
            out.push(("400", "the request is malformed: a body, path or query parameter that cannot be read"));
        }
        if secured {
            out.push(("401", "no credentials, or an expired, revoked or unknown token"));
            out.push((
                "403",
                "the caller's role may not do this, or their one-time password must be changed first \
                 (`password_change_required`)",
            ));
        }
        if in_path {
            out.push(("404", "nothing with that id, or nothing the caller may see"));
        }
        if has_body {
            out.push(("413", "the body is larger than the node accepts"));
            out.push(("415", "the body is not of the content type this operation takes"));
        }
        if json_body {
            out.push(("422", "the body is JSON but not what this operation takes"));
        }
        out
    }
}

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error_body =
            || ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody"))).build();
        for item in openapi.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                for (status, description) in Self::rules(op) {
                    op.responses.responses.entry(status.to_string()).or_insert_with(|| {
                        ResponseBuilder::new().description(description).content("application/json", error_body()).into()
                    });
                }
            }
        }
    }
}

/// The document as served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}
