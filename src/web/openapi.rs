//! The OpenAPI document of the JSON API, generated from the handlers' annotations and the wire
//! structs (`utoipa`), served without authentication at `/openapi.json`.

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::web::AppState;
use crate::web::{api, dev, wire};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "msr-billing",
        description = "Billing of My Smart Road: the entitlement check other services call, checkout and portal sessions. \
                       Services send X-User-Id with Authorization: Bearer <MSR_INTERNAL_API_KEY>. /dev routes exist only with MSR_DEBUG=true."
    ),
    paths(
        api::entitlement::check,
        api::entitlement::forward_auth,
        api::feed::changes,
        api::feed::stream,
        api::feed::snapshot,
        api::billing::start_checkout,
        api::billing::open_portal,
        api::billing::sync_checkout,
        dev::create_user,
        dev::status,
    ),
    components(schemas(
        wire::EntitlementBody,
        wire::UserBody,
        wire::StoredEntitlementBody,
        wire::DevStatusBody,
        wire::CheckoutStartedBody,
        wire::PortalBody,
        wire::ErrorBody,
        wire::ErrorDetail,
        wire::CauseBody,
        wire::ChangeBody,
        wire::ChangesBody,
        wire::SnapshotBody,
        api::billing::CheckoutBody,
    )),
    modifiers(&InternalKey)
)]
pub struct ApiDoc;

struct InternalKey;

impl Modify for InternalKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "internal_key",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The document this instance serves: the `/dev` routes only where they are mounted (debug).
pub fn document(debug: bool) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if !debug {
        doc.paths.paths.retain(|path, _| !path.starts_with("/dev"));
        if let Some(components) = doc.components.as_mut() {
            for dev_only in ["DevStatusBody", "UserBody", "StoredEntitlementBody"] {
                components.schemas.remove(dev_only);
            }
        }
    }
    doc
}

/// `GET /openapi.json`.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/openapi.json",
        get(
            |axum::extract::State(state): axum::extract::State<AppState>| async move {
                axum::Json(document(state.settings.debug))
            },
        ),
    )
}
