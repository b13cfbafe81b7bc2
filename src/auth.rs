//! The sign-in hand-off from the platform's Auth service: a short-lived HS256 JWT signed with
//! `MSR_AUTH_SECRET`, claims `sub` (user id), `email`, `exp`, optional `role`, `jti`, `iat`.
//! Parsing and verification are pure (no I/O) and never panic, whatever the input.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::{Email, UserId};

/// The longest a hand-off token may live (from issue to expiry, and from now to expiry).
pub const MAX_LIFETIME_SECS: i64 = 300;
/// Clock skew tolerated between the Auth service and us.
const LEEWAY_SECS: i64 = 30;

/// Why a token was refused; the text is shown to the person (it never contains the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("the sign-in link is malformed")]
    Malformed,
    /// `alg` is not HS256 (e.g. `none`).
    #[error("the sign-in link uses an algorithm we do not accept")]
    WrongAlgorithm,
    /// The signature does not match.
    #[error("the sign-in link's signature is not valid")]
    BadSignature,
    /// Past `exp`.
    #[error("the sign-in link has expired; sign in again from the app")]
    Expired,
    /// Valid for longer than five minutes.
    #[error("the sign-in link lives too long to be accepted")]
    TooLongLived,
    /// A claim is missing or has the wrong shape.
    #[error("the sign-in link's claims are invalid")]
    InvalidClaims,
    /// Used before.
    #[error("the sign-in link was already used; sign in again from the app")]
    Replayed,
    /// The token's `nonce` is not the one this browser was given when it asked to sign in: the
    /// link was made for another browser (login CSRF), or the sign-in took too long.
    #[error(
        "the sign-in link was made for another browser, or has waited too long; sign in again from this browser"
    )]
    NonceMismatch,
    /// The token carries no `nonce` and this server requires one (`MSR_AUTH_REQUIRE_NONCE`).
    #[error("the sign-in link is not bound to this browser; sign in again from the app")]
    NonceMissing,
}

/// A verified hand-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// The platform's user id.
    pub user_id: UserId,
    /// The user's e-mail address.
    pub email: Email,
    /// `role=admin` makes the user an admin for this session.
    pub admin: bool,
    /// The token's id (its hash when it has none), remembered until `exp` so it is used once.
    pub jti: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// The `state` this browser was given at `/auth/signin`, echoed by the Auth service.
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    email: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

