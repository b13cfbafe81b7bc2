//! Support's tools and the browser session's life: CSRF and the admin check on every admin form,
//! the user table's status filter and keyset pages, resync, the problem-event list, replay,
//! dead-lettering, match conflicts, session idle expiry and the new session id at sign-in.

use std::time::Duration;

use msr_stripe_sim::{Fault, TestCard};
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::coverage::{csrf, customer_of, event, eventually, invoice, signed_in};
use crate::helpers::{StripeApp, TestApp, WEBHOOK_SECRET, now, sign};
use crate::pages::token_in;

const ADMIN: &str = "support-1";

async fn audit_rows(app: &TestApp, user: &str, action_like: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE user_id = $1 AND action LIKE $2")
        .bind(user)
        .bind(action_like)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

async fn text(client: &Client, url: String) -> (StatusCode, String) {
    let response = client.get(url).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The user ids a page of the admin table lists, and its "next page" link.
fn table(page: &str) -> (Vec<String>, Option<String>) {
    let ids = page
        .split("<td><a href=\"/admin/users/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect();
    // The href of the "Next page" link, as a browser reads it (askama writes `&` as `&#38;`).
    let next = page.find("Next page").map(|end| {
        let link = &page[..end];
        let href = &link[link.rfind("href=\"").unwrap() + 6..];
        href[..href.find('"').unwrap()].replace("&#38;", "&")
    });
    (ids, next)
}

/// Every id the table lists for a query, following the next-page links; and how many pages.
async fn all_pages(app: &TestApp, admin: &Client, query: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut next = Some(format!("/admin?{query}"));
    while let Some(path) = next {
        let (status, page) = text(admin, format!("{}{path}", app.address)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        let (rows, more) = table(&page);
        assert!(rows.len() <= 50, "a page holds at most 50 rows");
        ids.extend(rows);
        pages += 1;
        next = more;
        assert!(pages < 10, "the pages never end");
    }
    (ids, pages)
}

#[tokio::test]
async fn every_admin_form_needs_an_admin_and_the_token_of_their_own_session() {
    let app = TestApp::spawn_with(&[("MSR_ADMIN_USER_IDS", ADMIN)]).await;
    app.create_user("target", "target@example.com").await;
    let admin = signed_in(&app, ADMIN).await;
    let own = csrf(&app, &admin).await;
    let owner = signed_in(&app, "plain-owner").await;
    let owners_token = csrf(&app, &owner).await;
    let forms: [(&str, Vec<(&str, &str)>); 5] = [
        ("/admin/users/target/resync", vec![]),
        ("/admin/users/target/sessions/end", vec![]),
        (
            "/admin/users/target/complimentary",
            vec![("until", "2099-01-01"), ("note", "goodwill")],
        ),
        ("/admin/users/target/complimentary/revoke", vec![]),
        ("/admin/events/evt_none/replay", vec![]),
    ];
    for (path, fields) in &forms {
        let url = format!("{}{path}", app.address);
        let post = |client: &Client, token: Option<&str>| {
            let mut form = fields.clone();
            if let Some(token) = token {
                form.push(("csrf_token", token));
            }
            client.post(&url).form(&form).send()
        };
        let missing = post(&admin, None).await.unwrap();
        assert_eq!(
            missing.status(),
            StatusCode::FORBIDDEN,
            "{path} without a token"
        );
        let foreign = post(&admin, Some(&owners_token)).await.unwrap();
        assert_eq!(
            foreign.status(),
            StatusCode::FORBIDDEN,
            "{path} with another session's token"
        );
        let not_admin = post(&owner, Some(&owners_token)).await.unwrap();
        assert_eq!(
            not_admin.status(),
            StatusCode::FORBIDDEN,
            "{path} by an owner"
        );
    }
    assert_eq!(audit_rows(&app, "target", "%").await, 0, "nothing was done");
    let (status, _) = text(&owner, format!("{}/admin/events", app.address)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The admin's own token is accepted: the refusals above were about the token and the role.
    let granted = admin
        .post(format!("{}/admin/users/target/complimentary", app.address))
        .form(&[
            ("csrf_token", own.as_str()),
            ("until", "2099-01-01"),
            ("note", "goodwill"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.entitlement("target").await.status(), StatusCode::OK);
    assert_eq!(audit_rows(&app, "target", "grant%").await, 1);
}

#[tokio::test]
async fn the_user_table_filters_by_status_and_pages_by_key_across_page_boundaries() {
    let app = StripeApp::spawn_with(&[("MSR_ADMIN_USER_IDS", ADMIN)]).await;
    // Two paying users inside the range, one on each side of the first page boundary.
    app.subscribed("pg-010", "monthly", TestCard::Visa).await;
    app.subscribed("pg-070", "monthly", TestCard::Visa).await;
    let status = app.entitled("pg-010").await.1["status"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in (0..105).filter(|i| *i != 10 && *i != 70) {
        let id = format!("pg-{i:03}");
        app.create_user(&id, &format!("{id}@example.com")).await;
    }
    app.create_user("other", "other@example.com").await;
    let admin = signed_in(&app, ADMIN).await;

    let (everyone, pages) = all_pages(&app, &admin, "q=pg-").await;
    let expected: Vec<String> = (0..105).map(|i| format!("pg-{i:03}")).collect();
    assert_eq!(
        everyone, expected,
        "in id order, each once, across {pages} pages"
    );
    assert_eq!(pages, 3);

    let (unpaid, pages) = all_pages(&app, &admin, "q=pg-&status=none").await;
    let expected_unpaid: Vec<String> = expected
        .iter()
        .filter(|id| *id != "pg-010" && *id != "pg-070")
        .cloned()
        .collect();
    assert_eq!(unpaid, expected_unpaid);
    assert_eq!(pages, 3, "103 rows: 50, 50 and 3");

    let (paying, pages) = all_pages(&app, &admin, &format!("status={status}")).await;
    assert_eq!(paying, ["pg-010", "pg-070"]);
    assert_eq!(pages, 1);

    let (status, body) = text(&admin, format!("{}/admin?status=bogus", app.address)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn resync_writes_what_stripe_has_and_is_audited_with_before_and_after() {
    let app = StripeApp::spawn_with(&[("MSR_ADMIN_USER_IDS", ADMIN)]).await;
    let sub = app.subscribed("rs", "monthly", TestCard::Visa).await;
    app.sim().set_fault(Fault::PauseDeliveries).await;
    app.sim()
        .pause_collection(&sub, Some("void"))
        .await
        .unwrap();
    assert_eq!(app.entitled("rs").await.0, 200, "the store has not heard");
    let admin = signed_in(&app, ADMIN).await;
    let token = csrf(&app, &admin).await;
    let resynced = admin
        .post(format!("{}/admin/users/rs/resync", app.address))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resynced.status(), StatusCode::SEE_OTHER);
    assert_eq!(resynced.headers()[LOCATION], "/admin/users/rs");
    assert_eq!(
        app.entitled("rs").await.0,
        402,
        "paused in Stripe, so no access"
    );
    let (before, after): (String, String) = sqlx::query_as(
        "SELECT before, after FROM audit_log WHERE user_id = 'rs' AND action = 'resync from Stripe'",
    )
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert!(
        !before.contains("paused") && after.contains("paused"),
        "{before} → {after}"
    );
    let (_, page) = text(&admin, format!("{}/admin/users/rs", app.address)).await;
    assert!(
        page.contains("resync from Stripe"),
        "the audit log shows it"
    );
}

/// Makes the database refuse every new audit row (a trigger), as a crash between a change and its
/// audit would: a support action must then leave no change behind.
async fn refuse_audit_rows(app: &TestApp) {
    let statements: &[&str] = match app.state.db.backend {
        msr_billing::db::Backend::Sqlite => {
            &["CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit refused'); END"]
        }
        msr_billing::db::Backend::Postgres => &[
            "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        ],
    };
    for statement in statements {
        sqlx::query(statement)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_resync_or_replay_whose_audit_row_cannot_be_written_changes_nothing() {
    let app =
        StripeApp::spawn_with(&[("MSR_ADMIN_USER_IDS", ADMIN), ("MSR_WORKER_INTERVAL", "1h")])
            .await;
    let sub = app.subscribed("ra", "monthly", TestCard::Visa).await;
    failing_event(&app, "evt_unaudited", &sub).await;
    app.sim().clear_faults().await;
    app.sim().set_fault(Fault::PauseDeliveries).await;
    app.sim()
        .pause_collection(&sub, Some("void"))
        .await
        .unwrap();
    refuse_audit_rows(&app).await;
    let admin = signed_in(&app, ADMIN).await;
    let token = csrf(&app, &admin).await;
    for path in ["users/ra/resync", "events/evt_unaudited/replay"] {
        let refused = admin
            .post(format!("{}/admin/{path}", app.address))
            .form(&[("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{path}: the audit row was refused"
        );
    }
    assert_eq!(
        app.entitled("ra").await.0,
        200,
        "neither the resync nor the replay wrote Stripe's pause without its audit row"
    );
    assert_eq!(
        app.event_state("evt_unaudited").await.as_deref(),
        Some("failed"),
        "the replayed event's outcome was not recorded without its audit row"
    );
    assert_eq!(audit_rows(&app, "ra", "%").await, 0);
}

/// Posts an `invoice.paid` whose subscription re-fetch fails (Stripe answers 500 for a while).
async fn failing_event(app: &StripeApp, id: &str, sub: &str) {
    app.sim()
        .set_fault(Fault::ApiErrors {
            count: 1000,
            path_prefix: Some("/v1/subscriptions".into()),
        })
        .await;
    let body = event(
        id,
        "invoice.paid",
        now() + 5,
        invoice(&format!("in_{id}"), &customer_of(app, sub), sub),
    );
    let response = app
        .post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "recorded, to be retried");
}

#[tokio::test]
async fn a_failed_event_is_listed_for_support_and_a_replay_applies_it_once_stripe_answers() {
    let app =
        StripeApp::spawn_with(&[("MSR_ADMIN_USER_IDS", ADMIN), ("MSR_WORKER_INTERVAL", "1h")])
            .await;
    let sub = app.subscribed("rp", "monthly", TestCard::Visa).await;
    failing_event(&app, "evt_replay", &sub).await;
    assert_eq!(
        app.event_state("evt_replay").await.as_deref(),
        Some("failed")
    );
    let admin = signed_in(&app, ADMIN).await;
    let (status, listed) = text(&admin, format!("{}/admin/events", app.address)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed.contains("evt_replay")
            && listed.contains("invoice.paid")
            && listed.contains("failed"),
        "{listed}"
    );
    app.sim().clear_faults().await;
    let token = csrf(&app, &admin).await;
    let replayed = admin
        .post(format!("{}/admin/events/evt_replay/replay", app.address))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.event_state("evt_replay").await.as_deref(),
        Some("applied")
    );
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE user_id = 'rp'")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(
        actions,
        ["replay event evt_replay (invoice.paid) → applied"],
        "the replay is audited on the user's log"
    );
    let (_, listed) = text(&admin, format!("{}/admin/events", app.address)).await;
    assert!(!listed.contains("evt_replay"), "no longer a problem");
    let missing = admin
        .post(format!("{}/admin/events/evt_nope/replay", app.address))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_event_that_keeps_failing_is_dead_lettered_after_the_configured_attempts() {
    let app = StripeApp::spawn_with(&[
        ("MSR_ADMIN_USER_IDS", ADMIN),
        ("MSR_EVENT_MAX_ATTEMPTS", "2"),
        ("MSR_WORKER_INTERVAL", "1s"),
    ])
    .await;
    let sub = app.subscribed("dl", "monthly", TestCard::Visa).await;
    failing_event(&app, "evt_dead", &sub).await;
    // The first retry waits 2 s; the second attempt is the last.
    eventually("dead-lettered", Duration::from_secs(20), || async {
        app.event_state("evt_dead").await.as_deref() == Some("dead")
    })
    .await;
    let attempts: i64 =
        sqlx::query_scalar("SELECT attempts FROM stripe_events WHERE id = 'evt_dead'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(attempts, 2);
    let admin = signed_in(&app, ADMIN).await;
    let (_, listed) = text(&admin, format!("{}/admin/events", app.address)).await;
    assert!(
        listed.contains("evt_dead") && listed.contains("dead"),
        "{listed}"
    );
    // Nothing retries a dead event by itself.
    app.sim().clear_faults().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.event_state("evt_dead").await.as_deref(), Some("dead"));
}

#[tokio::test]
async fn an_event_naming_a_user_already_linked_to_another_customer_is_kept_unmatched() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("mc", "monthly", TestCard::Visa).await;
    let (status, before) = app.entitled("mc").await;
    assert_eq!(status, 200);
    let conflicts = || {
        app.state
            .counters
            .match_conflicts
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let counted = conflicts();
    // Another customer's subscription whose metadata names "mc": it must not take mc over.
    let mut foreign: Value = app.sim().subscription(&sub).unwrap();
    foreign["id"] = "sub_foreign_mc".into();
    foreign["customer"] = "cus_foreign_mc".into();
    foreign["status"] = "canceled".into();
    foreign["metadata"] = serde_json::json!({"user_id": "mc"});
    let body = event(
        "evt_conflict",
        "customer.subscription.updated",
        now() + 5,
        foreign,
    );
    let response = app
        .post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.event_state("evt_conflict").await.as_deref(),
        Some("unmatched")
    );
    assert_eq!(conflicts(), counted + 1);
    assert_eq!(app.entitled("mc").await, (200, before), "mc is unchanged");
}

/// The session cookie a response sets (`name=value`), if any.
fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("msr_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// `/account` as a browser holding only this cookie: 200 signed in, 303 to sign-in otherwise.
async fn account_with(app: &TestApp, cookie: &str) -> StatusCode {
    app.client
        .get(format!("{}/account", app.address))
        .header(ACCEPT, "text/html")
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .status()
}

/// Signs in through the developer form with a cookie carried by hand: (before, after) cookies.
async fn sign_in_by_hand(app: &TestApp, user: &str) -> (String, String) {
    let form = app.get("/auth/signin").await;
    let before = session_cookie(&form).expect("the sign-in page starts a session");
    let page = form.text().await.unwrap();
    let signed = app
        .client
        .post(format!("{}/auth/dev-signin", app.address))
        .header(COOKIE, &before)
        .form(&[
            ("csrf_token", token_in(&page).as_str()),
            ("user_id", user),
            ("email", &format!("{user}@example.com")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let after = session_cookie(&signed).expect("signing in sets the session cookie");
    (before, after)
}

#[tokio::test]
async fn signing_in_gives_the_browser_a_new_session_id() {
    let app = TestApp::spawn().await;
    let (before, after) = sign_in_by_hand(&app, "fixation").await;
    assert_ne!(
        before, after,
        "the pre-sign-in id must not become the signed-in one"
    );
    assert_eq!(account_with(&app, &after).await, StatusCode::OK);
    assert_eq!(
        account_with(&app, &before).await,
        StatusCode::SEE_OTHER,
        "an id planted before sign-in is not signed in"
    );
}

#[tokio::test]
async fn a_session_ends_after_the_idle_time_and_each_request_extends_it() {
    let app = TestApp::spawn_with(&[("MSR_SESSION_IDLE", "4s")]).await;
    let (_, cookie) = sign_in_by_hand(&app, "idler").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        account_with(&app, &cookie).await,
        StatusCode::OK,
        "within the idle time"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        account_with(&app, &cookie).await,
        StatusCode::OK,
        "5 s after sign-in, 3 s after the last request"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let expired = app
        .client
        .get(format!("{}/account", app.address))
        .header(ACCEPT, "text/html")
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::SEE_OTHER, "idle for 5 s");
    assert_eq!(expired.headers()[LOCATION], "/auth/signin");
}
