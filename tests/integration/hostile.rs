//! The hostile matrix: each hostile plugin, as a wasm module and as a native process built
//! from the same source, gives Failed with the right reason; the deadline holds (the
//! configured timeout plus a small margin); the host stays up and the next scan works.

use std::time::{Duration, Instant};

use cordon::contract;
use cordon::plugin::{Limits, Role, RuntimeKind, RuntimeSpec};
use cordon::verdict::ResultCode;
use cordon_tests::artifacts::*;
use serde_json::json;

use crate::harness::{
    Rig, behave, gone_within, limits, pids_in, plugin_cgroups, plugin_memory_cgroups, process, wasm,
};

/// Timeout given to hostile plugins.
const TIMEOUT_MS: u64 = 1000;
/// Timeout given to a hostile plugin that should fail for another reason (its memory, its
/// output): one it never comes near on a sound machine (it fails in well under a second), so
/// that on a slow one, an emulated virtual machine, its reason is not taken over by the
/// deadline.
const OTHER_REASON_TIMEOUT_MS: u64 = 30_000;
/// Timeout given to a hostile plugin that must start a program of its own and report it
/// before its deadline: a program's start takes 0.7 s in an emulated Linux 5.10.
const SLOW_START_TIMEOUT_MS: u64 = 5_000;
/// What "a small margin" means here: process teardown on a loaded or slow machine (under
/// emulation, nine plugins torn down at once took 3.3 s from the start of a 1 s deadline).
/// Against plugins that would otherwise run forever, any bound shows the deadline held.
const MARGIN: Duration = Duration::from_secs(5);
/// `max_open_files` given to hostile plugins.
const OPEN_FILES: u32 = 64;
/// `max_disk_bytes` given to hostile plugins: 8 MiB.
const DISK_BYTES: u64 = 8 << 20;
/// `max_processes` given to hostile plugins.
const PROCESSES: u32 = 32;

struct Case {
    name: &'static str,
    wasm: &'static str,
    native: &'static str,
    /// Failure kind expected in wasm and natively.
    wasm_kind: &'static str,
    native_kind: &'static [&'static str],
    /// A fragment of the failure message (both runtimes), when there is a fixed one.
    message: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "loop",
        wasm: WASM_HOSTILE_LOOP,
        native: NATIVE_HOSTILE_LOOP,
        wasm_kind: "timeout",
        native_kind: &["timeout"],
        message: Some("timed out"),
    },
    Case {
        name: "sleep",
        wasm: WASM_HOSTILE_SLEEP,
        native: NATIVE_HOSTILE_SLEEP,
        wasm_kind: "timeout",
        native_kind: &["timeout"],
        message: Some("timed out"),
    },
    // Natively its memory cgroup stops it (`memory_limit`); where there is none, a failed
    // allocation under RLIMIT_DATA aborts (SIGABRT) or exits non-zero.
    Case {
        name: "membomb",
        wasm: WASM_HOSTILE_MEMBOMB,
        native: NATIVE_HOSTILE_MEMBOMB,
        wasm_kind: "memory_limit",
        native_kind: &["memory_limit", "signal", "exit_code"],
        message: None,
    },
    Case {
        name: "flood-stdout",
        wasm: WASM_HOSTILE_FLOOD_STDOUT,
        native: NATIVE_HOSTILE_FLOOD_STDOUT,
        wasm_kind: "output_too_large",
        native_kind: &["output_too_large"],
        message: Some("to stdout"),
    },
    Case {
        name: "flood-stderr",
        wasm: WASM_HOSTILE_FLOOD_STDERR,
        native: NATIVE_HOSTILE_FLOOD_STDERR,
        wasm_kind: "output_too_large",
        native_kind: &["output_too_large"],
        message: Some("to stderr"),
    },
    Case {
        name: "bad-json",
        wasm: WASM_HOSTILE_BAD_JSON,
        native: NATIVE_HOSTILE_BAD_JSON,
        wasm_kind: "invalid_output",
        native_kind: &["invalid_output"],
        message: Some("not valid JSON"),
    },
    Case {
        name: "trap",
        wasm: WASM_HOSTILE_TRAP,
        native: NATIVE_HOSTILE_TRAP,
        wasm_kind: "trap",
        native_kind: &["signal"],
        message: None,
    },
    Case {
        name: "panic",
        wasm: WASM_HOSTILE_PANIC,
        native: NATIVE_HOSTILE_PANIC,
        wasm_kind: "trap",
        native_kind: &["signal", "exit_code"],
        message: None,
    },
    // Each handle a wasm plugin opens is a descriptor of the host's process: the cap stops it
    // at once. A native process gets EMFILE from its own RLIMIT_NOFILE and keeps trying
    // until its deadline, holding only its own descriptors.
    Case {
        name: "fd-bomb",
        wasm: WASM_HOSTILE_FD_BOMB,
        native: NATIVE_HOSTILE_FD_BOMB,
        wasm_kind: "open_files_limit",
        native_kind: &["timeout"],
        message: None,
    },
    Case {
        name: "exit-big",
        wasm: WASM_HOSTILE_EXIT_BIG,
        native: NATIVE_HOSTILE_EXIT_BIG,
        wasm_kind: "trap",
        native_kind: &["exit_code"],
        message: None,
    },
];

