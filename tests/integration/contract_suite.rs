//! The contract suite: every runtime (wasm, process, webhook against a loopback server) must
//! pass the same cases, with the same plugin behaviour: valid output, each kind of invalid
//! output, a non-zero exit, a timeout, the output cap, post-action success and failure.

use std::time::{Duration, Instant};

use cordon::contract::{self, EngineVerdict};
use cordon::executor::Failure;
use cordon::plugin::{Role, RuntimeKind};
use cordon::verdict::ResultCode;
use serde_json::{Value, json};

use crate::harness::{RUNTIMES, Rig, WebhookServer, behave, limits, scripted_plugin};

/// The seed's example of a valid scanner output, pretty-printed as real scanners do.
const SEED_VALID: &str =
    "{\n\"def_time\": 1491288912392,\n\"scan_result_i\": 0,\n\"threat_found\": \"\"\n}";

async fn scan_in(
    rig: &Rig,
    server: &WebhookServer,
    runtime: RuntimeKind,
    behaviour: Value,
    timeout_ms: u64,
) -> (EngineVerdict, cordon::executor::Outcome) {
    let plugin = rig.plugin(
        "Scripted",
        Role::Scanner,
        scripted_plugin(runtime, server),
        limits(timeout_ms),
    );
    let sample = rig.sample(b"hello", "sample.txt");
    let outcome = rig.run(&plugin, &sample, &behave(behaviour)).await;
    (contract::judge_scanner(runtime, &outcome), outcome)
}

/// Exit code 0 for commands, HTTP 200 for webhooks, or the runtime's way of saying `code`.
fn exit_for(runtime: RuntimeKind, code: i64) -> i64 {
    match (runtime, code) {
        (RuntimeKind::Webhook, 0) => 200,
        _ => code,
    }
}

#[tokio::test]
async fn valid_output_is_the_engine_result_in_every_runtime() {
    let rig = Rig::new();
    let server = WebhookServer::start().await;
    for runtime in RUNTIMES {
        let (v, _) = scan_in(
            &rig,
            &server,
            runtime,
            json!({"stdout": SEED_VALID}),
            20_000,
        )
        .await;
        assert_eq!(v.failure, None, "{runtime}");
        assert_eq!(v.code, ResultCode::CLEAN, "{runtime}");
        assert_eq!(v.def_time_ms, 1491288912392, "{runtime}");

        let infected = r#"{"def_time": 5, "scan_result_i": 1, "threat_found": "Win.Trojan.Trojan-1082 FOUND", "engine": "x"}"#;
        let (v, _) = scan_in(&rig, &server, runtime, json!({"stdout": infected}), 20_000).await;
        assert_eq!(
            (v.code, v.threat_found.as_str(), v.def_time_ms),
            (ResultCode::INFECTED, "Win.Trojan.Trojan-1082 FOUND", 5),
            "{runtime}"
        );
    }
}

#[tokio::test]
async fn each_kind_of_invalid_output_is_failed_with_its_reason_in_every_runtime() {
    let cases: &[(&str, &str)] = &[
        ("", "stdout is empty"),
        ("   \n", "stdout is empty"),
        (
            r#"{"def_time": 1, "scan_result_i": 0, "threat_found": """#,
            "not valid JSON",
        ),
        ("not json at all", "not valid JSON"),
        ("[1, 2]", "an array"),
        (
            r#"{"def_time":1,"scan_result_i":0,"threat_found":""} {}"#,
            "more than one JSON value",
        ),
        (
            r#"{"scan_result_i": 0, "threat_found": ""}"#,
            "missing field `def_time`",
        ),
        (
            r#"{"def_time": 1, "threat_found": ""}"#,
            "missing field `scan_result_i`",
        ),
        (
            r#"{"def_time": 1, "scan_result_i": 0}"#,
            "missing field `threat_found`",
        ),
        (
            r#"{"def_time": "1", "scan_result_i": 0, "threat_found": ""}"#,
            r#"def_time: expected an integer (milliseconds since the epoch), got the string "1""#,
        ),
        (
            r#"{"def_time": 1.5, "scan_result_i": 0, "threat_found": ""}"#,
            "def_time: expected an integer",
        ),
        (
            r#"{"def_time": -5, "scan_result_i": 0, "threat_found": ""}"#,
            "def_time: -5 is out of range",
        ),
        (
            r#"{"def_time": 1, "scan_result_i": "1", "threat_found": ""}"#,
            r#"scan_result_i: expected an integer result code, got the string "1""#,
        ),
        (
            r#"{"def_time": 1, "scan_result_i": 99, "threat_found": ""}"#,
            "scan_result_i: 99 is not a result code",
        ),
        (
            r#"{"def_time": 1, "scan_result_i": 255, "threat_found": ""}"#,
            "255 (In Progress) is not a result an engine may return",
        ),
        (
            r#"{"def_time": 1, "scan_result_i": 0, "threat_found": 0}"#,
            "threat_found: expected a string",
        ),
        (
            r#"{"def_time": 1, "scan_result_i": 0, "threat_found": null}"#,
            "threat_found: expected a string",
        ),
    ];
    let rig = Rig::new();
    let server = WebhookServer::start().await;
    for runtime in RUNTIMES {
        for (stdout, reason) in cases {
            let (v, _) = scan_in(&rig, &server, runtime, json!({"stdout": stdout}), 20_000).await;
            assert_eq!(v.code, ResultCode::FAILED, "{runtime}: {stdout:?}");
            let f = v
                .failure
                .unwrap_or_else(|| panic!("{runtime}: {stdout:?} has no reason"));
            assert_eq!(
                f.kind, "invalid_output",
                "{runtime}: {stdout:?}: {}",
                f.message
            );
            assert!(
                f.message.contains(reason),
                "{runtime}: {stdout:?}: {:?} lacks {reason:?}",
                f.message
            );
        }
    }
}

