//! Support's journeys: finding an owner and reading their timeline; the admin pages refusing an
//! owner.

use crate::flows::{self, sign_in_by_handoff};
use crate::harness::Journey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_finds_an_owner_by_email_prefix_and_reads_their_event_timeline() {
    Journey::run("admin", async |j| {
        let b = &j.browser;
        // An owner pays (on this same phone), then signs out and hands it to support.
        flows::subscribe(j, "owner-3", "owner3@example.com", "monthly").await;
        j.app.settle().await;
        b.press("Sign out").await;
        b.wait_for_page("/auth/signin").await;
        b.shot("signed-out").await;
        sign_in_by_handoff(j, "ops-1", "ops1@example.com", true).await;
        b.shot("support-plans").await;

        b.follow("Admin").await;
        b.wait_for_page("/admin").await;
        assert_eq!(b.text("main h1").await, "Subscriptions");
        let counts = b.text("ul.counts").await;
        assert!(
            counts.contains("active 1") && counts.contains("all 2"),
            "the counts read {counts:?}"
        );
        assert_eq!(
            b.all("#users tbody tr").await.len(),
            2,
            "both users are listed"
        );
        b.shot("dashboard").await;

        b.mark_document().await;
        b.type_into("#q", "owner3").await;
        b.wait_for_script(
            "the user table to show only the owner",
            "const rows = document.querySelectorAll('#users tbody tr');
             return rows.length === 1 && rows[0].textContent.includes('owner3@example.com');",
        )
        .await;
        assert!(b.same_document().await, "the search reloaded the page");
        let row = b.text("#users tbody tr").await;
        assert!(
            row.contains("owner-3") && row.contains("active") && row.contains("monthly"),
            "the owner's row reads {row:?}"
        );
        let url = b.url().await;
        assert!(
            url.query().is_some_and(|q| q.contains("q=owner3")),
            "the search is not in the address bar (to share or go back to): {url}"
        );
        b.shot("search").await;

        b.follow("owner-3").await;
        b.wait_for_page("/admin/users/owner-3").await;
        assert_eq!(b.text("main h1").await, "owner-3");
        let summary = b.text("main .card .big").await;
        assert!(
            summary.starts_with("active — entitled (reason active"),
            "the owner's entitlement reads {summary:?}"
        );
        let facts = b.text("dl.facts").await;
        assert!(
            facts.contains("Stripe customer") && facts.contains("cus_"),
            "no Stripe customer among the facts: {facts:?}"
        );
        let timeline = b.text("table.events tbody").await;
        assert!(
            timeline.contains("checkout.session.completed"),
            "the event timeline lacks the checkout: {timeline:?}"
        );
        // Every event was handled: applied, or skipped because something newer about the
        // subscription had been applied already (Stripe does not deliver in order, so which
        // events are the skipped ones depends on timing). None failed or waits.
        let mut applied = 0;
        for result in b.all("table.events .result").await {
            let result = result.text().await.expect("an event's result");
            assert!(
                result == "applied" || result == "skipped",
                "an event of the owner's timeline reads {result:?}: {timeline:?}"
            );
            applied += usize::from(result == "applied");
        }
        assert!(
            applied > 0,
            "no event of the timeline applied: {timeline:?}"
        );
        assert!(
            b.text("ul.plain").await.contains("No admin action yet."),
            "the audit log is not empty"
        );
        b.shot("user").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_opening_the_admin_pages_is_not_allowed() {
    Journey::run("forbidden", async |j| {
        let b = &j.browser;
        sign_in_by_handoff(j, "owner-4", "owner4@example.com", false).await;
        b.shot("plans").await;
        let nav = b.text("header nav").await;
        assert!(
            !nav.contains("Admin"),
            "an owner is offered the admin pages: {nav:?}"
        );
        b.open("/admin").await;
        assert_eq!(b.text("main h1").await, "Not allowed");
        assert!(
            b.text("main")
                .await
                .contains("admin pages are for support staff"),
            "the 403 page does not say why"
        );
        assert!(
            b.client
                .title()
                .await
                .expect("a title")
                .starts_with("Not allowed"),
            "the tab's title does not say it"
        );
        b.assert_fits_phone("the 403 page").await;
        b.shot("admin-403").await;
        b.open("/admin/users/owner-4").await;
        assert_eq!(b.text("main h1").await, "Not allowed");
        b.shot("admin-user-403").await;
    })
    .await;
}
