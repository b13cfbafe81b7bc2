//! The HTML side of every page: the chrome (who is signed in, the CSRF token, demo banner), and the
//! one rule that decides how errors look. A request carrying `X-User-Id` or asking for JSON gets the
//! JSON envelope; a browser (accepting HTML) gets an error page, or a toast when htmx asked; a
//! browser that is not signed in is sent (303) to sign-in.

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::error::PublicError;
use crate::web::AppState;
use crate::web::session::SessionUser;

/// What the layout needs on every page.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    /// The signed-in user's id.
    pub user: Option<String>,
    /// Show the admin link.
    pub admin: bool,
    /// The session's CSRF token (forms and the htmx header).
    pub csrf: String,
    /// Payments are simulated (demo mode).
    pub simulated: bool,
    /// Debug mode (dev tools link).
    pub debug: bool,
}

impl Chrome {
    /// The chrome for a (maybe) signed-in user.
    pub fn new(state: &AppState, user: Option<&SessionUser>) -> Chrome {
        Chrome {
            user: user.map(|u| u.id.to_string()),
            admin: user.is_some_and(|u| u.admin),
            csrf: user.map(|u| u.csrf.clone()).unwrap_or_default(),
            simulated: state.sim.is_some(),
            debug: state.settings.debug,
        }
    }
}

/// Renders a template, or a 500 with the reason logged.
pub fn render<T: Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => crate::error::AppError::Internal(format!("template: {e}")).into_response(),
    }
}

/// Whether the request comes from a browser page rather than an API client.
pub fn is_browser(headers: &HeaderMap) -> bool {
    if headers.contains_key(crate::web::extract::USER_ID_HEADER) {
        return false;
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("text/html") || headers.contains_key("hx-request")
}

/// Whether htmx sent the request (it wants a fragment).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

#[derive(Template)]
#[template(path = "errors/error.html")]
struct ErrorPage {
    chrome: Chrome,
    title: String,
    message: String,
    request_id: Option<String>,
}

/// A small notice for htmx requests.
#[derive(Template)]
#[template(path = "components/_toast.html")]
pub struct Toast {
    /// `error` or `info`.
    pub kind: &'static str,
    /// The text.
    pub message: String,
    /// The request id of a 500.
    pub request_id: Option<String>,
}

/// Turns error responses to browsers into pages (or toasts, or a redirect to sign-in).
pub async fn html_errors(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let browser = is_browser(request.headers());
    let htmx = is_htmx(request.headers());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let session = request
        .extensions()
        .get::<tower_sessions::Session>()
        .cloned();
    let response = next.run(request).await;
    let status = response.status();
    if !browser || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let Some(error) = response.extensions().get::<PublicError>().cloned() else {
        return response;
    };
    if matches!(error.code, "sign_in_required" | "unauthorized") {
        if htmx {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut()
                .insert("hx-redirect", HeaderValue::from_static("/auth/signin"));
            return r;
        }
        return Redirect::to("/auth/signin").into_response();
    }
    let request_id = status.is_server_error().then_some(request_id).flatten();
    let mut page = if htmx {
        let toast = Toast {
            kind: "error",
            message: sentence(&error.message),
            request_id,
        };
        let mut r = render(&toast);
        r.headers_mut()
            .insert("hx-retarget", HeaderValue::from_static("#toasts"));
        r.headers_mut()
            .insert("hx-reswap", HeaderValue::from_static("beforeend"));
        r
    } else {
        let title = match status {
            StatusCode::NOT_FOUND => "Page not found".to_owned(),
            StatusCode::FORBIDDEN => "Not allowed".to_owned(),
            s if s.is_server_error() => "Something went wrong".to_owned(),
            s => s.canonical_reason().unwrap_or("Error").to_owned(),
        };
        // The page keeps the signed-in user's navigation.
        let user = match session {
            Some(s) => crate::web::session::read_user(s, &state)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        render(&ErrorPage {
            chrome: Chrome::new(&state, user.as_ref()),
            title,
            message: sentence(&error.message),
            request_id,
        })
    };
    *page.status_mut() = status;
    if let Some(wait) = response.headers().get(header::RETRY_AFTER) {
        page.headers_mut().insert(header::RETRY_AFTER, wait.clone());
    }
    page
}

/// An API message as a sentence for a person: capital first letter, final full stop.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}
