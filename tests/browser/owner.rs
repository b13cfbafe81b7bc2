//! The truck owner's journeys: subscribing, the return page confirming by itself, cancelling in
//! the portal, and what a signed-out browser gets.

use msr_stripe_sim::Fault;

use crate::flows::{self, choose_plan, pay_with_visa, sign_in_by_handoff, wait_until_all_set};
use crate::harness::{Journey, PHONE, owner_date};

/// The return page's own look-up at Stripe (the success-page sync).
const CHECKOUT_SESSIONS: &str = "/v1/checkout/sessions";

/// Marks the document if — in the same instant — it says it is still confirming, so a later
/// check of the mark proves "You're all set" arrived in this very document (an htmx swap), not
/// by a reload.
const MARK_WHILE_CONFIRMING: &str = "const s = document.querySelector('#return-status');
    if (s && s.textContent.includes('Confirming your payment')) { window.__journeyMark = true; return true; }
    return false;";

/// Counts the htmx requests the page has finished (the return page's polls).
const COUNT_POLLS: &str = "window.__polls = 0;
    document.body.addEventListener('htmx:afterRequest', () => { window.__polls += 1; });";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_pays_monthly_and_sees_it_active_without_reloading() {
    Journey::run("subscribe", async |j| {
        let b = &j.browser;
        let sim = j.app.sim();
        sign_in_by_handoff(j, "owner-1", "owner1@example.com", false).await;
        assert_eq!(
            b.viewport_width().await,
            u64::from(PHONE.0),
            "the pages are not looked at phone-sized"
        );
        b.shot("plans").await;
        let plans = b.all("section.plan").await;
        assert_eq!(plans.len(), 2, "the plans page shows two plans");
        for (plan, title, every) in [
            ("weekly", "Weekly", "week"),
            ("monthly", "Monthly", "month"),
        ] {
            let card = format!("section.plan:has(input[value={plan}])");
            let price = b.text(&format!("{card} .price")).await;
            assert!(
                price.chars().any(|c| c.is_ascii_digit()) && price.ends_with(&format!("/ {every}")),
                "the {plan} card's price reads {price:?}"
            );
            let card = b.text(&card).await;
            assert!(card.contains(title), "the {plan} card reads {card:?}");
            assert!(
                card.contains(&format!("Choose {plan}")),
                "the {plan} card has no button: {card:?}"
            );
        }

        choose_plan(j, "monthly").await;
        b.shot("checkout").await;
        // Stripe is slow to confirm: no webhook yet, and the return page's own look-up fails
        // once, so the page has to say it is still confirming.
        sim.set_fault(Fault::PauseDeliveries).await;
        sim.set_fault(Fault::ApiErrors {
            count: 1,
            path_prefix: Some(CHECKOUT_SESSIONS.into()),
        })
        .await;
        pay_with_visa(j).await;
        // The page is loaded now; its first poll answers slowly (but right), which leaves time to
        // see and mark the "Confirming" state whatever the load on this machine.
        sim.set_fault(Fault::ApiHang {
            count: 1,
            path_prefix: Some(CHECKOUT_SESSIONS.into()),
            delay_ms: 3000,
        })
        .await;
        let url = b.wait_for_page("/billing/return").await;
        assert!(
            url.query().is_some_and(|q| q.contains("session_id=cs_")),
            "the return page does not name the Checkout session: {url}"
        );
        b.wait_for_script(
            "the return page saying it is confirming",
            MARK_WHILE_CONFIRMING,
        )
        .await;
        b.assert_fits_phone("the return page").await;
        b.shot("return-confirming").await;

        let status = wait_until_all_set(j, "owner-1").await;
        assert!(
            b.same_document().await,
            "the return page reloaded instead of updating in place"
        );
        assert_eq!(b.url().await, url, "the return page moved elsewhere");
        assert!(status.starts_with("Active — renews"));
        b.shot("return-all-set").await;

        sim.clear_faults().await;
        j.app.settle().await;
        b.follow("Go to your account").await;
        b.wait_for_page("/account").await;
        let summary = b.text(".card .big .status").await;
        assert_eq!(
            summary, status,
            "the account page disagrees with the return page"
        );
        let card = b.text("main .card").await;
        assert!(
            card.contains("Plan: monthly"),
            "the account page reads {card:?}"
        );
        b.assert_fits_phone("the account page").await;
        b.shot("account").await;
    })
    .await;
}

