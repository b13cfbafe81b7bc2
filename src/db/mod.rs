//! All SQL lives here. One code path for SQLite and PostgreSQL through sqlx's `Any` driver: queries use
//! `$1` placeholders (both databases accept them) and only types both share. Functions take an
//! executor or a connection so callers can compose them inside one transaction.

pub mod admin;
pub mod checkout;
pub mod entitlements;
pub mod events;
pub mod feed;
pub mod sessions;
pub mod subscriptions;
pub mod users;

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::config::ConfigError;

/// Which database is behind the pool; the few statements that differ ask this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The connection pool and what it points at.
#[derive(Debug, Clone)]
pub struct Db {
    /// The pool every query goes through.
    pub pool: AnyPool,
    /// SQLite or PostgreSQL.
    pub backend: Backend,
    /// The last write probe: when, and whether it committed (see [`Db::ready`]).
    probe: std::sync::Arc<tokio::sync::Mutex<Option<(std::time::Instant, bool)>>>,
}

/// How long a write probe's answer is reused: `/readyz` may be polled often, by several checkers.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Db {
    /// Opens the pool (creating an SQLite file if missing) and checks that the database answers.
    /// Errors name `DATABASE_URL` and never print the URL itself (it may hold a password).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, ConfigError> {
        sqlx::any::install_default_drivers();
        let config_error = |message: String| ConfigError {
            var: "DATABASE_URL".into(),
            message,
        };
        let (backend, url) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, sqlite_url_with_create(url))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(config_error(
                "must start with sqlite: or postgres://".into(),
            ));
        };
        let options: AnyConnectOptions = url
            .parse()
            .map_err(|e| config_error(format!("cannot be parsed: {}", redact(&e))))?;
        let pool_options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // A connection whose transaction could not be rolled back (the database went away
            // mid-transaction) is closed rather than handed out again half inside a transaction.
            .before_acquire(|conn, _| {
                Box::pin(async move {
                    use sqlx::TransactionManager;
                    Ok(
                        <sqlx::Any as sqlx::Database>::TransactionManager::get_transaction_depth(
                            conn,
                        ) == 0,
                    )
                })
            });
        let pool_options = match backend {
            // WAL lets readers go on while one writer commits; synchronous=NORMAL in WAL mode never
            // loses a committed transaction to a process crash (only to a power cut, the last few).
            // busy_timeout makes a second writer wait instead of failing at once. Each connection's
            // page cache is held at 1 MiB (SQLite's default is 2): the entitlement check reads from
            // memory, the kernel caches the file for everyone, and ten connections' caches were a
            // fifth of the service's memory.
            // A SQLite connection that hit an I/O error (the disk went read-only) can keep failing
            // after the disk is back; connections are renewed every few seconds (cheap for a file)
            // so the service recovers without a restart.
            Backend::Sqlite => pool_options
                .max_lifetime(Duration::from_secs(3))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA cache_size = -1024;",
                        )
                        .await?;
                        // SQLite silently opens a write-protected file read-only; such a connection
                        // would fail every write long after the disk is writable again. Writing the
                        // header's user_version back unchanged fails on it, so it is never pooled.
                        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
                            .fetch_one(&mut *conn)
                            .await?;
                        conn.execute(format!("PRAGMA user_version = {version}").as_str())
                            .await?;
                        Ok(())
                    })
                }),
            Backend::Postgres => pool_options,
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|e| config_error(format!("the database cannot be reached: {}", redact(&e))))?;
        Ok(Db {
            pool,
            backend,
            probe: std::sync::Arc::default(),
        })
    }

    /// Runs the migrations that have not run yet; safe on every start.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Whether the service can work: on PostgreSQL, the server answers; on SQLite, a write
    /// commits. An SQLite file that turned read-only, or a full disk, still answers every read, so
    /// only a write tells. The write is one row, at most once every [`PROBE_EVERY`]; callers in
    /// between share the last answer.
    pub async fn ready(&self) -> bool {
        if self.backend == Backend::Postgres {
            return self.ping().await;
        }
        let mut last = self.probe.lock().await;
        if let Some((at, ok)) = *last
            && at.elapsed() < PROBE_EVERY
        {
            return ok;
        }
        let written = sqlx::query(
            "INSERT INTO health_probe (id, probed_at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        )
        .bind(chrono::Utc::now().timestamp())
        .persistent(false)
        .execute(&self.pool)
        .await;
        if let Err(e) = &written {
            tracing::warn!(error = %e, "readiness: a write cannot commit");
        }
        *last = Some((std::time::Instant::now(), written.is_ok()));
        written.is_ok()
    }
}

/// sqlx opens an SQLite file only if it exists unless `mode=rwc` is given; we create it.
fn sqlite_url_with_create(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Error texts from drivers can quote the URL; keep only the part before any `://user:password@`.
fn redact(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    match (text.find("://"), text.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://[redacted]{}", &text[..scheme], &text[at..])
        }
        _ => text,
    }
}

/// `$first, $first+1, …` for `n` parameters: the list of an `IN (…)`.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($first, …), (…), …`: `rows` rows of `columns` parameters each, for a multi-row `VALUES`.
pub(crate) fn value_rows(first: usize, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(first + r * columns, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// SQLite finds a `$N` parameter by name in a list, for every parameter: quadratic in a statement
/// with thousands of them (the batch statements; a profile showed it at a tenth of the webhook's
/// CPU). On SQLite, a statement whose `$N` appear in the order 1, 2, 3… is sent with anonymous `?`
/// instead, which SQLite numbers in the same order.
pub(crate) fn positional(sql: String, backend: Backend) -> String {
    if backend != Backend::Sqlite {
        return sql;
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut expected = 1;
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + d as usize;
                chars.next();
            }
            debug_assert_eq!(n, expected, "parameters out of order in: {sql}");
            expected += 1;
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads a 0/1 flag column.
pub(crate) fn get_flag(row: &sqlx::any::AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    use sqlx::Row;
    row.try_get::<i64, _>(column).map(|n| n != 0)
}

pub use crate::domain::time::from_unix;

impl Db {
    /// Whether the database takes one writer at a time (SQLite): the webhook pipeline then runs
    /// one stage of each kind and lets them take turns.
    pub fn single_writer(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// Whether other instances can be told of a change at commit (PostgreSQL `NOTIFY`): the
    /// entitlement cache is trusted only while that channel is heard.
    pub fn notifies(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Begins a transaction that writes: `BEGIN IMMEDIATE` on SQLite takes the write lock at once, so
    /// a read followed by a write cannot fail half-way on a busy database.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }
}
