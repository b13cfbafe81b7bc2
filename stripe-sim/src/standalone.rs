//! The simulator as its own process (`msr-billing stripe-sim --port 12111`): any
//! Stripe client pointed at it with an `sk_test_…` key works; webhooks go to one
//! endpoint given on the command line (or set later through `/_sim/webhook_endpoints`, which
//! takes loopback hosts only).

use std::path::PathBuf;

use crate::{SimConfig, Simulator, WebhookEndpoint};

/// Options of [`run_standalone`].
#[derive(Debug, Clone)]
pub struct StandaloneOptions {
    /// TCP port (0 picks a free one; Stripe's own mock uses 12111).
    pub port: u16,
    /// Address to bind (default `127.0.0.1`; `0.0.0.0` to serve other machines).
    pub host: String,
    /// Webhook endpoint that receives every event, signed.
    pub webhook_url: Option<String>,
    /// Its `whsec_…` secret; made up (and logged) when a URL comes without one.
    pub webhook_secret: Option<String>,
    /// Base URL browsers use for hosted pages (default `http://{host}:{port}/`).
    pub public_url: Option<String>,
    /// A JSON file with more plans (see [`crate::PlanSeed::load`]).
    pub plans_file: Option<PathBuf>,
}

impl Default for StandaloneOptions {
    fn default() -> Self {
        StandaloneOptions {
            port: 12111,
            host: "127.0.0.1".into(),
            webhook_url: None,
            webhook_secret: None,
            public_url: None,
            plans_file: None,
        }
    }
}

/// Serves the simulator until `stop` completes (the binary passes its SIGTERM and Ctrl-C
/// future), logging its base URL (and the webhook secret if it made one up), then lets
/// requests in flight finish. Fails if the address cannot be bound or the plans file cannot
/// be read.
pub async fn run_standalone(
    opts: StandaloneOptions,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(path) = &opts.plans_file {
        // Checked here so a typo stops the process instead of being logged and skipped.
        crate::PlanSeed::load(path)?;
    }
    let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port)).await?;
    let local = listener.local_addr()?;
    let base_url = format!("http://{local}/");
    let public = opts.public_url.clone().unwrap_or_else(|| base_url.clone());
    let mut endpoints = Vec::new();
    if let Some(url) = &opts.webhook_url {
        let secret = opts.webhook_secret.clone().unwrap_or_else(|| {
            let made_up = format!("whsec_{:032x}", rand::random::<u128>());
            tracing::info!(secret = %made_up, "stripe simulator: webhook signing secret");
            made_up
        });
        endpoints.push(WebhookEndpoint {
            url: url.clone(),
            secret,
        });
    }
    let sim = Simulator::new(SimConfig {
        webhook_endpoints: endpoints,
        public_url: Some(public.clone()),
        plans_file: opts.plans_file.clone(),
        ..SimConfig::default()
    });
    tracing::info!(
        base_url = %base_url,
        public_url = %public,
        webhook = opts.webhook_url.as_deref().unwrap_or("none"),
        "stripe simulator listening; use any sk_test_ key"
    );
    axum::serve(listener, sim.router())
        .with_graceful_shutdown(stop)
        .await?;
    tracing::info!("stripe simulator stopped");
    Ok(())
}
