//! The `msr-billing` binary: read the configuration, start logging, then serve or run a command.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use msr_billing::cli::{self, EventsCommand, SyncArgs};
use msr_billing::config::Settings;
use msr_billing::startup::{self, Application};
use msr_billing::telemetry;

/// mimalloc instead of glibc's malloc: per-thread free lists instead of arena locks that the
/// entitlement check's profile showed contended across the runtime's threads. Built without
/// transparent huge pages (`no_thp`): with them every arena it touched was resident 2 MiB at a
/// time, which cost a third of the service's memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of the mimalloc (v3) that libmimalloc-sys bundles (its
/// `include/mimalloc.h`; default 1000 ms in its `src/options.c`); the crate names no constant for it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed pages go back to the OS at once instead of a second later: under a webhook burst the delay
/// kept about 8 MiB resident at every moment, and the entitlement check ran as fast without it
/// (BENCHMARKS.md).
fn purge_freed_memory_at_once() {
    // SAFETY: both calls only read and write mimalloc's option table. The option is changed only if
    // it reads as the purge delay's default (1000 ms), so a renumbered table is left alone.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 1000 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
}

#[derive(Parser)]
#[command(
    name = "msr-billing",
    version,
    about = "Billing service of My Smart Road"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Fetch subscriptions from Stripe, repair every difference in the store, print a drift report.
    Sync(SyncArgs),
    /// Inspect and replay recorded Stripe events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Run the built-in Stripe simulator on its own (any Stripe client can point at it).
    StripeSim(StripeSimArgs),
}

#[derive(clap::Args)]
struct StripeSimArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 12111)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Webhook endpoint that receives every event, signed.
    #[arg(long)]
    webhook_url: Option<String>,
    /// The endpoint's `whsec_…` secret (made up and logged when omitted).
    #[arg(long)]
    webhook_secret: Option<String>,
    /// Base URL browsers use for the hosted pages.
    #[arg(long)]
    public_url: Option<String>,
    /// A JSON file with more plans.
    #[arg(long)]
    plans_file: Option<std::path::PathBuf>,
}

/// SQLite allocates with the C library's `malloc`, not with mimalloc. glibc gives every thread that
/// allocates its own arena, and each SQLite connection works on its own thread: four connections
/// kept four arenas of 2–3 MiB each, mostly free but not returned. One shared arena held the same
/// data in about 4.5 MiB less (BENCHMARKS.md). Must run before any thread is started.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_c_heap() {
    // SAFETY: mallopt only sets a tunable of glibc's allocator; no thread has been started yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_c_heap() {}

fn main() -> ExitCode {
    // Both allocators are set up before the runtime starts its threads.
    one_c_heap();
    purge_freed_memory_at_once();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("msr-billing: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    // Listening from the first moment, so a SIGTERM never meets the default action (see there).
    let stop = startup::shutdown_signal();
    let cli = Cli::parse();
    // The simulator needs none of the service's configuration.
    if let Some(Command::StripeSim(args)) = cli.command {
        telemetry::init(msr_billing::config::LogFormat::Text);
        let options = msr_stripe_sim::StandaloneOptions {
            port: args.port,
            host: args.host,
            webhook_url: args.webhook_url,
            webhook_secret: args.webhook_secret,
            public_url: args.public_url,
            plans_file: args.plans_file,
        };
        return match msr_stripe_sim::run_standalone(options, stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("msr-billing stripe-sim: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("msr-billing: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    telemetry::init_to(settings.log_format, !matches!(command, Command::Serve));
    if let Command::Serve = command {
        return match Application::build(settings).await {
            Ok(app) => match app.run_until(stop).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "server failed");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("msr-billing: cannot start: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let state = match startup::build_state(settings, 0).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("msr-billing: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &command {
        Command::Sync(args) => cli::run_sync(&state, args).await,
        Command::Events(events) => cli::run_events(&state, events).await,
        Command::Serve | Command::StripeSim(_) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msr-billing: {e}");
            ExitCode::FAILURE
        }
    }
}
