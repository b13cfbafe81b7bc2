//! Configuration from the environment (and an optional `.env` file), checked once at start-up.
//!
//! Every bad value stops start-up with one line naming the variable and what is wrong. Secrets are
//! wrapped in [`Secret`] so neither logs nor `Debug` output can show them.

use std::collections::HashMap;
use std::fmt;

use std::time::Duration;
use url::Url;

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A configuration value that cannot be used; printed as `VARIABLE: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    /// The variable (or variables) at fault.
    pub var: String,
    /// What is wrong with it, and what would be right.
    pub message: String,
}

impl ConfigError {
    fn new(var: &str, message: impl Into<String>) -> Self {
        Self {
            var: var.to_owned(),
            message: message.into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// Where the service's Stripe calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeMode {
    /// No key and debug on: the built-in simulator, started in-process. Payments are simulated.
    Simulated,
    /// A real key (test or live) and the API base to send it to.
    Remote {
        /// `sk_test_…`, `sk_live_…` (or a restricted `rk_…` key).
        api_key: Secret,
    },
    /// No key and debug off: billing routes answer 503 until a key is configured.
    Disabled,
}

impl StripeMode {
    /// Whether the key is a live-mode key.
    pub fn is_live(&self) -> bool {
        matches!(self, StripeMode::Remote { api_key } if api_key.expose().starts_with("sk_live_") || api_key.expose().starts_with("rk_live_"))
    }
}

/// Stripe settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSettings {
    /// Simulated, remote or disabled.
    pub mode: StripeMode,
    /// Base URL of Stripe's API (`STRIPE_API_BASE`); `None` means Stripe's own.
    pub api_base: Option<Url>,
    /// Webhook signing secrets; any one valid signature is enough (rotation).
    pub webhook_secrets: Vec<Secret>,
    /// Price of the weekly plan.
    pub price_weekly: Option<String>,
    /// Price of the monthly plan.
    pub price_monthly: Option<String>,
    /// In demo mode, the key of the embedded simulator (made up at start; its API and controls
    /// take no other).
    pub simulator_key: Option<Secret>,
}

/// Everything the service reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `MSR_LISTEN_ADDR`, host:port.
    pub listen_addr: String,
    /// `DATABASE_URL` (may carry a password).
    pub database_url: Secret,
    /// Most connections the pool opens (`MSR_DB_MAX_CONNECTIONS`).
    pub db_max_connections: u32,
    /// `MSR_DEBUG`: dev routes on, X-User-Id accepted without the internal key when none is set.
    /// Unset, it is on only without a Stripe key and on a loopback listen address.
    pub debug: bool,
    /// Debug stayed off only because the listen address is not loopback (start-up says so).
    pub debug_default_refused: bool,
    /// Stripe.
    pub stripe: StripeSettings,
    /// The public base URL of this service (`MSR_PUBLIC_URL`).
    pub public_url: Url,
    /// Where Checkout sends the owner after paying (`FRONTEND_RETURN_URL`).
    pub frontend_return_url: Url,
    /// Where Checkout sends the owner who gave up (`FRONTEND_CANCEL_URL`).
    pub frontend_cancel_url: Url,
    /// Where the Stripe portal sends the owner back (`BILLING_PORTAL_RETURN_URL`).
    pub billing_portal_return_url: Url,
    /// `MSR_INTERNAL_API_KEY`: the bearer token other services send with `X-User-Id`.
    pub internal_api_key: Option<Secret>,
    /// `MSR_PAST_DUE_GRACE`.
    pub past_due_grace: Duration,
    /// `MSR_TRIAL_DAYS`: trial for owners who never had a subscription.
    pub trial_days: u32,
    /// `MSR_REQUEST_TIMEOUT`.
    pub request_timeout: Duration,
    /// `MSR_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `MSR_STRIPE_RATE_LIMIT`: most Stripe API calls a second (Stripe allows 25 in test mode, 100 live).
    pub stripe_rate_limit: u32,
    /// `MSR_STRIPE_TIMEOUT`: longest wait for one Stripe call.
    pub stripe_timeout: Duration,
    /// `MSR_WORKER_INTERVAL`: how often the background worker looks for events to retry.
    pub worker_interval: Duration,
    /// `MSR_EVENTS_POLL_INTERVAL`: how often Stripe's Events API is read for missed deliveries (0: never).
    pub events_poll_interval: Duration,
    /// `MSR_EVENT_MAX_ATTEMPTS`: attempts before an event is dead-lettered.
    pub event_max_attempts: u32,
    /// `MSR_AUTH_SECRET`: the HS256 key of the Auth service's sign-in hand-off tokens. Without it the
    /// hand-off is refused (in debug mode the dev sign-in form still works).
    pub auth_secret: Option<Secret>,
    /// `MSR_AUTH_REQUIRE_NONCE`: a hand-off token must carry the `nonce` this browser was given at
    /// `/auth/signin` (default: true unless debug).
    pub auth_require_nonce: bool,
    /// `MSR_AUTH_SIGNIN_URL`: the Auth service's sign-in page; `/auth/signin` links there with
    /// `state` (the nonce) and `redirect_uri` (our `/auth/handoff`).
    pub auth_signin_url: Option<Url>,
    /// `MSR_ADMIN_USER_IDS`: users who may see the admin pages (besides `role=admin` hand-offs).
    pub admin_user_ids: Vec<crate::domain::UserId>,
    /// `MSR_ADMIN_ROLE_TTL`: how long a `role=admin` hand-off makes a session an admin (at most an
    /// hour: the role is the Auth service's to take away, so it is asked again that often).
    pub admin_role_ttl: Duration,
    /// `MSR_SESSION_IDLE`: a browser session ends after this long without a request.
    pub session_idle: Duration,
    /// `MSR_STATIC_DIR`: where the stylesheet and htmx are served from.
    pub static_dir: String,
    /// `MSR_HEADER_TIMEOUT`: how long a client may take to send its request headers (slow-loris).
    pub header_timeout: Duration,
    /// `MSR_IDLE_TIMEOUT`: a connection (HTTP/1 keep-alive or HTTP/2) with no request in flight for
    /// this long is closed.
    pub idle_timeout: Duration,
    /// `MSR_MAX_CONNECTIONS`: most connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// `MSR_EVENT_RETENTION`: raw event payloads hold personal data; after this long a finished
    /// event is reduced to its id, type and outcome.
    pub event_retention: Duration,
    /// `MSR_FEED_RETENTION`: how long the entitlement change log is kept (each owner's newest
    /// change stays whatever its age).
    pub feed_retention: Duration,
    /// `MSR_FEED_ENDPOINTS`: comma-separated http(s) URLs that get every entitlement change as a
    /// Standard Webhooks delivery.
    pub feed_endpoints: Vec<Url>,
    /// `MSR_FEED_SECRET`: `whsec_` + base64, the key the deliveries are signed with (the bytes the
    /// base64 decodes to). Required with endpoints.
    pub feed_secret: Option<Secret>,
    /// `MSR_CACHE_CAPACITY`: users whose entitlement is kept in memory (0 turns the cache off).
    pub cache_capacity: usize,
    /// `MSR_CACHE_TTL`: the longest an entry is trusted (bounds writes no instance saw, such as
    /// the `sync` command on SQLite).
    pub cache_ttl: Duration,
}

