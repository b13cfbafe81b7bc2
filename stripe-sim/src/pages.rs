//! Hosted pages: the Checkout page (`/c/pay/{id}`) and the customer portal
//! (`/p/session/{id}`). Plain HTML forms, no JavaScript; every value rendered is escaped.
//! Actions go through the same engine transitions as the API, so they emit the same events.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::Simulator;
use crate::engine::{CheckoutOutcome, RequestInfo, SubscriptionUpdate, TestCard};
use crate::error::StripeError;

pub(crate) fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/c/pay/{id}", get(checkout_page).post(checkout_submit))
        .route("/p/session/{id}", get(portal_page).post(portal_submit))
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

// ------------------------------------------------------------------ checkout

struct CheckoutView {
    status: String,
    product: String,
    price_line: String,
    trial_days: Option<i64>,
    email: Option<String>,
    cancel_url: Option<String>,
    success_url: Option<String>,
    allow_no_card: bool,
}

fn checkout_view(sim: &Simulator, id: &str) -> Option<CheckoutView> {
    sim.read(|st| {
        let cs = st.checkout_sessions.get(id)?;
        let price = st.prices.get(&cs.price)?;
        let product = st
            .products
            .get(&price.product)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let every = if price.interval_count == 1 {
            price.interval.clone()
        } else {
            format!("{} {}s", price.interval_count, price.interval)
        };
        let qty = if cs.quantity > 1 {
            format!(" × {}", cs.quantity)
        } else {
            String::new()
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
            product,
            price_line: format!(
                "{}{qty} / {every}",
                money(price.unit_amount, &price.currency)
            ),
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
    body.push_str(&format!("<h1>Subscribe to {}</h1>", esc(&v.product)));
    if let Some((class, text)) = notice {
        body.push_str(&format!(
            "<p class=\"{class}\" role=\"alert\">{}</p>",
            esc(text)
        ));
    }
    body.push_str(&format!(
        "<div class=\"card\"><p><strong>{}</strong></p><p>{}</p>",
        esc(&v.product),
        esc(&v.price_line)
    ));
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

async fn checkout_page(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match checkout_view(&sim, &id) {
        Some(v) => page(StatusCode::OK, "Checkout", &checkout_html(&v, None)),
        None => page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>Checkout session not found</h1>",
        ),
    }
}

async fn checkout_submit(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let Some(view) = checkout_view(&sim, &id) else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>Checkout session not found</h1>",
        );
    };
    let f = form_fields(&body);
    let action = f.get("action").map_or("pay", String::as_str);
    if action == "decline" {
        let e = StripeError::card_declined("Your card was declined.");
        return page(
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
                return page(
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
        Ok(CheckoutOutcome::Completed { .. }) => page(
            StatusCode::OK,
            "Checkout",
            &checkout_html(&fresh, Some(("ok", "Payment complete."))),
        ),
        Ok(CheckoutOutcome::RequiresAction { subscription }) => page(
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
            page(
                status,
                "Checkout",
                &checkout_html(&fresh, Some(("error", &msg))),
            )
        }
    }
}

// ------------------------------------------------------------------ portal

async fn portal_page(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let notice = q.get("msg").map(|m| {
        let class = if q.get("ok").is_some_and(|v| v == "0") {
            "error"
        } else {
            "ok"
        };
        (class, m.clone())
    });
    let html = sim.read(|st| {
        let ps = st.portal_sessions.get(&id)?;
        let customer = st.customers.get(&ps.customer)?;
        let mut body = String::from("<h1>Manage your subscription</h1>");
        if let Some((class, m)) = &notice {
            body.push_str(&format!("<p class=\"{class}\" role=\"status\">{}</p>", esc(m)));
        }
        body.push_str(&format!(
            "<p>Customer: {} {}</p>",
            esc(customer.name.as_deref().unwrap_or("")),
            esc(customer.email.as_deref().unwrap_or(""))
        ));
        // Checkout sets the subscription's card, not the customer's default: show either.
        let subscription_card = st
            .subscription_ids_of(&customer.id)
            .into_iter()
            .filter_map(|sid| st.subscriptions.get(&sid))
            .find_map(|s| s.default_payment_method.clone());
        let card = customer
            .default_payment_method
            .clone()
            .or(subscription_card)
            .as_ref()
            .and_then(|pm| st.payment_methods.get(pm))
            .map_or("none".to_string(), |pm| pm.card.label().to_string());
        body.push_str(&format!("<p>Card: {}</p>", esc(&card)));
        let subs: Vec<_> = st
            .subscription_ids_of(&customer.id)
            .into_iter()
            .filter_map(|sid| st.subscriptions.get(&sid))
            .collect();
        if subs.is_empty() {
            body.push_str("<p>No subscriptions.</p>");
        }
        for s in subs {
            let price = s.items.first().and_then(|i| st.prices.get(&i.price));
            let product = price
                .and_then(|p| st.products.get(&p.product))
                .map(|p| p.name.clone())
                .unwrap_or_default();
            let amount = price.map(|p| format!("{} / {}", money(p.unit_amount, &p.currency), p.interval)).unwrap_or_default();
            body.push_str(&format!(
                "<div class=\"card\"><p><strong>{}</strong> — {}</p><p>Status: <strong>{}</strong></p>",
                esc(&product),
                esc(&amount),
                esc(&s.status)
            ));
            if s.is_ended() {
                body.push_str("</div>");
                continue;
            }
            if s.status == "trialing"
                && let Some(t) = s.trial_end
            {
                body.push_str(&format!("<p>Trial ends {}</p>", esc(&date(t))));
            }
            body.push_str(&format!("<p>Current period ends {}</p>", esc(&date(s.period_end()))));
            if s.cancel_at_period_end {
                body.push_str("<p>Cancels at the end of the period.</p>");
            }
            if let Some(p) = &s.pause_collection {
                body.push_str(&format!("<p>Payment collection paused ({}).</p>", esc(&p.behavior)));
            }
            let button = |action: &str, label: &str| {
                format!(
                    "<form class=\"inline\" method=\"post\" action=\"\">\
                     <input type=\"hidden\" name=\"subscription\" value=\"{sid}\">\
                     <button type=\"submit\" name=\"action\" value=\"{action}\">{label}</button></form>",
                    sid = esc(&s.id),
                    action = esc(action),
                    label = esc(label),
                )
            };
            body.push_str("<p>");
            body.push_str(&button("cancel_now", "Cancel plan"));
            if s.cancel_at_period_end {
                body.push_str(&button("undo_cancel", "Don't cancel"));
            } else {
                body.push_str(&button("cancel_at_period_end", "Cancel at period end"));
            }
            if s.status == "paused" {
                body.push_str(&button("resume", "Resume"));
            } else if s.pause_collection.is_some() {
                body.push_str(&button("unpause", "Resume"));
            } else {
                body.push_str(&button("pause", "Pause"));
            }
            // Like Stripe's portal: every other active recurring price, prorated.
            let current = s.items.first().map(|i| i.price.clone());
            let others: Vec<String> = st
                .prices
                .values()
                .filter(|p| p.active && !p.interval.is_empty() && Some(&p.id) != current.as_ref())
                .map(|p| {
                    let name = st.products.get(&p.product).map(|x| x.name.clone()).unwrap_or_default();
                    format!(
                        "<option value=\"{}\">{} — {}.{:02} {}/{}</option>",
                        esc(&p.id),
                        esc(&name),
                        p.unit_amount / 100,
                        p.unit_amount % 100,
                        esc(&p.currency.to_uppercase()),
                        esc(&p.interval),
                    )
                })
                .collect();
            if !others.is_empty() && !s.is_ended() {
                body.push_str(&format!(
                    "<form class=\"inline\" method=\"post\" action=\"\">\
                     <input type=\"hidden\" name=\"subscription\" value=\"{sid}\">\
                     <select name=\"price\" aria-label=\"New plan\">{opts}</select> \
                     <button type=\"submit\" name=\"action\" value=\"switch_plan\">Switch plan</button></form>",
                    sid = esc(&s.id),
                    opts = others.join(""),
                ));
            }
            body.push_str("</p></div>");
        }
        body.push_str(&format!(
            "<div class=\"card\"><form method=\"post\" action=\"\">\
             <label for=\"card\">New test card</label> <select id=\"card\" name=\"card\">{opts}</select>\
             <button type=\"submit\" name=\"action\" value=\"update_card\">Update card</button></form></div>",
            opts = card_options(false),
        ));
        if let Some(u) = ps.return_url.as_deref().and_then(safe_url) {
            body.push_str(&format!("<p><a href=\"{}\">Return</a></p>", esc(u)));
        }
        Some(body)
    });
    match html {
        Some(body) => page(StatusCode::OK, "Billing portal", &body),
        None => page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>Portal session not found</h1>",
        ),
    }
}

async fn portal_submit(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let f = form_fields(&body);
    let Some(customer) = sim.read(|st| st.portal_sessions.get(&id).map(|p| p.customer.clone()))
    else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>Portal session not found</h1>",
        );
    };
    let action = f.get("action").cloned().unwrap_or_default();
    let sub = f.get("subscription").cloned().unwrap_or_default();
    let result: Result<&str, StripeError> = sim.mutate(RequestInfo::default(), |st| {
        if action == "update_card" {
            let card = f
                .get("card")
                .and_then(|c| TestCard::parse(c))
                .ok_or_else(|| StripeError::invalid_param("card", "Unknown test card."))?;
            st.attach_card(&customer, card)?;
            return Ok("Card updated.");
        }
        // A portal session may only touch its own customer's subscriptions.
        if st.customer_of(&sub).as_deref() != Some(customer.as_str()) {
            return Err(StripeError::missing("subscription", &sub, "subscription"));
        }
        match action.as_str() {
            "cancel_now" => st
                .cancel_subscription(&sub)
                .map(|()| "Subscription canceled."),
            "cancel_at_period_end" => st
                .update_subscription(
                    &sub,
                    SubscriptionUpdate {
                        cancel_at_period_end: Some(true),
                        ..Default::default()
                    },
                )
                .map(|()| "Subscription will cancel at the end of the period."),
            "undo_cancel" => st
                .update_subscription(
                    &sub,
                    SubscriptionUpdate {
                        cancel_at_period_end: Some(false),
                        ..Default::default()
                    },
                )
                .map(|()| "Cancellation withdrawn."),
            "pause" => st
                .update_subscription(
                    &sub,
                    SubscriptionUpdate {
                        pause_collection: Some(Some(("void".into(), None))),
                        ..Default::default()
                    },
                )
                .map(|()| "Payment collection paused."),
            "unpause" => st
                .update_subscription(
                    &sub,
                    SubscriptionUpdate {
                        pause_collection: Some(None),
                        ..Default::default()
                    },
                )
                .map(|()| "Payment collection resumed."),
            "resume" => st
                .resume_subscription(&sub)
                .map(|()| "Subscription resumed."),
            "switch_plan" => {
                let Some(s) = st.subscriptions.get(&sub) else {
                    return Err(StripeError::missing("subscription", &sub, "subscription"));
                };
                let item = s.items.first().map(|i| (i.id.clone(), i.price.clone()));
                let Some((item_id, current)) = item else {
                    return Err(StripeError::invalid_state("Subscription has no items."));
                };
                // The chosen plan, or (for a bare form post) the first other plan.
                let chosen = f.get("price").filter(|p| {
                    st.prices
                        .get(*p)
                        .is_some_and(|x| x.active && !x.interval.is_empty())
                });
                let Some(other) = chosen.cloned().or_else(|| {
                    st.prices
                        .values()
                        .find(|p| p.active && !p.interval.is_empty() && p.id != current)
                        .map(|p| p.id.clone())
                }) else {
                    return Err(StripeError::invalid_state("There is no other plan."));
                };
                st.update_subscription(
                    &sub,
                    SubscriptionUpdate {
                        items: vec![(Some(item_id), Some(other), None)],
                        proration_behavior: Some("create_prorations".into()),
                        ..Default::default()
                    },
                )
                .map(|()| "Plan switched.")
            }
            _ => Err(StripeError::invalid_param("action", "Unknown action.")),
        }
    });
    let (msg, ok) = match result {
        Ok(m) => (m.to_string(), "1"),
        Err(e) => (e.message, "0"),
    };
    let q = serde_urlencoded::to_string([("msg", msg.as_str()), ("ok", ok)]).unwrap_or_default();
    // Relative, so the page works wherever the simulator is mounted (demo mode nests it).
    redirect(&format!("{id}?{q}"))
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
