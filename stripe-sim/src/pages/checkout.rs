//! The hosted Checkout page (`/c/pay/{id}`) for every mode: what is bought (or that a card
//! is saved), a select of test cards, Pay and Decline, and the outcome.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{card_options, esc, form_fields, money, page as html_page, redirect, safe_url};
use crate::Simulator;
use crate::engine::{CheckoutMode, CheckoutOutcome, RequestInfo, TestCard};
use crate::error::StripeError;

struct CheckoutView {
    status: String,
    heading: String,
    /// (name, amount line) per line item; none in setup mode.
    lines: Vec<(String, String)>,
    /// The sum to pay (payment mode), or what setup mode does.
    total: Option<String>,
    trial_days: Option<i64>,
    email: Option<String>,
    cancel_url: Option<String>,
    success_url: Option<String>,
    allow_no_card: bool,
}

fn checkout_view(sim: &Simulator, id: &str) -> Option<CheckoutView> {
    sim.read(|st| {
        let cs = st.checkout_sessions.get(id)?;
        let mut lines = Vec::new();
        let mut sum = 0;
        for (price_id, quantity) in &cs.line_items {
            let price = st.prices.get(price_id)?;
            let product = st
                .products
                .get(&price.product)
                .map(|p| p.name.clone())
                .unwrap_or_default();
            let qty = if *quantity > 1 {
                format!(" × {quantity}")
            } else {
                String::new()
            };
            let every = match (price.interval.as_str(), price.interval_count) {
                ("", _) => String::new(),
                (i, 1) => format!(" / {i}"),
                (i, n) => format!(" / {n} {i}s"),
            };
            sum += price.unit_amount * quantity;
            lines.push((
                product,
                format!("{}{qty}{every}", money(price.unit_amount, &price.currency)),
            ));
        }
        let first = lines
            .first()
            .map(|(name, _)| name.clone())
            .unwrap_or_default();
        let (heading, total) = match cs.mode {
            CheckoutMode::Subscription => (format!("Subscribe to {first}"), None),
            CheckoutMode::Payment => {
                let currency = cs
                    .line_items
                    .first()
                    .and_then(|(p, _)| st.prices.get(p))
                    .map_or("usd", |p| p.currency.as_str());
                (
                    format!("Pay {first}"),
                    Some(format!("Total due today: {}", money(sum, currency))),
                )
            }
            CheckoutMode::Setup => (
                "Save a card for later payments".to_string(),
                Some("Nothing is charged today.".to_string()),
            ),
        };
        let email = cs
            .customer
            .as_ref()
            .and_then(|c| st.customers.get(c))
            .and_then(|c| c.email.clone())
            .or_else(|| cs.customer_email.clone());
        let trial_days = cs.trial_period_days.filter(|d| *d > 0);
        Some(CheckoutView {
            status: cs.status.clone(),
            heading,
            lines,
            total,
            trial_days,
            email,
            cancel_url: cs.cancel_url.clone(),
            success_url: cs
                .success_url
                .as_ref()
                .map(|u| u.replace("{CHECKOUT_SESSION_ID}", id)),
            allow_no_card: trial_days.is_some() && cs.payment_method_collection == "if_required",
        })
    })
}

