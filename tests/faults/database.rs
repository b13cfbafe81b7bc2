//! Drill 2: the database goes away during a webhook burst and comes back.
//!
//! - SQLite, read-only disk: `chattr +i` on the database, its WAL and shared-memory files (as root,
//!   `chmod 0444` changes nothing: root writes through it; the immutable flag stops even writes on
//!   descriptors opened before). Where the flag cannot be set (no CAP_LINUX_IMMUTABLE, or a file
//!   system without it), the database lives on a small tmpfs of its own and the drill fills that
//!   instead: every write then fails with SQLITE_FULL. (A read-only remount is no way out: the kernel
//!   refuses it while the service holds the files open for writing.) A drill of its own runs the
//!   full disk everywhere, so that way stays tested where `chattr` works.
//! - SQLite, locked: another connection holds `BEGIN EXCLUSIVE` (every write waits, then fails).
//! - PostgreSQL: first its connections are killed over and over (`pg_terminate_backend`) while new
//!   ones are allowed (a flapping database), then `ALLOW_CONNECTIONS false` as well (gone).
//!
//! While it is gone: webhooks answer 503 (never 200 for an event that was not recorded), the
//! process stays up, `/readyz` answers 503 where the outage can be seen (PostgreSQL refusing
//! connections; an SQLite file that cannot be written, which its write probe finds). When it is
//! back: readiness and ingest recover without a restart, and nothing is lost.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use msr_stripe_sim::Fault;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_database_during_a_burst_refuses_webhooks_and_loses_nothing() {
    if let Some(db) = sqlite_that_can_be_made_unwritable() {
        database_gone(db, Kind::SqliteUnwritable, Refusal::Any5xx).await;
    }
}

/// The same drill, holding the service to its contract: 503 when an event cannot be recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_database_answers_webhooks_503() {
    if let Some(db) = sqlite_that_can_be_made_unwritable() {
        database_gone(db, Kind::SqliteUnwritable, Refusal::Only503).await;
    }
}

