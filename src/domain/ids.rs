//! Identifiers and addresses, parsed once at the edge so the rest of the code can trust them.

use std::fmt;

use serde::Serialize;

/// The platform's user id: an opaque string of 1–128 characters from `[A-Za-z0-9_.:@-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Longest id the platform hands out.
    pub const MAX_LEN: usize = 128;

    /// Accepts the id if it has the platform's shape.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok_char =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '@' | '-');
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.chars().all(ok_char) {
            return Err(InvalidValue(format!(
                "user_id must be 1-{} characters of A-Z a-z 0-9 _ . : @ -",
                Self::MAX_LEN
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as stored and sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address, trimmed and lower-cased so that the same mailbox always compares equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// The longest address SMTP allows.
    pub const MAX_LEN: usize = 254;

    /// A deliberately plain check: one `@`, something on both sides, a dot in the domain, no spaces.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let candidate = raw.trim().to_lowercase();
        let bad = || {
            InvalidValue(format!(
                "email must be an address such as name@example.com, got {raw:?}"
            ))
        };
        if candidate.is_empty() || candidate.len() > Self::MAX_LEN {
            return Err(bad());
        }
        let (local, domain) = candidate.split_once('@').ok_or_else(bad)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        let no_junk = !candidate.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | ';')
        });
        if local.is_empty() || !domain_ok || !no_junk {
            return Err(bad());
        }
        Ok(Self(candidate))
    }

    /// The address as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! stripe_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts an id that carries Stripe's prefix for this kind of object.
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                let ok = raw.len() > $prefix.len()
                    && raw.len() <= 255
                    && raw.starts_with($prefix)
                    && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if ok {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(InvalidValue(format!("{raw:?} is not a Stripe id starting with {}", $prefix)))
                }
            }

            /// The id as Stripe writes it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

stripe_id!(
    /// A Stripe customer id (`cus_…`).
    StripeCustomerId,
    "cus_"
);
stripe_id!(
    /// A Stripe subscription id (`sub_…`).
    SubscriptionId,
    "sub_"
);

/// A value that failed to parse; the message says what the value should look like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_of_the_platform_shape_are_accepted() {
        for ok in ["1", "u_1", "auth0:abc@x.y-z", &"a".repeat(128)] {
            assert_eq!(UserId::parse(ok).map(|u| u.0), Ok(ok.to_string()));
        }
    }

    #[test]
    fn user_ids_with_other_characters_or_lengths_are_refused() {
        for bad in ["", " 1", "a b", "<script>", "ü", "a/b", &"a".repeat(129)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse(" Ed@Example.COM ").map(|e| e.0),
            Ok("ed@example.com".into())
        );
        for bad in [
            "",
            "ed",
            "ed@",
            "@x.com",
            "ed@x",
            "ed@.com",
            "e d@x.com",
            "ed@x..com",
            "<a>@x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn stripe_ids_need_their_prefix() {
        assert!(StripeCustomerId::parse("cus_123").is_ok());
        assert!(StripeCustomerId::parse("sub_123").is_err());
        assert!(SubscriptionId::parse("sub_").is_err());
    }
}