fn hostile_limits() -> Limits {
    Limits {
        timeout: Duration::from_millis(TIMEOUT_MS),
        max_memory_bytes: 64 << 20,
        max_stdout_bytes: 4096,
        max_stderr_bytes: 16 << 10,
        max_open_files: OPEN_FILES,
        max_disk_bytes: DISK_BYTES,
        max_processes: PROCESSES,
    }
}

/// A native plugin's spec with arguments before the file's path.
fn process_with(program: &str, args: &[&str]) -> RuntimeSpec {
    match process(program) {
        RuntimeSpec::Process {
            program,
            env,
            sandbox,
            ..
        } => RuntimeSpec::Process {
            program,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env,
            sandbox,
        },
        other => other,
    }
}

/// After a hostile plugin, the same executor still scans: EICAR in the same runtime.
async fn next_scan_works(rig: &Rig, runtime: RuntimeKind) {
    let eicar = match runtime {
        RuntimeKind::Wasm => wasm(WASM_EICAR),
        _ => process(NATIVE_EICAR),
    };
    let plugin = rig.plugin("EICAR", Role::Scanner, eicar, limits(20_000));
    let sample = rig.sample(b"clean text", "clean.txt");
    let outcome = rig.run(&plugin, &sample, &json!({})).await;
    let v = contract::judge_scanner(runtime, &outcome);
    assert_eq!(
        (v.code, v.failure),
        (ResultCode::CLEAN, None),
        "{runtime}: next scan"
    );
}

#[tokio::test]
async fn every_hostile_plugin_fails_with_its_reason_within_the_deadline() {
    let rig = Rig::new();
    let sample = rig.sample(b"some file", "file.txt");
    for case in CASES {
        for (runtime, spec, kinds) in [
            (
                RuntimeKind::Wasm,
                wasm(case.wasm),
                std::slice::from_ref(&case.wasm_kind),
            ),
            (RuntimeKind::Process, process(case.native), case.native_kind),
        ] {
            let timeout_ms = if kinds.contains(&"timeout") {
                TIMEOUT_MS
            } else {
                OTHER_REASON_TIMEOUT_MS
            };
            let limits = Limits {
                timeout: Duration::from_millis(timeout_ms),
                ..hostile_limits()
            };
            let plugin = rig.plugin("Hostile", Role::Scanner, spec, limits);
            let started = Instant::now();
            let outcome = rig.run(&plugin, &sample, &json!({})).await;
            let took = started.elapsed();
            let v = contract::judge_scanner(runtime, &outcome);
            let who = format!("{} ({runtime})", case.name);
            assert_eq!(v.code, ResultCode::FAILED, "{who}: {outcome:?}");
            let f = v.failure.expect("a Failed result has a reason");
            assert!(
                kinds.contains(&f.kind.as_str()),
                "{who}: kind {} ({}), expected {kinds:?}",
                f.kind,
                f.message
            );
            if let Some(fragment) = case.message {
                assert!(f.message.contains(fragment), "{who}: {:?}", f.message);
            }
            assert!(
                took < Duration::from_millis(timeout_ms) + MARGIN,
                "{who}: took {took:?}"
            );
            next_scan_works(&rig, runtime).await;
        }
    }
}

