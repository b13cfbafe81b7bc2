//! Verifying `Stripe-Signature` over the raw request body, before anything parses it.
//!
//! Header: `t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=…]`; signed payload `"<t>.<body>"`; signature
//! hex HMAC-SHA256 keyed with the whole `whsec_…` secret. Any `v1` that matches any configured secret
//! passes (secret rotation); `v0` is ignored.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// How far a signature's timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused; the text is safe to log and to send back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("the Stripe-Signature header is missing")]
    Missing,
    /// The header is not `t=…,v1=…`.
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    /// The timestamp is outside the tolerance.
    #[error("the Stripe-Signature timestamp is outside the 300 s tolerance")]
    Stale,
    /// No `v1` signature matches any configured secret.
    #[error("no Stripe-Signature v1 signature matches")]
    Mismatch,
    /// No webhook secret is configured, so nothing can be verified.
    #[error("no webhook secret is configured")]
    NoSecret,
}

impl SignatureError {
    /// A short label for counters and logs.
    pub fn label(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing",
            SignatureError::Malformed => "malformed",
            SignatureError::Stale => "stale",
            SignatureError::Mismatch => "mismatch",
            SignatureError::NoSecret => "no_secret",
        }
    }
}

/// The parts of a `Stripe-Signature` header we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// `t=`.
    pub timestamp: i64,
    /// Every `v1=`, decoded.
    pub v1: Vec<[u8; 32]>,
}

/// Parses the header; never panics, whatever the input.
pub fn parse_header(raw: &str) -> Result<SignatureHeader, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for part in raw.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            "v1" => {
                let mut sig = [0u8; 32];
                // A v1 that is not 64 hex digits cannot match; skip it rather than refuse the header,
                // another v1 may still be right.
                if hex::decode_to_slice(value, &mut sig).is_ok() {
                    v1.push(sig);
                }
            }
            _ => {}
        }
    }
    match timestamp {
        Some(timestamp) if !v1.is_empty() => Ok(SignatureHeader { timestamp, v1 }),
        _ => Err(SignatureError::Malformed),
    }
}

/// The hex signature Stripe would send for `body` at `timestamp` with `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Checks the header against the body with any of the secrets, at `now` (unix seconds).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let parsed = parse_header(header.ok_or(SignatureError::Missing)?)?;
    // `t` comes from the caller: near `i64::MIN` a plain `now - t` overflows.
    if now
        .checked_sub(parsed.timestamp)
        .and_then(i64::checked_abs)
        .is_none_or(|age| age > TOLERANCE_SECS)
    {
        return Err(SignatureError::Stale);
    }
    let matched = secrets.iter().any(|secret| {
        let expected = mac(secret.expose(), parsed.timestamp, body);
        parsed.v1.iter().any(|sig| bool::from(sig.ct_eq(&expected)))
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn header(secret: &str, t: i64, body: &[u8]) -> String {
        format!("t={t},v1={}", sign(secret, t, body))
    }

    #[test]
    fn a_correct_signature_passes() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = [Secret::new("whsec_a")];
        assert_eq!(
            verify(Some(&header("whsec_a", NOW, body)), body, &secrets, NOW),
            Ok(())
        );
    }

    #[test]
    fn each_bad_case_is_named() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = [Secret::new("whsec_a")];
        let v = |h: Option<&str>, b: &[u8]| verify(h, b, &secrets, NOW);
        assert_eq!(v(None, body), Err(SignatureError::Missing));
        assert_eq!(v(Some("garbage"), body), Err(SignatureError::Malformed));
        assert_eq!(v(Some("t=abc,v1=00"), body), Err(SignatureError::Malformed));
        assert_eq!(
            v(Some(&format!("t={NOW}")), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            v(Some(&header("whsec_a", NOW - 301, body)), body),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v(Some(&header("whsec_a", NOW + 301, body)), body),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v(Some(&header("whsec_b", NOW, body)), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v(Some(&header("whsec_a", NOW, body)), br#"{"id":"evt_2"}"#),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header("whsec_a", NOW, body)), body, &[], NOW),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn timestamps_at_the_ends_of_i64_are_stale_not_an_overflow() {
        let secrets = [Secret::new("whsec_x")];
        for t in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let h = header("whsec_x", t, b"{}");
            assert_eq!(
                verify(Some(&h), b"{}", &secrets, 1_800_000_000),
                Err(SignatureError::Stale),
                "t={t}"
            );
        }
    }

    #[test]
    fn rotation_any_secret_and_any_v1_may_match() {
        let body = b"{}";
        let secrets = [Secret::new("whsec_old"), Secret::new("whsec_new")];
        let two = format!(
            "t={NOW},v1={},v1={},v0=ignored",
            sign("whsec_other", NOW, body),
            sign("whsec_new", NOW, body)
        );
        assert_eq!(verify(Some(&two), body, &secrets, NOW), Ok(()));
    }

    #[test]
    fn the_parser_never_panics_on_odd_input() {
        for raw in [
            "",
            ",",
            "=",
            "t=",
            "v1=",
            "t=1,v1=zz",
            "t=99999999999999999999,v1=00",
            "t=1,,v1=",
            "\u{0}=\u{0}",
        ] {
            let _ = parse_header(raw);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Any header and body: an answer, never a panic; and only the right signature passes.
        #[test]
        fn any_header_is_answered_without_panic(header in ".{0,300}", body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let secrets = [Secret::new("whsec_fuzz")];
            proptest::prop_assert!(verify(Some(&header), &body, &secrets, NOW).is_err() || header.contains(&sign("whsec_fuzz", NOW, &body)));
        }

        #[test]
        fn header_shaped_input_is_parsed_without_panic(t in proptest::prelude::any::<i64>(), sigs in proptest::collection::vec("[0-9a-fA-F]{0,70}", 0..4), junk in "[,=a-z0-9]{0,40}") {
            let header = format!("t={t},{}{junk}", sigs.iter().map(|s| format!("v1={s},")).collect::<String>());
            let _ = parse_header(&header);
            let _ = verify(Some(&header), b"{}", &[Secret::new("whsec_fuzz")], NOW);
        }
    }
}
