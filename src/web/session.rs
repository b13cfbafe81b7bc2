//! Browser identity: the session cookie (tower-sessions, stored in the database), the signed-in
//! user and admin extractors, CSRF-checked forms. Cookies are set in exactly one place: here.

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use crate::domain::UserId;
use crate::error::AppError;
use crate::web::AppState;

const USER_KEY: &str = "user_id";
/// Until when (unix seconds) a `role=admin` hand-off makes this session an admin.
const ADMIN_UNTIL_KEY: &str = "admin_until";
const CSRF_KEY: &str = "csrf";
/// The user's session generation at sign-in (`users.session_generation`).
const GENERATION_KEY: &str = "generation";
/// When (unix milliseconds) the session's expiry was last moved on; see [`keep_alive`].
const SEEN_KEY: &str = "seen_ms";

/// The header htmx sends the CSRF token in (set once on `<body hx-headers>`).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

/// A signed-in browser user.
#[derive(Debug, Clone)]
pub struct SessionUser {
    /// Who.
    pub id: UserId,
    /// May see the admin pages.
    pub admin: bool,
    /// The session's CSRF token, for forms.
    pub csrf: String,
    /// The session itself (sign-out).
    pub session: Session,
}

async fn session_of(parts: &mut Parts, state: &AppState) -> Result<Session, AppError> {
    Session::from_request_parts(parts, state)
        .await
        .map_err(|(_, m)| AppError::Internal(format!("session layer missing: {m}")))
}

fn store_error(e: tower_sessions::session::Error) -> AppError {
    AppError::Internal(format!("session store: {e}"))
}

/// The signed-in user of a session, if any. Admin rights are decided afresh on every request, and
/// a session whose user's sessions were ended by support (or whose user is gone) is over.
pub(crate) async fn read_user(
    session: Session,
    state: &AppState,
) -> Result<Option<SessionUser>, AppError> {
    let Some(raw) = session.get::<String>(USER_KEY).await.map_err(store_error)? else {
        return Ok(None);
    };
    let Ok(id) = UserId::parse(&raw) else {
        return Ok(None);
    };
    let signed_in_at = session
        .get::<i64>(GENERATION_KEY)
        .await
        .map_err(store_error)?
        .unwrap_or(0);
    let current = crate::db::users::session_generation(&state.db.pool, &id).await?;
    if current != Some(signed_in_at) {
        tracing::info!(user.id = %id, "session ended by support (or its user is gone)");
        sign_out(&session).await?;
        return Ok(None);
    }
    keep_alive(&session, state).await?;
    let admin_by_role = session
        .get::<i64>(ADMIN_UNTIL_KEY)
        .await
        .map_err(store_error)?
        .is_some_and(|until| until > chrono::Utc::now().timestamp());
    let admin = admin_by_role || state.settings.admin_user_ids.contains(&id);
    let csrf = session
        .get::<String>(CSRF_KEY)
        .await
        .map_err(store_error)?
        .unwrap_or_default();
    Ok(Some(SessionUser {
        id,
        admin,
        csrf,
        session,
    }))
}

/// Moves the session's idle expiry on. The session layer saves (and so extends) a session only
/// when it changed, so a browser that only reads pages would be signed out `MSR_SESSION_IDLE`
/// after sign-in however busy it was. Touching a timestamp makes the save; it is done at most
/// once per eighth of the idle time (and at least once a minute), so a session ends between
/// `idle - min(idle / 8, 60 s)` and `idle` after its last request, for one write per interval.
async fn keep_alive(session: &Session, state: &AppState) -> Result<(), AppError> {
    let now = chrono::Utc::now().timestamp_millis();
    let idle = state.settings.session_idle.as_millis() as i64;
    let every = (idle / 8).min(60_000);
    let seen = session
        .get::<i64>(SEEN_KEY)
        .await
        .map_err(store_error)?
        .unwrap_or(0);
    if now.saturating_sub(seen) >= every {
        session.insert(SEEN_KEY, now).await.map_err(store_error)?;
    }
    Ok(())
}

