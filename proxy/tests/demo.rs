//! `switchyard demo` end to end: the real binary runs the whole drill on loopback, exits 0 by
//! itself, and reports a failover with no failed request when the primary is killed.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(90);

fn read_all(mut from: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut out = String::new();
        let _ = from.read_to_string(&mut out);
        out
    })
}

#[test]
fn demo_runs_the_drill_and_fails_over_without_errors() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchyard demo");
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let stderr = read_all(child.stderr.take().expect("stderr"));

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the demo") {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    let shown = format!("--- stdout ---\n{out}\n--- stderr ---\n{err}");
    let status =
        status.unwrap_or_else(|| panic!("the demo did not end within {TIMEOUT:?}\n{shown}"));
    assert!(status.success(), "demo exited with {status}\n{shown}");

    for phase in [
        "warm-up",
        "kill westus",
        "restart westus",
        "blackhole westus",
        "heal westus",
        "drill via the admin switchboard",
        "write failover",
    ] {
        assert!(
            out.contains(&format!("== {phase}")),
            "phase {phase:?} missing\n{shown}"
        );
    }
    assert!(
        out.contains("-> failover to northeurope in "),
        "no failover line\n{shown}"
    );
    assert!(
        out.contains("-> failback to westus in "),
        "no failback line\n{shown}"
    );
    assert!(
        out.contains("curl -s -X POST http://127.0.0.1:"),
        "no admin call shown\n{shown}"
    );
    assert!(
        !out.contains('\x1b'),
        "colors in non-terminal output\n{shown}"
    );

    // The summary row: "  kill westus   REQUESTS  ERRORS  served by ...  failover N ms"
    let summary = out
        .split("\nSummary\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary\n{shown}"));
    let kill = summary
        .lines()
        .find(|l| l.trim_start().starts_with("kill westus"))
        .unwrap_or_else(|| panic!("no kill row in the summary\n{shown}"));
    let fields: Vec<&str> = kill.split_whitespace().collect();
    let requests: u64 = fields[2]
        .parse()
        .unwrap_or_else(|_| panic!("requests in {kill:?}"));
    let errors: u64 = fields[3]
        .parse()
        .unwrap_or_else(|_| panic!("errors in {kill:?}"));
    assert!(
        requests > 100,
        "too little traffic in the kill phase: {kill:?}\n{shown}"
    );
    assert_eq!(
        errors, 0,
        "failed requests while westus was killed: {kill:?}\n{shown}"
    );
    assert!(
        kill.contains("failover "),
        "no failover time in {kill:?}\n{shown}"
    );
}
