//! The HTTP side: one router assembled from each module's own `router()`.
//!
//! | route                                   | who                         | module         |
//! |-----------------------------------------|-----------------------------|----------------|
//! | `GET /healthz`, `GET /readyz`           | orchestrators               | `health`       |
//! | `GET /billing/entitlement`              | services (`X-User-Id`)      | `api::entitlement` |
//! | `GET /billing/entitlement/forward-auth` | gateways (`X-User-Id`)      | `api::entitlement` |
//! | `POST /billing/checkout`                | services (`X-User-Id`)      | `api::billing` |
//! | `POST /billing/portal`                  | services (`X-User-Id`)      | `api::billing` |
//! | `POST /billing/checkout/sync`           | services (`X-User-Id`)      | `api::billing` |
//! | `POST /billing/webhook`                 | Stripe (signed)             | `webhook`      |
//! | `POST /dev/create_user`, `GET /dev/status` | developers, debug only   | `dev`          |

pub mod api;
pub mod dev;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod webhook;
pub mod wire;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::error::AppError;
use crate::state::AppState;

/// Largest body the JSON API reads.
pub const API_BODY_LIMIT: usize = 64 * 1024;

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let mut app = Router::new().merge(health::router()).merge(
        api::router()
            .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
            .layer(axum::middleware::from_fn_with_state(
                API_BODY_LIMIT,
                middleware::limit_body,
            )),
    );
    if state.settings.debug {
        app = app.merge(
            dev::router()
                .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
                .layer(axum::middleware::from_fn_with_state(
                    API_BODY_LIMIT,
                    middleware::limit_body,
                )),
        );
    }
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = state
        .settings
        .request_timeout
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(30));
    if let Some(sim) = &state.sim {
        app = app.nest_service(crate::startup::SIMULATOR_PATH, sim.router());
    }
    app.merge(webhook::router())
        .fallback(|| async { AppError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(
                    request_id.clone(),
                    middleware::MakeId,
                ))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(middleware::make_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(axum::middleware::from_fn(middleware::log_errors))
                .layer(axum::middleware::from_fn_with_state(
                    timeout,
                    middleware::timeout,
                )),
        )
        .with_state(state)
}
