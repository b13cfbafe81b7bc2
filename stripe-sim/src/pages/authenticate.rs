//! The hosted 3-D Secure page (`/auth/{id}`) a `requires_action` PaymentIntent or
//! SetupIntent points to in `next_action.redirect_to_url.url`: the amount (or "Save a
//! card"), **Complete** and **Fail**, as Stripe's test authentication page has. The answer
//! redirects (303) to the intent's `return_url`, or shows the outcome without one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{esc, form_fields, money, page as html_page, redirect, safe_url};
use crate::Simulator;
use crate::engine::RequestInfo;

struct AuthView {
    /// What is authenticated: "Pay $12.00" or "Save a card for later payments".
    what: String,
    status: String,
}

fn auth_view(sim: &Simulator, id: &str) -> Option<AuthView> {
    sim.read(|st| {
        if let Some(pi) = st.payment_intents.get(id) {
            return Some(AuthView {
                what: format!("Pay {}", money(pi.amount, &pi.currency)),
                status: pi.status.clone(),
            });
        }
        st.setup_intents.get(id).map(|si| AuthView {
            what: "Save a card for later payments".to_string(),
            status: si.status.clone(),
        })
    })
}

fn auth_html(v: &AuthView, notice: Option<(&str, &str)>) -> String {
    let mut body = String::from("<h1>3-D Secure authentication</h1>");
    if let Some((class, text)) = notice {
        body.push_str(&format!(
            "<p class=\"{class}\" role=\"alert\">{}</p>",
            esc(text)
        ));
    }
    body.push_str(&format!(
        "<div class=\"card\"><p><strong>{}</strong></p></div>",
        esc(&v.what)
    ));
    if v.status == "requires_action" {
        body.push_str(
            "<p>Complete or fail this test authentication.</p>\
             <form method=\"post\" action=\"\">\
             <button type=\"submit\" name=\"action\" value=\"complete\">Complete</button>\
             <button type=\"submit\" name=\"action\" value=\"fail\">Fail</button></form>",
        );
    } else {
        body.push_str(&format!(
            "<p>Nothing to authenticate: the status is {}.</p>",
            esc(&v.status)
        ));
    }
    body
}

fn not_found() -> Response {
    html_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<h1>Payment or setup not found</h1>",
    )
}

pub(super) async fn page(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match auth_view(&sim, &id) {
        Some(v) => html_page(StatusCode::OK, "Authenticate", &auth_html(&v, None)),
        None => not_found(),
    }
}

pub(super) async fn submit(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let Some(view) = auth_view(&sim, &id) else {
        return not_found();
    };
    let complete = match form_fields(&body).get("action").map(String::as_str) {
        Some("complete") => true,
        Some("fail") => false,
        _ => {
            return html_page(
                StatusCode::BAD_REQUEST,
                "Authenticate",
                &auth_html(&view, Some(("error", "Choose Complete or Fail."))),
            );
        }
    };
    let result = sim.mutate(RequestInfo::default(), |st| {
        if id.starts_with("seti_") {
            st.authenticate_setup_intent(&id, complete)
        } else {
            st.authenticate_payment_intent(&id, complete)
        }
    });
    let fresh = auth_view(&sim, &id).unwrap_or(view);
    match result {
        Ok(Some(url)) if safe_url(&url).is_some() => redirect(&url),
        Ok(_) => {
            let text = if complete {
                "Authentication complete."
            } else {
                "Authentication failed."
            };
            html_page(
                StatusCode::OK,
                "Authenticate",
                &auth_html(&fresh, Some(("ok", text))),
            )
        }
        Err(e) => html_page(
            StatusCode::BAD_REQUEST,
            "Authenticate",
            &auth_html(&fresh, Some(("error", &e.message))),
        ),
    }
}