/// The session's CSRF token, made now if it has none: forms shown to a signed-out browser (the
/// developer sign-in, the dev tools) carry one too, so no other site can post them.
pub async fn csrf_token(session: &Session) -> Result<String, AppError> {
    if let Some(token) = session.get::<String>(CSRF_KEY).await.map_err(store_error)? {
        return Ok(token);
    }
    let token = new_token();
    session
        .insert(CSRF_KEY, &token)
        .await
        .map_err(store_error)?;
    Ok(token)
}

/// The session's CSRF token if it has one (empty otherwise); makes nothing.
pub async fn existing_csrf_token(session: &Session) -> Result<String, AppError> {
    Ok(session
        .get::<String>(CSRF_KEY)
        .await
        .map_err(store_error)?
        .unwrap_or_default())
}

fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = signed_in_user(parts, state)
            .await?
            .ok_or(AppError::SignInRequired)?;
        crate::web::middleware::record_user(parts, &user.id);
        Ok(user)
    }
}

/// The request's signed-in user, read once per request: a guard (the admin route layer) and the
/// handler's own extractor share what the first of them read (the session generation query, the
/// keep-alive).
async fn signed_in_user(
    parts: &mut Parts,
    state: &AppState,
) -> Result<Option<SessionUser>, AppError> {
    if let Some(read) = parts.extensions.get::<ReadUser>() {
        return Ok(read.0.clone());
    }
    let session = session_of(parts, state).await?;
    let user = read_user(session, state).await?;
    parts.extensions.insert(ReadUser(user.clone()));
    Ok(user)
}

/// What [`signed_in_user`] read for this request.
#[derive(Clone)]
struct ReadUser(Option<SessionUser>);

impl OptionalFromRequestParts<AppState> for SessionUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        signed_in_user(parts, state).await
    }
}

/// A signed-in admin; anyone else signed in gets 403.
#[derive(Debug, Clone)]
pub struct AdminUser(pub SessionUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user =
            <SessionUser as FromRequestParts<AppState>>::from_request_parts(parts, state).await?;
        if user.admin {
            Ok(AdminUser(user))
        } else {
            Err(AppError::Forbidden(
                "the admin pages are for support staff".into(),
            ))
        }
    }
}

/// Signs a user in: a new session id (no fixation), the user and their session generation, admin
/// rights for `MSR_ADMIN_ROLE_TTL` (at most an hour) when the Auth service said `role=admin`, a
/// fresh CSRF token. `MSR_ADMIN_USER_IDS` is read on every request instead.
pub async fn sign_in(
    session: &Session,
    state: &AppState,
    user: &UserId,
    admin: bool,
) -> Result<(), AppError> {
    let generation = crate::db::users::session_generation(&state.db.pool, user)
        .await?
        .ok_or_else(|| AppError::UnknownUser(user.to_string()))?;
    session.cycle_id().await.map_err(store_error)?;
    session
        .insert(USER_KEY, user.as_str())
        .await
        .map_err(store_error)?;
    session
        .insert(GENERATION_KEY, generation)
        .await
        .map_err(store_error)?;
    session
        .insert(SEEN_KEY, chrono::Utc::now().timestamp_millis())
        .await
        .map_err(store_error)?;
    if admin {
        session
            .insert(
                ADMIN_UNTIL_KEY,
                chrono::Utc::now().timestamp() + state.settings.admin_role_ttl.as_secs() as i64,
            )
            .await
            .map_err(store_error)?;
    } else {
        session
            .remove::<i64>(ADMIN_UNTIL_KEY)
            .await
            .map_err(store_error)?;
    }
    session
        .insert(CSRF_KEY, new_token())
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Ends the session (the cookie is cleared and the stored record deleted).
pub async fn sign_out(session: &Session) -> Result<(), AppError> {
    session.flush().await.map_err(store_error)
}

/// A form posted by a signed-in browser, accepted only with the session's CSRF token (form field
/// `csrf_token` or header `X-CSRF-Token`); a cross-site post without it is 403.
#[derive(Debug)]
pub struct CsrfForm<T> {
    /// Who posted.
    pub user: SessionUser,
    /// The form.
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let user =
            <SessionUser as FromRequestParts<AppState>>::from_request_parts(&mut parts, state)
                .await?;
        let form = checked_form(&parts, body, &user.csrf).await?;
        Ok(CsrfForm { user, form })
    }
}

