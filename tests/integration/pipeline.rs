//! The per-file pipeline end to end, with the seed's examples as test cases: scan_details
//! entries, post_processing and post_action objects, verdict aggregation, blocking, progress.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use cordon::config::WorkflowSpec;
use cordon::executor::Plugin;
use cordon::fileinfo;
use cordon::plugin::{NativeSandbox, Role, RuntimeKind, RuntimeSpec};
use cordon::result::ScanResult;
use cordon::sample::Sample;
use cordon::verdict::ResultCode;
use cordon::workflow::{self, CancelToken, Submission, Workflow};
use cordon_tests::artifacts::*;
use serde_json::{Value, json};

use crate::harness::{Rig, WebhookServer, limits, process, scripted_plugin, wasm};

fn workflow(scanners: Vec<Plugin>, post_actions: Vec<Plugin>) -> Workflow {
    Workflow {
        spec: WorkflowSpec {
            name: "File scan".into(),
            scanners: scanners.iter().map(|p| p.name().clone()).collect(),
            post_actions: post_actions.iter().map(|p| p.name().clone()).collect(),
            max_file_size_bytes: 1 << 20,
            block_results: WorkflowSpec::default_block_results(),
            description: String::new(),
        },
        scanners: scanners.into_iter().map(Arc::new).collect(),
        post_actions: post_actions.into_iter().map(Arc::new).collect(),
    }
}

async fn process_file(
    rig: &Rig,
    wf: &Workflow,
    sample: &Sample,
    metadata: Option<Value>,
) -> (ScanResult, Vec<ScanResult>) {
    let file = fileinfo::fingerprint(&sample.path()).unwrap();
    let submission = Submission {
        data_id: Submission::new_data_id(),
        display_name: "archive.zip".into(),
        user_agent: "webscan".into(),
        username: "LOCAL/admin".into(),
        metadata,
        received: Utc::now(),
    };
    let seen = Mutex::new(Vec::new());
    let result = workflow::run(
        &rig.executor,
        wf,
        sample,
        &file,
        &submission,
        &CancelToken::new(),
        &|r| seen.lock().unwrap().push(r.clone()),
    )
    .await;
    (result, seen.into_inner().unwrap())
}

fn scripted(rig: &Rig, name: &str, role: Role) -> Plugin {
    rig.plugin(name, role, process(NATIVE_HOSTILE_SCRIPTED), limits(20_000))
}

#[tokio::test]
async fn a_scanner_printing_the_seed_output_yields_the_seed_entry() {
    let rig = Rig::new();
    let wf = workflow(vec![scripted(&rig, "ExtScn_01", Role::Scanner)], vec![]);
    let sample = rig.sample(b"PK\x03\x04", "archive.zip");
    // The seed's valid output, with the def_time of the seed's ExtScn_01 entry.
    let output =
        "{\n\"def_time\": 1488172751000,\n\"scan_result_i\": 0,\n\"threat_found\": \"\"\n}";
    let (result, _) = process_file(
        &rig,
        &wf,
        &sample,
        Some(json!({"behave": {"stdout": output}})),
    )
    .await;
    let entry = serde_json::to_value(&result.scan_results.scan_details["ExtScn_01"]).unwrap();
    assert_eq!(entry["def_time"], "2017-02-27T05:19:11.000Z");
    assert_eq!(entry["location"], "local");
    assert_eq!(entry["scan_result_i"], 0);
    assert_eq!(entry["threat_found"], "");
    assert!(entry["scan_time"].is_u64() && entry["wait_time"].is_u64());
    // Lowercased, with `_` for each character but letters and digits, and the runtime.
    assert_eq!(entry["eng_id"], "extscn_01_process");
    assert!(entry.get("failure").is_none());
    assert_eq!(result.scan_results.scan_all_result_i, ResultCode::CLEAN);
    assert_eq!(result.scan_results.scan_all_result_a, "No Threat Detected");
    assert_eq!(result.process_info.result, "Allowed");

    // The seed's literal example output: def_time 1491288912392.
    let (result, _) = process_file(
        &rig,
        &wf,
        &sample,
        Some(json!({"behave": {"stdout": "{\"def_time\": 1491288912392, \"scan_result_i\": 0, \"threat_found\": \"\"}"}})),
    )
    .await;
    assert_eq!(
        result.scan_results.scan_details["ExtScn_01"].def_time,
        "2017-04-04T06:55:12.392Z"
    );

    // A name with a space and punctuation: each becomes `_` in its `eng_id`.
    let wf = workflow(vec![scripted(&rig, "Ext Scn-2.b", Role::Scanner)], vec![]);
    let (result, _) = process_file(
        &rig,
        &wf,
        &sample,
        Some(json!({"behave": {"stdout": output}})),
    )
    .await;
    assert_eq!(
        result.scan_results.scan_details["Ext Scn-2.b"].eng_id,
        "ext_scn_2_b_process"
    );
}