#[tokio::test]
async fn the_memory_bomb_never_gets_past_its_limit() {
    let rig = Rig::new();
    let sample = rig.sample(b"x", "x.bin");
    for (runtime, spec) in [
        (RuntimeKind::Wasm, wasm(WASM_HOSTILE_MEMBOMB)),
        (RuntimeKind::Process, process(NATIVE_HOSTILE_MEMBOMB)),
    ] {
        let limits = Limits {
            timeout: Duration::from_millis(OTHER_REASON_TIMEOUT_MS),
            ..hostile_limits()
        };
        let plugin = rig.plugin("Membomb", Role::Scanner, spec, limits);
        let outcome = rig.run(&plugin, &sample, &json!({})).await;
        // The bomb reports each MiB it holds: the last report stays under the 64 MiB cap.
        let stderr = String::from_utf8_lossy(&outcome.stderr);
        let held: Vec<u64> = stderr
            .lines()
            .filter_map(|l| {
                l.strip_prefix("membomb: ")?
                    .strip_suffix(" MiB")?
                    .parse()
                    .ok()
            })
            .collect();
        let last = *held
            .last()
            .unwrap_or_else(|| panic!("{runtime}: no progress in {stderr:?}"));
        assert!(last >= 8, "{runtime}: it did allocate ({last} MiB)");
        assert!(
            last < 64,
            "{runtime}: it held {last} MiB under a 64 MiB limit"
        );
        // The host's own measure agrees: linear memory, or a process's memory cgroup, never
        // passed the cap, and the cap is what stopped it. Natively without a memory cgroup the
        // peak is not measured (the kernel's figure for a child includes the forked copy of
        // Cordon), and what stops it is its own failed allocation under RLIMIT_DATA. Where the
        // kernel cannot reset a memory cgroup's peak (v2 before Linux 6.12), a native run in a
        // cgroup that an earlier one (another test's) already took to the limit has no peak.
        let bounded = runtime == RuntimeKind::Wasm || crate::harness::native_memory_cgroups();
        if bounded {
            let every_peak = runtime == RuntimeKind::Wasm
                || cordon::executor::cgroup::cgroups().is_ok_and(|c| c.measures_every_peak());
            match outcome.peak_memory_bytes {
                None if !every_peak => {}
                peak => {
                    let peak = peak.expect("measured");
                    assert!(
                        (8 << 20..=64 << 20).contains(&peak),
                        "{runtime}: peak {peak}"
                    );
                }
            }
            let kind = outcome.failure.as_ref().map(|f| f.kind());
            assert_eq!(kind, Some("memory_limit"), "{runtime}: {outcome:?}");
        } else {
            assert_eq!(outcome.peak_memory_bytes, None, "{runtime}");
        }
    }
}

#[tokio::test]
async fn every_exit_code_from_1_to_255_is_failed() {
    let rig = Rig::new();
    let sample = rig.sample(b"x", "x.txt");
    let native = rig.plugin(
        "Scripted",
        Role::Scanner,
        process(NATIVE_HOSTILE_SCRIPTED),
        limits(20_000),
    );
    let module = rig.plugin(
        "Scripted",
        Role::Scanner,
        wasm(WASM_HOSTILE_SCRIPTED),
        limits(20_000),
    );
    let valid = r#"{"def_time": 1, "scan_result_i": 0, "threat_found": ""}"#;
    for code in 1..=255i64 {
        let stdin = behave(json!({"stdout": valid, "exit": code}));
        let outcome = rig.run(&native, &sample, &stdin).await;
        assert_eq!(outcome.exit, Some(code));
        let v = contract::judge_scanner(RuntimeKind::Process, &outcome);
        assert_eq!(v.code, ResultCode::FAILED, "native exit {code}");
        assert_eq!(v.failure.unwrap().kind, "exit_code");

        // WASI carries exit statuses 0 to 125; above that the exit itself is refused.
        let outcome = rig.run(&module, &sample, &stdin).await;
        let v = contract::judge_scanner(RuntimeKind::Wasm, &outcome);
        assert_eq!(v.code, ResultCode::FAILED, "wasm exit {code}");
        let f = v.failure.unwrap();
        if code < 126 {
            assert_eq!((f.kind.as_str(), outcome.exit), ("exit_code", Some(code)));
        } else {
            assert_eq!(f.kind, "trap", "wasm exit {code}");
            assert!(f.message.contains("126 or more"), "{}", f.message);
        }
    }
}

