//! Durability of `cordon serve`, with the real `cordon` binary: a file answered with a
//! `data_id` is never lost. The server is killed with SIGKILL while scans run, started again
//! on the same data directory, and every accepted file reaches a final result; then SIGTERM
//! stops it cleanly.
//!
//! This test lives in the `cordon` package because only the package that defines a binary
//! can name it (`CARGO_BIN_EXE_cordon`); the other server tests are in the `tests` crate
//! (`tests/integration/server.rs`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous: a slow machine must not fail this test.
const DEADLINE: Duration = Duration::from_secs(180);

const CLEAN: &str = r#"{"def_time": 1700000000000, "scan_result_i": 0, "threat_found": ""}"#;
const INFECTED: &str =
    r#"{"def_time": 1700000000000, "scan_result_i": 1, "threat_found": "wrong content"}"#;

/// What `fileN.txt` holds: `file number N`; the last one is padded with newlines (which the
/// scanner's `$(cat)` drops) past the size kept in the database, so that it goes to the file
/// store: both kinds of storage are killed mid-scan.
fn body(i: usize) -> String {
    let mut body = format!("file number {i}");
    if i == 7 {
        body.push_str(&"\n".repeat(cordon::store::files::INLINE_MAX as usize + 1));
    }
    body
}

/// Start `cordon serve` and return it with its base URL (read from its stderr).
fn start(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .arg("serve")
        .arg("--config")
        .arg(dir.join("cordon.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cordon starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Keep draining stderr so that the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[cordon] {line}");
            if let Some(url) = line.strip_prefix("cordon: listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(DEADLINE)
        .expect("the server says where it listens");
    (child, url)
}

async fn result(client: &reqwest::Client, base: &str, id: &str) -> Option<Value> {
    let resp = client.get(format!("{base}/file/{id}")).send().await.ok()?;
    resp.json().await.ok()
}

fn is_final(v: &Value) -> bool {
    v["process_info"]["progress_percentage"] == 100
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_scan_loses_no_accepted_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("slow.sh");
    std::fs::write(
        &script,
        // Clean only if the file it is given is the one submitted under that name
        // (`fileN.txt` holds `file number N`): samples survive the kill whole and in place.
        format!(
            "#!/bin/sh\nsleep 1\nn=$(basename \"$1\" .txt)\n\
             if [ \"$(cat \"$1\")\" = \"file number ${{n#file}}\" ]; then printf '%s' '{CLEAN}'; \
             else printf '%s' '{INFECTED}'; fi\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.path().join("cordon.toml"),
        format!(
            r#"
            [server]
            workers = 2
            [[plugin]]
            name = "Slow"
            role = "scanner"
            runtime = "process"
            command = "{}"
            inherit_env = ["PATH"]
            [[workflow]]
            name = "w"
            scanners = ["Slow"]
            "#,
            script.display()
        ),
    )
    .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let (mut server, base) = start(dir.path());
    let mut ids = Vec::new();
    for i in 0..8 {
        let resp = client
            .post(format!("{base}/file"))
            .header("filename", format!("file{i}.txt"))
            .body(body(i))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        ids.push(v["data_id"].as_str().unwrap().to_owned());
    }
    // Kill it once some scans are done and others are not (or, on a very slow machine, as
    // soon as the first is done).
    let started = Instant::now();
    let mut done_before = Vec::new();
    loop {
        done_before.clear();
        for id in &ids {
            if let Some(v) = result(&client, &base, id).await
                && is_final(&v)
            {
                done_before.push((id.clone(), v));
            }
        }
        if !done_before.is_empty() {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "no scan finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    eprintln!(
        "killed with {} of {} files done",
        done_before.len(),
        ids.len()
    );

    let (mut server, base) = start(dir.path());
    let started = Instant::now();
    for id in &ids {
        loop {
            let v = result(&client, &base, id).await.expect("an answer");
            assert_ne!(v[id.as_str()], "Not Found", "{id} was lost");
            if is_final(&v) {
                assert_eq!(v["scan_results"]["scan_all_result_i"], 0, "{v}");
                assert_eq!(
                    v["scan_results"]["scan_details"]["Slow"]["scan_result_i"], 0,
                    "{v}"
                );
                break;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{id} never finished after the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Results finished before the kill are unchanged.
    for (id, before) in &done_before {
        assert_eq!(&result(&client, &base, id).await.unwrap(), before);
    }

    // SIGTERM: a clean exit.
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&server),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