/// A `post_action` object as the seed shows it: Cordon's additions to each detail taken out
/// (`failure`; `peak_processes`, a native post action's most processes at once where its
/// cgroup keeps it: these scripts are one process; and `peak_memory_bytes`, its memory
/// cgroup's peak where it has one, which is under its limit).
fn without_cordons_additions(pa: &mut serde_json::Value) {
    for detail in pa["details"].as_array_mut().unwrap() {
        let detail = detail.as_object_mut().unwrap();
        detail.remove("failure");
        if let Some(peak) = detail.remove("peak_processes") {
            assert_eq!(peak, json!(1), "{detail:?}");
        }
        if let Some(peak) = detail.remove("peak_memory_bytes") {
            let limit = limits(20_000).max_memory_bytes;
            assert!(
                peak.as_u64().is_some_and(|b| b > 0 && b <= limit),
                "{detail:?}"
            );
        }
    }
}

#[tokio::test]
async fn post_actions_yield_the_seed_objects() {
    let rig = Rig::new();
    let sample = rig.sample(b"PK\x03\x04", "test.zip");
    let clean = "{\"def_time\": 0, \"scan_result_i\": 0, \"threat_found\": \"\"}";

    // Returns 0: the seed's "Test PA" example.
    let wf = workflow(
        vec![scripted(&rig, "Avira", Role::Scanner)],
        vec![scripted(&rig, "Test PA", Role::PostAction)],
    );
    let (result, _) = process_file(
        &rig,
        &wf,
        &sample,
        Some(json!({"behave": {"stdout": clean}})),
    )
    .await;
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(
        json["process_info"]["post_processing"],
        json!({"actions_failed": "", "actions_ran": "Test PA", "converted_destination": "",
               "converted_to": "", "copy_move_destination": ""})
    );
    let mut pa = json["post_action"].clone();
    assert!(pa["details"][0]["duration"].is_u64());
    pa["details"][0]["duration"] = json!(6);
    without_cordons_additions(&mut pa);
    assert_eq!(
        pa,
        json!({"details": [{"duration": 6, "name": "Test PA", "return_value": 0, "verdict": 35}],
               "total_blocked": 0, "total_executed": 1, "total_failed": 0,
               "total_post_action": 1, "total_success": 1})
    );

    // Returns 1: the seed's "Pst_Act_01" example.
    let wf = workflow(
        vec![scripted(&rig, "ClamAV", Role::Scanner)],
        vec![scripted(&rig, "Pst_Act_01", Role::PostAction)],
    );
    // The scanner prints a clean verdict but exits 1 too: its result is Failed, which blocks.
    let (result, _) = process_file(
        &rig,
        &wf,
        &sample,
        Some(json!({"behave": {"stdout": clean, "exit": 1}})),
    )
    .await;
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(
        json["process_info"]["post_processing"]["actions_failed"],
        "Pst_Act_01 failed"
    );
    assert_eq!(json["process_info"]["post_processing"]["actions_ran"], "");
    assert_eq!(json["process_info"]["result"], "Blocked");
    let mut pa = json["post_action"].clone();
    pa["details"][0]["duration"] = json!(6);
    assert!(pa["details"][0]["failure"].is_object(), "{pa}");
    without_cordons_additions(&mut pa);
    assert_eq!(
        pa,
        json!({"details": [{"duration": 6, "name": "Pst_Act_01", "return_value": 1, "verdict": 37}],
               "total_blocked": 0, "total_executed": 1, "total_failed": 1,
               "total_post_action": 1, "total_success": 0})
    );
}

#[tokio::test]
async fn several_post_actions_are_joined_in_order() {
    let rig = Rig::new();
    let server = WebhookServer::start().await;
    let sample = rig.sample(b"hello", "a.txt");
    let ok = rig.plugin(
        "First",
        Role::PostAction,
        scripted_plugin(RuntimeKind::Wasm, &server),
        limits(20_000),
    );
    let hook = rig.plugin(
        "Hook",
        Role::PostAction,
        server.url("/scripted"),
        limits(20_000),
    );
    let failing = rig.plugin(
        "Failing",
        Role::PostAction,
        process(NATIVE_HOSTILE_TRAP),
        limits(20_000),
    );
    let wf = workflow(vec![], vec![ok, failing, hook]);
    let (result, _) = process_file(&rig, &wf, &sample, None).await;
    let pp = &result.process_info.post_processing;
    assert_eq!(pp.actions_ran, "First | Hook");
    assert_eq!(pp.actions_failed, "Failing failed");
    let pa = result.post_action.unwrap();
    let names: Vec<_> = pa
        .details
        .iter()
        .map(|d| (d.name.as_str(), d.return_value, d.verdict))
        .collect();
    assert_eq!(
        names,
        [("First", 0, 35), ("Failing", -1, 37), ("Hook", 200, 35)]
    );
    // The webhook post action got the result so far: not final, processing_time -1.
    let body = &server.seen.lock().unwrap().bodies[0];
    assert_eq!(
        body["processing_result"]["process_info"]["processing_time"],
        -1
    );
    assert_eq!(
        body["processing_result"]["process_info"]["post_processing"]["actions_ran"],
        "First"
    );
    assert_eq!(
        body["resource_path"],
        json!(sample.path().to_str().unwrap())
    );
}

