//! Runs the official-library suite (`tests/python`, Stripe's own Python library plus
//! pytest) against a simulator on port 0. Without python3, `stripe` or `pytest` it
//! prints `SKIPPED python official-library suite: <why>` and passes — unless
//! `MSR_TEST_REQUIRE_ALL=1`, where a skip is a failure (CI installs
//! `tests/python/requirements.txt`).

use std::process::Command;

use msr_stripe_sim::{SimConfig, Simulator};

fn skip(why: &str) {
    if std::env::var("MSR_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("python official-library suite required (MSR_TEST_REQUIRE_ALL=1) but: {why}");
    }
    // Straight to stderr, past the test harness's capture (it takes `println!` and shows it only
    // for a failed test): a skip must show in a plain `cargo test`.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED python official-library suite: {why}"
    );
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_library_runs_the_billing_journeys() {
    let probe = Command::new(python())
        .args(["-c", "import stripe, pytest; print(stripe.VERSION)"])
        .output();
    match probe {
        Err(e) => return skip(&format!("{} not runnable ({e})", python())),
        Ok(out) if !out.status.success() => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("import failed").to_string();
            return skip(&format!(
                "{last} (pip install -r stripe-sim/tests/python/requirements.txt)"
            ));
        }
        Ok(_) => {}
    }
    let h = Simulator::spawn(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = h.base_url.clone();
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", suite])
            .env("STRIPE_SIM_BASE", &base)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pytest failed:\n{stdout}");
    h.shutdown().await;
}
