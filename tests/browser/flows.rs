//! Steps several journeys share: signing in through the Auth service's link, choosing a plan and
//! paying on the simulator's hosted Checkout page.

use crate::harness::{Journey, owner_date};

/// Opens the one-time sign-in link the platform's Auth service hands out; the person lands on
/// the plans page, signed in, and the token is gone from the address bar.
pub async fn sign_in_by_handoff(j: &Journey, user: &str, email: &str, admin: bool) {
    let b = &j.browser;
    b.open(&j.app.handoff_url(user, email, admin)).await;
    let url = b.wait_for_page("/").await;
    assert!(
        !url.as_str().contains("token="),
        "the sign-in token is left in the address bar: {url}"
    );
    let line = b.text("main > p.muted").await;
    assert!(
        line.contains(&format!("Signed in as {user}")),
        "the plans page does not say who is signed in: {line:?}"
    );
    b.assert_fits_phone("the plans page").await;
}

/// On the plans page, presses "Choose <plan>" and checks the simulator's Checkout page offers
/// that plan; leaves the browser there.
pub async fn choose_plan(j: &Journey, plan: &str) {
    let b = &j.browser;
    b.press(&format!("Choose {plan}")).await;
    b.wait_for_page_under("/_stripe/c/pay/cs_").await;
    let heading = b.text("h1").await;
    assert!(
        heading.starts_with("Subscribe to"),
        "the Checkout page's heading is {heading:?}"
    );
    let every = if plan == "weekly" { "week" } else { "month" };
    let offer = b.text(".card").await;
    assert!(
        offer.contains(&format!("/ {every}")),
        "the Checkout page does not bill every {every}: {offer:?}"
    );
}

/// On the Checkout page, picks the Visa that always succeeds and presses Pay.
pub async fn pay_with_visa(j: &Journey) {
    let b = &j.browser;
    b.find("select#card")
        .await
        .select_by_value("visa")
        .await
        .expect("the Visa test card can be picked");
    b.press("Pay").await;
}

/// On the return page, waits for "You're all set" and checks the status names the renewal date
/// the simulator has; returns the status line.
pub async fn wait_until_all_set(j: &Journey, user: &str) -> String {
    let b = &j.browser;
    b.wait_for_text("#return-status", "You're all set").await;
    let status = b.text("#return-status .status").await;
    let renews = owner_date(j.app.period_end(user).await);
    assert_eq!(status, format!("Active — renews {renews}"));
    b.assert_fits_phone("the return page").await;
    status
}

/// Signs a new owner in and subscribes them to `plan` with a Visa, all through the pages; ends
/// on the return page showing "You're all set". Screenshots are named `<step>-…`.
pub async fn subscribe(j: &Journey, user: &str, email: &str, plan: &str) {
    let b = &j.browser;
    sign_in_by_handoff(j, user, email, false).await;
    b.shot("plans").await;
    choose_plan(j, plan).await;
    b.shot("checkout").await;
    pay_with_visa(j).await;
    b.wait_for_page("/billing/return").await;
    wait_until_all_set(j, user).await;
    b.shot("return-all-set").await;
}