/// Reads variables from somewhere: the process environment in production, a map in tests.
pub trait Source {
    /// The value of `key`, `None` when unset. Empty values count as unset.
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment, after loading `.env` if one exists.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.trim().is_empty())
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key)
            .cloned()
            .filter(|v| !v.trim().is_empty())
    }
}

impl Settings {
    /// Loads `.env` (if present, without overriding the environment), then reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(ConfigError::new(".env", format!("cannot be read: {e}"))),
        }
        Self::from_source(&ProcessEnv)
    }

    /// Reads and checks every variable.
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        let api_key = env.get("STRIPE_API_KEY").map(Secret::new);
        if let Some(key) = &api_key {
            let k = key.expose();
            if !["sk_test_", "sk_live_", "rk_test_", "rk_live_"]
                .iter()
                .any(|p| k.starts_with(p))
            {
                return Err(ConfigError::new(
                    "STRIPE_API_KEY",
                    "must be a Stripe secret key starting with sk_test_ or sk_live_",
                ));
            }
        }
        let listen_addr = env
            .get("MSR_LISTEN_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8000".to_owned());
        check_listen_addr(&listen_addr)?;
        let loopback = is_loopback(&listen_addr);
        // The zero-set-up demo is for a laptop: without a Stripe key debug turns on by itself only
        // on a loopback address. A server whose Stripe secret failed to mount must not serve
        // `/dev` and every user's e-mail to whoever reaches it.
        let debug = match env.get("MSR_DEBUG") {
            None => api_key.is_none() && loopback,
            Some(raw) => parse_bool(&raw).ok_or_else(|| {
                ConfigError::new("MSR_DEBUG", format!("must be true or false, got {raw:?}"))
            })?,
        };
        let debug_default_refused =
            api_key.is_none() && !loopback && env.get("MSR_DEBUG").is_none();
        let mode = match api_key {
            Some(api_key) => StripeMode::Remote { api_key },
            None if debug => StripeMode::Simulated,
            None => StripeMode::Disabled,
        };
        if debug && mode.is_live() {
            return Err(ConfigError::new(
                "MSR_DEBUG, STRIPE_API_KEY",
                "MSR_DEBUG=true is refused with a live STRIPE_API_KEY (sk_live_): debug routes would reach real money",
            ));
        }
        let mode_is_live = mode.is_live();
        let internal_api_key = long_secret(env, "MSR_INTERNAL_API_KEY")?;
        if !debug && internal_api_key.is_none() {
            let why = if debug_default_refused {
                format!(
                    "must be set: debug mode is off because MSR_LISTEN_ADDR {listen_addr} is not a \
                     loopback address (set MSR_DEBUG=true to run the demo there)"
                )
            } else {
                "must be set when MSR_DEBUG is false: without it anyone who reaches the port could \
                 forge X-User-Id"
                    .to_owned()
            };
            return Err(ConfigError::new("MSR_INTERNAL_API_KEY", why));
        }
        let public_url = match env.get("MSR_PUBLIC_URL") {
            Some(raw) => parse_url("MSR_PUBLIC_URL", &raw)?,
            None => {
                let host_port = listen_addr
                    .replace("0.0.0.0", "127.0.0.1")
                    .replace("[::]", "[::1]");
                parse_url("MSR_LISTEN_ADDR", &format!("http://{host_port}/"))?
            }
        };
        let default_url = |path: &str| {
            public_url
                .join(path)
                .map_err(|e| ConfigError::new("MSR_PUBLIC_URL", e.to_string()))
        };
        let url_or = |var: &str, path: &str| match env.get(var) {
            Some(raw) => parse_url(var, &raw),
            None => default_url(path),
        };

        let webhook_secrets = env
            .get("STRIPE_WEBHOOK_SECRET")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default();
        let api_base = env
            .get("STRIPE_API_BASE")
            .map(|raw| parse_url("STRIPE_API_BASE", &raw))
            .transpose()?;

        let database_url = env
            .get("DATABASE_URL")
            .unwrap_or_else(|| "sqlite://msr.db".to_owned());
        // SQLite has one writer and the entitlement check reads from memory: four connections keep
        // both cores busy, and each one costs a thread and a page cache.
        let default_connections = if database_url.starts_with("sqlite:") {
            4
        } else {
            10
        };
        Ok(Settings {
            database_url: Secret::new(database_url),
            db_max_connections: parse_number(
                env,
                "MSR_DB_MAX_CONNECTIONS",
                default_connections,
                1..=1000,
            )?,
            debug,
            debug_default_refused,
            stripe: StripeSettings {
                mode,
                api_base,
                webhook_secrets,
                price_weekly: env.get("STRIPE_PRICE_WEEKLY"),
                price_monthly: env.get("STRIPE_PRICE_MONTHLY"),
                simulator_key: None,
            },
            frontend_return_url: url_or(
                "FRONTEND_RETURN_URL",
                "billing/return?session_id={CHECKOUT_SESSION_ID}",
            )?,
            frontend_cancel_url: url_or("FRONTEND_CANCEL_URL", "billing/cancel")?,
            billing_portal_return_url: url_or("BILLING_PORTAL_RETURN_URL", "account")?,
            public_url,
            listen_addr,
            internal_api_key,
            past_due_grace: parse_duration_var(env, "MSR_PAST_DUE_GRACE", Duration::ZERO)?,
            trial_days: parse_number(env, "MSR_TRIAL_DAYS", 0, 0..=730)?,
            request_timeout: parse_duration_var(
                env,
                "MSR_REQUEST_TIMEOUT",
                Duration::from_secs(30),
            )?,
            stripe_rate_limit: parse_number(
                env,
                "MSR_STRIPE_RATE_LIMIT",
                if mode_is_live { 80 } else { 20 },
                1..=10_000,
            )?,
            stripe_timeout: parse_duration_var(env, "MSR_STRIPE_TIMEOUT", Duration::from_secs(10))?,
            worker_interval: parse_duration_var(
                env,
                "MSR_WORKER_INTERVAL",
                Duration::from_secs(1),
            )?,
            events_poll_interval: parse_duration_var(
                env,
                "MSR_EVENTS_POLL_INTERVAL",
                Duration::from_secs(300),
            )?,
            event_max_attempts: parse_number(env, "MSR_EVENT_MAX_ATTEMPTS", 8, 1..=100)?,
            auth_secret: long_secret(env, "MSR_AUTH_SECRET")?,
            auth_require_nonce: match env.get("MSR_AUTH_REQUIRE_NONCE") {
                None => !debug,
                Some(raw) => parse_bool(&raw).ok_or_else(|| {
                    ConfigError::new(
                        "MSR_AUTH_REQUIRE_NONCE",
                        format!("must be true or false, got {raw:?}"),
                    )
                })?,
            },
            auth_signin_url: env
                .get("MSR_AUTH_SIGNIN_URL")
                .map(|raw| parse_url("MSR_AUTH_SIGNIN_URL", &raw))
                .transpose()?,
            admin_user_ids: env
                .get("MSR_ADMIN_USER_IDS")
                .map(|raw| {
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|id| {
                            crate::domain::UserId::parse(id).map_err(|e| {
                                ConfigError::new("MSR_ADMIN_USER_IDS", format!("{id:?}: {e}"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default(),
            session_idle: parse_duration_var(env, "MSR_SESSION_IDLE", Duration::from_secs(43200))?,
            admin_role_ttl: {
                let ttl = parse_duration_var(env, "MSR_ADMIN_ROLE_TTL", Duration::from_secs(3600))?;
                if ttl <= Duration::ZERO || ttl > Duration::from_secs(3600) {
                    return Err(ConfigError::new(
                        "MSR_ADMIN_ROLE_TTL",
                        "must be more than 0 and at most 1h",
                    ));
                }
                ttl
            },
            header_timeout: parse_duration_var(env, "MSR_HEADER_TIMEOUT", Duration::from_secs(10))?,
            idle_timeout: parse_duration_var(env, "MSR_IDLE_TIMEOUT", Duration::from_secs(60))?,
            max_connections: parse_number(env, "MSR_MAX_CONNECTIONS", 10_000, 1..=1_000_000)?,
            event_retention: parse_duration_var(
                env,
                "MSR_EVENT_RETENTION",
                Duration::from_secs(7776000),
            )?,
            feed_retention: parse_duration_var(
                env,
                "MSR_FEED_RETENTION",
                Duration::from_secs(400 * 86_400),
            )?,
            feed_endpoints: feed_endpoints(env)?,
            feed_secret: feed_secret(env)?,
            cache_capacity: parse_number(env, "MSR_CACHE_CAPACITY", 1_000_000, 0..=100_000_000)?,
            cache_ttl: parse_duration_var(env, "MSR_CACHE_TTL", Duration::from_secs(120))?,
            static_dir: env
                .get("MSR_STATIC_DIR")
                .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/static").to_owned()),
            log_format: match env.get("MSR_LOG_FORMAT").as_deref() {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(ConfigError::new(
                        "MSR_LOG_FORMAT",
                        format!("must be text or json, got {other:?}"),
                    ));
                }
            },
        })
    }
}

/// The shortest shared secret accepted (`MSR_AUTH_SECRET`, `MSR_INTERNAL_API_KEY`): an HS256 key or
/// a bearer key shorter than 32 bytes can be guessed or brute-forced offline.
pub const MIN_SECRET_BYTES: usize = 32;

fn long_secret(env: &dyn Source, var: &str) -> Result<Option<Secret>, ConfigError> {
    match env.get(var) {
        Some(raw) if raw.len() < MIN_SECRET_BYTES => Err(ConfigError::new(
            var,
            format!(
                "must be at least {MIN_SECRET_BYTES} bytes long (generate one with `openssl rand -hex 32`)"
            ),
        )),
        other => Ok(other.map(Secret::new)),
    }
}

/// Whether a `host:port` listens only on this machine: `127.0.0.0/8`, `::1` or `localhost`.
pub fn is_loopback(listen_addr: &str) -> bool {
    let host = listen_addr
        .rsplit_once(':')
        .map_or(listen_addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn feed_endpoints(env: &dyn Source) -> Result<Vec<Url>, ConfigError> {
    let raw = env.get("MSR_FEED_ENDPOINTS").unwrap_or_default();
    let urls: Vec<Url> = raw
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| parse_url("MSR_FEED_ENDPOINTS", u))
        .collect::<Result<_, _>>()?;
    if !urls.is_empty() && env.get("MSR_FEED_SECRET").is_none() {
        return Err(ConfigError::new(
            "MSR_FEED_SECRET",
            "is required with MSR_FEED_ENDPOINTS: deliveries are signed with it (whsec_ + base64)",
        ));
    }
    Ok(urls)
}

fn feed_secret(env: &dyn Source) -> Result<Option<Secret>, ConfigError> {
    use base64::Engine;
    let Some(raw) = env.get("MSR_FEED_SECRET") else {
        return Ok(None);
    };
    let key = raw
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter(|k| k.len() >= 24);
    match key {
        Some(_) => Ok(Some(Secret::new(raw))),
        None => Err(ConfigError::new(
            "MSR_FEED_SECRET",
            "must be whsec_ followed by the base64 of at least 24 random bytes \
             (generate one with `echo whsec_$(openssl rand -base64 32)`)",
        )),
    }
}

fn parse_url(var: &str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| ConfigError::new(var, format!("is not a URL ({e}): {raw:?}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::new(
            var,
            format!("must be an http(s) URL with a host, got {raw:?}"),
        ));
    }
    Ok(url)
}

fn check_listen_addr(raw: &str) -> Result<(), ConfigError> {
    let port = raw
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(_))) if !host.is_empty() => Ok(()),
        _ => Err(ConfigError::new(
            "MSR_LISTEN_ADDR",
            format!("must be host:port such as 127.0.0.1:8000, got {raw:?}"),
        )),
    }
}

fn parse_number<T>(
    env: &dyn Source,
    var: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = env.get(var) else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            var,
            format!(
                "must be a whole number from {} to {}, got {raw:?}",
                range.start(),
                range.end()
            ),
        )),
    }
}

