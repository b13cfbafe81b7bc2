//! Times as the store keeps them (unix seconds) and as the wire shows them (RFC 3339).

use chrono::{DateTime, SecondsFormat, Utc};

/// Stored unix seconds as a time; out-of-range values (which we never write) clamp to the epoch.
pub fn from_unix(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// RFC 3339 in UTC, to the second.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
