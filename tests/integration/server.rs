//! `cordon serve` over real HTTP on a loopback port: the submit and poll cycle for each
//! runtime, every error path, auth and per-key visibility, callbacks with retries, cancel,
//! inventory changes at run time, metrics, and a field-by-field check of the result against
//! what strict public clients require (`metadefender-compat.md` section 5).
//!
//! The servers run in this process (`cordon::server::spawn`). The SIGKILL durability test
//! needs the real `cordon` binary, which only the `cordon` package's own tests can name
//! (`CARGO_BIN_EXE_cordon`): it lives in `host/tests/serve_durability.rs`.

mod util;

use reqwest::Method;
use serde_json::{Value, json};
use util::*;

/// Plugins of each runtime and a workflow per runtime; `{webhook}` is the scanning endpoint.
const RUNTIMES_CONFIG: &str = r#"
default_workflow = "all"

[server]
workers = 2
max_queue = 50

[[plugin]]
name = "WasmClean"
role = "scanner"
runtime = "wasm"
module = "{dir}/clean.wasm"

[[plugin]]
name = "Script"
role = "scanner"
runtime = "process"
command = "{dir}/scan.sh"
inherit_env = ["PATH"]

[[plugin]]
name = "Remote"
role = "scanner"
runtime = "webhook"
url = "http://{webhook}/scan"

[[plugin]]
name = "Notify"
role = "post_action"
runtime = "process"
command = "{dir}/post.sh"
inherit_env = ["PATH"]

[[workflow]]
name = "all"
scanners = ["WasmClean", "Script", "Remote"]
post_actions = ["Notify"]

[[workflow]]
name = "wasm"
scanners = ["WasmClean"]

[[workflow]]
name = "process"
scanners = ["Script"]

[[workflow]]
name = "webhook"
scanners = ["Remote"]

[[workflow]]
name = "tiny"
scanners = ["Script"]
max_file_size_bytes = 10
"#;

async fn runtimes_server(extra_server: &str) -> TestServer {
    let (addr, _) = endpoint(vec![200], CLEAN).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clean.wasm"), wasm_printing(CLEAN)).unwrap();
    scanner_script(dir.path(), "scan.sh", 0);
    write_script(dir.path(), "post.sh", "exit 0");
    let config = RUNTIMES_CONFIG
        .replace("{webhook}", &addr.to_string())
        .replace("[server]\n", &format!("[server]\n{extra_server}\n"));
    TestServer::start_in(dir, &config).await
}

