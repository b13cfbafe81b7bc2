//! The entitlement change log: one change per change of the answer, with its cause, pulled after a
//! seq; the snapshot a consumer starts from; the answer at a past instant; changes time makes.

use chrono::{Duration, Utc};
use msr_billing::billing::{feed, support};
use msr_billing::domain::UserId;
use msr_stripe_sim::TestCard;
use reqwest::StatusCode;
use serde_json::Value;

use crate::coverage::{csrf, signed_in};
use crate::helpers::{StripeApp, TestApp, assert_error, json};

const ADMIN: &str = "feed-admin";
const KEY: &str = "feed-internal-key-0123456789abcdef";

/// Every change after `after`, following `next` page by page (`limit` a page).
async fn all_changes(app: &TestApp, after: i64, limit: i64) -> Vec<Value> {
    let mut after = after;
    let mut all = Vec::new();
    for _ in 0..100 {
        let page = json(
            app.request(reqwest::Method::GET, "/billing/entitlements/changes")
                .query(&[("after", after), ("limit", limit)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        let changes = page["changes"].as_array().expect("changes").clone();
        assert!(changes.len() as i64 <= limit, "a page holds at most limit");
        all.extend(changes);
        after = page["next"].as_i64().expect("next");
        if !page["has_more"].as_bool().expect("has_more") {
            return all;
        }
    }
    panic!("the pages never end");
}

fn of_user<'a>(changes: &'a [Value], user: &str) -> Vec<&'a Value> {
    changes.iter().filter(|c| c["user_id"] == user).collect()
}

#[tokio::test]
async fn each_change_of_an_answer_is_logged_once_in_order_with_the_event_that_caused_it() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("feed-1", "monthly", TestCard::Visa).await;
    app.sim().cancel_subscription(&sub).await.unwrap();
    app.settle().await;
    assert_eq!(app.entitled("feed-1").await.0, 402);

    let changes = all_changes(&app, 0, 1).await;
    let seqs: Vec<i64> = changes.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs increase: {seqs:?}"
    );
    let mine = of_user(&changes, "feed-1");
    // Entitled, then canceled: the several events of a checkout that leave the answer as it was
    // log nothing. (Checkout's subscription starts `incomplete`: when that event is applied on
    // its own, before the one that makes it active, it is a change too.)
    let mut became: Vec<(bool, &str)> = mine
        .iter()
        .map(|c| {
            (
                c["entitlement"]["entitled"].as_bool().unwrap(),
                c["entitlement"]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    if became.first() == Some(&(false, "past_due")) {
        became.remove(0);
    }
    assert_eq!(
        became,
        vec![(true, "active"), (false, "canceled")],
        "{mine:#?}"
    );
    let without_time = |c: &Value| {
        let mut e = c["entitlement"].clone();
        e.as_object_mut().unwrap().remove("as_of");
        e
    };
    assert!(
        mine.windows(2)
            .all(|w| without_time(w[0]) != without_time(w[1])),
        "a change that changes nothing was logged: {mine:#?}"
    );
    for c in &mine {
        assert_eq!(c["cause"]["type"], "stripe_event", "{c}");
        let event = c["cause"]["event_id"].as_str().expect("the event");
        assert_eq!(
            app.event_state(event).await.as_deref(),
            Some("applied"),
            "the cause names an applied event: {c}"
        );
        assert_eq!(c["entitlement"]["as_of"], c["changed_at"]);
        assert_eq!(c["entitlement"]["user_id"], "feed-1");
    }
    // The latest change is what the check answers now (but for as_of).
    let (_, now) = app.entitled("feed-1").await;
    let last = &mine.last().unwrap()["entitlement"];
    for field in [
        "entitled",
        "status",
        "plan",
        "reason",
        "valid_until",
        "pause_active",
    ] {
        assert_eq!(last[field], now[field], "{field}");
    }
    // Nothing after the last seq.
    let tail = json(
        app.get(&format!(
            "/billing/entitlements/changes?after={}",
            seqs.last().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(tail["changes"].as_array().unwrap().len(), 0);
    assert_eq!(tail["next"], *seqs.last().unwrap());
    assert_eq!(tail["has_more"], false);
}

#[tokio::test]
async fn support_changes_name_their_audit_row_and_the_answer_at_a_past_instant_is_the_logged_one() {
    let app = TestApp::spawn_with(&[("MSR_ADMIN_USER_IDS", ADMIN)]).await;
    app.create_user("feed-2", "feed-2@example.com").await;
    let before_anything = Utc::now() - Duration::seconds(5);
    let admin = signed_in(&app, ADMIN).await;
    let token = csrf(&app, &admin).await;
    let granted = admin
        .post(format!("{}/admin/users/feed-2/complimentary", app.address))
        .form(&[
            ("csrf_token", token.as_str()),
            ("until", "2099-01-01"),
            ("note", "goodwill"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), StatusCode::SEE_OTHER);
    let granted_at = Utc::now();
    let owner = signed_in(&app, "feed-2").await;
    let account = owner
        .get(format!("{}/account", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let today = msr_billing::web::pages::day(granted_at);
    assert!(
        account.contains("You have had access since") && account.contains(&today),
        "the account page says since when: {account}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let revoked = admin
        .post(format!(
            "{}/admin/users/feed-2/complimentary/revoke",
            app.address
        ))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);

    let changes = all_changes(&app, 0, 100).await;
    let mine = of_user(&changes, "feed-2");
    assert_eq!(mine.len(), 2, "{mine:#?}");
    assert_eq!(mine[0]["entitlement"]["reason"], "complimentary");
    assert_eq!(mine[0]["entitlement"]["entitled"], true);
    assert_eq!(mine[1]["entitlement"]["reason"], "no_subscription");
    let audit_ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM audit_log WHERE user_id = 'feed-2' ORDER BY at, id")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(audit_ids.len(), 2);
    for (change, audit) in mine.iter().zip(&audit_ids) {
        assert_eq!(change["cause"]["type"], "support");
        assert_eq!(change["cause"]["audit_id"], audit.as_str());
    }
    // The admin page shows the history, each cause linking to its audit entry.
    let page = admin
        .get(format!("{}/admin/users/feed-2", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Entitlement history"), "{page}");
    for audit in &audit_ids {
        assert!(
            page.contains(&format!("href=\"#audit-{audit}\""))
                && page.contains(&format!("id=\"audit-{audit}\"")),
            "the history links audit {audit}: {page}"
        );
    }

    // At a past instant: what was logged then, as of that instant.
    let at = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let then = app
        .request(reqwest::Method::GET, "/billing/entitlement")
        .header("X-User-Id", "feed-2")
        .query(&[("at", at(granted_at))])
        .send()
        .await
        .unwrap();
    assert_eq!(then.status(), StatusCode::OK, "entitled then");
    let then = json(then).await;
    assert_eq!(then["reason"], "complimentary");
    assert_eq!(then["as_of"], at(granted_at));
    assert_eq!(app.entitlement("feed-2").await.status(), 402, "not now");
    let now = app
        .request(reqwest::Method::GET, "/billing/entitlement")
        .header("X-User-Id", "feed-2")
        .query(&[("at", at(Utc::now()))])
        .send()
        .await
        .unwrap();
    assert_eq!(now.status(), StatusCode::PAYMENT_REQUIRED);
    for (value, code) in [
        (at(before_anything), "history_unavailable"),
        (at(Utc::now() + Duration::hours(1)), "invalid_query"),
        ("yesterday".to_owned(), "invalid_query"),
    ] {
        let r = app
            .request(reqwest::Method::GET, "/billing/entitlement")
            .header("X-User-Id", "feed-2")
            .query(&[("at", value.as_str())])
            .send()
            .await
            .unwrap();
        assert_error(r, 422, code).await;
    }
}

#[tokio::test]
async fn an_answer_that_time_changes_is_logged_when_it_happens() {
    let app = TestApp::spawn_with(&[("MSR_WORKER_INTERVAL", "1s")]).await;
    app.create_user("feed-3", "feed-3@example.com").await;
    let user = UserId::parse("feed-3").unwrap();
    let admin = UserId::parse(ADMIN).unwrap();
    let until = Utc::now() + Duration::seconds(2);
    support::grant_complimentary(&app.state, &admin, &user, until, "two seconds")
        .await
        .unwrap();
    assert_eq!(app.entitlement("feed-3").await.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mine = loop {
        let changes = all_changes(&app, 0, 100).await;
        let mine: Vec<Value> = of_user(&changes, "feed-3").into_iter().cloned().collect();
        if mine.len() >= 2 || std::time::Instant::now() > deadline {
            break mine;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(mine.len(), 2, "the end of the grant is logged: {mine:#?}");
    assert_eq!(mine[1]["cause"]["type"], "expiry");
    assert_eq!(mine[1]["entitlement"]["entitled"], false);
    let changed_at = chrono::DateTime::parse_from_rfc3339(mine[1]["changed_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    assert!(
        (changed_at - until).num_seconds().abs() <= 1,
        "stamped when the grant ended ({until}), not when it was noticed: {changed_at}"
    );
}

#[tokio::test]
async fn the_snapshot_pages_every_owner_and_gives_the_seq_to_follow_from() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.create_user(&format!("snap-{i}"), &format!("snap-{i}@example.com"))
            .await;
    }
    let admin = UserId::parse(ADMIN).unwrap();
    let comp = UserId::parse("snap-3").unwrap();
    support::grant_complimentary(
        &app.state,
        &admin,
        &comp,
        Utc::now() + Duration::days(3),
        "x",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut seq = None;
    loop {
        let page = json(
            app.request(reqwest::Method::GET, "/billing/entitlements")
                .query(&[("after_user", after.as_str()), ("limit", "2")])
                .send()
                .await
                .unwrap(),
        )
        .await;
        seq.get_or_insert(page["seq"].as_i64().expect("seq"));
        for e in page["entitlements"].as_array().unwrap() {
            seen.push((
                e["user_id"].as_str().unwrap().to_owned(),
                e["entitled"].as_bool().unwrap(),
            ));
        }
        if !page["has_more"].as_bool().unwrap() {
            assert!(page["next_after_user"].is_null());
            break;
        }
        after = page["next_after_user"].as_str().unwrap().to_owned();
    }
    let expected: Vec<(String, bool)> = (0..5).map(|i| (format!("snap-{i}"), i == 3)).collect();
    assert_eq!(seen, expected);
    assert_eq!(seq, Some(1), "the one change so far (the grant)");
}

#[tokio::test]
async fn the_feed_needs_the_internal_key_and_refuses_values_out_of_range() {
    let app = TestApp::spawn_with(&[("MSR_INTERNAL_API_KEY", KEY)]).await;
    for path in ["/billing/entitlements/changes", "/billing/entitlements"] {
        assert_error(app.get(path).await, 401, "unauthorized").await;
    }
    let get = |path: &str| {
        app.request(reqwest::Method::GET, path)
            .header("Authorization", format!("Bearer {KEY}"))
            .send()
    };
    for path in [
        "/billing/entitlements/changes?limit=0",
        "/billing/entitlements/changes?limit=1001",
        "/billing/entitlements/changes?after=-1",
        "/billing/entitlements/changes?after=x",
        "/billing/entitlements?limit=0",
        "/billing/entitlements?after_user=bad%20id",
    ] {
        assert_error(get(path).await.unwrap(), 422, "invalid_query").await;
    }
    let ok = json(get("/billing/entitlements/changes").await.unwrap()).await;
    assert_eq!(ok["changes"], serde_json::json!([]));
    assert_eq!(ok["next"], 0);
}

#[tokio::test]
async fn changes_older_than_the_retention_answer_410_and_the_newest_of_each_owner_stays() {
    let app = TestApp::spawn_with(&[("MSR_FEED_RETENTION", "1s")]).await;
    app.create_user("feed-4", "feed-4@example.com").await;
    let user = UserId::parse("feed-4").unwrap();
    let admin = UserId::parse(ADMIN).unwrap();
    let until = Utc::now() + Duration::days(1);
    support::grant_complimentary(&app.state, &admin, &user, until, "a")
        .await
        .unwrap();
    support::revoke_complimentary(&app.state, &admin, &user)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(feed::prune(&app.state).await.unwrap(), 1, "the older one");
    assert_error(
        app.get("/billing/entitlements/changes?after=0").await,
        410,
        "changes_expired",
    )
    .await;
    let kept = json(app.get("/billing/entitlements/changes?after=1").await).await;
    let kept = kept["changes"].as_array().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["entitlement"]["reason"], "no_subscription");
}

/// Reads Server-Sent Events from a streaming response until `n` events arrived (or 10 s passed):
/// each as (event, id, data).
async fn sse_events(response: &mut reqwest::Response, n: usize) -> Vec<(String, String, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while events.len() < n {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("events within 10 s")
            .expect("the stream reads")
            .expect("the stream stays open");
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if !event.is_empty() {
                events.push((event, id, serde_json::from_str(&data).expect("JSON data")));
            }
        }
    }
    events
}

/// Complimentary access granted and revoked at once: two changes of `user`'s answer.
pub(crate) async fn grant_and_revoke(app: &TestApp, user: &str) {
    let user = UserId::parse(user).unwrap();
    let admin = UserId::parse(ADMIN).unwrap();
    support::grant_complimentary(
        &app.state,
        &admin,
        &user,
        Utc::now() + Duration::days(2),
        "s",
    )
    .await
    .unwrap();
    support::revoke_complimentary(&app.state, &admin, &user)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_stream_sends_each_change_once_in_order_and_resumes_after_the_last_event_id() {
    let app = TestApp::spawn().await;
    for user in ["st-1", "st-2"] {
        app.create_user(user, &format!("{user}@example.com")).await;
    }
    let open = |from: Option<&str>| {
        let mut request = app.request(reqwest::Method::GET, "/billing/entitlements/stream");
        if let Some(id) = from {
            request = request.header("Last-Event-ID", id);
        }
        request.send()
    };
    // From now: a change made after it opens arrives, pushed.
    let mut live = open(None).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert!(
        live.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    grant_and_revoke(&app, "st-1").await;
    grant_and_revoke(&app, "st-2").await;
    let events = sse_events(&mut live, 4).await;
    let pulled = all_changes(&app, 0, 100).await;
    assert_eq!(pulled.len(), 4);
    for ((event, id, data), change) in events.iter().zip(&pulled) {
        assert_eq!(event, "entitlement.updated");
        assert_eq!(id, &change["seq"].to_string());
        assert_eq!(
            data, change,
            "the stream and the pull carry the same change"
        );
    }
    // Resuming after the second: the third and fourth, nothing repeated.
    let mut resumed = open(Some(&events[1].1)).await.unwrap();
    let rest = sse_events(&mut resumed, 2).await;
    let ids: Vec<&str> = rest.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids, vec![events[2].1.as_str(), events[3].1.as_str()]);
    // And it goes on live.
    grant_and_revoke(&app, "st-1").await;
    let more = sse_events(&mut resumed, 2).await;
    assert_eq!(more[0].1, "5");
    assert_eq!(more[1].1, "6");
    assert_error(open(Some("not-a-seq")).await.unwrap(), 422, "invalid_query").await;
}