#[tokio::test]
async fn a_grandchild_holding_stdout_is_killed_and_the_deadline_holds() {
    let rig = Rig::new();
    let sample = rig.sample(b"x", "x.txt");
    // Time for the script to start its grandchild and say so first, on a slow machine too
    // (two programs started: 1.5 s in an emulated Linux 5.10): the deadline then holds
    // against the grandchild's `sleep 1000`.
    let limits = Limits {
        timeout: Duration::from_millis(SLOW_START_TIMEOUT_MS),
        ..hostile_limits()
    };
    let plugin = rig.plugin(
        "Grandchild",
        Role::Scanner,
        process(NATIVE_HOSTILE_GRANDCHILD),
        limits,
    );
    let started = Instant::now();
    let outcome = rig.run(&plugin, &sample, &json!({})).await;
    assert!(
        started.elapsed() < Duration::from_millis(SLOW_START_TIMEOUT_MS) + MARGIN,
        "{:?}",
        started.elapsed()
    );
    let v = contract::judge_scanner(RuntimeKind::Process, &outcome);
    assert_eq!(v.failure.unwrap().kind, "timeout");
    let pids = pids_in(&outcome.stderr);
    assert_eq!(
        pids.len(),
        1,
        "the script reports its grandchild: {:?}",
        String::from_utf8_lossy(&outcome.stderr)
    );
    assert!(
        gone_within(pids[0], Duration::from_secs(2)).await,
        "grandchild {} survived",
        pids[0]
    );
    next_scan_works(&rig, RuntimeKind::Process).await;
}

#[tokio::test]
async fn a_plugin_that_exits_leaving_a_grandchild_is_judged_at_once_and_cleaned_up() {
    let rig = Rig::new();
    let sample = rig.sample(b"x", "x.txt");
    // A long timeout: the verdict must come when the plugin exits, not at the deadline.
    let mut l = hostile_limits();
    l.timeout = Duration::from_secs(60);
    let plugin = rig.plugin(
        "ForkExit",
        Role::Scanner,
        process(NATIVE_HOSTILE_FORK_AND_EXIT),
        l,
    );
    let started = Instant::now();
    let outcome = rig.run(&plugin, &sample, &json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited for the grandchild: {:?}",
        started.elapsed()
    );
    let v = contract::judge_scanner(RuntimeKind::Process, &outcome);
    assert_eq!((v.code, v.failure), (ResultCode::CLEAN, None));
    let pids = pids_in(&outcome.stderr);
    assert_eq!(pids.len(), 1);
    assert!(
        gone_within(pids[0], Duration::from_secs(2)).await,
        "grandchild {} survived",
        pids[0]
    );
}

#[tokio::test]
async fn hostile_plugins_running_together_do_not_disturb_a_good_one() {
    // Several hostile plugins at once on the same executor, and a good scanner beside them in
    // each runtime: the good ones' results are right and the whole batch ends by the
    // deadline.
    let rig = Rig::new();
    let sample = rig.sample(
        b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
        "eicar.com",
    );
    let mut plugins: Vec<(RuntimeKind, cordon::executor::Plugin)> = Vec::new();
    for (rt, spec) in [
        (RuntimeKind::Wasm, wasm(WASM_HOSTILE_LOOP)),
        (RuntimeKind::Wasm, wasm(WASM_HOSTILE_MEMBOMB)),
        (RuntimeKind::Wasm, wasm(WASM_HOSTILE_FLOOD_STDOUT)),
        (RuntimeKind::Process, process(NATIVE_HOSTILE_LOOP)),
        (RuntimeKind::Process, process(NATIVE_HOSTILE_FLOOD_STDERR)),
        (
            RuntimeKind::Process,
            RuntimeSpec::Process {
                program: NATIVE_HOSTILE_GRANDCHILD.into(),
                args: vec![],
                env: vec![],
                sandbox: Default::default(),
            },
        ),
    ]
    .into_iter()
    // And a fork bomb, where `max_processes` cuts its tree of 5,461 processes at 32 (where
    // nothing does, it would run them all until its deadline, slowing everything beside it).
    .chain(cordon::executor::cgroup::cgroups().is_ok().then(|| {
        (
            RuntimeKind::Process,
            process_with(NATIVE_HOSTILE_FORK_BOMB, &["processes"]),
        )
    })) {
        plugins.push((
            rt,
            rig.plugin("Hostile", Role::Scanner, spec, hostile_limits()),
        ));
    }
    let good = rig.plugin("EICAR", Role::Scanner, wasm(WASM_EICAR), limits(20_000));
    let good_native = rig.plugin(
        "EICAR native",
        Role::Scanner,
        process(NATIVE_EICAR),
        limits(20_000),
    );
    let started = Instant::now();
    let stdin = json!({});
    let hostile =
        futures_util::future::join_all(plugins.iter().map(|(_, p)| rig.run(p, &sample, &stdin)));
    let (outcomes, good_outcome, good_native_outcome) = tokio::join!(
        hostile,
        rig.run(&good, &sample, &stdin),
        rig.run(&good_native, &sample, &stdin)
    );
    assert!(
        started.elapsed() < Duration::from_millis(TIMEOUT_MS) + MARGIN,
        "{:?}",
        started.elapsed()
    );
    for ((rt, _), outcome) in plugins.iter().zip(&outcomes) {
        assert_eq!(
            contract::judge_scanner(*rt, outcome).code,
            ResultCode::FAILED
        );
    }
    let v = contract::judge_scanner(RuntimeKind::Wasm, &good_outcome);
    assert_eq!(v.code, ResultCode::INFECTED, "{v:?}");
    let v = contract::judge_scanner(RuntimeKind::Process, &good_native_outcome);
    assert_eq!(v.code, ResultCode::INFECTED, "{v:?}");
}

