//! Browser identity: the session cookie (tower-sessions, stored in the database), the signed-in
//! user and admin extractors, CSRF-checked forms. Cookies are set in exactly one place: here.

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use crate::domain::UserId;
use crate::error::AppError;
use crate::state::AppState;

const USER_KEY: &str = "user_id";
const ADMIN_KEY: &str = "admin";
const CSRF_KEY: &str = "csrf";

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

/// The signed-in user of a session, if any.
pub(crate) async fn read_user(
    session: Session,
    state: &AppState,
) -> Result<Option<SessionUser>, AppError> {
    let get = |e: tower_sessions::session::Error| AppError::Internal(format!("session store: {e}"));
    let Some(raw) = session.get::<String>(USER_KEY).await.map_err(get)? else {
        return Ok(None);
    };
    let Ok(id) = UserId::parse(&raw) else {
        return Ok(None);
    };
    let admin_by_role = session
        .get::<bool>(ADMIN_KEY)
        .await
        .map_err(get)?
        .unwrap_or(false);
    let admin = admin_by_role || state.settings.admin_user_ids.contains(&id);
    let csrf = session
        .get::<String>(CSRF_KEY)
        .await
        .map_err(get)?
        .unwrap_or_default();
    Ok(Some(SessionUser {
        id,
        admin,
        csrf,
        session,
    }))
}

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = session_of(parts, state).await?;
        let user = read_user(session, state)
            .await?
            .ok_or(AppError::SignInRequired)?;
        crate::web::middleware::record_user(parts, &user.id);
        Ok(user)
    }
}

impl OptionalFromRequestParts<AppState> for SessionUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        let session = session_of(parts, state).await?;
        read_user(session, state).await
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

/// Signs a user in: a new session id (no fixation), the user, the admin flag, a fresh CSRF token.
pub async fn sign_in(session: &Session, user: &UserId, admin: bool) -> Result<(), AppError> {
    let store =
        |e: tower_sessions::session::Error| AppError::Internal(format!("session store: {e}"));
    session.cycle_id().await.map_err(store)?;
    session
        .insert(USER_KEY, user.as_str())
        .await
        .map_err(store)?;
    session.insert(ADMIN_KEY, admin).await.map_err(store)?;
    session
        .insert(CSRF_KEY, format!("{:032x}", rand::random::<u128>()))
        .await
        .map_err(store)?;
    Ok(())
}

/// Ends the session (the cookie is cleared and the stored record deleted).
pub async fn sign_out(session: &Session) -> Result<(), AppError> {
    session
        .flush()
        .await
        .map_err(|e| AppError::Internal(format!("session store: {e}")))
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
        let header = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(body, super::API_BODY_LIMIT)
            .await
            .map_err(|_| AppError::PayloadTooLarge(super::API_BODY_LIMIT))?;
        let fields: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let presented = header.or_else(|| {
            fields
                .iter()
                .find(|(k, _)| k == CSRF_FIELD)
                .map(|(_, v)| v.clone())
        });
        let valid = presented.is_some_and(|p| {
            !user.csrf.is_empty() && bool::from(p.as_bytes().ct_eq(user.csrf.as_bytes()))
        });
        if !valid {
            return Err(AppError::Forbidden(
                "this form expired or came from another site; reload the page and try again".into(),
            ));
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| AppError::invalid("invalid_form", e.to_string()))?;
        Ok(CsrfForm { user, form })
    }
}

/// A form with nothing but the CSRF token (sign-out, the portal button, admin actions).
#[derive(Debug, serde::Deserialize)]
pub struct NoFields {}
