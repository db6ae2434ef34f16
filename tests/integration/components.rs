//! WebAssembly components (wasm32-wasip2) under the same executor, contract and limits as
//! modules: the SDK's `eicar` built both ways gives the same engine results, through the
//! executor and through the pipeline, and reads no input either way; WASI p2 command components are held to the limits; a
//! world component in the wrong role is refused at load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use cordon::config::WorkflowSpec;
use cordon::contract;
use cordon::executor::Plugin;
use cordon::fileinfo;
use cordon::plugin::{Limits, PluginName, PluginSpec, Role, RuntimeKind};
use cordon::result::ScanResult;
use cordon::sample::Sample;
use cordon::verdict::ResultCode;
use cordon::workflow::{self, CancelToken, Submission, Workflow};
use cordon_tests::artifacts::*;
use serde_json::json;

use crate::harness::{Rig, behave, limits, wasm};

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The samples both builds scan: (name, bytes, expected code).
fn samples() -> Vec<(&'static str, Vec<u8>, ResultCode)> {
    // 5 MiB with the string across the chunk boundary at 4 MiB (a multiple of the SDK's chunk
    // size): the SDK streams it.
    let mut large = vec![b'.'; 5 << 20];
    let at = (4 << 20) - 30;
    large[at..at + EICAR.len()].copy_from_slice(EICAR);
    let mut large_clean = vec![0u8; 5 << 20];
    large_clean[..EICAR.len() - 1].copy_from_slice(&EICAR[..EICAR.len() - 1]);
    vec![
        ("clean.txt", b"just some text\n".to_vec(), ResultCode::CLEAN),
        ("eicar.com", EICAR.to_vec(), ResultCode::INFECTED),
        ("empty.bin", Vec::new(), ResultCode::CLEAN),
        ("large.bin", large, ResultCode::INFECTED),
        ("large-clean.bin", large_clean, ResultCode::CLEAN),
    ]
}

fn eicar_both_ways(rig: &Rig) -> (Plugin, Plugin) {
    let module = rig.plugin("EICAR", Role::Scanner, wasm(WASM_EICAR), limits(20_000));
    let component = rig.plugin("EICAR", Role::Scanner, wasm(WASM_P2_EICAR), limits(20_000));
    (module, component)
}

#[tokio::test]
async fn one_sdk_source_builds_a_command_module_and_a_scanner_world_component() {
    let rig = Rig::new();
    let (module, component) = eicar_both_ways(&rig);
    assert_eq!(
        module.info().wasm_kind.as_deref(),
        Some("command module (wasm32-wasip1)")
    );
    assert_eq!(
        component.info().wasm_kind.as_deref(),
        Some("scanner-world component (cordon:plugin/scanner)")
    );
    // The component still has `main`: as a post action (no `execute` export) it is run as a
    // WASI command.
    let as_command = rig.plugin(
        "EICAR",
        Role::PostAction,
        wasm(WASM_P2_EICAR),
        limits(20_000),
    );
    assert_eq!(
        as_command.info().wasm_kind.as_deref(),
        Some("command component (wasm32-wasip2, wasi:cli/run)")
    );
}

#[tokio::test]
async fn module_and_component_give_identical_engine_results_through_the_executor() {
    let rig = Rig::new();
    let (module, component) = eicar_both_ways(&rig);
    let stdin = json!({
        "data_id": "0123456789abcdef0123456789abcdef",
        "file_info": {"display_name": "x", "file_size": 1},
        "process_info": {"profile": "test", "result": "Processing"},
    });
    for (name, bytes, expected) in samples() {
        let sample = rig.sample(&bytes, name);
        let from_module =
            contract::judge_scanner(RuntimeKind::Wasm, &rig.run(&module, &sample, &stdin).await);
        let from_component = contract::judge_scanner(
            RuntimeKind::Wasm,
            &rig.run(&component, &sample, &stdin).await,
        );
        assert_eq!(from_module.failure, None, "{name}: module");
        assert_eq!(from_component, from_module, "{name}");
        assert_eq!(from_component.code, expected, "{name}");
        if expected == ResultCode::INFECTED {
            assert_eq!(from_component.threat_found, "EICAR-Test-File (not a virus)");
            assert_eq!(from_component.def_time_ms, 1_767_225_600_000);
        }
    }
}