fn parse_duration_var(
    env: &dyn Source,
    var: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match env.get(var) {
        None => Ok(default),
        Some(raw) => parse_duration(&raw).ok_or_else(|| {
            ConfigError::new(
                var,
                format!("must be a duration such as 0, 90s, 30m, 72h or 3d (at most 100 years), got {raw:?}"),
            )
        }),
    }
}

/// Parses `0`, `90s`, `30m`, `72h`, `3d`, `1w` and sums such as `1d12h`.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    if raw == "0" {
        return Some(Duration::ZERO);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in raw.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    (digits.is_empty() && !raw.is_empty() && total <= MAX_DURATION_SECS)
        .then_some(Duration::from_secs(total))
}

/// The longest duration a variable takes (100 years): every duration fits a `chrono` one and an
/// `i64` of milliseconds, so no use site has to handle an overflow.
pub const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

/// A configured duration as a `chrono` one, for time arithmetic on dates. Never saturates for a
/// parsed value (see [`MAX_DURATION_SECS`]).
pub fn as_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_bare_environment_is_the_demo_mode() {
        let s = Settings::from_source(&env(&[])).unwrap();
        assert!(s.debug);
        assert_eq!(s.stripe.mode, StripeMode::Simulated);
        assert_eq!(s.listen_addr, "127.0.0.1:8000");
        assert_eq!(
            s.frontend_cancel_url.as_str(),
            "http://127.0.0.1:8000/billing/cancel"
        );
        assert_eq!(s.past_due_grace, Duration::ZERO);
    }

    #[test]
    fn a_stripe_key_turns_debug_off_by_default_and_then_the_internal_key_is_required() {
        let err = Settings::from_source(&env(&[("STRIPE_API_KEY", "sk_test_1")])).unwrap_err();
        assert_eq!(err.var, "MSR_INTERNAL_API_KEY");
        let s = Settings::from_source(&env(&[
            ("STRIPE_API_KEY", "sk_test_1"),
            ("MSR_INTERNAL_API_KEY", LONG_KEY),
        ]))
        .unwrap();
        assert!(!s.debug);
    }

    const LONG_KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn without_a_stripe_key_debug_turns_itself_on_only_on_a_loopback_address() {
        for addr in [
            "127.0.0.1:8000",
            "[::1]:8000",
            "localhost:8000",
            "127.0.0.2:80",
        ] {
            let s = Settings::from_source(&env(&[("MSR_LISTEN_ADDR", addr)])).unwrap();
            assert!(s.debug, "{addr}");
            assert!(!s.debug_default_refused, "{addr}");
        }
        for addr in [
            "0.0.0.0:8000",
            "[::]:8000",
            "10.0.0.5:8000",
            "billing.internal:8000",
        ] {
            // Without the internal key a server refuses to start, and says why debug is off.
            let err = Settings::from_source(&env(&[("MSR_LISTEN_ADDR", addr)])).unwrap_err();
            assert_eq!(err.var, "MSR_INTERNAL_API_KEY", "{addr}");
            assert!(err.message.contains("not a loopback"), "{addr}: {err}");
            let s = Settings::from_source(&env(&[
                ("MSR_LISTEN_ADDR", addr),
                ("MSR_INTERNAL_API_KEY", LONG_KEY),
            ]))
            .unwrap();
            assert!(!s.debug, "{addr}");
            assert!(s.debug_default_refused, "{addr}");
            assert_eq!(s.stripe.mode, StripeMode::Disabled, "{addr}");
            // Asked for explicitly, the demo runs anywhere.
            let s =
                Settings::from_source(&env(&[("MSR_LISTEN_ADDR", addr), ("MSR_DEBUG", "true")]))
                    .unwrap();
            assert!(s.debug && !s.debug_default_refused, "{addr}");
        }
    }

    #[test]
    fn shared_secrets_shorter_than_32_bytes_are_refused_by_name_without_their_value() {
        for var in ["MSR_AUTH_SECRET", "MSR_INTERNAL_API_KEY"] {
            let short = "short-secret-31-bytes-long-xxxx";
            assert_eq!(short.len(), 31);
            let err = Settings::from_source(&env(&[(var, short)])).unwrap_err();
            assert_eq!(err.var, var);
            assert!(!err.to_string().contains(short), "{err}");
            let s = Settings::from_source(&env(&[(var, &format!("{short}y"))]));
            assert!(s.is_ok(), "{var}: {s:?}");
        }
    }

    #[test]
    fn debug_is_refused_with_a_live_key_and_allowed_with_a_test_key() {
        let err = Settings::from_source(&env(&[
            ("STRIPE_API_KEY", "sk_live_1"),
            ("MSR_DEBUG", "true"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("MSR_DEBUG") && err.to_string().contains("STRIPE_API_KEY"),
            "{err}"
        );
        let s = Settings::from_source(&env(&[
            ("STRIPE_API_KEY", "sk_test_1"),
            ("MSR_DEBUG", "true"),
        ]))
        .unwrap();
        assert!(s.debug);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("MSR_DEBUG", "maybe"),
            ("FRONTEND_RETURN_URL", "not a url"),
            ("BILLING_PORTAL_RETURN_URL", "ftp://x/"),
            ("MSR_LISTEN_ADDR", "8000"),
            ("MSR_PAST_DUE_GRACE", "3 days"),
            ("MSR_TRIAL_DAYS", "-1"),
            ("STRIPE_API_KEY", "pk_test_1"),
            ("MSR_LOG_FORMAT", "xml"),
        ];
        for (var, value) in cases {
            let err = Settings::from_source(&env(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn durations_parse_in_the_usual_units() {
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("72h"), Some(Duration::from_secs(259200)));
        assert_eq!(parse_duration("3d"), Some(Duration::from_secs(259200)));
        assert_eq!(parse_duration("1d12h"), Some(Duration::from_secs(129600)));
        for bad in ["", "h", "3", "3x", "3 d", "-1h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        // Past 100 years, or past u64 seconds, is refused rather than wrapped or saturated.
        assert_eq!(
            parse_duration("36500d"),
            Some(Duration::from_secs(MAX_DURATION_SECS))
        );
        for too_long in ["36501d", "99999999999999999999s", "30000000000000w"] {
            assert_eq!(parse_duration(too_long), None, "{too_long:?}");
        }
        assert_eq!(
            as_chrono(Duration::from_secs(MAX_DURATION_SECS)).num_days(),
            36_500
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let s = Settings::from_source(&env(&[
            ("STRIPE_API_KEY", "sk_test_supersecret"),
            (
                "MSR_INTERNAL_API_KEY",
                "internal-secret-0123456789abcdef0123",
            ),
            ("STRIPE_WEBHOOK_SECRET", "whsec_a,whsec_b"),
            ("DATABASE_URL", "postgres://u:pw-secret@h/db"),
        ]))
        .unwrap();
        let printed = format!("{s:?}");
        for secret in ["supersecret", "internal-secret", "whsec_a", "pw-secret"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
        assert_eq!(s.stripe.webhook_secrets.len(), 2);
    }
}
