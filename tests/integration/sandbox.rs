//! What a plugin can see and do, as the `escape` plugin observes it from inside: a wasm
//! plugin reads its one file and nothing else, cannot write it, cannot create files, cannot
//! reach the network, has no environment; a native plugin gets an empty environment, a fresh
//! working directory and the absolute sample path as its last argument.

use std::collections::BTreeMap;

use cordon::contract;
use cordon::plugin::{Role, RuntimeKind, RuntimeSpec};
use cordon::verdict::ResultCode;
use cordon_tests::artifacts::{NATIVE_HOSTILE_ESCAPE, WASM_HOSTILE_ESCAPE, WASM_P2_HOSTILE_ESCAPE};
use serde_json::{Value, json};

use crate::harness::{Rig, limits, process, wasm};

/// Run `escape` and return what it observed.
async fn observe(rig: &Rig, runtime: RuntimeKind, sample: &cordon::sample::Sample) -> Value {
    let spec = match runtime {
        RuntimeKind::Wasm => wasm(WASM_HOSTILE_ESCAPE),
        _ => process(NATIVE_HOSTILE_ESCAPE),
    };
    observe_with(rig, runtime, spec, sample).await
}

/// Run `escape` built as `spec` and return what it observed.
async fn observe_with(
    rig: &Rig,
    runtime: RuntimeKind,
    spec: RuntimeSpec,
    sample: &cordon::sample::Sample,
) -> Value {
    let plugin = rig.plugin("Escape", Role::Scanner, spec, limits(20_000));
    let outcome = rig.run(&plugin, sample, &json!({"data_id": "x"})).await;
    let v = contract::judge_scanner(runtime, &outcome);
    assert_eq!(
        v.code,
        ResultCode::CLEAN,
        "{runtime}: {v:?} {:?}",
        String::from_utf8_lossy(&outcome.stderr)
    );
    serde_json::from_str(&v.threat_found).expect("escape reports JSON in threat_found")
}

fn probes(report: &Value) -> BTreeMap<String, String> {
    report
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

#[tokio::test]
async fn a_wasm_plugin_sees_its_file_and_nothing_else() {
    let rig = Rig::new();
    let sample = rig.sample(b"twelve bytes", "inv oice.pdf");
    let report = observe(&rig, RuntimeKind::Wasm, &sample).await;
    assert_sandboxed(&report, &sample);
}

#[tokio::test]
async fn a_wasm_component_sees_its_file_and_nothing_else() {
    // The same probe as a WASI p2 command component, which has wasi:sockets in its linker
    // and its own filesystem bindings: the same view.
    let rig = Rig::new();
    let sample = rig.sample(b"twelve bytes", "inv oice.pdf");
    let report = observe_with(
        &rig,
        RuntimeKind::Wasm,
        wasm(WASM_P2_HOSTILE_ESCAPE),
        &sample,
    )
    .await;
    assert_sandboxed(&report, &sample);
}

/// What the `escape` probe must report from inside the wasm sandbox.
fn assert_sandboxed(report: &Value, sample: &cordon::sample::Sample) {
    let p = probes(report);
    let ok = |k: &str| p[k].starts_with("ok:");
    let denied = |k: &str| p[k].starts_with("err:");

    assert_eq!(
        report["args"],
        json!(["Escape", "/scan/inv_oice.pdf"]),
        "args are [name, guest path]"
    );
    assert_eq!(report["env_count"], json!(0), "no environment");
    assert_eq!(p["read_sample"], "ok:12", "it reads its file");
    assert_eq!(
        p["stdin"],
        format!("ok:{}", "{\"data_id\":\"x\"}\n".len()),
        "stdin is the JSON line"
    );
    assert_eq!(
        p["list_scan_dir"], "ok:inv_oice.pdf",
        "its directory holds its file alone"
    );
    for probe in [
        "write_sample",
        "create_file_in_scan_dir",
        "read_etc_passwd",
        "read_parent",
        "read_parent_etc_passwd",
        "list_parent",
        "list_root",
        "tcp_connect_127.0.0.1:1",
        "spawn",
    ] {
        assert!(
            denied(probe),
            "{probe} should be denied inside the sandbox: {}",
            p[probe]
        );
    }
    assert!(ok("clock"), "a clock is available: {}", p["clock"]);
    // The sample is untouched.
    assert_eq!(std::fs::read(sample.path()).unwrap(), b"twelve bytes");
}

#[tokio::test]
async fn a_native_plugin_gets_an_empty_environment_and_a_fresh_directory() {
    let rig = Rig::new();
    let sample = rig.sample(b"twelve bytes", "invoice.pdf");
    let report = observe(&rig, RuntimeKind::Process, &sample).await;
    let p = probes(&report);
    let args = report["args"].as_array().unwrap();
    assert_eq!(
        args.last().unwrap(),
        &json!(sample.path().to_str().unwrap()),
        "absolute path last"
    );
    assert_eq!(report["env_count"], json!(0), "empty environment");
    assert_eq!(p["read_sample"], "ok:12");
    let cwd = p["cwd"].strip_prefix("ok:").unwrap();
    assert!(
        !sample.dir().starts_with(cwd),
        "working directory {cwd} is not the sample's"
    );
    assert!(
        !std::path::Path::new(cwd).exists(),
        "working directory {cwd} is removed afterwards"
    );
    // The sample's mode is 0444. That stops a native plugin from writing it, except when
    // Cordon runs as root, which ignores file modes (the wasm sandbox does not depend on
    // modes at all). Assert what actually holds for the user running the tests.
    if running_as_root() {
        assert!(
            p["write_sample"].starts_with("ok:"),
            "{}",
            p["write_sample"]
        );
    } else {
        assert!(
            p["write_sample"].starts_with("err:"),
            "{}",
            p["write_sample"]
        );
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A server's scan slot keeps its directory open for every sample it holds, as wasm plugins'
/// preopen: each sample must be what a plugin sees there, under its own name, alone.
#[tokio::test]
async fn each_sample_in_a_reused_scan_slot_is_what_a_wasm_plugin_sees() {
    let rig = Rig::new();
    let pool = cordon::sample::SlotPool::open(&rig.dir.path().join("slots")).unwrap();
    let samples = [
        (&b"twelve bytes"[..], "first.txt"),
        (&b"a longer second sample"[..], "second.pdf"),
        (&b"3"[..], "third"),
    ];
    let mut dirs = Vec::new();
    for (bytes, name) in samples {
        let sample = pool.sample(bytes, name).unwrap();
        dirs.push(sample.dir().to_owned());
        let report = observe(&rig, RuntimeKind::Wasm, &sample).await;
        let p = probes(&report);
        assert_eq!(report["args"], json!(["Escape", format!("/scan/{name}")]));
        assert_eq!(p["read_sample"], format!("ok:{}", bytes.len()), "{name}");
        assert_eq!(p["list_scan_dir"], format!("ok:{name}"), "{name} alone");
    }
    assert!(
        dirs.iter().all(|d| d == &dirs[0]),
        "one slot held the three samples: {dirs:?}"
    );
}
