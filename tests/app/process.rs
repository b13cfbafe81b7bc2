//! The real binary, as an operator starts it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_msr-billing"));
    cmd.env_clear().env("NO_COLOR", "1");
    cmd
}

/// Runs the binary to its exit with the given variables; returns (exit success, stderr).
fn start_and_fail(vars: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = binary();
    cmd.current_dir(dir.path())
        .env("MSR_LISTEN_ADDR", "127.0.0.1:0");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_values_stop_start_up_with_one_line_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("MSR_DEBUG", "maybe")], "MSR_DEBUG"),
        (
            &[("FRONTEND_RETURN_URL", "::not a url")],
            "FRONTEND_RETURN_URL",
        ),
        (
            &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
            "DATABASE_URL",
        ),
        (&[("STRIPE_API_KEY", "sk_test_x")], "MSR_INTERNAL_API_KEY"),
        (
            &[("STRIPE_API_KEY", "sk_live_x"), ("MSR_DEBUG", "true")],
            "STRIPE_API_KEY",
        ),
    ];
    for (vars, named) in cases {
        let (ok, stderr) = start_and_fail(vars);
        assert!(!ok, "{vars:?} should stop start-up");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {vars:?}: {stderr}");
        assert!(lines[0].contains(named), "{named} named in {stderr}");
    }
}

#[test]
fn a_live_key_with_debug_names_both_variables() {
    let (_, stderr) = start_and_fail(&[("STRIPE_API_KEY", "sk_live_x"), ("MSR_DEBUG", "true")]);
    assert!(
        stderr.contains("MSR_DEBUG") && stderr.contains("STRIPE_API_KEY"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("sk_live_x"),
        "the key itself never appears: {stderr}"
    );
}

/// A bare start in a fresh directory, its standard output read line by line on a thread.
struct Started {
    dir: tempfile::TempDir,
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

fn start_bare() -> Started {
    let dir = tempfile::tempdir().unwrap();
    let mut child = binary()
        .current_dir(dir.path())
        .env("MSR_LISTEN_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Started { dir, child, lines }
}

#[test]
fn a_bare_start_serves_on_sqlite_in_demo_mode_and_stops_on_sigterm() {
    let Started {
        dir,
        mut child,
        lines,
    } = start_bare();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = Vec::new();
    let port = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("server logs its port");
        log.push(line.clone());
        if let Some(p) = line.split("port=").nth(1) {
            break p.trim().parse::<u16>().unwrap();
        }
    };
    let text = log.join("\n");
    assert!(
        text.contains("SIMULATED"),
        "demo mode says payments are simulated: {text}"
    );
    assert!(
        text.contains("MSR_DEBUG"),
        "debug mode is announced: {text}"
    );
    let health = reqwest::blocking_get(&format!("http://127.0.0.1:{port}/readyz"));
    assert_eq!(health, 200);
    assert!(
        dir.path().join("msr.db").exists(),
        "the default SQLite file is made in the working directory"
    );
    // SIGTERM: graceful shutdown, exit 0.
    unsafe_kill_term(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// A SIGTERM that comes while the service is still starting (here: as soon as it logs its
/// first line, while it migrates) stops it cleanly once it is up, instead of killing it with the
/// signal's default action. Before the handlers were installed first thing, this died of
/// signal 15, and so, now and then under load, did the test above.
#[test]
fn a_sigterm_during_start_up_stops_the_service_cleanly() {
    let Started {
        dir: _dir,
        mut child,
        lines,
    } = start_bare();
    let first = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the service logs while it starts");
    unsafe_kill_term(child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(
        status.success(),
        "{status:?}; first line {first}; then {rest:?}"
    );
}

fn unsafe_kill_term(pid: u32) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

mod reqwest {
    /// A tiny blocking GET over a raw socket, so this test needs no async runtime.
    pub fn blocking_get(url: &str) -> u16 {
        use std::io::{Read, Write};
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap();
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split(' ').nth(1).unwrap().parse().unwrap()
    }
}