/// Whether native plugins' results hold their most processes at once: they run in cgroups,
/// and the kernel keeps `pids.peak` (Linux 6.1).
fn keeps_peak_processes() -> bool {
    cordon::executor::cgroup::cgroups().is_ok_and(|c| c.dir().join("pids.peak").exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_and_poll_each_runtime() {
    let s = runtimes_server("").await;
    for (rule, engine) in [
        ("wasm", "WasmClean"),
        ("process", "Script"),
        ("webhook", "Remote"),
    ] {
        let id = s
            .submit_ok(b"hello world", &[("filename", "hello.txt"), ("rule", rule)])
            .await;
        let r = s.wait_final(&id, None).await;
        assert_eq!(r["data_id"], id.as_str());
        assert_eq!(r["process_info"]["profile"], rule);
        assert_eq!(r["process_info"]["result"], "Allowed", "{r}");
        assert_eq!(r["scan_results"]["scan_all_result_i"], 0, "{r}");
        let details = r["scan_results"]["scan_details"].as_object().unwrap();
        assert_eq!(details.keys().collect::<Vec<_>>(), vec![engine], "{r}");
        assert_eq!(details[engine]["scan_result_i"], 0, "{r}");
        // Each engine's peak memory where its runtime measures it: a wasm plugin's linear
        // memory, a process's memory cgroup where it has one and the kernel keeps its peak;
        // no field for a webhook.
        let peak = &details[engine]["peak_memory_bytes"];
        if rule == "wasm" || (rule == "process" && crate::harness::native_peaks_measured()) {
            assert!(peak.as_u64().is_some_and(|b| b > 0), "{rule}: {r}");
        } else {
            assert!(peak.is_null(), "{rule}: {r}");
        }
        // And a native plugin's most processes at once, where its cgroup keeps it: the
        // script's shell and the `sleep` or `grep` it waits for.
        let processes = &details[engine]["peak_processes"];
        if rule == "process" && keeps_peak_processes() {
            assert_eq!(processes.as_u64(), Some(2), "{rule}: {r}");
        } else {
            assert!(processes.is_null(), "{rule}: {r}");
        }
        assert_eq!(r["file_info"]["display_name"], "hello.txt");
        // The same result under every path clients use.
        for path in [
            format!("/process/{id}"),
            format!("/metascan_rest/file/{id}"),
        ] {
            let (status, same) = s.get(&path, None).await;
            assert_eq!(status, 200);
            assert_eq!(same, r, "{path}");
        }
    }
    // A finding blocks the file; the `workflow` header is the old alias of `rule`.
    let id = s
        .submit_ok(
            b"some EVIL content",
            &[("workflow", "process"), ("filename", "evil%20file.bin")],
        )
        .await;
    let r = s.wait_final(&id, None).await;
    assert_eq!(r["process_info"]["result"], "Blocked", "{r}");
    assert_eq!(r["scan_results"]["scan_all_result_i"], 1);
    assert_eq!(
        r["scan_results"]["scan_details"]["Script"]["threat_found"],
        "Test.Evil"
    );
    assert_eq!(r["file_info"]["display_name"], "evil file.bin");
    // The default workflow runs every runtime and the post action.
    let id = s.submit_ok(b"hello", &[]).await;
    let r = s.wait_final(&id, None).await;
    assert_eq!(r["process_info"]["profile"], "all");
    assert_eq!(
        r["scan_results"]["scan_details"].as_object().unwrap().len(),
        3,
        "{r}"
    );
    assert_eq!(
        r["process_info"]["post_processing"]["actions_ran"], "Notify",
        "{r}"
    );
    // /hash finds the most recent result of a file by any of its hashes.
    for hash in ["md5", "sha1", "sha256"] {
        let h = r["file_info"][hash].as_str().unwrap();
        let (status, by_hash) = s.get(&format!("/hash/{h}"), None).await;
        assert_eq!(status, 200);
        assert_eq!(by_hash["data_id"], id.as_str(), "{hash}");
        let (_, legacy) = s.get(&format!("/metascan_rest/hash/{h}"), None).await;
        assert_eq!(legacy["data_id"], id.as_str());
    }
    // What the server has.
    let (status, rules) = s.get("/file/rules", None).await;
    assert_eq!(status, 200);
    let rules = rules.as_array().unwrap();
    assert_eq!(rules[0]["name"], "all", "the default comes first");
    assert!(
        rules
            .iter()
            .any(|r| r["name"] == "tiny" && r["max_file_size"] == 10)
    );
    let (status, engines) = s.get("/stat/engines", None).await;
    assert_eq!(status, 200);
    let engines = engines.as_array().unwrap();
    assert_eq!(engines.len(), 4);
    for e in engines {
        for (field, ty) in [
            ("active", "bool"),
            ("def_time", "string"),
            ("download_progress", "integer"),
            ("download_time", "string"),
            ("eng_id", "string"),
            ("eng_name", "string"),
            ("eng_type", "string"),
            ("eng_ver", "string"),
            ("engine_type", "string"),
            ("state", "string"),
            ("type", "string"),
            ("runtime", "string"),
        ] {
            assert_type(e, field, ty);
        }
    }
    let wasm = engines
        .iter()
        .find(|e| e["eng_name"] == "WasmClean")
        .unwrap();
    assert_eq!(wasm["runtime"], "wasm");
    assert_eq!(wasm["eng_id"], "wasmclean_wasm");
    assert_eq!(wasm["sha256"].as_str().unwrap().len(), 64);
    let (status, version) = s.get("/version", None).await;
    assert_eq!(status, 200);
    assert_type(&version, "product_id", "string");
    assert_type(&version, "version", "string");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_carry_every_field_strict_clients_require() {
    let s = runtimes_server("").await;
    let metadata = json!({"source": "mail", "n": 1}).to_string();
    let id = s
        .submit_ok(
            b"%PDF-1.4 fake",
            &[
                ("filename", "r%C3%A9sum%C3%A9.pdf"),
                ("user_agent", "compat-test"),
                ("metadata", &metadata),
            ],
        )
        .await;
    let r = s.wait_final(&id, None).await;
    for (field, ty) in [
        ("data_id", "string"),
        ("file_info", "object"),
        ("process_info", "object"),
        ("scan_results", "object"),
        ("post_action", "object"),
        // file_info: all eight (C# and C++ clients).
        ("file_info.display_name", "string"),
        ("file_info.file_size", "integer"),
        ("file_info.file_type", "string"),
        ("file_info.file_type_description", "string"),
        ("file_info.md5", "string"),
        ("file_info.sha1", "string"),
        ("file_info.sha256", "string"),
        ("file_info.upload_timestamp", "string"),
        // process_info
        ("process_info.blocked_reason", "string"),
        ("process_info.blocked_reasons", "array"),
        ("process_info.file_type_skipped_scan", "bool"),
        ("process_info.profile", "string"),
        ("process_info.progress_percentage", "integer"),
        ("process_info.result", "string"),
        ("process_info.user_agent", "string"),
        ("process_info.username", "string"),
        ("process_info.verdicts", "array"),
        ("process_info.queue_time", "integer"),
        ("process_info.processing_time", "integer"),
        ("process_info.post_processing", "object"),
        ("process_info.post_processing.actions_failed", "string"),
        ("process_info.post_processing.actions_ran", "string"),
        (
            "process_info.post_processing.converted_destination",
            "string",
        ),
        ("process_info.post_processing.converted_to", "string"),
        (
            "process_info.post_processing.copy_move_destination",
            "string",
        ),
        // scan_results
        ("scan_results.data_id", "string"),
        ("scan_results.progress_percentage", "integer"),
        ("scan_results.scan_all_result_a", "string"),
        ("scan_results.scan_all_result_i", "integer"),
        ("scan_results.start_time", "string"),
        ("scan_results.total_avs", "integer"),
        ("scan_results.total_time", "integer"),
        ("scan_results.scan_details", "object"),
        // post_action
        ("post_action.details", "array"),
        ("post_action.total_blocked", "integer"),
        ("post_action.total_executed", "integer"),
        ("post_action.total_failed", "integer"),
        ("post_action.total_post_action", "integer"),
        ("post_action.total_success", "integer"),
    ] {
        assert_type(&r, field, ty);
    }
    for (name, engine) in r["scan_results"]["scan_details"].as_object().unwrap() {
        for (field, ty) in [
            ("def_time", "string"),
            ("scan_result_i", "integer"),
            ("scan_time", "integer"),
            ("threat_found", "string"),
            ("location", "string"),
            ("wait_time", "integer"),
            ("eng_id", "string"),
        ] {
            assert_type(engine, field, ty);
        }
        assert!(
            engine["def_time"].as_str().unwrap().ends_with(".000Z"),
            "{name}: ISO-8601 with milliseconds"
        );
    }
    for d in r["post_action"]["details"].as_array().unwrap() {
        for (field, ty) in [
            ("duration", "integer"),
            ("name", "string"),
            ("return_value", "integer"),
            ("verdict", "integer"),
        ] {
            assert_type(d, field, ty);
        }
    }
    let ts = r["file_info"]["upload_timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == 24, "ISO ms Z: {ts}");
    assert_eq!(r["file_info"]["display_name"], "résumé.pdf");
    assert_eq!(r["file_info"]["file_size"], 13);
    assert_eq!(r["file_info"]["md5"].as_str().unwrap().len(), 32);
    assert_eq!(r["file_info"]["sha1"].as_str().unwrap().len(), 40);
    assert_eq!(r["file_info"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(r["process_info"]["user_agent"], "compat-test");
    assert_eq!(r["process_info"]["blocked_reason"], "");
    assert_eq!(r["process_info"]["progress_percentage"], 100);
    assert_eq!(r["scan_results"]["progress_percentage"], 100);
    assert_eq!(r["scan_results"]["scan_all_result_a"], "No Threat Detected");
    assert_eq!(r["scan_results"]["total_avs"], 3);
    assert_eq!(r["scan_results"]["data_id"], id.as_str());
    assert_eq!(r["metadata"], json!({"source": "mail", "n": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_100_only_at_the_very_end() {
    let dir = tempfile::tempdir().unwrap();
    scanner_script(dir.path(), "slow.sh", 2);
    write_script(dir.path(), "post.sh", "sleep 1");
    let s = TestServer::start_in(
        dir,
        r#"
        [[plugin]]
        name = "Slow"
        role = "scanner"
        runtime = "process"
        command = "{dir}/slow.sh"
        inherit_env = ["PATH"]
        [[plugin]]
        name = "SlowPost"
        role = "post_action"
        runtime = "process"
        command = "{dir}/post.sh"
        inherit_env = ["PATH"]
        [[workflow]]
        name = "w"
        scanners = ["Slow"]
        post_actions = ["SlowPost"]
        "#,
    )
    .await;
    let id = s.submit_ok(b"data", &[]).await;
    // Poll until final: every intermediate answer is In Progress (checked by wait_final),
    // and a queued or running result already carries every required field.
    let (_, early) = s.get(&format!("/file/{id}"), None).await;
    if early["process_info"]["progress_percentage"] != 100 {
        assert_eq!(early["scan_results"]["scan_all_result_i"], 255, "{early}");
        assert_eq!(early["process_info"]["result"], "Processing");
        assert_type(&early, "file_info.sha256", "string");
        assert_type(&early, "process_info.post_processing.actions_ran", "string");
    }
    let r = s.wait_final(&id, None).await;
    assert_eq!(
        r["process_info"]["post_processing"]["actions_ran"], "SlowPost",
        "{r}"
    );
    assert_eq!(r["post_action"]["total_executed"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_path_answers_err_with_the_right_status() {
    let s = runtimes_server("").await;
    let err = |v: &Value| {
        v["err"]
            .as_str()
            .unwrap_or_else(|| panic!("no err in {v}"))
            .to_owned()
    };

    // 411: no Content-Length (a chunked body).
    let answer = raw_http(
        &s.base,
        "POST /file HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    assert!(
        answer.contains("{\"err\":\"Content-Length is required\"}"),
        "{answer}"
    );

    // 422: empty body.
    let answer = raw_http(
        &s.base,
        "POST /file HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    assert!(answer.contains("empty"), "{answer}");

    // Larger than the workflow allows.
    let resp = s.submit(b"eleven bytes", &[("rule", "tiny")]).await;
    assert_eq!(resp.status(), 400);
    let e = err(&resp.json().await.unwrap());
    assert!(e.contains("at most 10 bytes"), "{e}");

    // Unknown rule.
    let resp = s.submit(b"x", &[("rule", "No%20such%20rule")]).await;
    assert_eq!(resp.status(), 400);
    let e = err(&resp.json().await.unwrap());
    assert!(e.contains("Unknown rule \"No such rule\""), "{e}");

    // Bad headers.
    for (name, value, expect) in [
        ("filename", "bad%FFname", "filename"),
        ("filename", "a%0Ab", "control characters"),
        ("metadata", "{not json", "metadata"),
        ("filepath", "/etc/passwd", "not supported"),
        ("downloadfrom", "http://example.com/x", "not supported"),
        ("callbackurl", "ftp://127.0.0.1/x", "callbackurl"),
        (
            "content-type",
            "multipart/form-data; boundary=X",
            "Multipart",
        ),
        ("content-type", "Multipart/Mixed", "Multipart"),
    ] {
        let resp = s.submit(b"x", &[(name, value)]).await;
        assert_eq!(resp.status(), 400, "{name}: {value}");
        let e = err(&resp.json().await.unwrap());
        assert!(e.contains(expect), "{name}: {e}");
    }

    // Unknown ids and hashes: 200 {"<id>": "Not Found"}.
    for id in ["0123456789abcdef0123456789abcdef", "not-an-id"] {
        for path in [
            format!("/file/{id}"),
            format!("/process/{id}"),
            format!("/metascan_rest/file/{id}"),
        ] {
            let (status, v) = s.get(&path, None).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(v, json!({ id: "Not Found" }), "{path}");
        }
    }
    let (status, v) = s
        .call(
            Method::POST,
            "/file/0123456789abcdef0123456789abcdef/cancel",
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, v),
        (
            200,
            json!({"0123456789abcdef0123456789abcdef": "Not Found"})
        )
    );
    let (status, v) = s
        .get("/file/webhook/0123456789abcdef0123456789abcdef", None)
        .await;
    assert_eq!(
        (status, v),
        (
            200,
            json!({"0123456789abcdef0123456789abcdef": "Not Found"})
        )
    );
    // No converted (sanitized) file is ever served: 404, never a 200 a client would take
    // for the file's bytes.
    for id in ["0123456789abcdef0123456789abcdef", "not-an-id"] {
        let (status, v) = s.get(&format!("/file/converted/{id}"), None).await;
        assert_eq!((status, v), (404, json!({"err": "Not Found"})), "{id}");
    }
    let sha = "a".repeat(64);
    let (status, v) = s.get(&format!("/hash/{sha}"), None).await;
    assert_eq!((status, v), (200, json!({ sha: "Not Found" })));
    let (status, v) = s.get("/hash/xyz", None).await;
    assert_eq!(status, 400);
    assert!(err(&v).contains("hash"));

    // No such route, wrong method.
    let (status, v) = s.get("/no/such/route", None).await;
    assert_eq!(status, 404);
    err(&v);
    let (status, v) = s.call(Method::DELETE, "/file/rules", None, None).await;
    assert_eq!(status, 405);
    err(&v);

    // Nothing refused was kept: no file, no job.
    let incoming = s.data_dir().join("files/.incoming");
    assert_eq!(std::fs::read_dir(incoming).unwrap().count(), 0);
    let in_files = std::fs::read_dir(s.data_dir().join("files"))
        .unwrap()
        .count();
    assert_eq!(in_files, 1, "only .incoming: nothing refused was stored");
    assert_eq!(stored(&s), (0, 0), "a refused submission left a job");

    // Any other content type is taken as the file's bytes: curl's --data-binary labels them
    // as a URL-encoded form.
    for content_type in [
        "application/x-www-form-urlencoded",
        "application/octet-stream",
    ] {
        let resp = s.submit(b"x", &[("content-type", content_type)]).await;
        assert_eq!(resp.status(), 200, "{content_type}");
    }

    // The refusals are counted.
    let metrics = s.metrics().await;
    for reason in [
        "no_length",
        "empty",
        "too_large",
        "unknown_rule",
        "bad_request",
    ] {
        assert!(
            metrics.contains(&format!(
                "cordon_submissions_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    scanner_script(dir.path(), "slow.sh", 3);
    let s = TestServer::start_in(
        dir,
        r#"
        [server]
        workers = 1
        max_queue = 1
        [[plugin]]
        name = "Slow"
        role = "scanner"
        runtime = "process"
        command = "{dir}/slow.sh"
        inherit_env = ["PATH"]
        [[workflow]]
        name = "w"
        scanners = ["Slow"]
        "#,
    )
    .await;
    // One file runs, one waits, the next is refused: within ten quick submissions, at
    // least one must be refused (each scan takes three seconds).
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let resp = s.submit(b"file", &[]).await;
        match resp.status().as_u16() {
            200 => accepted.push(
                resp.json::<Value>().await.unwrap()["data_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            503 => {
                let v: Value = resp.json().await.unwrap();
                assert_eq!(v, json!({"err": "Server is too busy. Try again later."}));
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused >= 1, "the queue never filled");
    assert!(!accepted.is_empty());
    for id in &accepted {
        s.wait_final(id, None).await;
    }
    // Small files are kept with their jobs: one of each per accepted file, nothing else.
    assert_eq!(
        stored(&s),
        (accepted.len(), accepted.len()),
        "refused submissions leave nothing"
    );
    assert_eq!(
        std::fs::read_dir(s.data_dir().join("files/.incoming"))
            .unwrap()
            .count(),
        0
    );
}

/// A read-only connection to the server's database, beside the server's own.
fn server_db(s: &TestServer) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        s.data_dir().join("cordon.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

/// One wasm scanner, the built-in EICAR module, in the only workflow; two scan slots.
const EICAR_CONFIG: &str = r#"
[server]
workers = 2
[[plugin]]
name = "EICAR"
role = "scanner"
runtime = "wasm"
module = "builtin:eicar"
[[workflow]]
name = "w"
scanners = ["EICAR"]
"#;

/// A server on [`EICAR_CONFIG`] with `settings` (lines of its `[server]` table) added.
async fn eicar_server_with(settings: &str) -> TestServer {
    let config = EICAR_CONFIG.replace("[server]\n", &format!("[server]\n{settings}\n"));
    TestServer::start_in(tempfile::tempdir().unwrap(), &config).await
}

/// The jobs in the server's database and the files kept with them (read with a separate
/// read-only connection). Panics if a file kept in the database has no job.
fn stored(s: &TestServer) -> (usize, usize) {
    let db = server_db(s);
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as usize;
    let jobs = count("SELECT count(*) FROM jobs");
    let files = count("SELECT count(*) FROM inline_files");
    let paired = count("SELECT count(*) FROM jobs JOIN inline_files USING (data_id)");
    assert_eq!(files, paired, "a file kept in the database has no job");
    (jobs, files)
}

/// The stored final result of `id`, read with a separate read-only connection.
fn stored_result(s: &TestServer, id: &str) -> Option<Value> {
    let json: Option<String> = server_db(s)
        .query_row("SELECT result FROM results WHERE data_id = ?1", [id], |r| {
            r.get(0)
        })
        .ok();
    json.map(|j| serde_json::from_str(&j).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_result_is_shown_only_once_it_is_stored() {
    // A result shown before its commit could be lost to a crash and replaced by another when
    // the file is scanned again. Poll many quick scans as fast as possible: every answer that
    // is final must already be in the database.
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir, EICAR_CONFIG).await;
    let s = std::sync::Arc::new(s);
    let polls = futures_util::future::join_all((0..8).map(|task| {
        let s = s.clone();
        async move {
            let mut polls = 0;
            for i in 0..25 {
                let body = format!("file {task}-{i}");
                let id = s.submit_ok(body.as_bytes(), &[]).await;
                loop {
                    let (status, v) = s.get(&format!("/file/{id}"), None).await;
                    assert_eq!(status, 200, "{v}");
                    polls += 1;
                    if v["process_info"]["progress_percentage"] == 100 {
                        let stored = stored_result(&s, &id);
                        assert_eq!(stored.as_ref(), Some(&v), "{id} shown final before stored");
                        break;
                    }
                }
            }
            polls
        }
    }))
    .await;
    assert!(polls.iter().sum::<usize>() >= 200);
}

const EICAR_STRING: &[u8] =
    br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A tmpfs mounted for a test, unmounted (lazily, so that open files do not hold it) when
/// dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` (as `mount` takes it: `64k`) on `dir`; `None` where this
    /// process may not mount (not root, or no mount namespace of its own).
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_cannot_be_placed_for_want_of_space_waits_until_there_is_room() {
    // The scan slots on a tmpfs too small for the file: the job is stored (the database is
    // elsewhere) but its copy for the scan cannot be written. A full disk passes, so the file
    // must wait in progress, not end Failed (which would block it unscanned), and be scanned
    // once there is room.
    let dir = tempfile::tempdir().unwrap();
    let Some(slots) = Tmpfs::mount(&dir.path().join("data").join("scan"), "64k") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let s = TestServer::start_in(dir, EICAR_CONFIG).await;
    let slots = slots; // Unmounted before the server's directory is removed.
    let mut body = vec![b'.'; 100 << 10];
    body.extend_from_slice(EICAR_STRING);
    let id = s.submit_ok(&body, &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, v) = s.get(&format!("/file/{id}"), None).await;
    assert_ne!(
        v["process_info"]["progress_percentage"], 100,
        "ended while its file could not be placed: {v}"
    );
    slots.resize("4m");
    let v = s.wait_final(&id, None).await;
    assert_eq!(v["scan_results"]["scan_all_result_i"], 1, "{v}");
    assert_eq!(
        v["scan_results"]["scan_details"]["EICAR"]["scan_result_i"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_result_that_cannot_be_stored_stays_in_progress_and_is_retried() {
    // A full disk or a database error when a final result is committed: the result must not
    // be shown (a crash would take it back, and the file would be scanned again with another
    // result), and it must be stored once storing works again. The failure is a trigger that
    // refuses every new result, added and then dropped beside the server.
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir, EICAR_CONFIG).await;
    let writer = rusqlite::Connection::open(s.data_dir().join("cordon.sqlite3")).unwrap();
    writer
        .busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    writer
        .execute_batch(
            "CREATE TRIGGER refuse_results BEFORE INSERT ON results
             BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END;",
        )
        .unwrap();
    let id = s.submit_ok(EICAR_STRING, &[]).await;
    let failures = async || {
        let metrics = s.metrics().await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("cordon_result_store_failures_total "))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap())
    };
    // The scan has ended and its result has failed to be stored, twice.
    wait_until("two failed attempts to store the result", async || {
        failures().await >= 2
    })
    .await;
    let (status, v) = s.get(&format!("/file/{id}"), None).await;
    assert_eq!(status, 200, "{v}");
    assert_ne!(
        v["process_info"]["progress_percentage"], 100,
        "shown final while not stored: {v}"
    );
    assert_ne!(v["scan_results"]["scan_all_result_i"], 1, "{v}");
    let sha256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    let (_, by_hash) = s.get(&format!("/hash/{sha256}"), None).await;
    assert_eq!(by_hash, json!({ sha256: "Not Found" }), "found by hash");
    assert_eq!(stored_result(&s, &id), None);

    // Storing works again: the next attempt stores it, and it is shown.
    writer.execute_batch("DROP TRIGGER refuse_results").unwrap();
    let v = s.wait_final(&id, None).await;
    assert_eq!(v["scan_results"]["scan_all_result_i"], 1, "{v}");
    assert_eq!(stored_result(&s, &id).as_ref(), Some(&v));
    let (_, by_hash) = s.get(&format!("/hash/{sha256}"), None).await;
    assert_eq!(by_hash["data_id"], json!(id));
}

/// Retention, end to end: results older than `retention_hours` go at the server's next sweep
/// (one runs at start), with their jobs and their files, in the database or on disk; a result
/// inside the retention period stays, and so does the file of a job that is still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_past_retention_are_deleted_with_their_files_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let config = EICAR_CONFIG.replace("[server]\n", "[server]\nretention_hours = 1\n");
    let s = TestServer::start_in(dir, &config).await;
    const INLINE_MAX: usize = cordon::store::files::INLINE_MAX as usize;
    let old_small = s.submit_ok(b"an old small file", &[]).await;
    let old_large = s.submit_ok(&vec![b'o'; INLINE_MAX + 1], &[]).await;
    let fresh = s.submit_ok(b"a fresh file", &[]).await;
    let mut sha256 = std::collections::HashMap::new();
    for id in [&old_small, &old_large, &fresh] {
        let v = s.wait_final(id, None).await;
        sha256.insert(
            id.clone(),
            v["file_info"]["sha256"].as_str().unwrap().to_owned(),
        );
    }
    assert!(s.data_dir().join("files").join(&old_large).is_dir());

    // Two of them were received two hours ago, as far as the database knows.
    {
        let db = rusqlite::Connection::open(s.data_dir().join("cordon.sqlite3")).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        let two_hours_ms = 2 * 3600 * 1000;
        for id in [&old_small, &old_large] {
            db.execute(
                "UPDATE jobs SET received_ms = received_ms - ?2 WHERE data_id = ?1",
                rusqlite::params![id, two_hours_ms],
            )
            .unwrap();
            db.execute(
                "UPDATE results SET created_ms = created_ms - ?2 WHERE data_id = ?1",
                rusqlite::params![id, two_hours_ms],
            )
            .unwrap();
        }
    }
    let s = s.restart().await;
    wait_until("the sweep at start", async || {
        s.get(&format!("/file/{old_large}"), None).await.1 == json!({ &old_large: "Not Found" })
    })
    .await;
    for id in [&old_small, &old_large] {
        let (status, v) = s.get(&format!("/file/{id}"), None).await;
        assert_eq!((status, v), (200, json!({ id: "Not Found" })));
        let sha = &sha256[id];
        let (status, v) = s.get(&format!("/hash/{sha}"), None).await;
        assert_eq!((status, v), (200, json!({ sha: "Not Found" })));
        assert_eq!(stored_result(&s, id), None);
    }
    wait_until("the expired file's directory to go", async || {
        !s.data_dir().join("files").join(&old_large).exists()
    })
    .await;
    // The fresh one is whole: its result, by id and by hash, and its job with its file.
    let v = s.wait_final(&fresh, None).await;
    assert_eq!(v["data_id"], fresh.as_str());
    let (status, by_hash) = s.get(&format!("/hash/{}", sha256[&fresh]), None).await;
    assert_eq!(status, 200);
    assert_eq!(by_hash["data_id"], fresh.as_str(), "{by_hash}");
    assert_eq!(
        stored(&s),
        (1, 1),
        "only the fresh job and its file are left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_live_in_the_database_large_ones_on_disk_and_both_scan_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir, EICAR_CONFIG).await;
    const INLINE_MAX: usize = cordon::store::files::INLINE_MAX as usize;
    let mut at_the_end = vec![b'.'; INLINE_MAX + 10_000];
    at_the_end.extend_from_slice(EICAR_STRING);
    let mut just_small = vec![b'.'; INLINE_MAX - EICAR_STRING.len()];
    just_small.extend_from_slice(EICAR_STRING);
    let cases: [(&str, Vec<u8>, i64); 5] = [
        ("small.com", EICAR_STRING.to_vec(), 1),
        ("small.txt", b"nothing to see".to_vec(), 0),
        ("limit.bin", just_small, 1),
        ("large.bin", at_the_end, 1),
        ("large.txt", vec![b'.'; INLINE_MAX + 1], 0),
    ];
    let mut ids = Vec::new();
    for (name, body, _) in &cases {
        ids.push(s.submit_ok(body, &[("filename", name)]).await);
    }
    for ((name, body, want), id) in cases.iter().zip(&ids) {
        let v = s.wait_final(id, None).await;
        assert_eq!(v["scan_results"]["scan_all_result_i"], *want, "{name}: {v}");
        assert_eq!(v["file_info"]["file_size"], body.len(), "{name}: {v}");
        assert_eq!(v["file_info"]["display_name"], *name, "{name}: {v}");
    }
    // Only the two larger than INLINE_MAX have a directory in the file store.
    let mut on_disk: Vec<String> = std::fs::read_dir(s.data_dir().join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".incoming")
        .collect();
    on_disk.sort();
    let mut large = vec![ids[3].clone(), ids[4].clone()];
    large.sort();
    assert_eq!(on_disk, large);
    assert_eq!(
        stored(&s),
        (5, 3),
        "the three small files are kept with their jobs"
    );
    // The small ones were scanned in slots, each holding one file: at most one per small
    // file (they may all have been in flight at once).
    let slots = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(s.data_dir().join("scan"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let before = slots();
    assert!((1..=3).contains(&before.len()), "{before:?}");
    // Slots are reused: one file at a time creates none, and each scan sees its own bytes
    // and no more (a short clean file after one that ends with EICAR is clean).
    for i in 0..4 {
        let body = if i % 2 == 0 {
            let mut body = vec![b'.'; 1000];
            body.extend_from_slice(EICAR_STRING);
            body
        } else {
            format!("clean file {i}").into_bytes()
        };
        let id = s
            .submit_ok(&body, &[("filename", &format!("f{i}.txt"))])
            .await;
        let v = s.wait_final(&id, None).await;
        let want = if i % 2 == 0 { 1 } else { 0 };
        assert_eq!(
            v["scan_results"]["scan_all_result_i"], want,
            "file {i}: {v}"
        );
    }
    assert_eq!(slots(), before, "slots were created instead of reused");
    for slot in before {
        assert_eq!(std::fs::read_dir(&slot).unwrap().count(), 1, "{slot:?}");
    }
}

const AUTH_CONFIG: &str = r#"
[server]
session_ttl_minutes = 5

[[server.api_keys]]
name = "alice"
key = "alice-key-0123456789"

[[server.api_keys]]
name = "bob"
key = "bob-key-0123456789ab"

[[server.api_keys]]
name = "root"
key = "root-key-0123456789a"
admin = true

[[server.users]]
user = "carol"
password = "carol's password"

[[plugin]]
name = "Script"
role = "scanner"
runtime = "process"
command = "{dir}/scan.sh"
inherit_env = ["PATH"]

[[workflow]]
name = "w"
scanners = ["Script"]
"#;

const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-0123456789ab";
const ROOT: &str = "root-key-0123456789a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sessions_and_per_key_visibility() {
    let dir = tempfile::tempdir().unwrap();
    scanner_script(dir.path(), "scan.sh", 0);
    let s = TestServer::start_in(dir, AUTH_CONFIG).await;

    // Without a valid key: 403 {"err"} everywhere but /login, /readyz and /metrics.
    for key in [None, Some("wrong-key-0123456789")] {
        let mut req = s.client.post(s.url("/file")).body("x");
        if let Some(k) = key {
            req = req.header("apikey", k);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403);
        assert!(resp.json::<Value>().await.unwrap()["err"].is_string());
        for path in [
            "/file/rules",
            "/stat/engines",
            "/version",
            "/file/0123456789abcdef0123456789abcdef",
        ] {
            let (status, v) = s.get(path, key).await;
            assert_eq!(status, 403, "{path}");
            assert!(v["err"].is_string());
        }
    }
    assert_eq!(s.get("/readyz", None).await.0, 200);
    assert_eq!(
        s.client
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A result is visible to the key that submitted it and to admins only.
    let id = s.submit_ok(b"alice's file", &[("apikey", ALICE)]).await;
    let r = s.wait_final(&id, Some(ALICE)).await;
    assert_eq!(r["process_info"]["username"], "alice");
    let (status, v) = s.get(&format!("/file/{id}"), Some(BOB)).await;
    assert_eq!((status, v), (200, json!({ id.as_str(): "Not Found" })));
    let (status, v) = s.get(&format!("/file/{id}"), Some(ROOT)).await;
    assert_eq!(status, 200);
    assert_eq!(v["data_id"], id.as_str());
    let sha = r["file_info"]["sha256"].as_str().unwrap();
    let (_, v) = s.get(&format!("/hash/{sha}"), Some(BOB)).await;
    assert_eq!(v, json!({ sha: "Not Found" }));
    let (_, v) = s.get(&format!("/hash/{sha}"), Some(ALICE)).await;
    assert_eq!(v["data_id"], id.as_str());
    let (_, v) = s
        .call(Method::POST, &format!("/file/{id}/cancel"), Some(BOB), None)
        .await;
    assert_eq!(v, json!({ id.as_str(): "Not Found" }));
    // Its converted file: there is none, said to the owner; to others the id is unknown.
    let converted = format!("/metascan_rest/file/converted/{id}");
    let (status, v) = s.get(&converted, Some(ALICE)).await;
    assert_eq!(status, 404);
    assert!(
        v["err"].as_str().unwrap().contains("do not sanitize"),
        "{v}"
    );
    let (status, v) = s.get(&converted, Some(BOB)).await;
    assert_eq!((status, v), (404, json!({"err": "Not Found"})));

    // Sessions: login, use, logout.
    let (status, v) = s
        .call(
            Method::POST,
            "/login",
            None,
            Some(json!({"user": "carol", "password": "wrong"})),
        )
        .await;
    assert_eq!((status, v), (403, json!({"err": "Failed to login"})));
    let (status, v) = s
        .call(
            Method::POST,
            "/login",
            None,
            Some(json!({"user": "carol", "password": "carol's password"})),
        )
        .await;
    assert_eq!(status, 200);
    let session = v["session_id"].as_str().unwrap().to_owned();
    assert_eq!(session.len(), 32);
    let id = s.submit_ok(b"carol's file", &[("apikey", &session)]).await;
    let r = s.wait_final(&id, Some(&session)).await;
    assert_eq!(r["process_info"]["username"], "carol");
    let (_, v) = s.get(&format!("/file/{id}"), Some(ALICE)).await;
    assert_eq!(v, json!({ id.as_str(): "Not Found" }));
    // The legacy prefix serves login too.
    let (status, _) = s
        .call(
            Method::POST,
            "/metascan_rest/login",
            None,
            Some(json!({"user": "carol", "password": "carol's password"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, v) = s.call(Method::POST, "/logout", Some(&session), None).await;
    assert_eq!((status, v), (200, json!({"response": "Logout success"})));
    assert_eq!(s.get(&format!("/file/{id}"), Some(&session)).await.0, 403);
    assert_eq!(
        s.call(Method::POST, "/logout", Some(&session), None)
            .await
            .0,
        400
    );

    // The admin API needs an admin.
    assert_eq!(s.get("/admin/plugins", Some(ALICE)).await.0, 403);
    assert_eq!(s.get("/admin/plugins", None).await.0, 403);
    assert_eq!(s.get("/admin/plugins", Some(ROOT)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    scanner_script(dir.path(), "scan.sh", 0);
    let config = "[[plugin]]\nname = \"S\"\nrole = \"scanner\"\nruntime = \"process\"\ncommand = \"{dir}/scan.sh\"\n[[workflow]]\nname = \"w\"\nscanners = [\"S\"]\n"
        .replace("{dir}", &dir.path().display().to_string());
    std::fs::write(dir.path().join("cordon.toml"), &config).unwrap();
    let result = cordon::server::spawn(cordon::server::ServeOptions {
        config: Some(dir.path().join("cordon.toml")),
        data_dir: dir.path().join("data"),
        listen: Some("0.0.0.0:0".parse().unwrap()),
    })
    .await;
    let Err(e) = result else {
        panic!("an open server must not listen on 0.0.0.0")
    };
    assert!(e.to_string().contains("without authentication"), "{e}");
    // On loopback it runs, and the admin API stays closed.
    let s = TestServer::start_in(dir, &config).await;
    let (status, v) = s.get("/admin/plugins", None).await;
    assert_eq!(status, 403);
    assert!(v["err"].as_str().unwrap().contains("admin key"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_retried_recorded_and_allowlisted() {
    let (addr, received) = endpoint(vec![500, 200], "ok").await;
    let s = runtimes_server(
        "callback_allowlist = [\"http://127.0.0.1:*\"]\ncallback_backoff_ms = 100\ncallback_attempts = 3",
    )
    .await;
    let url = format!("http://{addr}/hook");
    let id = s
        .submit_ok(b"hello", &[("rule", "process"), ("callbackurl", &url)])
        .await;
    let r = s.wait_final(&id, None).await;
    wait_until("two callback attempts", async || received.count() >= 2).await;
    let bodies = received.all();
    assert_eq!(bodies[1], r, "the callback carries the final result");
    wait_until("the delivery to be recorded", async || {
        s.get(&format!("/file/webhook/{id}"), None).await.1["status"] == "delivered"
    })
    .await;
    let (status, w) = s.get(&format!("/file/webhook/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(w["url"], url.as_str());
    let attempts = w["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{w}");
    assert_eq!(attempts[0]["http_status"], 500);
    assert_eq!(attempts[1]["http_status"], 200);
    assert_eq!(attempts[1]["error"], "");
    // Not on the allowlist: refused at submission.
    for refused in [
        "http://localhost:9/x",
        "http://10.0.0.1/x",
        "https://127.0.0.1:8443/x",
    ] {
        let resp = s.submit(b"x", &[("callbackurl", refused)]).await;
        assert_eq!(resp.status(), 403, "{refused}");
        let v: Value = resp.json().await.unwrap();
        assert!(
            v["err"].as_str().unwrap().contains("callback_allowlist"),
            "{v}"
        );
    }
    // Without any allowlist every callback is refused.
    let s2 = runtimes_server("").await;
    assert_eq!(
        s2.submit(b"x", &[("callbackurl", &url)]).await.status(),
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_give_up_after_the_last_attempt() {
    let (addr, received) = endpoint(vec![503], "").await;
    let s = runtimes_server(
        "callback_allowlist = [\"http://127.0.0.1:*\"]\ncallback_backoff_ms = 10\ncallback_attempts = 2",
    )
    .await;
    let id = s
        .submit_ok(
            b"x",
            &[
                ("rule", "wasm"),
                ("callbackurl", &format!("http://{addr}/h")),
            ],
        )
        .await;
    s.wait_final(&id, None).await;
    wait_until("the delivery to fail", async || {
        s.get(&format!("/file/webhook/{id}"), None).await.1["status"] == "failed"
    })
    .await;
    assert_eq!(received.count(), 2);
}

/// A client that announces a body and stops sending it is answered 408 once
/// `upload_idle_timeout_ms` passes without data, and gives back the queue place it held: with a
/// queue of one, the next file is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_refused_and_gives_its_queue_place_back() {
    let s = eicar_server_with("max_queue = 1\nupload_idle_timeout_ms = 1000").await;
    // A small upload (received in memory) and a large one (streamed to a file).
    for length in [1000, 1 << 20] {
        let answer = raw_http(
            &s.base,
            &format!(
                "POST /file HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\
                 Connection: close\r\n\r\npartial"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains(&format!(
                "The upload stalled: no data for 1000 ms (the server's upload_idle_timeout_ms) \
                 after 7 of {length} bytes"
            )),
            "{answer}"
        );
    }
    refused_uploads_left_nothing(&s, "stalled", 2).await;
}

/// After `count` uploads refused for `reason` on a server with `max_queue = 1`: no partial
/// upload is left, the next file takes the queue place and is scanned, only it is stored, and
/// the refusals metric counts them.
async fn refused_uploads_left_nothing(s: &TestServer, reason: &str, count: u32) {
    let incoming = s.data_dir().join("files/.incoming");
    assert_eq!(std::fs::read_dir(incoming).unwrap().count(), 0);
    let id = s.submit_ok(b"the next file", &[]).await;
    let r = s.wait_final(&id, None).await;
    assert_eq!(r["process_info"]["result"], "Allowed", "{r}");
    assert_eq!(stored(s), (1, 1), "the refused uploads left nothing");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(&format!(
            "cordon_submissions_rejected_total{{reason=\"{reason}\"}} {count}"
        )),
        "{metrics}"
    );
}

/// A client that trickles its upload (a byte every 50 ms: never idle for
/// `upload_idle_timeout_ms`, but far below `min_upload_rate_bytes_per_s`) is refused once it
/// falls behind the minimum rate, and its queue place is given back. A slow machine can only
/// make the client slower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_upload_is_refused_and_gives_its_queue_place_back() {
    use tokio::io::AsyncWriteExt;
    let s = eicar_server_with(
        "max_queue = 1\nupload_idle_timeout_ms = 500\nmin_upload_rate_bytes_per_s = 100",
    )
    .await;
    let (reader, mut writer) = connect(&s.base).await.into_split();
    writer
        .write_all(b"POST /file HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..1000 {
            if writer.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let answer = read_until_closed(reader, std::time::Duration::from_secs(60))
        .await
        .expect("the server answers and closes");
    trickle.abort();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("The upload is too slow: "), "{answer}");
    assert!(answer.contains(" of 1000 bytes in "), "{answer}");
    assert!(
        answer.contains(
            "the server expects at least 100 bytes per second after the first 500 ms (its \
             min_upload_rate_bytes_per_s and upload_idle_timeout_ms)"
        ),
        "{answer}"
    );
    refused_uploads_left_nothing(&s, "too_slow", 1).await;
}

/// A connection that never completes a request's headers is closed after
/// `header_read_timeout_ms`, and the server goes on serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    use tokio::io::AsyncWriteExt;
    let s = eicar_server_with("header_read_timeout_ms = 1000").await;
    let mut idle = Vec::new();
    for head in ["", "POST /file HTTP/1.1\r\nHost: x\r\nContent-Le"] {
        let mut stream = connect(&s.base).await;
        stream.write_all(head.as_bytes()).await.unwrap();
        idle.push(stream);
    }
    for stream in idle {
        let answer = read_until_closed(stream, std::time::Duration::from_secs(60))
            .await
            .expect("the server closes the connection");
        assert!(!answer.contains("data_id"), "{answer}");
    }
    let id = s.submit_ok(b"a file", &[]).await;
    assert_eq!(
        s.wait_final(&id, None).await["process_info"]["result"],
        "Allowed"
    );
}

/// With `max_connections = 1`, a second client is not served while the first connection is
/// open, and is served once it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait_for_one_to_close() {
    let s = eicar_server_with("max_connections = 1").await;
    // The test client keeps no idle connection that could hold the one place itself.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let first = connect(&s.base).await;
    // Not served while the first is open: the request is still waiting when it gives up (a
    // slow machine could only make it give up sooner).
    let waited = client
        .get(s.url("/version"))
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await;
    assert!(
        waited.as_ref().is_err_and(|e| e.is_timeout()),
        "served beside the first connection: {waited:?}"
    );
    drop(first);
    let served = client.get(s.url("/version")).send().await.unwrap();
    assert_eq!(served.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_queued_and_running_scans() {
    let dir = tempfile::tempdir().unwrap();
    scanner_script(dir.path(), "slow.sh", 30);
    std::fs::create_dir(dir.path().join("markers")).unwrap();
    let markers = dir.path().join("markers");
    let s = TestServer::start_in(
        dir,
        r#"
        [server]
        workers = 1
        [[plugin]]
        name = "Slow"
        role = "scanner"
        runtime = "process"
        command = "{dir}/slow.sh {dir}/markers"
        allow_write = ["{dir}/markers"]
        inherit_env = ["PATH"]
        [[workflow]]
        name = "w"
        scanners = ["Slow"]
        "#,
    )
    .await;
    let running = s.submit_ok(b"one", &[]).await;
    wait_until("the first scan to start", async || {
        std::fs::read_dir(&markers).unwrap().count() == 1
    })
    .await;
    let queued = s.submit_ok(b"two", &[]).await;
    for id in [&queued, &running] {
        let (status, v) = s
            .call(Method::POST, &format!("/file/{id}/cancel"), None, None)
            .await;
        assert_eq!((status, v), (200, json!({ id.as_str(): "cancelled" })));
    }
    for id in [&running, &queued] {
        let r = s.wait_final(id, None).await;
        assert_eq!(r["scan_results"]["scan_all_result_i"], 19, "{r}");
        assert_eq!(
            r["scan_results"]["scan_details"]["Slow"]["scan_result_i"], 19,
            "{r}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&markers).unwrap().count(),
        1,
        "the queued scan never started its plugin"
    );
    let (status, v) = s
        .call(Method::POST, &format!("/file/{running}/cancel"), None, None)
        .await;
    assert_eq!(status, 400);
    assert!(v["err"].as_str().unwrap().contains("already finished"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_changes_apply_at_run_time_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    scanner_script(dir.path(), "slow.sh", 2);
    write_script(
        dir.path(),
        "infected.sh",
        &format!("printf '%s' '{INFECTED}'"),
    );
    std::fs::create_dir(dir.path().join("markers")).unwrap();
    let markers = dir.path().join("markers");
    let s = TestServer::start_in(
        dir,
        r#"
        [server]
        workers = 2
        [[server.api_keys]]
        name = "root"
        key = "root-key-0123456789a"
        admin = true
        [[plugin]]
        name = "Changing"
        role = "scanner"
        runtime = "process"
        command = "{dir}/slow.sh {dir}/markers"
        allow_write = ["{dir}/markers"]
        inherit_env = ["PATH"]
        [[workflow]]
        name = "base"
        scanners = ["Changing"]
        "#,
    )
    .await;
    let key = Some(ROOT);
    let k = &[("apikey", ROOT)];

    // Upload a module, define a plugin and a workflow with it, scan with it.
    let module = wasm_printing(INFECTED);
    let resp = s
        .client
        .post(s.url("/admin/modules"))
        .header("apikey", ROOT)
        .body(module.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let up: Value = resp.json().await.unwrap();
    let sha = up["sha256"].as_str().unwrap().to_owned();
    assert_eq!(up["module"], format!("sha256:{sha}"));
    let (status, p) = s
        .call(
            Method::PUT,
            "/admin/plugins/Uploaded",
            key,
            Some(json!({"role": "scanner", "runtime": "wasm", "module": format!("sha256:{sha}"), "timeout_ms": 5000})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        p["sha256"],
        sha.as_str(),
        "the module's sha256 is recorded and shown"
    );
    assert_eq!(p["source"], "api");
    let (status, w) = s
        .call(
            Method::PUT,
            "/admin/workflows/New%20rule",
            key,
            Some(json!({"scanners": ["Uploaded"], "block_results": [1]})),
        )
        .await;
    assert_eq!(status, 200, "{w}");
    let (_, rules) = s.get("/file/rules", key).await;
    assert!(
        rules
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "New rule"),
        "{rules}"
    );
    let id = s
        .submit_ok(b"x", &[("apikey", ROOT), ("rule", "New%20rule")])
        .await;
    let r = s.wait_final(&id, key).await;
    assert_eq!(
        r["scan_results"]["scan_details"]["Uploaded"]["scan_result_i"], 1,
        "{r}"
    );
    assert_eq!(r["process_info"]["result"], "Blocked");

    // Refused changes change nothing, and say why.
    let refused = async |path: &str, body: Value, reason: &str| {
        let (status, v) = s.call(Method::PUT, path, key, Some(body)).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert!(v["err"].as_str().unwrap().contains(reason), "{path}: {v}");
    };
    // A plugin defined at run time may not read the API keys either.
    let config = s.data_dir().parent().unwrap().join("cordon.toml");
    refused(
        "/admin/plugins/Nosy",
        json!({"role": "scanner", "runtime": "process", "command": "/bin/true",
               "allow_read": [config.display().to_string()]}),
        "holds Cordon's configuration file",
    )
    .await;
    refused(
        "/admin/plugins/Bad",
        json!({"role": "scanner", "runtime": "wasm", "modul": "x"}),
        "unknown field `modul`",
    )
    .await;
    refused(
        "/admin/plugins/Way%20too%20long%20a%20name",
        json!({"role": "scanner", "runtime": "webhook", "url": "http://127.0.0.1:1/"}),
        "the limit is 16",
    )
    .await;
    refused(
        "/admin/workflows/x",
        json!({"scanners": ["Nobody"]}),
        "no plugin is named \"Nobody\"",
    )
    .await;
    refused(
        "/admin/plugins/Forking",
        json!({"role": "scanner", "runtime": "wasm", "module": format!("sha256:{sha}"),
               "max_processes": 4}),
        "field `max_processes` is for runtime = \"process\" only",
    )
    .await;
    // A native plugin's limits as defined, `max_processes` among them; a wasm plugin has none.
    let (status, p) = s
        .call(
            Method::PUT,
            "/admin/plugins/Forking",
            key,
            Some(
                json!({"role": "scanner", "runtime": "process", "command": "/bin/true",
                        "max_processes": 7}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["limits"]["max_processes"], 7, "{p}");
    let (status, p) = s.get("/admin/plugins", key).await;
    assert_eq!(status, 200);
    let uploaded = p
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Uploaded")
        .unwrap();
    assert!(uploaded["limits"]["max_processes"].is_null(), "{uploaded}");
    let (status, _) = s
        .call(Method::DELETE, "/admin/plugins/Forking", key, None)
        .await;
    assert_eq!(status, 200);
    let (status, v) = s
        .call(Method::DELETE, "/admin/plugins/Uploaded", key, None)
        .await;
    assert_eq!(status, 409, "{v}");
    let (status, _) = s
        .call(Method::DELETE, "/admin/workflows/base", key, None)
        .await;
    assert_eq!(status, 409, "the default workflow stays");
    let (status, _) = s
        .call(Method::DELETE, "/admin/plugins/Nobody", key, None)
        .await;
    assert_eq!(status, 404);

    // A scan in flight finishes with the plugin it started with.
    let in_flight = s.submit_ok(b"clean file", k).await;
    wait_until("the scan to start", async || {
        std::fs::read_dir(&markers).unwrap().count() == 1
    })
    .await;
    let (status, v) = s
        .call(
            Method::PUT,
            "/admin/plugins/Changing",
            key,
            Some(json!({"role": "scanner", "runtime": "process", "command": format!("{}/infected.sh", s.dir.path().display())})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let after = s.submit_ok(b"clean file", k).await;
    let r = s.wait_final(&in_flight, key).await;
    assert_eq!(r["scan_results"]["scan_all_result_i"], 0, "old plugin: {r}");
    let r = s.wait_final(&after, key).await;
    assert_eq!(r["scan_results"]["scan_all_result_i"], 1, "new plugin: {r}");

    // Changes survive a restart; so do results.
    let s = s.restart().await;
    let (_, plugins) = s.get("/admin/plugins", key).await;
    let names: Vec<_> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["Changing", "Uploaded"]);
    let (_, workflows) = s.get("/admin/workflows", key).await;
    assert!(
        workflows
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "New rule" && w["source"] == "api")
    );
    let (_, kept) = s.get(&format!("/file/{after}"), key).await;
    assert_eq!(kept["scan_results"]["scan_all_result_i"], 1);
    let (_, modules) = s.get("/admin/modules", key).await;
    assert_eq!(modules[0]["sha256"], sha.as_str());

    // Removing works once nothing uses it.
    assert_eq!(
        s.call(Method::DELETE, "/admin/workflows/New%20rule", key, None)
            .await
            .0,
        200
    );
    assert_eq!(
        s.call(Method::DELETE, "/admin/plugins/Uploaded", key, None)
            .await
            .0,
        200
    );
    let resp = s
        .submit(b"x", &[("apikey", ROOT), ("rule", "New%20rule")])
        .await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_results_durations_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    scanner_script(dir.path(), "scan.sh", 0);
    write_script(dir.path(), "broken.sh", "exit 2");
    std::fs::write(dir.path().join("clean.wasm"), wasm_printing(CLEAN)).unwrap();
    let s = TestServer::start_in(
        dir,
        r#"
        [[plugin]]
        name = "Script"
        role = "scanner"
        runtime = "process"
        command = "{dir}/scan.sh"
        inherit_env = ["PATH"]
        [[plugin]]
        name = "Broken"
        role = "scanner"
        runtime = "process"
        command = "{dir}/broken.sh"
        [[plugin]]
        name = "WasmClean"
        role = "scanner"
        runtime = "wasm"
        module = "{dir}/clean.wasm"
        [[workflow]]
        name = "w"
        scanners = ["Script", "Broken", "WasmClean"]
        "#,
    )
    .await;
    let id = s.submit_ok(b"x", &[]).await;
    let r = s.wait_final(&id, None).await;
    assert_eq!(
        r["scan_results"]["scan_details"]["Broken"]["failure"]["kind"], "exit_code",
        "{r}"
    );
    // Requests no route takes, or with a method of a client's own: bounded labels.
    assert_eq!(s.get("/no/such/route", None).await.0, 404);
    let brew = Method::from_bytes(b"BREW").unwrap();
    assert_eq!(s.call(brew, "/file/rules", None, None).await.0, 405);
    let resp = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics")
    );
    let m = resp.text().await.unwrap();
    for needle in [
        "cordon_submissions_total{workflow=\"w\"} 1",
        "cordon_results_total{result=\"Blocked\",verdict=\"Failed\"} 1",
        "cordon_plugin_duration_seconds_count{plugin=\"Script\",role=\"scanner\"} 1",
        "cordon_plugin_duration_seconds_bucket{le=",
        "cordon_plugin_peak_memory_bytes_count{plugin=\"WasmClean\",role=\"scanner\"} 1",
        "cordon_plugin_failures_total{plugin=\"Broken\",kind=\"exit_code\"} 1",
        "cordon_queue_depth 0",
        "cordon_scans_running 0",
        // Every answer's time, by the route's pattern rather than the path asked for.
        "cordon_http_request_duration_seconds_count{method=\"POST\",route=\"/file\",status=\"200\"} 1",
        "cordon_http_request_duration_seconds_count{method=\"GET\",route=\"/file/{data_id}\",status=\"200\"} ",
        "cordon_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
        "cordon_http_request_duration_seconds_count{method=\"other\",route=\"/file/rules\",status=\"405\"} 1",
        "cordon_http_request_duration_seconds_bucket{le=\"0.0001\",method=",
    ] {
        assert!(m.contains(needle), "{needle} missing from:\n{m}");
    }
    assert_eq!(
        m.contains("cordon_plugin_peak_memory_bytes_count{plugin=\"Script\",role=\"scanner\"} 1"),
        crate::harness::native_peaks_measured(),
        "a process's peak is measured where it has a memory cgroup that keeps one:\n{m}"
    );
    assert_eq!(
        m.contains("cordon_plugin_peak_processes_count{plugin=\"Script\",role=\"scanner\"} 1"),
        keeps_peak_processes(),
        "{m}"
    );
    assert!(
        !m.contains("cordon_plugin_peak_processes_count{plugin=\"WasmClean\""),
        "a wasm plugin runs no process:\n{m}"
    );

    // The database writer's commits: the job and the final result fsynced (at least two),
    // the job marked running without (at least one), each counted before its write returned;
    // and the writes they carried, three at least, in three commits at least.
    let value = |m: &str, series: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} missing from:\n{m}"))
            .parse()
            .unwrap()
    };
    let machine = value(
        &m,
        "cordon_store_commit_seconds_count{durability=\"machine\"}",
    );
    let process = value(
        &m,
        "cordon_store_commit_seconds_count{durability=\"process\"}",
    );
    assert!(machine >= 2.0 && process >= 1.0, "{m}");
    assert!(
        value(
            &m,
            "cordon_store_commit_seconds_sum{durability=\"machine\"}"
        ) > 0.0
    );
    assert!(value(&m, "cordon_store_commit_writes_count") >= 3.0, "{m}");
    assert!(value(&m, "cordon_store_commit_writes_sum") >= 3.0, "{m}");
    // Each commit wakes the checkpointer, which runs beside the writer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let m = s.client.get(s.url("/metrics")).send().await.unwrap();
        let m = m.text().await.unwrap();
        if value(&m, "cordon_store_checkpoint_seconds_count") >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint pass:\n{m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let (status, v) = s.get("/readyz", None).await;
    assert_eq!((status, v), (200, json!({"ready": true})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_finishes_the_scans_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    scanner_script(dir.path(), "slow.sh", 1);
    std::fs::create_dir(dir.path().join("markers")).unwrap();
    let markers = dir.path().join("markers");
    let mut s = TestServer::start_in(
        dir,
        r#"
        [server]
        workers = 1
        [[plugin]]
        name = "Slow"
        role = "scanner"
        runtime = "process"
        command = "{dir}/slow.sh {dir}/markers"
        allow_write = ["{dir}/markers"]
        inherit_env = ["PATH"]
        [[workflow]]
        name = "w"
        scanners = ["Slow"]
        "#,
    )
    .await;
    let first = s.submit_ok(b"one", &[]).await;
    let second = s.submit_ok(b"two", &[]).await;
    wait_until("the first scan to start", async || {
        std::fs::read_dir(&markers).unwrap().count() >= 1
    })
    .await;
    let running = s.running.take().unwrap();
    let state = running.state().clone();
    running.shutdown().await;
    assert!(!state.is_accepting());
    // The scan in flight finished; the queued one stays for the next start.
    let stored = state.store.result(&first).await.unwrap();
    assert!(
        stored.is_some(),
        "the scan in flight was finished and stored"
    );
    drop(state);
    let s = {
        let running = cordon::server::spawn(cordon::server::ServeOptions {
            config: Some(s.dir.path().join("cordon.toml")),
            data_dir: s.dir.path().join("data"),
            listen: Some("127.0.0.1:0".parse().unwrap()),
        })
        .await
        .unwrap();
        s.base = format!("http://{}", running.addr);
        s.running = Some(running);
        s
    };
    for id in [&first, &second] {
        let r = s.wait_final(id, None).await;
        assert_eq!(r["scan_results"]["scan_all_result_i"], 0);
    }
}