/// How many handles the `fd-bomb` plugin held when its first open failed, from its stderr.
fn handles_at_first_failure(stderr: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|l| l.starts_with("fd-bomb: open failed after "))?;
    line.trim_start_matches("fd-bomb: open failed after ")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_wasm_plugin_cannot_use_up_the_hosts_descriptors() {
    // Without the cap, `fd-bomb` opens its file until the host's own process runs out of
    // descriptors (then every connection and file the host opens fails) and holds them
    // until its deadline. With it, the plugin is stopped at its cap, as a module and as a
    // component, long before the host runs short.
    let rig = Rig::new();
    let sample = rig.sample(b"some file", "file.txt");
    for spec in [wasm(WASM_HOSTILE_FD_BOMB), wasm(WASM_P2_HOSTILE_FD_BOMB)] {
        let plugin = rig.plugin(
            "FdBomb",
            Role::Scanner,
            spec,
            Limits {
                timeout: Duration::from_secs(60),
                ..hostile_limits()
            },
        );
        let outcome = rig.run(&plugin, &sample, &json!({})).await;
        let v = contract::judge_scanner(RuntimeKind::Wasm, &outcome);
        assert_eq!(v.code, ResultCode::FAILED, "{outcome:?}");
        let f = v.failure.expect("a Failed result has a reason");
        assert_eq!(f.kind, "open_files_limit", "{}", f.message);
        assert!(
            f.message.contains(&format!("more than {OPEN_FILES} files")),
            "{}",
            f.message
        );
        // It was stopped by the cap, never by a failed open: the host had descriptors left.
        assert_eq!(
            handles_at_first_failure(&outcome.stderr),
            None,
            "{}",
            String::from_utf8_lossy(&outcome.stderr)
        );
        next_scan_works(&rig, RuntimeKind::Wasm).await;
    }
}

#[tokio::test]
async fn a_native_plugin_gets_max_open_files_as_its_descriptor_limit() {
    // The same plugin natively: its opens fail once it holds `max_open_files` descriptors
    // (its standard streams count), whatever the host's own limit is. Told `exit`, it ends
    // itself at its first failed open, so that the deadline never decides: with one of a
    // second, an emulated Linux 5.15 once stopped it before it had started (empty stderr).
    let rig = Rig::new();
    let sample = rig.sample(b"some file", "file.txt");
    let plugin = rig.plugin(
        "FdBomb",
        Role::Scanner,
        process_with(NATIVE_HOSTILE_FD_BOMB, &["exit"]),
        Limits {
            timeout: Duration::from_millis(OTHER_REASON_TIMEOUT_MS),
            ..hostile_limits()
        },
    );
    let outcome = rig.run(&plugin, &sample, &json!({})).await;
    assert_eq!(outcome.exit, Some(1), "{outcome:?}");
    let held = handles_at_first_failure(&outcome.stderr).unwrap_or_else(|| {
        panic!(
            "no failed open reported: {}",
            String::from_utf8_lossy(&outcome.stderr)
        )
    });
    assert!(
        (OPEN_FILES - 8..OPEN_FILES).contains(&held),
        "held {held} files at the first failed open, limit {OPEN_FILES}"
    );
}

