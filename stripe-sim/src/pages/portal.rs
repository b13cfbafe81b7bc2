//! The customer portal (`/p/session/{id}`): the customer's subscriptions with cancel,
//! pause / resume, switch plan, and a card update; every action 303s back with a message.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{card_options, date, esc, form_fields, money, page as html_page, redirect, safe_url};
use crate::Simulator;
use crate::engine::{RequestInfo, SubscriptionUpdate, TestCard};
use crate::error::StripeError;

pub(super) async fn page(
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
        Some(body) => html_page(StatusCode::OK, "Billing portal", &body),
        None => html_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>Portal session not found</h1>",
        ),
    }
}

pub(super) async fn submit(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let f = form_fields(&body);
    let Some(customer) = sim.read(|st| st.portal_sessions.get(&id).map(|p| p.customer.clone()))
    else {
        return html_page(
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
