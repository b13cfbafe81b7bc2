//! The commands beside `serve`: `sync` and `events`. They use the same use cases as the server.

use clap::{Args, Subcommand};

use crate::billing::{apply, sync};
use crate::db;
use crate::db::events::EventState;
use crate::domain::UserId;
use crate::error::AppError;
use crate::web::AppState;

/// `msr-billing sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only this user.
    #[arg(long, conflicts_with = "all")]
    pub user: Option<String>,
    /// Every user with a Stripe customer (the default).
    #[arg(long)]
    pub all: bool,
}

/// `msr-billing events …`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List recorded events that need attention.
    List {
        /// Failed and dead-lettered events.
        #[arg(long, conflicts_with = "unmatched")]
        failed: bool,
        /// Events no user matches yet.
        #[arg(long)]
        unmatched: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Apply recorded events again: the named ones, or every failed and dead one.
    Replay {
        /// Every failed and dead-lettered event.
        #[arg(long)]
        failed: bool,
        /// Event ids (`evt_…`).
        ids: Vec<String>,
    },
}

/// Runs `sync`, printing the drift report. Returns whether it succeeded.
pub async fn run_sync(state: &AppState, args: &SyncArgs) -> Result<(), AppError> {
    let user = args
        .user
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .map_err(|e| AppError::invalid("invalid_user_id", e.to_string()))?;
    let (checked, drifts) = sync::sync_subscriptions(state, user.as_ref()).await?;
    println!(
        "checked {checked} user(s) with a Stripe customer; {} differed",
        drifts.len()
    );
    for d in &drifts {
        println!("  {}: {} -> {}", d.user_id, d.before, d.after);
    }
    Ok(())
}

/// Runs `events list` or `events replay`.
pub async fn run_events(state: &AppState, command: &EventsCommand) -> Result<(), AppError> {
    match command {
        EventsCommand::List {
            failed,
            unmatched,
            limit,
        } => {
            let states: &[EventState] = if *failed {
                &[EventState::Failed, EventState::Dead]
            } else if *unmatched {
                &[EventState::Unmatched]
            } else {
                &[
                    EventState::Pending,
                    EventState::Failed,
                    EventState::Dead,
                    EventState::Unmatched,
                    EventState::LivemodeMismatch,
                ]
            };
            let events = db::events::list_in_states(&state.db.pool, states, *limit).await?;
            println!("{} event(s)", events.len());
            for e in events {
                println!(
                    "  {}  {:<40} {:<18} created {}  attempts {}  customer {}  {}",
                    e.id,
                    e.kind,
                    e.state,
                    e.created.format("%Y-%m-%d %H:%M:%S"),
                    e.attempts,
                    e.customer_id.as_deref().unwrap_or("-"),
                    e.last_error.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
        EventsCommand::Replay { failed, ids } => {
            let mut targets = ids.clone();
            if *failed {
                let events = db::events::list_in_states(
                    &state.db.pool,
                    &[EventState::Failed, EventState::Dead],
                    10_000,
                )
                .await?;
                targets.extend(events.into_iter().map(|e| e.id));
            }
            if targets.is_empty() {
                println!("nothing to replay: name event ids or pass --failed");
            }
            for id in targets {
                match apply::process(state, &id, true).await? {
                    Some(outcome) => println!("  {id}: {}", outcome.as_str()),
                    None => println!(
                        "  {id}: not replayed (unknown, already applied, or being applied elsewhere)"
                    ),
                }
            }
            Ok(())
        }
    }
}