#[tokio::test]
async fn a_native_plugin_that_fills_the_disk_is_stopped_at_max_disk_bytes() {
    // `disk-fill` goes past the limit four ways: files of 1 MiB in its working directory
    // (measured while it runs), files in a directory it locked against its owner (opened
    // again to be measured), empty files (an inode each, counted as a block), and a file it
    // deleted while holding it open (out of any directory's sight: `RLIMIT_FSIZE` stops it at
    // the limit). Each way is stopped at `max_disk_bytes`, long before its deadline, and
    // leaves nothing behind. No file of the first three grows past the limit, so that the
    // measure alone can stop them, however slow the machine.
    let rig = Rig::new();
    let sample = rig.sample(b"some file", "file.txt");
    for (mode, measured) in [
        ("files", true),
        ("locked", true),
        ("empty", true),
        ("unlinked", false),
    ] {
        let plugin = rig.plugin(
            "DiskFill",
            Role::Scanner,
            process_with(NATIVE_HOSTILE_DISK_FILL, &[mode]),
            Limits {
                timeout: Duration::from_secs(120),
                ..hostile_limits()
            },
        );
        let outcome = rig.run(&plugin, &sample, &json!({})).await;
        let v = contract::judge_scanner(RuntimeKind::Process, &outcome);
        assert_eq!(v.code, ResultCode::FAILED, "{mode}: {outcome:?}");
        let f = v.failure.expect("a Failed result has a reason");
        assert_eq!(
            f.kind,
            "disk_limit",
            "{mode}: {}; stderr: {}",
            f.message,
            String::from_utf8_lossy(&outcome.stderr)
        );
        let expected = if measured {
            "its working directory held"
        } else {
            "it wrote a file past 8388608 bytes"
        };
        assert!(f.message.contains(expected), "{mode}: {}", f.message);
        let left: Vec<_> = std::fs::read_dir(rig.dir.path().join("work"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{mode}: left behind: {left:?}");
    }
    next_scan_works(&rig, RuntimeKind::Process).await;
}

/// Whether a process runs (not a zombie) whose command line is `program` and then one of
/// `first`: a process of a plugin, told apart from other tests' by its arguments.
fn running(program: &str, first: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.first() == Some(&program.as_bytes())
            && args
                .get(1)
                .is_some_and(|a| first.iter().any(|f| f.as_bytes() == *a))
        {
            found.push(pid);
        }
    }
    found
}

#[tokio::test]
async fn a_native_fork_bomb_is_stopped_at_max_processes_and_leaves_nothing() {
    // `fork-bomb processes` starts a tree of 5,461 copies of itself that all hold on: past
    // `max_processes` (32) its cgroup refuses a copy, and the plugin is stopped at once,
    // `process_limit`, long before its 120 s deadline, and every copy is killed. Where Cordon
    // may make no cgroup, nothing bounds it but the deadline: the test says so and checks
    // nothing.
    if plugin_cgroups().is_none() {
        return;
    }
    let rig = Rig::new();
    let sample = rig.sample(b"some file", "file.txt");
    let plugin = rig.plugin(
        "ForkBomb",
        Role::Scanner,
        process_with(NATIVE_HOSTILE_FORK_BOMB, &["processes"]),
        Limits {
            timeout: Duration::from_secs(120),
            ..hostile_limits()
        },
    );
    let outcome = rig.run(&plugin, &sample, &json!({})).await;
    let v = contract::judge_scanner(RuntimeKind::Process, &outcome);
    assert_eq!(v.code, ResultCode::FAILED, "{outcome:?}");
    let f = v.failure.expect("a Failed result has a reason");
    assert_eq!(f.kind, "process_limit", "{}", f.message);
    assert!(
        f.message
            .contains("more than 32 processes and threads at once (max_processes)"),
        "{}",
        f.message
    );
    // The cgroup held it at its limit. (Whether the copy that was refused had time to say so
    // on stderr before the plugin was stopped depends on the machine's speed.)
    assert!(
        outcome.peak_processes.is_none_or(|p| p == 32),
        "{:?}",
        outcome.peak_processes
    );
    let left = running(NATIVE_HOSTILE_FORK_BOMB, &["processes", "copy"]);
    assert!(left.is_empty(), "copies still running: {left:?}");
    next_scan_works(&rig, RuntimeKind::Process).await;
}

#[tokio::test]
async fn max_memory_bytes_bounds_a_native_plugins_processes_together() {
    // `membomb spread 4 24` starts four helpers that hold 24 MiB each at once, then exits 0
    // with a clean verdict whatever became of them. Each is well under a 64 MiB limit; together
    // they are 96 MiB. Its memory cgroup stops it, `memory_limit`, and the clean verdict it
    // may still print counts for nothing: a plugin whose helper was killed did not scan as
    // it meant to. At 128 MiB it passes, and its peak is all four together.
    let Some(cgroups) = plugin_memory_cgroups() else {
        return;
    };
    let rig = Rig::new();
    let sample = rig.sample(b"some file", "file.txt");
    for (max_memory_bytes, passes) in [(128 << 20, true), (64 << 20, false)] {
        let plugin = rig.plugin(
            "Spread",
            Role::Scanner,
            process_with(NATIVE_HOSTILE_MEMBOMB, &["spread", "4", "24"]),
            Limits {
                timeout: Duration::from_secs(120),
                max_memory_bytes,
                ..hostile_limits()
            },
        );
        let outcome = rig.run(&plugin, &sample, &json!({})).await;
        let v = contract::judge_scanner(RuntimeKind::Process, &outcome);
        let stderr = String::from_utf8_lossy(&outcome.stderr);
        // The second run reuses the first's memory cgroup, whose peak (96 MiB) it cannot pass:
        // where the kernel cannot reset a peak (v2 before Linux 6.12), its own is not known.
        // Before Linux 5.19, v2 keeps no peak at all.
        let unknown = !cgroups.measures_peaks() || (!passes && !cgroups.measures_every_peak());
        let peak = match outcome.peak_memory_bytes {
            None if unknown => None,
            peak => Some(peak.expect("measured by its memory cgroup")),
        };
        if let Some(peak) = peak {
            assert!(
                peak <= max_memory_bytes,
                "peak {peak} over {max_memory_bytes}"
            );
        }
        if passes {
            assert_eq!(v.code, ResultCode::CLEAN, "{outcome:?}");
            assert!(stderr.contains("4 of 4 copies held 24 MiB"), "{stderr}");
            if let Some(peak) = peak {
                assert!(
                    peak >= 96 << 20,
                    "peak {peak}: the four held 96 MiB at once"
                );
            }
        } else {
            assert_eq!(v.code, ResultCode::FAILED, "{outcome:?}");
            let f = v.failure.expect("a Failed result has a reason");
            assert_eq!(f.kind, "memory_limit", "{}; stderr: {stderr}", f.message);
            assert!(f.message.contains("67108864 bytes"), "{}", f.message);
        }
        let left = running(NATIVE_HOSTILE_MEMBOMB, &["hold"]);
        assert!(left.is_empty(), "helpers still running: {left:?}");
    }
}

#[tokio::test]
async fn max_processes_counts_threads_and_allows_exactly_its_number() {
    // `fork-bomb threads 32` runs 32 threads at once (itself and 31 more, meeting at a
    // barrier), then prints a clean verdict: at `max_processes` = 32 it passes, at 31 its
    // last thread is refused and it is stopped, `process_limit`.
    if plugin_cgroups().is_none() {
        return;
    }
    let rig = Rig::new();
    let sample = rig.sample(b"some file", "file.txt");
    for (max_processes, passes) in [(32, true), (31, false)] {
        let plugin = rig.plugin(
            "Threads",
            Role::Scanner,
            process_with(NATIVE_HOSTILE_FORK_BOMB, &["threads", "32"]),
            Limits {
                timeout: Duration::from_secs(120),
                max_processes,
                ..hostile_limits()
            },
        );
        let outcome = rig.run(&plugin, &sample, &json!({})).await;
        let v = contract::judge_scanner(RuntimeKind::Process, &outcome);
        let stderr = String::from_utf8_lossy(&outcome.stderr);
        if passes {
            assert_eq!(v.code, ResultCode::CLEAN, "{outcome:?}");
        } else {
            assert_eq!(v.code, ResultCode::FAILED, "{outcome:?}");
            let f = v.failure.expect("a Failed result has a reason");
            assert_eq!(f.kind, "process_limit", "{}; stderr: {stderr}", f.message);
            // Its last thread was the one refused. (Whether it had time to say so on stderr
            // before the plugin was stopped depends on the machine's speed.)
            assert!(
                outcome.peak_processes.is_none_or(|p| p == 31),
                "{:?}",
                outcome.peak_processes
            );
        }
    }
}
