//! The browser session store (tower-sessions), on its own small pool to the service's database:
//! its crate needs a concrete sqlx pool, so this is the one place that opens one.

use crate::config::ConfigError;

use super::Db;

/// The session store on the service's database (tower-sessions needs a concrete sqlx pool).
#[derive(Debug, Clone)]
pub enum SessionStore {
    /// SQLite.
    Sqlite(tower_sessions_sqlx_store::SqliteStore),
    /// PostgreSQL.
    Postgres(tower_sessions_sqlx_store::PostgresStore),
}

/// The browser session store, on its own small pool to the same database (its crate needs a
/// concrete sqlx pool), with its table created if missing.
pub async fn store(db: &Db, url: &str) -> Result<SessionStore, ConfigError> {
    use sqlx::pool::PoolOptions;
    let failed = |e: sqlx::Error| ConfigError {
        var: "DATABASE_URL".into(),
        message: format!("session store: {e}"),
    };
    let store = match db.backend {
        super::Backend::Sqlite => {
            let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
                .map_err(failed)?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(std::time::Duration::from_secs(5))
                // Sessions are a few small rows: a small page cache per connection.
                .pragma("cache_size", "-256");
            let pool = PoolOptions::<sqlx::Sqlite>::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .map_err(failed)?;
            let store = tower_sessions_sqlx_store::SqliteStore::new(pool);
            store.migrate().await.map_err(failed)?;
            SessionStore::Sqlite(store)
        }
        super::Backend::Postgres => {
            let pool = PoolOptions::<sqlx::Postgres>::new()
                .max_connections(4)
                .connect(url)
                .await
                .map_err(failed)?;
            let store = tower_sessions_sqlx_store::PostgresStore::new(pool);
            store.migrate().await.map_err(failed)?;
            SessionStore::Postgres(store)
        }
    };
    Ok(store)
}