/// The return page keeps asking every second until Stripe confirms; a webhook that arrives after
/// a few polls must still turn the page to "You're all set", without any error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_return_page_turns_active_when_a_late_webhook_arrives() {
    Journey::run("late-webhook", async |j| {
        let b = &j.browser;
        let sim = j.app.sim();
        sign_in_by_handoff(j, "owner-5", "owner5@example.com", false).await;
        choose_plan(j, "weekly").await;
        // Stripe's API stays unreachable and the webhook is held back.
        sim.set_fault(Fault::PauseDeliveries).await;
        sim.set_fault(Fault::ApiErrors {
            count: 10_000,
            path_prefix: Some(CHECKOUT_SESSIONS.into()),
        })
        .await;
        pay_with_visa(j).await;
        b.wait_for_page("/billing/return").await;
        b.wait_for_script(
            "the return page saying it is confirming",
            MARK_WHILE_CONFIRMING,
        )
        .await;
        b.client
            .execute(COUNT_POLLS, vec![])
            .await
            .expect("running a script");
        b.wait_for_script(
            "three polls of the return page",
            "return window.__polls >= 3;",
        )
        .await;
        b.shot("still-confirming").await;
        // The webhook arrives; the next poll shows it.
        sim.clear_faults().await;
        wait_until_all_set(j, "owner-5").await;
        assert!(b.same_document().await, "the return page reloaded");
        let toasts = b.text("#toasts").await;
        assert!(
            toasts.is_empty(),
            "polling the return page showed errors: {toasts:?}"
        );
        b.shot("all-set").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_cancels_at_period_end_in_the_portal_and_sees_the_end_date() {
    Journey::run("cancel", async |j| {
        let b = &j.browser;
        flows::subscribe(j, "owner-2", "owner2@example.com", "monthly").await;
        let end = owner_date(j.app.period_end("owner-2").await);

        b.open("/account").await;
        let status = b.text(".card .big .status").await;
        assert_eq!(status, format!("Active — renews {end}"));
        b.shot("account-active").await;

        b.press("Open billing portal").await;
        b.wait_for_page_under("/_stripe/p/session/bps_").await;
        b.wait_for_text("body", "Manage your subscription").await;
        b.shot("portal").await;
        b.press("Cancel at period end").await;
        let notice = b
            .wait_for_text("[role=status]", "will cancel at the end of the period")
            .await;
        assert!(notice.contains("Subscription will cancel"), "{notice:?}");
        b.wait_for_text("body", "Cancels at the end of the period.")
            .await;
        b.find("button[value=undo_cancel]").await;
        b.shot("portal-canceling").await;

        // A person reads the portal for a moment; the webhook lands meanwhile.
        j.app.settle().await;
        b.follow("Return").await;
        b.wait_for_page("/account").await;
        let status = b.text(".card .big .status").await;
        assert_eq!(status, format!("Active — ends on {end}"));
        b.assert_fits_phone("the account page").await;
        b.shot("account-ends").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_browser_opening_the_account_lands_on_sign_in() {
    Journey::run("signed-out", async |j| {
        let b = &j.browser;
        b.open("/account").await;
        b.wait_for_page("/auth/signin").await;
        assert_eq!(b.text("main h1").await, "Sign in");
        assert!(
            b.text("main")
                .await
                .contains("Open billing from the My Smart Road app"),
            "the sign-in page does not say how to sign in"
        );
        let nav = b.text("header nav").await;
        assert!(
            !nav.contains("Account") && !nav.contains("Sign out"),
            "a signed-out header offers {nav:?}"
        );
        b.assert_fits_phone("the sign-in page").await;
        b.shot("signin").await;
    })
    .await;
}