fn checkout_html(v: &CheckoutView, notice: Option<(&str, &str)>) -> String {
    let mut body = String::new();
    body.push_str(&format!("<h1>{}</h1>", esc(&v.heading)));
    if let Some((class, text)) = notice {
        body.push_str(&format!(
            "<p class=\"{class}\" role=\"alert\">{}</p>",
            esc(text)
        ));
    }
    body.push_str("<div class=\"card\">");
    for (name, line) in &v.lines {
        body.push_str(&format!(
            "<p><strong>{}</strong></p><p>{}</p>",
            esc(name),
            esc(line)
        ));
    }
    if let Some(t) = &v.total {
        body.push_str(&format!("<p>{}</p>", esc(t)));
    }
    if let Some(d) = v.trial_days {
        body.push_str(&format!(
            "<p>{d}-day free trial — nothing is charged today.</p>"
        ));
    }
    if let Some(e) = &v.email {
        body.push_str(&format!("<p>Customer: {}</p>", esc(e)));
    }
    body.push_str("</div>");
    match v.status.as_str() {
        "open" => {
            body.push_str(&format!(
                "<form method=\"post\" action=\"\">\
                 <label for=\"card\">Test card</label> <select id=\"card\" name=\"card\">{opts}</select>\
                 <p><button type=\"submit\" name=\"action\" value=\"pay\">Pay</button>\
                 <button type=\"submit\" name=\"action\" value=\"decline\">Decline</button></p></form>",
                opts = card_options(v.allow_no_card),
            ));
            if let Some(u) = v.cancel_url.as_deref().and_then(safe_url) {
                body.push_str(&format!("<p><a href=\"{}\">Cancel</a></p>", esc(u)));
            }
        }
        "complete" => {
            body.push_str("<p class=\"ok\">This checkout is complete.</p>");
            if let Some(u) = v.success_url.as_deref().and_then(safe_url) {
                body.push_str(&format!("<p><a href=\"{}\">Continue</a></p>", esc(u)));
            }
        }
        other => {
            body.push_str(&format!(
                "<p class=\"error\">This checkout session is {}.</p>",
                esc(other)
            ));
            if let Some(u) = v.cancel_url.as_deref().and_then(safe_url) {
                body.push_str(&format!("<p><a href=\"{}\">Back</a></p>", esc(u)));
            }
        }
    }
    body
}

pub(super) async fn page(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match checkout_view(&sim, &id) {
        Some(v) => html_page(StatusCode::OK, "Checkout", &checkout_html(&v, None)),
        None => html_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>Checkout session not found</h1>",
        ),
    }
}

pub(super) async fn submit(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let Some(view) = checkout_view(&sim, &id) else {
        return html_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>Checkout session not found</h1>",
        );
    };
    let f = form_fields(&body);
    let action = f.get("action").map_or("pay", String::as_str);
    if action == "decline" {
        let e = StripeError::card_declined("Your card was declined.");
        return html_page(
            StatusCode::PAYMENT_REQUIRED,
            "Checkout",
            &checkout_html(
                &view,
                Some((
                    "error",
                    &format!("{} ({})", e.message, e.code.unwrap_or_default()),
                )),
            ),
        );
    }
    let card = match f.get("card").map(String::as_str) {
        Some("none") => None,
        Some(c) => match TestCard::parse(c) {
            Some(card) => Some(card),
            None => {
                return html_page(
                    StatusCode::BAD_REQUEST,
                    "Checkout",
                    &checkout_html(&view, Some(("error", "Unknown test card."))),
                );
            }
        },
        None => Some(TestCard::Visa),
    };
    let result = sim.mutate(RequestInfo::default(), |st| st.complete_checkout(&id, card));
    let fresh = checkout_view(&sim, &id).unwrap_or(view);
    match result {
        Ok(CheckoutOutcome::Completed {
            redirect: Some(url),
            ..
        }) if safe_url(&url).is_some() => redirect(&url),
        Ok(CheckoutOutcome::Completed { setup_intent, .. }) => html_page(
            StatusCode::OK,
            "Checkout",
            &checkout_html(
                &fresh,
                Some((
                    "ok",
                    if setup_intent.is_some() {
                        "Card saved."
                    } else {
                        "Payment complete."
                    },
                )),
            ),
        ),
        Ok(CheckoutOutcome::RequiresAction { subscription }) => html_page(
            StatusCode::PAYMENT_REQUIRED,
            "Checkout",
            &checkout_html(
                &fresh,
                Some((
                    "error",
                    &format!(
                        "This card requires 3-D Secure authentication, which the simulator never \
                         completes. Subscription {subscription} is incomplete and expires in 23 hours \
                         unless paid with another card."
                    ),
                )),
            ),
        ),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            let msg = match e.code {
                Some(code) => format!("{} ({code})", e.message),
                None => e.message.clone(),
            };
            html_page(
                status,
                "Checkout",
                &checkout_html(&fresh, Some(("error", &msg))),
            )
        }
    }
}
