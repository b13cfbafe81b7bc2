//! Security headers on every response: a Content-Security-Policy that allows only our own script
//! and stylesheet (the simulator's demo pages, under `/_stripe`, keep their inline style), no framing,
//! no MIME sniffing, a strict referrer policy, and HSTS when served over https.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::middleware::Next;
use axum::response::Response;

/// Our pages: scripts and styles from this origin only; forms post here (Checkout and the portal
/// are reached by a 303 from our own routes, which `form-action` also governs).
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
    form-action 'self' https://checkout.stripe.com https://billing.stripe.com";

/// The simulator's own pages (demo mode only) carry an inline stylesheet.
const SIMULATOR_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers. `https` (from `MSR_PUBLIC_URL`) turns HSTS on.
pub async fn headers(State(https): State<bool>, request: Request, next: Next) -> Response {
    let simulator = request.uri().path().starts_with(crate::web::SIMULATOR_PATH);
    let mut response = next.run(request).await;
    add(response.headers_mut(), simulator, https);
    response
}

/// Adds the headers to one response.
pub fn add(h: &mut axum::http::HeaderMap, simulator: bool, https: bool) {
    let csp = if simulator { SIMULATOR_CSP } else { PAGE_CSP };
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Pages and answers are about one owner (or every owner, for admins): no browser or proxy may
    // keep them. Static files set their own caching first.
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    if https {
        h.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
}
