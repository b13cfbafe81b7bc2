//! Hosted pages: the Checkout page (`/c/pay/{id}`), the customer portal
//! (`/p/session/{id}`) and the 3-D Secure page of PaymentIntents and SetupIntents
//! (`/auth/{id}`). Plain HTML forms, no JavaScript; every value rendered is escaped.
//! Actions go through the same engine transitions as the API, so they emit the same events.
//! This file holds the router and what the pages share; `checkout.rs`, `portal.rs` and
//! `authenticate.rs` one page each.

mod authenticate;
mod checkout;
mod portal;

use std::collections::HashMap;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::Simulator;
use crate::engine::TestCard;

pub(crate) fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/c/pay/{id}", get(checkout::page).post(checkout::submit))
        .route("/p/session/{id}", get(portal::page).post(portal::submit))
        .route(
            "/auth/{id}",
            get(authenticate::page).post(authenticate::submit),
        )
        .with_state(sim)
}

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Only http(s) URLs become links or redirects, so a `javascript:` URL handed to the
/// API cannot run in the page.
fn safe_url(u: &str) -> Option<&str> {
    (u.starts_with("http://") || u.starts_with("https://") || u.starts_with('/')).then_some(u)
}

fn money(amount: i64, currency: &str) -> String {
    let major = format!("{}.{:02}", amount / 100, (amount % 100).abs());
    match currency {
        "usd" => format!("${major}"),
        "eur" => format!("€{major}"),
        other => format!("{major} {}", other.to_uppercase()),
    }
}

fn date(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         .banner{{background:#fff3cd;border:1px solid #e0c36a;padding:.5rem 1rem;border-radius:6px}}\
         .error{{background:#fde2e1;border:1px solid #e08b86;padding:.5rem 1rem;border-radius:6px}}\
         .ok{{background:#e3f6e5;border:1px solid #8bc792;padding:.5rem 1rem;border-radius:6px}}\
         .card{{border:1px solid #ddd;border-radius:8px;padding:1rem;margin:1rem 0}}\
         form.inline{{display:inline}} button{{margin:.25rem .25rem .25rem 0;padding:.4rem .9rem}}\
         </style></head><body>\
         <p class=\"banner\" role=\"note\"><strong>Simulated Stripe — no real payment.</strong> \
         Nothing here charges a card or talks to Stripe.</p>\n{body}\n</body></html>",
        t = esc(title),
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (status, Html(layout(title, body))).into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

fn card_options(allow_none: bool) -> String {
    let mut s = String::new();
    for c in TestCard::ALL {
        s.push_str(&format!(
            "<option value=\"{}\">{}</option>",
            esc(c.as_str()),
            esc(c.label())
        ));
    }
    if allow_none {
        s.push_str("<option value=\"none\">No card (trial without payment method)</option>");
    }
    s
}

fn form_fields(body: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(body)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn only_http_urls_are_linked() {
        assert!(safe_url("javascript:alert(1)").is_none());
        assert!(safe_url("https://x.io/ok").is_some());
    }

    #[test]
    fn money_formats_minor_units() {
        assert_eq!(money(2500, "usd"), "$25.00");
        assert_eq!(money(7905, "gbp"), "79.05 GBP");
    }
}