#[tokio::test]
async fn a_scanner_of_the_file_alone_does_not_read_its_input() {
    // `eicar` is built with `file_scanner_main!`: it judges the file alone, and neither the
    // module (stdin) nor the component (the input record's `result-json`) reads the input.
    // Input that no plugin could read does not change its verdict.
    let rig = Rig::new();
    let (module, component) = eicar_both_ways(&rig);
    let sample = rig.sample(EICAR, "eicar.com");
    let unreadable = json!("not the scan result");
    for (build, plugin) in [("module", &module), ("component", &component)] {
        let verdict = contract::judge_scanner(
            RuntimeKind::Wasm,
            &rig.run(plugin, &sample, &unreadable).await,
        );
        assert_eq!(verdict.failure, None, "{build}");
        assert_eq!(verdict.code, ResultCode::INFECTED, "{build}");
    }
    // The same input fails a scanner that reads it (`scanner_main!`).
    let reader = rig.plugin(
        "SHA256 Blocklist",
        Role::Scanner,
        wasm(WASM_SHA256_BLOCKLIST),
        limits(20_000),
    );
    let verdict = contract::judge_scanner(
        RuntimeKind::Wasm,
        &rig.run(&reader, &sample, &unreadable).await,
    );
    assert_eq!(verdict.code, ResultCode::FAILED);
    let failure = verdict.failure.unwrap();
    assert_eq!(failure.exit, Some(1));
    assert!(
        failure.stderr.contains("not the scan result JSON"),
        "{}",
        failure.stderr
    );
}

#[tokio::test]
async fn module_and_component_give_identical_results_through_the_pipeline() {
    let rig = Rig::new();
    for (name, bytes, expected) in samples() {
        let sample = rig.sample(&bytes, name);
        let mut details = Vec::new();
        for path in [WASM_EICAR, WASM_P2_EICAR] {
            let plugin = rig.plugin("EICAR", Role::Scanner, wasm(path), limits(20_000));
            let result = run_pipeline(&rig, vec![plugin], &sample).await;
            assert_eq!(
                result.scan_results.scan_all_result_i, expected,
                "{name}: {path}"
            );
            let mut entry = result.scan_results.scan_details["EICAR"].clone();
            // Timings differ from run to run; everything else must not.
            entry.scan_time = 0;
            entry.wait_time = 0;
            details.push((entry, result.process_info.result.clone()));
        }
        assert_eq!(details[0], details[1], "{name}");
        assert_eq!(details[0].0.failure, None, "{name}");
    }
}

async fn run_pipeline(rig: &Rig, scanners: Vec<Plugin>, sample: &Sample) -> ScanResult {
    let wf = Workflow {
        spec: WorkflowSpec {
            name: "File scan".into(),
            scanners: scanners.iter().map(|p| p.name().clone()).collect(),
            post_actions: Vec::new(),
            max_file_size_bytes: 64 << 20,
            block_results: WorkflowSpec::default_block_results(),
            description: String::new(),
        },
        scanners: scanners.into_iter().map(Arc::new).collect(),
        post_actions: Vec::new(),
    };
    let file = fileinfo::fingerprint(&sample.path()).unwrap();
    let submission = Submission {
        data_id: Submission::new_data_id(),
        display_name: sample.file_name().to_owned(),
        user_agent: String::new(),
        username: String::new(),
        metadata: None,
        received: Utc::now(),
    };
    workflow::run(
        &rig.executor,
        &wf,
        sample,
        &file,
        &submission,
        &CancelToken::new(),
        &|_| {},
    )
    .await
}

/// Limits of the hostile command components.
fn tight(timeout_ms: u64) -> Limits {
    Limits {
        timeout: Duration::from_millis(timeout_ms),
        max_memory_bytes: 64 << 20,
        max_stdout_bytes: 4096,
        max_stderr_bytes: 4096,
        ..Limits::default()
    }
}

