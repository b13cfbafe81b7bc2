//! The ceiling: a bare axum 0.8 handler answering a fixed small JSON body on every GET path.
//! Whatever the service reaches is read against what this reaches on the same machine, with the
//! same load generator and settings. Usage: `ceiling 127.0.0.1:PORT`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;

/// About the size of an entitlement answer, so the bytes on the wire are comparable.
const BODY: &str = r#"{"user_id":"u12345","entitled":true,"status":"active","plan":"monthly","reason":"active","valid_until":"2026-12-26T09:00:00Z","pause_active":false,"as_of":"2026-11-26T09:00:00Z"}"#;

async fn fixed() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], BODY)
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18999".into());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ceiling: cannot bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    let app = Router::new().fallback(fixed);
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("ceiling: {e}");
        std::process::exit(1);
    }
}