/// A form posted by a browser that may not be signed in yet (the developer sign-in, creating a test
/// user), accepted only with the CSRF token its session was given when the form was shown.
#[derive(Debug)]
pub struct SessionForm<T> {
    /// The browser's session.
    pub session: Session,
    /// Who is signed in on it, if anyone.
    pub user: Option<SessionUser>,
    /// The form.
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for SessionForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = session_of(&mut parts, state).await?;
        let expected = session
            .get::<String>(CSRF_KEY)
            .await
            .map_err(store_error)?
            .unwrap_or_default();
        let user = read_user(session.clone(), state).await?;
        let form = checked_form(&parts, body, &expected).await?;
        Ok(SessionForm {
            session,
            user,
            form,
        })
    }
}

/// Reads a form after checking that it carries `expected` (a session's CSRF token).
async fn checked_form<T: DeserializeOwned>(
    parts: &Parts,
    body: axum::body::Body,
    expected: &str,
) -> Result<T, AppError> {
    let header = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(body, super::API_BODY_LIMIT)
        .await
        .map_err(|_| AppError::PayloadTooLarge(super::API_BODY_LIMIT))?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let presented = header.or_else(|| {
        fields
            .iter()
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.clone())
    });
    let valid = presented.is_some_and(|p| {
        !expected.is_empty() && bool::from(p.as_bytes().ct_eq(expected.as_bytes()))
    });
    if !valid {
        return Err(AppError::Forbidden(
            "this form expired or came from another site; reload the page and try again".into(),
        ));
    }
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| AppError::invalid("invalid_form", e.to_string()))
}

/// A form with nothing but the CSRF token (sign-out, the portal button, admin actions).
#[derive(Debug, serde::Deserialize)]
pub struct NoFields {}

/// The sign-in `state` cookie: set by `/auth/signin`, read and cleared by `/auth/hand-off`.
const AUTH_STATE_COOKIE: &str = "msr_auth_state";
/// Its name over https (`__Host-`: Secure, `Path=/`, no Domain).
const SECURE_AUTH_STATE_COOKIE: &str = "__Host-msr_auth_state";
/// How long a browser may take from asking to sign in to coming back with the token.
pub const AUTH_STATE_SECS: i64 = 600;

fn auth_state_name(https: bool) -> &'static str {
    if https {
        SECURE_AUTH_STATE_COOKIE
    } else {
        AUTH_STATE_COOKIE
    }
}

/// The `state` nonce this browser was given at `/auth/signin`, if it still has one.
pub fn auth_state(headers: &axum::http::HeaderMap, https: bool) -> Option<String> {
    let name = auth_state_name(https);
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

/// A new `state` nonce and the `Set-Cookie` that gives it to this browser (HttpOnly, SameSite=Lax
/// so the Auth service's redirect back brings it, ten minutes).
pub fn new_auth_state(https: bool) -> (String, axum::http::HeaderValue) {
    let nonce = format!("{:032x}", rand::random::<u128>());
    let cookie = format!(
        "{}={nonce}; Max-Age={AUTH_STATE_SECS}; Path=/; HttpOnly; SameSite=Lax{}",
        auth_state_name(https),
        if https { "; Secure" } else { "" }
    );
    let value = axum::http::HeaderValue::from_str(&cookie)
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static(""));
    (nonce, value)
}

/// The `Set-Cookie` that removes the `state` nonce (it is used once).
pub fn clear_auth_state(https: bool) -> axum::http::HeaderValue {
    let cookie = format!(
        "{}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax{}",
        auth_state_name(https),
        if https { "; Secure" } else { "" }
    );
    axum::http::HeaderValue::from_str(&cookie)
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static(""))
}