fn part<T: for<'de> Deserialize<'de>>(raw: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Verifies a hand-off token at `now` (unix seconds). Replay is checked by the caller (it needs the
/// database); this returns the `jti` to remember.
pub fn verify(token: &str, secret: &[u8], now: i64) -> Result<Handoff, TokenError> {
    if token.len() > 4096 {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = part(h)?;
    if header.alg != "HS256" {
        return Err(TokenError::WrongAlgorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::BadSignature)?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    let expected = mac.finalize().into_bytes();
    if !bool::from(expected.as_slice().ct_eq(&signature)) {
        return Err(TokenError::BadSignature);
    }
    let claims: Claims = part(p).map_err(|_| TokenError::InvalidClaims)?;
    // Every claim is the caller's: checked arithmetic, so `exp` or `iat` near the ends of `i64`
    // are refused instead of overflowing.
    if claims.exp.saturating_add(LEEWAY_SECS) <= now {
        return Err(TokenError::Expired);
    }
    let issued = claims.iat.unwrap_or(now);
    let too_long = |from: i64| {
        claims
            .exp
            .checked_sub(from)
            .is_none_or(|life| life > MAX_LIFETIME_SECS + LEEWAY_SECS)
    };
    if too_long(now) || too_long(issued) {
        return Err(TokenError::TooLongLived);
    }
    let user_id = UserId::parse(&claims.sub).map_err(|_| TokenError::InvalidClaims)?;
    let email = Email::parse(&claims.email).map_err(|_| TokenError::InvalidClaims)?;
    let jti = match claims.jti {
        Some(j) if !j.is_empty() && j.len() <= 200 => j,
        Some(_) => return Err(TokenError::InvalidClaims),
        None => format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes()))),
    };
    Ok(Handoff {
        user_id,
        email,
        admin: claims.role.as_deref() == Some("admin"),
        jti,
        exp: claims.exp,
        nonce: claims.nonce.filter(|n| !n.is_empty()),
    })
}

/// Makes a token as the Auth service would (tests and the dev tools use it).
pub fn sign(claims: &serde_json::Value, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(header.as_bytes());
            mac.update(b".");
            mac.update(payload.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{header}.{payload}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const SECRET: &[u8] = b"auth-secret";

    fn token(exp_in: i64) -> String {
        sign(
            &json!({"sub": "u1", "email": "U1@example.com", "exp": NOW + exp_in, "iat": NOW, "jti": "j1"}),
            SECRET,
        )
    }

    #[test]
    fn a_fresh_token_signs_the_user_in() {
        let h = verify(&token(120), SECRET, NOW).unwrap();
        assert_eq!(
            (
                h.user_id.as_str(),
                h.email.as_str(),
                h.admin,
                h.jti.as_str()
            ),
            ("u1", "u1@example.com", false, "j1")
        );
        let admin = sign(
            &json!({"sub": "a", "email": "a@example.com", "exp": NOW + 60, "role": "admin"}),
            SECRET,
        );
        let h = verify(&admin, SECRET, NOW).unwrap();
        assert!(h.admin);
        assert!(
            h.jti.starts_with("sha256:"),
            "a token without jti is remembered by its hash"
        );
    }

    #[test]
    fn expired_long_lived_and_badly_signed_tokens_are_refused() {
        assert_eq!(verify(&token(-31), SECRET, NOW), Err(TokenError::Expired));
        assert_eq!(
            verify(&token(3600), SECRET, NOW),
            Err(TokenError::TooLongLived)
        );
        assert_eq!(
            verify(&token(60), b"other", NOW),
            Err(TokenError::BadSignature)
        );
        let mut tampered = token(60);
        tampered.insert(tampered.find('.').unwrap() + 2, 'x');
        assert!(verify(&tampered, SECRET, NOW).is_err());
    }

    #[test]
    fn times_at_the_ends_of_i64_are_refused_without_overflow() {
        let cases = [
            (
                json!({"sub": "u", "email": "u@example.com", "exp": i64::MAX}),
                TokenError::TooLongLived,
            ),
            (
                json!({"sub": "u", "email": "u@example.com", "exp": i64::MIN}),
                TokenError::Expired,
            ),
            (
                json!({"sub": "u", "email": "u@example.com", "exp": NOW + 60, "iat": i64::MIN}),
                TokenError::TooLongLived,
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(
                verify(&sign(&claims, SECRET), SECRET, NOW),
                Err(expected),
                "{claims}"
            );
        }
    }

    #[test]
    fn other_algorithms_are_refused() {
        let t = token(60);
        let (_, rest) = t.split_once('.').unwrap();
        for alg in ["none", "HS512", "RS256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#));
            assert_eq!(
                verify(&format!("{header}.{rest}"), SECRET, NOW),
                Err(TokenError::WrongAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        for raw in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            "%%%.%%%.%%%",
            "eyJ.eyJ.x",
        ] {
            assert!(verify(raw, SECRET, NOW).is_err(), "{raw}");
        }
        let bad_claims = sign(
            &json!({"sub": "<script>", "email": "x@example.com", "exp": NOW + 60}),
            SECRET,
        );
        assert_eq!(
            verify(&bad_claims, SECRET, NOW),
            Err(TokenError::InvalidClaims)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Any token: a clear refusal, never a panic (only a correctly signed one is accepted).
        #[test]
        fn any_token_is_answered_without_panic(token in ".{0,400}") {
            proptest::prop_assert!(verify(&token, SECRET, NOW).is_err());
        }

        #[test]
        fn jwt_shaped_tokens_are_answered_without_panic(h in "[A-Za-z0-9_-]{0,60}", p in "[A-Za-z0-9_-]{0,200}", s in "[A-Za-z0-9_-]{0,60}") {
            let token = format!("{h}.{p}.{s}");
            proptest::prop_assert!(verify(&token, SECRET, NOW).is_err());
        }
    }
}
