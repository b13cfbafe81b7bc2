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
//! | `GET /`, `/billing/return`, `/billing/cancel`, `/account` | owners (session) | `pages` |
//! | `GET /auth/handoff`, `/auth/signin`, `POST /auth/signout`, `/auth/dev-signin` | browsers | `pages` |
//! | `GET /admin`, `/admin/users/{id}`, `/admin/events` (+ actions) | admins (session) | `admin` |
//! | `GET /dev`, `/dev/lookup`, `POST /dev/users`, `/dev/sim/{action}` | developers, debug only | `devtools` |
//! | `GET /static/*`                          | browsers                   | `static_files` |

pub mod admin;
pub mod api;
pub mod dev;
pub mod devtools;
pub mod extract;
pub mod health;
pub mod html;
pub mod limits;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod security;
pub mod session;
pub mod state;
pub mod webhook;
pub mod wire;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
pub use state::{AppState, SessionStore};
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::error::AppError;

/// Largest body the JSON API reads.
pub const API_BODY_LIMIT: usize = 64 * 1024;

/// Caps request bodies at the API limit (413 up front when the length is announced).
fn limited(router: Router<AppState>) -> Router<AppState> {
    router
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            API_BODY_LIMIT,
            middleware::limit_body,
        ))
}

/// Where the embedded simulator is mounted in demo mode.
pub const SIMULATOR_PATH: &str = "/_stripe";

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .merge(health::router())
        .merge(limited(api::router()))
        .merge(limited(pages::router().merge(admin::router(&state))))
        .merge(ops::router())
        .merge(openapi::router())
        .nest_service("/static", static_files(&state));
    if state.settings.debug {
        app = app.merge(limited(dev::router().merge(devtools::router())));
    }
    if let Some(sim) = &state.sim {
        app = app.nest_service(SIMULATOR_PATH, sim.router());
    }
    let app = app
        .route_layer(axum::middleware::from_fn(ops::track))
        .fallback(|| async { AppError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            html::html_errors,
        ));
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = state.settings.request_timeout;
    let https = state.settings.public_url.scheme() == "https";
    // The entitlement check, its change feed and Stripe's webhook: a lean lane (see
    // `middleware::lane`), no sessions; all are called by machines, at the highest rates.
    let lane = api::entitlement::router()
        .merge(api::feed::router())
        .merge(webhook::router())
        .layer(axum::middleware::from_fn_with_state(
            middleware::Lane { https, timeout },
            middleware::lane,
        ));
    with_sessions(app, &state)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(middleware::remember_span))
                .layer(axum::middleware::from_fn(middleware::log_errors))
                .layer(axum::middleware::from_fn_with_state(
                    https,
                    security::headers,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    timeout,
                    middleware::timeout,
                )),
        )
        .merge(lane)
        // Every route, both lanes: a request id (the caller's, or a new one) and the request's span.
        .layer(
            ServiceBuilder::new()
                .layer(tower::util::MapRequestLayer::new(
                    middleware::drop_unusable_request_id::<axum::body::Body>,
                ))
                .layer(SetRequestIdLayer::new(
                    request_id.clone(),
                    middleware::MakeId,
                ))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(middleware::make_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO))
                        // Failures are logged once, with their cause, by `middleware::log_errors`.
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
        .with_state(state)
}

/// The stylesheet and htmx, with cache headers (htmx's file name carries its version).
fn static_files(state: &AppState) -> axum::routing::MethodRouter {
    use tower_http::set_header::SetResponseHeaderLayer;
    let service = tower::ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("public, max-age=3600"),
        ))
        .service(tower_http::services::ServeDir::new(
            &state.settings.static_dir,
        ));
    axum::routing::get_service(service)
}

/// The session cookie's name over plain http (local runs, tests).
pub const SESSION_COOKIE: &str = "msr_session";
/// Its name over https: browsers accept a `__Host-` cookie only with Secure, `Path=/` and no
/// Domain, so no sibling subdomain can set or shadow it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-msr_session";

/// The session layer: cookie `msr_session` (`__Host-msr_session` under https, Secure), HttpOnly,
/// SameSite=Lax, ended after `MSR_SESSION_IDLE` without a request. Sessions live in the database.
fn with_sessions(app: Router<AppState>, state: &AppState) -> Router<AppState> {
    use tower_sessions::cookie::SameSite;
    use tower_sessions::{Expiry, SessionManagerLayer};
    let idle = tower_sessions::cookie::time::Duration::seconds(
        state.settings.session_idle.as_secs() as i64,
    );
    let secure = state.settings.public_url.scheme() == "https";
    macro_rules! layer {
        ($store:expr) => {
            app.layer(
                SessionManagerLayer::new($store.clone())
                    .with_name(if secure {
                        SECURE_SESSION_COOKIE
                    } else {
                        SESSION_COOKIE
                    })
                    .with_path("/")
                    .with_http_only(true)
                    .with_same_site(SameSite::Lax)
                    .with_secure(secure)
                    .with_expiry(Expiry::OnInactivity(idle)),
            )
        };
    }
    match &state.sessions {
        crate::web::SessionStore::Sqlite(store) => layer!(store),
        crate::web::SessionStore::Postgres(store) => layer!(store),
    }
}