/// The other way of taking SQLite's writes away, on every machine that can mount a tmpfs: the disk
/// under the database fills up (SQLITE_FULL rather than an I/O error). It is also the fallback of
/// the drills above where `chattr +i` is not permitted, and this keeps it tested where it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_sqlite_during_a_burst_answers_webhooks_503_and_loses_nothing() {
    match FaultDb::sqlite_on_own_disk(DISK_MIB) {
        Ok(db) => database_gone(db, Kind::SqliteUnwritable, Refusal::Only503).await,
        Err(why) => skip("SQLite full-disk drill", &why),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_during_a_burst_gets_503s_and_loses_nothing() {
    database_gone(FaultDb::sqlite(), Kind::SqliteLocked, Refusal::Only503).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_database_killed_and_closed_during_a_burst_refuses_webhooks_and_loses_nothing()
{
    let Some(server) = postgres_or_skip("PostgreSQL gone during a burst") else {
        return;
    };
    database_gone(
        FaultDb::postgres(&server).await,
        Kind::Postgres,
        Refusal::Any5xx,
    )
    .await;
}

/// The same drill, holding the service to its contract: 503 when an event cannot be recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_database_refusing_connections_answers_webhooks_503() {
    let Some(server) = postgres_or_skip("PostgreSQL refusing connections answers 503") else {
        return;
    };
    database_gone(
        FaultDb::postgres(&server).await,
        Kind::Postgres,
        Refusal::Only503,
    )
    .await;
}

/// The size of the tmpfs a full-disk drill puts the database on: room for the drills' database and
/// a WAL of SQLite's 1000-page checkpoint size several times over.
const DISK_MIB: u32 = 32;

/// A fresh SQLite database that the drill can make unwritable: by the immutable flag where this
/// machine lets the test set it, else on a tmpfs of its own that the drill fills (saying so, as the
/// failure the service sees differs: SQLITE_FULL instead of an I/O error). `None`, after reporting
/// the skip, where neither can be had.
fn sqlite_that_can_be_made_unwritable() -> Option<FaultDb> {
    let db = FaultDb::sqlite();
    if immutable_flag_works(db.dir.path()) {
        return Some(db);
    }
    match FaultDb::sqlite_on_own_disk(DISK_MIB) {
        Ok(db) => {
            let _ = writeln!(
                std::io::stderr(),
                "SQLite read-only drill: chattr +i is not permitted here; filling a tmpfs under the database instead"
            );
            Some(db)
        }
        Err(why) => {
            skip(
                "SQLite read-only drill",
                &format!(
                    "chattr +i is not permitted here (needs root with CAP_LINUX_IMMUTABLE on \
                     ext4/xfs/btrfs), and the full-disk fallback cannot be had: {why}"
                ),
            );
            None
        }
    }
}

/// What a webhook that cannot be recorded may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The contract: 503, "try again".
    Only503,
    /// Any 5xx: Stripe retries them all, so nothing is lost. The burst drills hold to this and
    /// check that nothing is lost; the dedicated drills hold to exactly 503.
    Any5xx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No write reaches the file: flagged immutable, or its disk full (whichever the database was
    /// made for, see [`Outage::start`]).
    SqliteUnwritable,
    SqliteLocked,
    Postgres,
}

/// How long the database stays gone.
const OUTAGE: Duration = Duration::from_secs(5);

/// What the test saw while the database was gone.
#[derive(Debug, Default)]
struct Seen {
    /// Webhook answers to the test's own events: status (or client error) → count.
    webhook: BTreeMap<String, usize>,
    /// `/readyz` answers → count.
    ready: BTreeMap<String, usize>,
    /// Events of the test's own answered 200 (they must be in the store).
    acknowledged: Vec<String>,
    /// Events of the test's own not yet acknowledged (sent again after the outage, as Stripe would).
    unacknowledged: Vec<String>,
    /// Events answered 200 while the database was certainly unreachable.
    acknowledged_while_gone: Vec<String>,
}

async fn database_gone(db: FaultDb, kind: Kind, refusal: Refusal) {
    let stripe = simulator().await;
    let sim = &stripe.sim;
    // A write waiting on SQLite's lock gives up after busy_timeout (5 s): the request timeout is
    // longer, so the answer comes from the database error, before the simulator's 10 s timeout.
    let config = ServiceConfig::new(&db, &stripe).with("MSR_REQUEST_TIMEOUT", "8s");
    let mut service = Service::start(&config).await;
    deliver_to(sim, &[service.port]);
    let owners = subscribed_owners(&service, sim, "dbgone", 6).await;
    settle(sim, Duration::from_secs(20)).await;
    let pool = db.pool().await;
    assert!(drain(&pool, Duration::from_secs(10)).await.is_empty());

    let mut seen = Seen::default();
    let mut outage = Outage::start(&db, kind).await;
    // The owners change their plans while the database is gone: Stripe's deliveries fail and are
    // retried; the test's own events come in beside them.
    let (early, late) = owners.split_at(owners.len() / 2);
    churn(sim, early, Spacing::SecondsApart).await;
    let started = Instant::now();
    let mut flapping_until = None;
    let mut late_churned = false;
    while started.elapsed() < OUTAGE {
        if kind == Kind::Postgres && flapping_until.is_none() && started.elapsed() > OUTAGE / 2 {
            // From flapping to gone: no new connection is let in either.
            outage.close_postgres().await;
            flapping_until = Some(Instant::now());
        }
        if !late_churned && started.elapsed() > OUTAGE / 2 + Duration::from_millis(500) {
            churn(sim, late, Spacing::SecondsApart).await;
            late_churned = true;
        }
        let certainly_gone = match kind {
            Kind::Postgres => flapping_until.is_some(),
            _ => true,
        };
        burst_once(&service, &mut seen, certainly_gone).await;
        assert!(
            service.exited().is_none(),
            "the service died while the database was gone:\n{}",
            service.log()
        );
    }
    if kind == Kind::SqliteUnwritable && !seen.ready.contains_key("503") {
        // The write probe runs at most every 2 s and its answer is shared meanwhile: give it the
        // time to run once more while nothing can be written.
        let svc = &service;
        if wait_until(Duration::from_secs(10), move || async move {
            svc.readyz().await == Some(503)
        })
        .await
        .is_some()
        {
            *seen.ready.entry("503".into()).or_default() += 1;
        }
    }
    let gone_deliveries: Vec<_> = sim
        .deliveries()
        .into_iter()
        .filter(|d| d.status != Some(200))
        .collect();
    outage.end().await;
    let restored_at = chrono::Utc::now().timestamp();

    // Back without a restart: ready, and taking events again.
    let svc = &service;
    let ready_in = wait_until(Duration::from_secs(15), move || async move {
        svc.readyz().await == Some(200)
    })
    .await
    .expect("readiness did not come back within 15 s of the database");
    let probe = fresh_event_id("probe");
    let probe = &probe;
    let ingest_in = wait_until(Duration::from_secs(15), move || async move {
        matches!(svc.post_signed(&harmless_event(probe)).await, Ok(r) if r.status() == 200)
    })
    .await
    .expect("ingest did not come back within 15 s of the database");
    // What was refused is sent again, as Stripe would.
    for id in std::mem::take(&mut seen.unacknowledged) {
        let answer = service.post_signed(&harmless_event(&id)).await;
        assert!(
            matches!(&answer, Ok(r) if r.status() == 200),
            "{id} after recovery: {answer:?}"
        );
        seen.acknowledged.push(id);
    }
    settle(sim, Duration::from_secs(40)).await;
    let orphaned = expire_leases_taken_before(&pool, restored_at).await;
    let left = drain(&pool, Duration::from_secs(15)).await;
    eprintln!(
        "{kind:?}: webhooks while gone {:?}; readyz while gone {:?}; Stripe's failed deliveries {}; \
         ready {ready_in:?} and ingesting {ingest_in:?} after the database came back; {orphaned} leases \
         left by failed applies",
        seen.webhook,
        seen.ready,
        gone_deliveries.len()
    );
    assert!(left.is_empty(), "events still waiting: {left:?}");
    assert!(
        service.exited().is_none(),
        "the service is still the same process"
    );

    // Never 200 for an event that was not recorded.
    assert!(
        seen.acknowledged_while_gone.is_empty(),
        "answered 200 while the database was unreachable: {:?}",
        seen.acknowledged_while_gone
    );
    let rows = event_rows(&pool).await;
    assert_all_done(&rows, &seen.acknowledged, "the test's own events");
    // Refused, never acknowledged: Stripe retries any non-2xx. The contract (and the difference
    // between "try again" and "this is broken" in every dashboard) is 503.
    let refusals: Vec<&String> = seen
        .webhook
        .keys()
        .filter(|k| k.as_str() != "200")
        .collect();
    assert!(
        !refusals.is_empty(),
        "no webhook was refused: the outage did not bite"
    );
    let stripe_refusals: HashSet<String> = gone_deliveries
        .iter()
        .map(|d| d.status.map_or("no answer".into(), |s| s.to_string()))
        .collect();
    let allowed = |k: &str| match refusal {
        Refusal::Only503 => k == "503",
        Refusal::Any5xx => k.starts_with('5') && k.len() == 3,
    };
    assert!(
        refusals.iter().all(|k| allowed(k)) && stripe_refusals.iter().all(|k| allowed(k)),
        "webhooks refused with something other than {refusal:?}: ours {:?}, Stripe's {stripe_refusals:?}; causes {:#?}",
        seen.webhook,
        failure_causes(&service.log())
    );
    if kind == Kind::Postgres {
        assert!(
            seen.ready.contains_key("503"),
            "/readyz never said 503 while PostgreSQL refused connections: {:?}",
            seen.ready
        );
    }
    if kind == Kind::SqliteUnwritable {
        assert!(
            seen.ready.contains_key("503"),
            "/readyz never said 503 while the SQLite file could not be written: {:?}",
            seen.ready
        );
    }
    // Nothing lost: Stripe's events all recorded and applied, the store equal to Stripe.
    assert_all_done(&rows, &emitted(sim), "Stripe's events");
    let wrong = store_vs_truth(&pool, sim).await;
    assert!(
        wrong.is_empty(),
        "the store differs from Stripe: {wrong:#?}"
    );
}

/// A few events of the test's own at once, then one readiness probe.
async fn burst_once(service: &Service, seen: &mut Seen, certainly_gone: bool) {
    let ids: Vec<String> = (0..3).map(|_| fresh_event_id("burst")).collect();
    let answers = futures::future::join_all(
        ids.iter()
            .map(|id| async move { service.post_signed(&harmless_event(id)).await }),
    )
    .await;
    for (id, answer) in ids.into_iter().zip(answers) {
        let key = match &answer {
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "client timeout".into(),
            Err(e) => format!("error: {e}"),
        };
        *seen.webhook.entry(key.clone()).or_default() += 1;
        if key == "200" {
            if certainly_gone {
                seen.acknowledged_while_gone.push(id.clone());
            }
            seen.acknowledged.push(id);
        } else {
            seen.unacknowledged.push(id);
        }
    }
    let ready = service
        .readyz()
        .await
        .map_or("no answer".into(), |s| s.to_string());
    *seen.ready.entry(ready).or_default() += 1;
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Polls `check` every 100 ms; returns how long it took, or `None` at the deadline.
async fn wait_until<F, Fut>(within: Duration, check: F) -> Option<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Leases on waiting events taken before the database came back belong to applies that failed
/// because it was gone (the failure could not be recorded, so the 60 s lease stays); the drill lets
/// their time pass at once. Returns how many there were.
async fn expire_leases_taken_before(pool: &sqlx::AnyPool, restored_unix: i64) -> u64 {
    sqlx::query(
        "UPDATE stripe_events SET locked_until = NULL \
         WHERE state IN ('pending', 'failed') AND locked_until IS NOT NULL AND locked_until <= $1",
    )
    .bind(restored_unix + 60)
    .execute(pool)
    .await
    .expect("expire leases")
    .rows_affected()
}

// ---------------------------------------------------------------------------------------------
// Taking the database away

enum Outage {
    /// Files flagged immutable; cleared on `end` (and on drop, so the folder can be removed).
    Immutable(Vec<PathBuf>),
    /// The file that fills the database's disk; removed on `end` (and on drop).
    DiskFull(PathBuf),
    Locked(sqlx::SqliteConnection),
    Postgres {
        server: String,
        name: String,
        killer: tokio::task::JoinHandle<()>,
    },
    Ended,
}

impl Outage {
    async fn start(db: &FaultDb, kind: Kind) -> Outage {
        use sqlx::{Connection, Executor};
        match kind {
            Kind::SqliteUnwritable if db.own_disk().is_some() => {
                Outage::DiskFull(fill_disk_under(db).await)
            }
            Kind::SqliteUnwritable => {
                let file = db.sqlite_file();
                let files: Vec<PathBuf> = ["", "-wal", "-shm"]
                    .iter()
                    .map(|suffix| PathBuf::from(format!("{}{suffix}", file.display())))
                    .filter(|p| p.exists())
                    .collect();
                for f in &files {
                    chattr(f, "+i");
                }
                Outage::Immutable(files)
            }
            Kind::SqliteLocked => {
                let mut c = sqlx::SqliteConnection::connect(&db.url)
                    .await
                    .expect("a second connection");
                c.execute("BEGIN EXCLUSIVE").await.expect("the write lock");
                Outage::Locked(c)
            }
            Kind::Postgres => {
                let (server, name) = db.postgres_name().expect("a PostgreSQL database");
                let (server, name) = (server.to_owned(), name.to_owned());
                let killer = tokio::spawn(terminate_forever(server.clone(), name.clone()));
                Outage::Postgres {
                    server,
                    name,
                    killer,
                }
            }
        }
    }

    /// PostgreSQL: let no new connection in either, and return once no connection to the
    /// database is left (from then on nothing can be recorded).
    async fn close_postgres(&mut self) {
        use sqlx::Connection;
        let Outage::Postgres { server, name, .. } = self else {
            return;
        };
        admin_execute(
            server,
            &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
        )
        .await;
        let mut admin = sqlx::PgConnection::connect(server)
            .await
            .expect("admin connection");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()) AS killed",
            )
            .bind(&*name)
            .fetch_one(&mut admin)
            .await
            .expect("terminate backends");
            if left == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "connections to {name} outlived 5 s of pg_terminate_backend"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn end(&mut self) {
        use sqlx::Executor;
        let mut ended = std::mem::replace(self, Outage::Ended);
        match &mut ended {
            Outage::Immutable(files) => {
                for f in files.iter() {
                    chattr(f, "-i");
                }
            }
            Outage::DiskFull(filler) => {
                std::fs::remove_file(&*filler).expect("remove the filler");
            }
            Outage::Locked(c) => {
                c.execute("ROLLBACK").await.expect("release the lock");
            }
            Outage::Postgres {
                server,
                name,
                killer,
            } => {
                killer.abort();
                let _ = killer.await;
                admin_execute(
                    server,
                    &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
                )
                .await;
            }
            Outage::Ended => {}
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        match self {
            Outage::Immutable(files) => {
                for f in files.iter() {
                    let _ = Command::new("chattr").arg("-i").arg(f).status();
                }
            }
            Outage::DiskFull(filler) => {
                let _ = std::fs::remove_file(&*filler);
            }
            Outage::Postgres { killer, .. } => killer.abort(),
            // The database's own drop re-allows connections before dropping it.
            Outage::Locked(_) | Outage::Ended => {}
        }
    }
}

/// Kills every connection to the database every 50 ms until aborted.
async fn terminate_forever(server: String, name: String) {
    use sqlx::Connection;
    let Ok(mut admin) = sqlx::PgConnection::connect(&server).await else {
        return;
    };
    loop {
        let _ = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&name)
        .execute(&mut admin)
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_execute(server: &str, sql: &str) {
    use sqlx::{Connection, Executor};
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .expect("admin connection");
    admin.execute(sql).await.expect(sql);
}

/// Fills the database's own disk so that no write can commit; returns the filler file.
///
/// Filling alone is not enough: SQLite reuses its WAL from the start after a checkpoint, and
/// overwriting space the file has needs no new space. So the WAL is checkpointed into the database
/// and truncated to nothing first (room the database file may need to grow into is still there),
/// the disk is filled, and the WAL truncated once more (for what the service wrote in between). A
/// commit must then grow the WAL, and fails with SQLITE_FULL. Should the second checkpoint itself
/// need room (the service wrote pages past the end of the file in between), the filler goes and
/// it starts again.
async fn fill_disk_under(db: &FaultDb) -> PathBuf {
    use sqlx::{Connection, Executor};
    let disk = db.own_disk().expect("a database on a disk of its own");
    let filler = disk.join("filler");
    let wal = PathBuf::from(format!("{}-wal", db.sqlite_file().display()));
    let mut c = sqlx::SqliteConnection::connect(&db.url)
        .await
        .expect("a connection of the test's own");
    c.execute("PRAGMA busy_timeout = 2000")
        .await
        .expect("busy_timeout");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "the disk under the database could not be filled with an empty WAL within 20 s: {last}"
        );
        let _ = std::fs::remove_file(&filler);
        match truncate_wal(&mut c).await {
            Ok(()) => {}
            Err(why) => {
                last = format!("before filling: {why}");
                continue;
            }
        }
        fill(&filler);
        match truncate_wal(&mut c).await {
            Ok(()) if std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0 => break,
            Ok(()) => last = "the WAL is not empty after the checkpoint".into(),
            Err(why) => last = format!("after filling: {why}"),
        }
    }
    let _ = c.close().await;
    filler
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`: everything in the WAL into the database, the WAL emptied.
async fn truncate_wal(c: &mut sqlx::SqliteConnection) -> Result<(), String> {
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut *c)
        .await
        .map_err(|e| e.to_string())?;
    if busy == 0 {
        Ok(())
    } else {
        Err("the checkpoint was blocked by a reader or writer".into())
    }
}

/// Writes zeros to `path` until the file system has no byte left.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("the filler file");
    let chunk = vec![0u8; 1 << 20];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

fn chattr(path: &std::path::Path, flag: &str) {
    let ok = Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chattr {flag} {}", path.display());
}

/// Whether this machine lets the test set the immutable flag (root with CAP_LINUX_IMMUTABLE, on a
/// file system that has it).
fn immutable_flag_works(dir: &std::path::Path) -> bool {
    let probe = dir.join("immutable-probe");
    if std::fs::write(&probe, b"x").is_err() {
        return false;
    }
    let set = Command::new("chattr")
        .arg("+i")
        .arg(&probe)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if set {
        let _ = Command::new("chattr").arg("-i").arg(&probe).status();
    }
    let _ = std::fs::remove_file(&probe);
    set
}

/// An event whose apply the outage cut off half-way (claimed, then neither applied nor marked
/// failed, since nothing can be written) must be retried soon after the database is back, as a
/// failed event is (first back-off 2 s) — not left alone for the whole lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_cut_off_by_the_outage_is_applied_soon_after_the_database_returns() {
    let Some(db) = sqlite_that_can_be_made_unwritable() else {
        return;
    };
    let stripe = simulator().await;
    let sim = &stripe.sim;
    let service = Service::start(&ServiceConfig::new(&db, &stripe)).await;
    deliver_to(sim, &[service.port]);
    let owners = subscribed_owners(&service, sim, "cutoff", 1).await;
    settle(sim, Duration::from_secs(20)).await;
    let (_, sub) = &owners[0];
    let customer = sim.subscription(sub).expect("subscription")["customer"]
        .as_str()
        .expect("customer")
        .to_owned();
    // The event is claimed, then waits 1.5 s on Stripe; the disk turns read-only meanwhile.
    fault(
        sim,
        Fault::ApiHang {
            count: 1,
            path_prefix: Some("/v1/subscriptions".into()),
            delay_ms: 1500,
        },
    )
    .await;
    let id = fresh_event_id("cutoff");
    let body = invoice_paid_event(&id, &customer, sub);
    let post = {
        let body = body.clone();
        let url = service.url("/billing/webhook");
        tokio::spawn(async move {
            client()
                .post(url)
                .header("Stripe-Signature", signature(&body))
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut outage = Outage::start(&db, Kind::SqliteUnwritable).await;
    let answer = post.await.expect("task");
    assert_eq!(answer.ok(), Some(200), "recorded before the outage");
    tokio::time::sleep(Duration::from_millis(500)).await;
    outage.end().await;

    // Stripe sends it again (as after any doubt); the worker runs every second.
    let again = service
        .post_signed(&body)
        .await
        .expect("redelivery answered");
    let again_body: serde_json::Value = again.json().await.unwrap_or_default();
    let pool = db.pool().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let row = event_rows(&pool).await.remove(&id).expect("recorded");
        if DONE_STATES.contains(&row.state.as_str()) || Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if !DONE_STATES.contains(&row.state.as_str()) {
        eprintln!("SERVICE LOG:\n{}", service.log());
    }
    assert!(
        DONE_STATES.contains(&row.state.as_str()),
        "10 s after the database came back the event is {row:?}; the redelivery was answered {again_body}"
    );
}
