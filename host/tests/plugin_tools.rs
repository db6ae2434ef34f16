//! `cordon plugin check|run|new` with the real `cordon` binary: arguments, output and exit
//! statuses; and a scaffolded plugin that passes its own `cargo test`, builds for
//! wasm32-wasip1, and is accepted and run by the tools.
//!
//! These tests live in the `cordon` package because only the package that defines a binary
//! can name it (`CARGO_BIN_EXE_cordon`). The tools' behaviour on every example and hostile
//! plugin is tested through the library in the `tests` crate (`tests/integration/tools.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Run `cordon` with `args`.
fn cordon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("cordon runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A WASI command module whose `_start` writes `stdout` to fd 1 and then runs `tail`.
fn command_module(stdout: &str, tail: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write"
                (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 64) "{escaped}")
            (func (export "_start")
                (i32.store (i32.const 0) (i32.const 64))
                (i32.store (i32.const 4) (i32.const {len}))
                (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
                {tail}))"#,
        len = stdout.len(),
        escaped = stdout
            .bytes()
            .map(|b| format!("\\{b:02x}"))
            .collect::<String>(),
    ))
    .expect("test WAT is valid")
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }

    fn put(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.0.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

const CLEAN: &str = r#"{"def_time": 1700000000000, "scan_result_i": 0, "threat_found": ""}"#;

#[test]
fn check_accepts_a_wasi_command_and_refuses_a_foreign_import() {
    let dir = Dir::new();
    let good = dir.put("good.wasm", &command_module(CLEAN, ""));
    let out = cordon(&["plugin", "check", &good]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("core module (wasm32-wasip1)"), "{stdout}");
    assert!(
        stdout.contains("provided     wasi_snapshot_preview1::fd_write"),
        "{stdout}"
    );
    assert!(stdout.contains("compile "), "{stdout}");
    assert!(stdout.contains("cached load "), "{stdout}");
    // One page of memory (the module's `(memory 1)`).
    assert!(
        stdout.contains(
            "memory          64.0 KiB (65536 bytes) to start (its initial memory): \
             max_memory_bytes must be at least 65536"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("accepted: the host loads it as a scanner and as a post action"),
        "{stdout}"
    );

    let out = cordon(&["plugin", "check", "--json", "--role", "post_action", &good]);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(report["accepted"], true);
    assert_eq!(report["binary"], "module");
    assert_eq!(report["roles"][0]["role"], "post_action");
    assert_eq!(report["roles"].as_array().unwrap().len(), 1);
    assert!(report["compile_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(report["initial_memory_bytes"], 65536);

    let bad = dir.put(
        "bad.wasm",
        &wat::parse_str(
            r#"(module (import "env" "x" (func)) (memory (export "memory") 1)
                       (func (export "_start")))"#,
        )
        .unwrap(),
    );
    let out = cordon(&["plugin", "check", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("NOT PROVIDED env::x"), "{stdout}");
    assert!(
        stdout.contains("refused: imports `env::x`, which the sandbox does not provide"),
        "{stdout}"
    );

    let out = cordon(&[
        "plugin",
        "check",
        dir.path("missing.wasm").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("cordon: cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_shows_the_outcome_and_exits_by_the_contract() {
    let dir = Dir::new();
    let sample = dir.put("sample.txt", b"hello");

    let good = dir.put("good.wasm", &command_module(CLEAN, ""));
    let out = cordon(&["plugin", "run", &good, &sample]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    for expected in [
        "--- stdin (",
        "\"display_name\":\"sample.txt\"",
        "--- stdout (67 bytes)",
        CLEAN,
        "exit      0",
        "duration  ",
        "memory    peak ",
        "result    0 No Threat Detected",
        "contract  met",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }

    // The precise violation.
    let wrong = r#"{"def_time": 0, "scan_result_i": "1", "threat_found": ""}"#;
    let bad = dir.put("bad.wasm", &command_module(wrong, ""));
    let out = cordon(&["plugin", "run", &bad, &sample]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(
            "contract  BROKEN (invalid_output): scan_result_i: expected an integer result code, \
             got the string \"1\""
        ),
        "{}",
        text(&out.stdout)
    );

    // A timeout, as JSON.
    let spin = dir.put("spin.wasm", &command_module("", "(loop $l (br $l))"));
    let out = cordon(&[
        "plugin",
        "run",
        "--json",
        "--timeout-ms",
        "200",
        &spin,
        &sample,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(report["contract_met"], false);
    assert_eq!(report["violation"]["kind"], "timeout");
    assert_eq!(report["exit"], Value::Null);
    assert_eq!(report["limits"]["timeout_ms"], 200);
    assert_eq!(report["engine_result"]["scan_result_i"], 3);

    // Bad arguments are the tool's error, not the plugin's.
    let out = cordon(&["plugin", "run", "--input", "{not json", &good, &sample]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--input is not valid JSON"),
        "{}",
        text(&out.stderr)
    );
}

/// Run a cargo command in `dir`, offline first (the registry cache is warm after the
/// workspace's own build); online only if something is missing from the cache.
fn cargo(dir: &Path, target_dir: &Path, args: &[&str]) -> Output {
    let run = |offline: bool| {
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command
            .current_dir(dir)
            .args(args)
            .env("CARGO_TARGET_DIR", target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        if offline {
            command.arg("--offline");
        }
        command.output().expect("cargo runs")
    };
    let out = run(true);
    if !out.status.success() && text(&out.stderr).contains("offline") {
        return run(false);
    }
    out
}

#[test]
fn a_scaffolded_plugin_passes_its_tests_builds_to_wasm_and_is_accepted() {
    let dir = Dir::new();
    let crate_dir = dir.path("my-scanner");
    let out = cordon(&[
        "plugin",
        "new",
        "my-scanner",
        "--dir",
        crate_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("cargo build --release --target wasm32-wasip1"));
    for file in [
        "Cargo.toml",
        ".cargo/config.toml",
        "src/main.rs",
        "README.md",
        ".gitignore",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file}");
    }
    // A second time into the same directory is refused.
    let again = cordon(&[
        "plugin",
        "new",
        "my-scanner",
        "--dir",
        crate_dir.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("not empty"));

    // Its own target directory, kept between runs, so that the nested cargo never waits on
    // this workspace's lock and rebuilds little.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    let out = cargo(&crate_dir, &target, &["test"]);
    assert!(
        out.status.success(),
        "cargo test failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("test result: ok. 5 passed"),
        "{}",
        text(&out.stdout)
    );

    let out = cargo(&crate_dir, &target, &["build", "--target", "wasm32-wasip1"]);
    assert!(
        out.status.success(),
        "cargo build failed:\n{}",
        text(&out.stderr)
    );
    let wasm = target.join("wasm32-wasip1/debug/my-scanner.wasm");
    assert!(wasm.is_file(), "{}", wasm.display());
    let wasm = wasm.to_str().unwrap();

    let out = cordon(&["plugin", "check", "--role", "scanner", wasm]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    let marked = dir.put("release-notes.txt", b"draft: DO-NOT-SHIP yet");
    let out = cordon(&["plugin", "run", "--json", wasm, &marked]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["engine_result"]["scan_result_i"], 2);
    assert_eq!(report["engine_result"]["threat_found"], "Marker.DoNotShip");
    let clean = dir.put("notes.txt", b"nothing here");
    let out = cordon(&["plugin", "run", "--json", wasm, &clean]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["engine_result"]["scan_result_i"], 0);
}