#[tokio::test]
async fn verdicts_combine_by_priority_and_failures_never_look_clean() {
    let rig = Rig::new();
    let eicar = || rig.plugin("EICAR", Role::Scanner, wasm(WASM_EICAR), limits(20_000));
    let broken = || {
        rig.plugin(
            "Broken",
            Role::Scanner,
            wasm(WASM_HOSTILE_BAD_JSON),
            limits(20_000),
        )
    };
    let filetype = || {
        rig.plugin(
            "FileType",
            Role::Scanner,
            wasm(WASM_FILETYPE),
            limits(20_000),
        )
    };

    // Clean + Failed: Failed, blocked.
    let clean = rig.sample(b"just text", "notes.txt");
    let (r, _) = process_file(
        &rig,
        &workflow(vec![eicar(), broken()], vec![]),
        &clean,
        None,
    )
    .await;
    assert_eq!(r.scan_results.scan_all_result_i, ResultCode::FAILED);
    assert_eq!(r.process_info.result, "Blocked");
    assert_eq!(r.process_info.blocked_reason, "Failed");
    assert_eq!(r.process_info.verdicts, ["Failed", "No Threat Detected"]);

    // Infected + Failed: Infected.
    let infected = rig.sample(
        b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
        "eicar.txt",
    );
    let (r, _) = process_file(
        &rig,
        &workflow(vec![eicar(), broken()], vec![]),
        &infected,
        None,
    )
    .await;
    assert_eq!(r.scan_results.scan_all_result_i, ResultCode::INFECTED);
    assert_eq!(r.process_info.blocked_reasons, ["Infected"]);

    // A PDF named .exe: File type Mismatch.
    let pdf = rig.sample(
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        "invoice.exe",
    );
    let (r, _) = process_file(
        &rig,
        &workflow(vec![eicar(), filetype()], vec![]),
        &pdf,
        None,
    )
    .await;
    assert_eq!(
        r.scan_results.scan_all_result_i,
        ResultCode::FILE_TYPE_MISMATCH
    );

    // Only clean engines: allowed.
    let (r, _) = process_file(
        &rig,
        &workflow(vec![eicar(), filetype()], vec![]),
        &clean,
        None,
    )
    .await;
    assert_eq!(
        (
            r.scan_results.scan_all_result_i,
            r.process_info.result.as_str()
        ),
        (ResultCode::CLEAN, "Allowed")
    );
    assert_eq!(r.process_info.blocked_reason, "");

    // No engine at all: Not Scanned, blocked.
    let (r, _) = process_file(&rig, &workflow(vec![], vec![]), &clean, None).await;
    assert_eq!(r.scan_results.scan_all_result_i, ResultCode::NOT_SCANNED);
    assert_eq!(r.process_info.result, "Blocked");
}

