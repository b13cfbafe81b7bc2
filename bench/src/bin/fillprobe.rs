//! How much of the entitlement cache fill is sqlx's `Any` driver: reads every user the way the
//! fill does (1,000 a chunk, the same query), once through an `AnyPool` decoding `AnyRow`s and once
//! through a native `PgPool` decoding `PgRow`s into the same values, and prints both.
//!
//! usage: fillprobe postgres://…/db [rounds]   (one JSON line per round; the drivers take turns
//! going first)

use std::time::Instant;

use sqlx::Row;

const CHUNK: i64 = 1_000;
const QUERY: &str = "SELECT u.id, u.complimentary_until, e.status, e.stripe_status, e.pause_active, e.plan, \
     e.stripe_subscription_id, e.current_period_end, e.cancel_at_period_end, e.past_due_since, \
     e.action_required, e.updated_at \
     FROM users u LEFT JOIN entitlements e ON e.user_id = u.id AND e.user_id > $1 \
     WHERE u.id > $1 ORDER BY u.id LIMIT $2";

/// What the fill keeps of a row (strings and numbers; the service parses them further).
#[allow(dead_code)]
struct Read {
    id: String,
    complimentary_until: Option<i64>,
    status: Option<String>,
    stripe_status: Option<String>,
    pause_active: Option<i64>,
    plan: Option<String>,
    subscription: Option<String>,
    period_end: Option<i64>,
    cancel_at_period_end: Option<i64>,
    past_due_since: Option<i64>,
    action_required: Option<i64>,
    updated_at: Option<i64>,
}

macro_rules! read_row {
    ($row:expr) => {{
        let r = $row;
        Read {
            id: r.try_get(0)?,
            complimentary_until: r.try_get(1)?,
            status: r.try_get(2)?,
            stripe_status: r.try_get(3)?,
            pause_active: r.try_get(4)?,
            plan: r.try_get(5)?,
            subscription: r.try_get(6)?,
            period_end: r.try_get(7)?,
            cancel_at_period_end: r.try_get(8)?,
            past_due_since: r.try_get(9)?,
            action_required: r.try_get(10)?,
            updated_at: r.try_get(11)?,
        }
    }};
}

macro_rules! fill {
    ($pool:expr) => {{
        let started = Instant::now();
        let mut after = String::new();
        let mut read = 0usize;
        loop {
            let rows = sqlx::query(QUERY)
                .bind(after.clone())
                .bind(CHUNK)
                .fetch_all($pool)
                .await?;
            let mut kept = Vec::with_capacity(rows.len());
            for row in &rows {
                kept.push(read_row!(row));
            }
            read += kept.len();
            match kept.last() {
                Some(last) if kept.len() as i64 == CHUNK => after = last.id.clone(),
                _ => break,
            }
        }
        (read, started.elapsed().as_secs_f64() * 1000.0)
    }};
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), sqlx::Error> {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: fillprobe postgres://…/db [rounds]");
    let rounds: usize = args.next().map_or(3, |r| r.parse().expect("rounds"));
    sqlx::any::install_default_drivers();
    let any = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    let pg = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    for round in 0..rounds {
        // Each driver goes first every other round, so neither always meets a cold cache.
        let ((users, any_ms), (_, pg_ms)) = if round % 2 == 0 {
            let a = fill!(&any);
            (a, fill!(&pg))
        } else {
            let p = fill!(&pg);
            (fill!(&any), p)
        };
        println!(
            "{{\"users\": {users}, \"any_ms\": {any_ms:.1}, \"native_ms\": {pg_ms:.1}, \"any_share\": {:.3}}}",
            1.0 - pg_ms / any_ms
        );
    }
    Ok(())
}