#[tokio::test]
async fn a_non_zero_exit_is_failed_even_with_valid_output_in_every_runtime() {
    let rig = Rig::new();
    let server = WebhookServer::start().await;
    for runtime in RUNTIMES {
        let code = if runtime == RuntimeKind::Webhook {
            503
        } else {
            3
        };
        let (v, outcome) = scan_in(
            &rig,
            &server,
            runtime,
            json!({"stdout": SEED_VALID, "stderr": "engine database missing\n", "exit": code}),
            20_000,
        )
        .await;
        assert_eq!(v.code, ResultCode::FAILED, "{runtime}");
        assert_eq!(outcome.exit, Some(code), "{runtime}");
        let f = v.failure.unwrap();
        let kind = if runtime == RuntimeKind::Webhook {
            "http_status"
        } else {
            "exit_code"
        };
        assert_eq!(f.kind, kind, "{runtime}");
        assert!(
            f.message.contains(&code.to_string()),
            "{runtime}: {}",
            f.message
        );
        if runtime != RuntimeKind::Webhook {
            assert_eq!(
                f.stderr, "engine database missing",
                "{runtime}: stderr is kept for the author"
            );
        }
    }
}

#[tokio::test]
async fn the_timeout_holds_in_every_runtime() {
    let rig = Rig::new();
    let server = WebhookServer::start().await;
    for runtime in RUNTIMES {
        let started = Instant::now();
        let (v, outcome) = scan_in(
            &rig,
            &server,
            runtime,
            json!({"stdout": SEED_VALID, "sleep_ms": 60_000}),
            400,
        )
        .await;
        let took = started.elapsed();
        assert_eq!(
            outcome.failure,
            Some(Failure::Timeout {
                limit: Duration::from_millis(400)
            }),
            "{runtime}"
        );
        assert_eq!(v.code, ResultCode::FAILED, "{runtime}");
        assert_eq!(v.failure.unwrap().kind, "timeout", "{runtime}");
        // The deadline plus a margin for process teardown; never the plugin's 60 s.
        assert!(
            took < Duration::from_millis(400) + Duration::from_secs(2),
            "{runtime}: {took:?}"
        );
    }
}

#[tokio::test]
async fn output_over_the_cap_is_failed_in_every_runtime() {
    let rig = Rig::new();
    let server = WebhookServer::start().await;
    // A valid verdict padded with whitespace past the 4096-byte cap of `limits()`.
    let padded = format!("{SEED_VALID}{}", " ".repeat(5000));
    for runtime in RUNTIMES {
        let (v, outcome) = scan_in(&rig, &server, runtime, json!({"stdout": padded}), 20_000).await;
        assert_eq!(v.code, ResultCode::FAILED, "{runtime}");
        assert_eq!(v.failure.unwrap().kind, "output_too_large", "{runtime}");
        assert!(
            outcome.stdout.len() <= 4096,
            "{runtime}: kept {} bytes",
            outcome.stdout.len()
        );
    }
}

#[tokio::test]
async fn post_actions_succeed_on_zero_or_200_and_fail_otherwise_in_every_runtime() {
    let rig = Rig::new();
    let server = WebhookServer::start().await;
    for runtime in RUNTIMES {
        let plugin = rig.plugin(
            "Test PA",
            Role::PostAction,
            scripted_plugin(runtime, &server),
            limits(20_000),
        );
        let sample = rig.sample(b"hello", "sample.txt");
        let ok = rig
            .run(&plugin, &sample, &behave(json!({"stdout": "whatever"})))
            .await;
        let pa = contract::judge_post_action(runtime, &ok);
        assert!(pa.success, "{runtime}: {pa:?}");
        assert_eq!(pa.return_value, exit_for(runtime, 0), "{runtime}");

        let code = if runtime == RuntimeKind::Webhook {
            500
        } else {
            1
        };
        let failed = rig
            .run(&plugin, &sample, &behave(json!({"exit": code})))
            .await;
        let pa = contract::judge_post_action(runtime, &failed);
        assert!(!pa.success, "{runtime}");
        assert_eq!(pa.return_value, code, "{runtime}");
    }
}

#[tokio::test]
async fn every_runtime_gets_the_same_input() {
    let rig = Rig::new();
    let server = WebhookServer::start().await;
    let plugin = rig.plugin(
        "Hook",
        Role::Scanner,
        server.url("/scripted"),
        limits(20_000),
    );
    let sample = rig.sample(b"hello", "report.pdf");
    let stdin = behave(json!({"stdout": SEED_VALID}));
    rig.run(&plugin, &sample, &stdin).await;
    let bodies = &server.seen.lock().unwrap().bodies;
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        bodies[0]["processing_result"], stdin,
        "the webhook gets the stdin JSON"
    );
    assert_eq!(
        bodies[0]["resource_path"],
        json!(sample.path().to_str().unwrap()),
        "and the sample's absolute path"
    );
}