#[tokio::test]
async fn progress_reaches_100_together_and_only_at_the_end() {
    let rig = Rig::new();
    let sample = rig.sample(b"hello", "a.txt");
    let wf = workflow(
        vec![
            rig.plugin("EICAR", Role::Scanner, wasm(WASM_EICAR), limits(20_000)),
            rig.plugin(
                "Native",
                Role::Scanner,
                process(NATIVE_EICAR),
                limits(20_000),
            ),
        ],
        vec![rig.plugin(
            "PA",
            Role::PostAction,
            process(NATIVE_HOSTILE_SCRIPTED),
            limits(20_000),
        )],
    );
    let (result, updates) = process_file(&rig, &wf, &sample, None).await;
    assert!(updates.len() >= 4, "one update per step: {}", updates.len());
    let first = &updates[0];
    assert_eq!(
        first.scan_results.scan_all_result_i,
        ResultCode::IN_PROGRESS
    );
    assert_eq!(first.process_info.result, "Processing");
    assert_eq!(first.process_info.processing_time, -1);
    for u in &updates[..updates.len() - 1] {
        assert!(u.process_info.progress_percentage < 100);
        // Until the very end, clients see no verdict, even once post actions run.
        assert_eq!(u.scan_results.scan_all_result_i, ResultCode::IN_PROGRESS);
        assert_eq!(
            (
                u.process_info.result.as_str(),
                u.process_info.blocked_reason.as_str()
            ),
            ("Processing", "")
        );
        assert_eq!(
            u.process_info.progress_percentage,
            u.scan_results.progress_percentage
        );
    }
    let percents: Vec<u8> = updates
        .iter()
        .map(|u| u.process_info.progress_percentage)
        .collect();
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {percents:?}"
    );
    assert_eq!(result.process_info.progress_percentage, 100);
    assert_eq!(result.scan_results.progress_percentage, 100);
    assert!(result.process_info.processing_time >= 0);
    assert_eq!(updates.last().unwrap(), &result);
    assert_eq!(
        result.post_action.unwrap().total_executed,
        1,
        "post actions ran before 100"
    );
}

#[tokio::test]
async fn plugins_get_the_result_so_far_on_one_line_without_extracted_files() {
    let rig = Rig::new();
    let server = WebhookServer::start().await;
    let sample = rig.sample(b"hello", "a.txt");
    let hook = rig.plugin(
        "Hook",
        Role::Scanner,
        server.url("/scripted"),
        limits(20_000),
    );
    let wf = workflow(vec![hook], vec![]);
    process_file(&rig, &wf, &sample, Some(json!({"ticket": 42}))).await;
    let body = server.seen.lock().unwrap().bodies[0].clone();
    let stdin = &body["processing_result"];
    assert!(stdin.get("extracted_files").is_none());
    assert_eq!(
        stdin["metadata"],
        json!({"ticket": 42}),
        "the submission's metadata travels"
    );
    assert_eq!(stdin["scan_results"]["scan_all_result_i"], 255);
    assert_eq!(
        stdin["file_info"]["sha256"],
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    let keys: BTreeSet<&str> = stdin
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(keys.is_superset(&BTreeSet::from([
        "data_id",
        "file_info",
        "process_info",
        "scan_results"
    ])));
}

#[tokio::test]
async fn a_file_cancelled_before_its_scan_starts_runs_no_plugin() {
    // The server cancels a file that waited for a scan slot by handing the pipeline a token
    // already cancelled: no scanner may start, and the file ends Canceled.
    let rig = Rig::new();
    let sample = rig.sample(b"x", "x.bin");
    // The plugin marks each run in a directory its sandbox lets it write.
    let marks = rig.dir.path().join("marks");
    let ran = marks.join("ran");
    let script = rig.dir.path().join("marker.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho >> '{}'\necho '{{\"def_time\": 0, \"scan_result_i\": 0, \"threat_found\": \"\"}}'\n",
            ran.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let marker = rig.plugin(
        "Marker",
        Role::Scanner,
        RuntimeSpec::Process {
            program: script.clone(),
            args: Vec::new(),
            env: Vec::new(),
            sandbox: NativeSandbox {
                write: vec![marks],
                ..NativeSandbox::default()
            },
        },
        limits(20_000),
    );
    // Control: not cancelled, it runs.
    let wf = workflow(vec![marker], vec![]);
    let (result, _) = process_file(&rig, &wf, &sample, None).await;
    assert_eq!(result.scan_results.scan_all_result_i, ResultCode::CLEAN);
    assert!(ran.exists(), "the control scan did not run its plugin");
    std::fs::remove_file(&ran).unwrap();

    let file = fileinfo::fingerprint(&sample.path()).unwrap();
    let cancelled = CancelToken::new();
    cancelled.cancel();
    // What this cannot show: with the cancel not checked first, half of these runs would
    // spawn the plugin and kill it at once, too soon for it to write its marker unless the
    // host is descheduled in between (which is how a loaded machine once caught it).
    for _ in 0..16 {
        let submission = Submission {
            data_id: Submission::new_data_id(),
            display_name: "x.bin".into(),
            user_agent: String::new(),
            username: String::new(),
            metadata: None,
            received: Utc::now(),
        };
        let result = workflow::run(
            &rig.executor,
            &wf,
            &sample,
            &file,
            &submission,
            &cancelled,
            &|_| {},
        )
        .await;
        assert_eq!(result.scan_results.scan_all_result_i, ResultCode::CANCELED);
        assert_eq!(
            result.scan_results.scan_details["Marker"].scan_result_i,
            ResultCode::CANCELED
        );
    }
    assert!(!ran.exists(), "a cancelled file started its plugin");
}
