//! The developer's journey through `/dev`: a test user, a subscription, a failed renewal.

use crate::flows::{choose_plan, pay_with_visa, wait_until_all_set};
use crate::harness::Journey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_fails_a_test_users_renewal_and_sees_past_due() {
    Journey::run("devtools", async |j| {
        let b = &j.browser;
        b.open("/dev").await;
        assert!(b.text("main h1").await.starts_with("Dev tools"));
        b.shot("tools").await;

        // A new test user, signed in as them.
        b.type_into("#new_id", "dev-1").await;
        b.type_into("#new_email", "dev1@example.com").await;
        b.press("Create and sign in").await;
        b.wait_for_page("/dev").await;
        let status = b.wait_for_text("#dev-status", "dev-1").await;
        assert!(
            status.contains("not entitled"),
            "a new user is already entitled: {status:?}"
        );
        let nav = b.text("header nav").await;
        assert!(
            nav.contains("Sign out"),
            "not signed in as the new user: {nav:?}"
        );
        b.shot("created").await;

        // They subscribe like an owner would.
        b.follow("Plans").await;
        b.wait_for_page("/").await;
        b.shot("plans").await;
        choose_plan(j, "weekly").await;
        b.shot("checkout").await;
        pay_with_visa(j).await;
        b.wait_for_page("/billing/return").await;
        wait_until_all_set(j, "dev-1").await;
        b.shot("return-all-set").await;
        j.app.settle().await;

        // Back in the dev tools: look them up, then break their next renewal.
        b.follow("Dev tools").await;
        b.wait_for_page("/dev").await;
        b.mark_document().await;
        b.type_into("#lookup", "dev-1").await;
        b.press("Show status").await;
        let status = b
            .wait_for_text("#dev-status", "Simulator controls for sub_")
            .await;
        assert!(status.contains("active — entitled"), "{status:?}");
        assert_eq!(b.text("#dev-status .status").await, "active");
        b.shot("lookup").await;

        b.press_in("#dev-status", "Fail next renewal").await;
        b.wait_for_text("#dev-status .note", "The next renewal will fail.")
            .await;
        b.shot("fail-armed").await;
        b.press_in("#dev-status", "Advance clock to renewal").await;
        b.wait_for_text("#dev-status .note", "Clock moved to the renewal")
            .await;
        b.wait_for_text("#dev-status .status", "past_due").await;
        assert!(
            b.same_document().await,
            "the dev tools reloaded instead of updating the status in place"
        );
        let toasts = b.text("#toasts").await;
        assert!(toasts.is_empty(), "the dev tools show errors: {toasts:?}");
        b.shot("past-due").await;
    })
    .await;
}