#[tokio::test]
async fn wasi_p2_command_components_are_held_to_the_limits() {
    let rig = Rig::new();
    let sample = rig.sample(b"some file", "file.txt");
    let cases = [
        ("loop", WASM_P2_HOSTILE_LOOP, "timeout"),
        ("sleep", WASM_P2_HOSTILE_SLEEP, "timeout"),
        ("membomb", WASM_P2_HOSTILE_MEMBOMB, "memory_limit"),
        (
            "flood-stdout",
            WASM_P2_HOSTILE_FLOOD_STDOUT,
            "output_too_large",
        ),
        (
            "flood-stderr",
            WASM_P2_HOSTILE_FLOOD_STDERR,
            "output_too_large",
        ),
        ("bad-json", WASM_P2_HOSTILE_BAD_JSON, "invalid_output"),
        ("trap", WASM_P2_HOSTILE_TRAP, "trap"),
    ];
    for (name, path, kind) in cases {
        // A deadline that those failing for another reason never come near on a sound
        // machine, so that a slow one does not turn their reason into a timeout.
        let timeout_ms = if kind == "timeout" { 1000 } else { 30_000 };
        let plugin = rig.plugin("Hostile", Role::Scanner, wasm(path), tight(timeout_ms));
        assert_eq!(
            plugin.info().wasm_kind.as_deref(),
            Some("command component (wasm32-wasip2, wasi:cli/run)"),
            "{name}"
        );
        let started = Instant::now();
        let outcome = rig.run(&plugin, &sample, &json!({})).await;
        let took = started.elapsed();
        let v = contract::judge_scanner(RuntimeKind::Wasm, &outcome);
        assert_eq!(v.code, ResultCode::FAILED, "{name}");
        let failure = v.failure.expect("a failure is recorded");
        assert_eq!(failure.kind, kind, "{name}: {}", failure.message);
        // The deadline holds for components too (plus a generous margin).
        assert!(
            took < Duration::from_millis(timeout_ms + 3000),
            "{name} took {took:?}"
        );
        if kind == "memory_limit" {
            assert!(outcome.peak_memory_bytes.unwrap() <= 64 << 20, "{name}");
        }
        if kind == "output_too_large" {
            assert!(
                outcome.stdout.len() <= 4096 && outcome.stderr.len() <= 4096,
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn a_scripted_command_component_follows_the_contract_like_a_module() {
    let rig = Rig::new();
    let sample = rig.sample(b"x", "x.txt");
    let plugin = rig.plugin(
        "Scripted",
        Role::Scanner,
        wasm(WASM_P2_HOSTILE_SCRIPTED),
        tight(5000),
    );
    let valid = r#"{"def_time": 5, "scan_result_i": 2, "threat_found": "odd"}"#;
    let outcome = rig
        .run(&plugin, &sample, &behave(json!({"stdout": valid})))
        .await;
    let v = contract::judge_scanner(RuntimeKind::Wasm, &outcome);
    assert_eq!(
        (v.code, v.threat_found.as_str(), v.failure),
        (ResultCode::SUSPICIOUS, "odd", None)
    );

    let outcome = rig
        .run(
            &plugin,
            &sample,
            &behave(json!({"stdout": valid, "exit": 3, "stderr": "no"})),
        )
        .await;
    // WASI 0.2's `exit` carries only success or failure (exit codes are unstable there):
    // `exit(3)` arrives as 1.
    assert_eq!(outcome.exit, Some(1));
    let v = contract::judge_scanner(RuntimeKind::Wasm, &outcome);
    let failure = v.failure.unwrap();
    assert_eq!(
        (failure.kind.as_str(), failure.stderr.as_str()),
        ("exit_code", "no")
    );
}

#[tokio::test]
async fn a_world_component_in_the_wrong_role_is_refused_at_load() {
    let rig = Rig::new();
    // The SDK's component exports `scan` and also wasi:cli/run, so as a post action it is
    // run as a command. A component that exports only the world is refused, with the reason.
    let scan_only = wat_component_exporting_only_scan();
    let error = rig
        .executor
        .prepare(PluginSpec {
            name: PluginName::new("Scan only").unwrap(),
            role: Role::PostAction,
            runtime: cordon::plugin::RuntimeSpec::Wasm {
                module: cordon::plugin::ModuleSource::Bytes(scan_only.clone().into()),
            },
            limits: Limits::default(),
            description: String::new(),
        })
        .expect_err("a scanner-world component is not a post action");
    assert!(
        error
            .problem
            .contains("is a scanner-world component, but the plugin's role is post_action"),
        "{error}"
    );
    // The same bytes load as a scanner, and its typed error is the recorded reason.
    let (_, info) = rig
        .executor
        .wasm()
        .prepare_bytes(&scan_only, Role::Scanner)
        .expect("a scanner-world component is a scanner");
    assert!(
        info.exports.iter().any(|e| e == "scan"),
        "{:?}",
        info.exports
    );
    assert!(!info.exports.iter().any(|e| e.starts_with("wasi:cli/run")));
}

#[tokio::test]
async fn a_world_component_s_typed_error_is_the_recorded_reason() {
    let rig = Rig::new();
    let plugin = rig.plugin(
        "Scan only",
        Role::Scanner,
        cordon::plugin::RuntimeSpec::Wasm {
            module: cordon::plugin::ModuleSource::Bytes(wat_component_exporting_only_scan().into()),
        },
        tight(5000),
    );
    let sample = rig.sample(b"x", "x.txt");
    let outcome = rig.run(&plugin, &sample, &json!({})).await;
    let v = contract::judge_scanner(RuntimeKind::Wasm, &outcome);
    assert_eq!(v.code, ResultCode::FAILED);
    let failure = v.failure.unwrap();
    assert_eq!(failure.kind, "plugin_error");
    assert!(failure.message.contains("nope"), "{}", failure.message);
}

/// A minimal component of the scanner world, written in the component text format (the
/// `wat` crate reads it): it exports `scan` and nothing else, and `scan` always returns the
/// error `other("nope")`.
fn wat_component_exporting_only_scan() -> Vec<u8> {
    let codes = [
        "no-threat-detected",
        "infected",
        "suspicious",
        "failed",
        "cleaned-deleted",
        "unknown",
        "quarantined",
        "skipped-clean",
        "skipped-infected",
        "exceeded-archive-depth",
        "not-scanned",
        "aborted",
        "encrypted-archive",
        "exceeded-archive-size",
        "exceeded-archive-file-number",
        "password-protected-document",
        "exceeded-archive-timeout",
        "file-type-mismatch",
        "potentially-vulnerable-file",
        "canceled",
        "sensitive-data-found",
        "yara-rule-matched",
        "potentially-unwanted-program",
        "unsupported-file-type",
    ]
    .map(|c| format!("{c:?}"))
    .join(" ");
    wat::parse_str(format!(
        r#"(component
            (core module $m
                (memory (export "memory") 1)
                ;; The result, at 64: tag 1 (error) at +0; the error's case 2 (other) at +8 and
                ;; its string (pointer 128, length 4) at +12.
                (data (i32.const 64) "\01\00\00\00\00\00\00\00\02\00\00\00\80\00\00\00\04\00\00\00")
                (data (i32.const 128) "nope")
                ;; The input record has more than 16 flat values: it arrives by pointer; the
                ;; result is returned by pointer.
                (func (export "scan") (param i32) (result i32) i32.const 64)
                (global $next (mut i32) (i32.const 1024))
                (func (export "realloc") (param i32 i32 i32 i32) (result i32)
                    (local $at i32)
                    ;; Bump allocation, aligned as asked.
                    (local.set $at (i32.and
                        (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
                        (i32.sub (i32.const 0) (local.get 2))))
                    (global.set $next (i32.add (local.get $at) (local.get 3)))
                    (local.get $at)))
            (core instance $i (instantiate $m))
            ;; The types of an exported function must be exported (named) types.
            (type $input' (record
                (field "data-id" string) (field "path" string) (field "display-name" string)
                (field "file-size" u64) (field "file-type" string) (field "md5" string)
                (field "sha1" string) (field "sha256" string) (field "workflow" string)
                (field "metadata-json" string) (field "result-json" string)))
            (export $input "input" (type $input'))
            (type $code' (enum {codes}))
            (export $code "result-code" (type $code'))
            (type $verdict' (record (field "def-time" u64) (field "code" $code) (field "threat-found" string)))
            (export $verdict "verdict" (type $verdict'))
            (type $error' (variant (case "io" string) (case "invalid-input" string) (case "other" string)))
            (export $error "error" (type $error'))
            (func $scan (param "input" $input) (result (result $verdict (error $error)))
                (canon lift (core func $i "scan") (memory (core memory $i "memory"))
                    (realloc (core func $i "realloc"))))
            (export "scan" (func $scan)))"#
    ))
    .expect("the test component is valid")
}
