//! A scanner stopped for what Cordon and its plugins together ran short of, not for a limit of
//! its own, is run again (`workflow::RERUN_PAUSES`); one stopped at its own limit is not.
//!
//! A test binary of its own, so a process of its own: its test limits the cgroup above all of
//! this process's plugins, and the one that holds the process itself (as the unit's
//! `TasksMax` and `MemoryMax` limit Cordon's), which would fail any other test's native plugin
//! that ran meanwhile.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cordon::config::WorkflowSpec;
use cordon::executor::cgroup::{self, Cgroups};
use cordon::executor::{Executor, ExecutorConfig, Plugin};
use cordon::fileinfo;
use cordon::plugin::{Limits, NativeSandbox, PluginName, PluginSpec, Role, RuntimeSpec};
use cordon::result::{EngineResult, ScanResult};
use cordon::sample::Sample;
use cordon::server::metrics::Metrics;
use cordon::verdict::ResultCode;
use cordon::workflow::{self, CancelToken, RERUN_PAUSES, Submission, Workflow};
use tracing_subscriber::layer::SubscriberExt;

/// A scanner that counts its runs in `$RUNS` and, in the first `$FAILS` of them, first needs
/// what the test keeps short (`$NEED`: `processes`, four sleepers at once, or `memory`, 100 MB
/// in a shell variable). However that ends, it then says the file is clean, as a scanner that
/// does not check a failed `fork` would: only Cordon can tell that it did not scan.
const SCANNER: &str = r#"#!/bin/sh
n=0
[ -f "$RUNS" ] && read -r n < "$RUNS"
echo $((n + 1)) > "$RUNS"
if [ "$n" -lt "$FAILS" ]; then
  case "$NEED" in
    processes) for i in 1 2 3 4; do sleep 2 & done; wait ;;
    memory) x=$(head -c 100000000 /dev/zero | tr '\0' a) ;;
  esac
fi
echo '{"def_time": 0, "scan_result_i": 0, "threat_found": ""}'
"#;

struct Rig {
    executor: Executor,
    dir: tempfile::TempDir,
    script: PathBuf,
    sample: Sample,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let executor = Executor::new(&ExecutorConfig {
            cache_dir: None,
            work_dir: dir.path().join("work"),
            max_concurrent_wasm: 1,
        })
        .unwrap();
        let script = dir.path().join("scanner.sh");
        std::fs::write(&script, SCANNER).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let sample =
            Sample::from_bytes(b"hello", "hello.txt", &dir.path().join("samples")).unwrap();
        Rig {
            executor,
            dir,
            script,
            sample,
        }
    }

    /// Run the scanner alone in a workflow, with its first `fails` runs needing `need`: its
    /// engine entry, how many times its script ran, and the whole result.
    async fn scan(
        &self,
        name: &str,
        need: &str,
        fails: u32,
        limits: Limits,
    ) -> (EngineResult, u32, ScanResult) {
        let runs_dir = self.dir.path().join(name);
        let runs = runs_dir.join("runs");
        let plugin = self
            .executor
            .prepare(PluginSpec {
                name: PluginName::new(name).unwrap(),
                role: Role::Scanner,
                runtime: RuntimeSpec::Process {
                    program: self.script.clone(),
                    args: Vec::new(),
                    env: vec![
                        ("RUNS".into(), runs.display().to_string()),
                        ("FAILS".into(), fails.to_string()),
                        ("NEED".into(), need.into()),
                    ],
                    sandbox: NativeSandbox {
                        write: vec![runs_dir],
                        ..NativeSandbox::default()
                    },
                },
                limits,
                description: String::new(),
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let wf = workflow(plugin);
        let file = fileinfo::fingerprint(&self.sample.path()).unwrap();
        let submission = Submission {
            data_id: Submission::new_data_id(),
            display_name: "hello.txt".into(),
            user_agent: String::new(),
            username: String::new(),
            metadata: None,
            received: Utc::now(),
        };
        let result = workflow::run(
            &self.executor,
            &wf,
            &self.sample,
            &file,
            &submission,
            &CancelToken::new(),
            &|_| {},
        )
        .await;
        let engine = result.scan_results.scan_details[name].clone();
        // No count: the script never ran.
        let ran = match std::fs::read_to_string(&runs) {
            Ok(n) => n.trim().parse().unwrap(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => panic!("{}: {e}", runs.display()),
        };
        (engine, ran, result)
    }
}

fn workflow(scanner: Plugin) -> Workflow {
    Workflow {
        spec: WorkflowSpec {
            name: "File scan".into(),
            scanners: vec![scanner.name().clone()],
            post_actions: Vec::new(),
            max_file_size_bytes: 1 << 20,
            block_results: WorkflowSpec::default_block_results(),
            description: String::new(),
        },
        scanners: vec![Arc::new(scanner)],
        post_actions: Vec::new(),
    }
}

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(20),
        max_memory_bytes: 256 << 20,
        max_stdout_bytes: 4096,
        max_stderr_bytes: 4096,
        max_open_files: Limits::DEFAULT_MAX_OPEN_FILES,
        max_disk_bytes: Limits::DEFAULT_MAX_DISK_BYTES,
        max_processes: Limits::DEFAULT_MAX_PROCESSES,
    }
}

fn kinds(engine: &EngineResult) -> Vec<&str> {
    engine
        .reruns
        .iter()
        .map(|r| r.failure.kind.as_str())
        .collect()
}

/// Sets a limit of a cgroup above the plugins', and lifts it when dropped (a failed assert
/// included).
struct LimitAbove {
    file: PathBuf,
    unlimited: &'static str,
}

impl LimitAbove {
    fn set(dir: &Path, file: &str, value: &str, unlimited: &'static str) -> LimitAbove {
        let file = dir.join(file);
        std::fs::write(&file, value).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        LimitAbove { file, unlimited }
    }
}

impl Drop for LimitAbove {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.file, self.unlimited);
    }
}

#[tokio::test]
async fn a_scanner_stopped_for_a_shortage_not_its_own_runs_again() {
    let Ok(cgroups) = cgroup::cgroups() else {
        eprintln!("Cordon may make no cgroup here, and tells no shortage apart: not tested");
        return;
    };
    assert_eq!(
        RERUN_PAUSES.len(),
        2,
        "the counts below are for three runs at most"
    );
    let rig = Rig::new();
    processes(&rig, cgroups).await;
    memory(&rig, cgroups).await;
    start_refused(&rig, cgroups).await;
}

async fn processes(rig: &Rig, cgroups: &Cgroups) {
    if !cgroups.dir().join("pids.peak").exists() {
        // Before Linux 6.1 the kernel keeps no peak, and every refusal counts as the
        // plugin's own: a scanner is not run again for one.
        eprintln!("the kernel does not tell a refusal above a plugin's limit apart: not tested");
        return;
    }
    // Its own limit met (two processes at once, the shell and its first sleeper): not run
    // again, though its second run would have passed.
    let own = Limits {
        max_processes: 2,
        ..limits()
    };
    let (engine, ran, _) = rig.scan("Own", "processes", 1, own).await;
    assert_eq!(engine.scan_result_i, ResultCode::FAILED);
    assert_eq!(engine.failure.as_ref().unwrap().kind, "process_limit");
    assert_eq!((ran, kinds(&engine)), (1, vec![]));

    // All plugins together may run three processes (the shell and two sleepers): the third
    // sleeper is refused, for a limit that is not the scanner's 256.
    let _limit = LimitAbove::set(cgroups.dir(), "pids.max", "3", "max");
    let (engine, ran, result) = rig.scan("Once", "processes", 1, limits()).await;
    passed_on_rerun(&engine, ran, 2, &["process_limit"], &["TasksMax"]);
    let metrics = Metrics::new();
    metrics.finished(&result);
    let text = metrics.render();
    assert!(
        text.contains("cordon_plugin_reruns_total{plugin=\"Once\",kind=\"process_limit\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("cordon_plugin_failures_total{"), "{text}");
    // Both runs' times: the one run again is counted, and was timed.
    assert!(
        text.contains("cordon_plugin_duration_seconds_count{plugin=\"Once\",role=\"scanner\"} 2\n"),
        "{text}"
    );
    assert!(engine.reruns[0].scan_time > 0, "{:?}", engine.reruns);

    // Short every time: three runs, and the last one's failure.
    let (engine, ran, _) = rig.scan("Always", "processes", 99, limits()).await;
    assert_eq!(engine.scan_result_i, ResultCode::FAILED);
    let failure = engine.failure.as_ref().unwrap();
    assert_eq!(failure.kind, "process_limit");
    assert!(failure.message.contains("TasksMax"), "{}", failure.message);
    assert_eq!(
        (ran, kinds(&engine)),
        (3, vec!["process_limit", "process_limit"])
    );
}

async fn memory(rig: &Rig, cgroups: &Cgroups) {
    let Some(dir) = cgroups.memory_dir() else {
        eprintln!("native plugins have no memory cgroups here: the memory case is not tested");
        return;
    };
    let (file, unlimited) = if dir.join("memory.max").exists() {
        ("memory.max", "max")
    } else {
        ("memory.limit_in_bytes", "-1")
    };
    // All plugins together may use 32 MiB, the scanner alone 256 MiB: the kernel kills its
    // shell, which holds 100 MB, for the limit above.
    let _limit = LimitAbove::set(dir, file, &(32u64 << 20).to_string(), unlimited);
    let (engine, ran, _) = rig.scan("Memory", "memory", 1, limits()).await;
    passed_on_rerun(&engine, ran, 2, &["memory_limit"], &["MemoryMax"]);
}

async fn start_refused(rig: &Rig, cgroups: &Cgroups) {
    // The `fork` that starts a plugin is charged to the cgroup that holds Cordon (the plugin's
    // process joins its own only after it). With that cgroup out of process slots (as under
    // the unit's TasksMax), the kernel refuses the plugin's process itself: the script never
    // runs. The limit is lifted as the scanner is judged short and about to run again.
    let own = OwnCgroup::limitable(cgroups);
    // The executor makes the plugin's cgroup, and cleans up after the refused start, on a
    // blocking thread, which could not start while the limit holds: one already idle does it.
    tokio::task::spawn_blocking(|| ()).await.unwrap();
    let lift = LiftAtRerun {
        file: own.dir.join("pids.max"),
        plugin: "Refused",
    };
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(lift));
    let _limit = LimitAbove::set(&own.dir, "pids.max", "1", "max");
    let (engine, ran, _) = rig.scan("Refused", "nothing", 0, limits()).await;
    // The script ran once: its first start was refused before it could.
    passed_on_rerun(
        &engine,
        ran,
        1,
        &["process_limit"],
        &["refused to start it", "TasksMax"],
    );
}

/// The scanner's last run passed and judged the file clean, after the runs judged short for
/// `short`; `ran` is how often its script ran, and the first short run's message has `words`.
#[track_caller]
fn passed_on_rerun(engine: &EngineResult, ran: u32, runs: u32, short: &[&str], words: &[&str]) {
    assert_eq!(
        engine.failure, None,
        "the last run should have passed: {:?}",
        engine.failure
    );
    assert_eq!(engine.scan_result_i, ResultCode::CLEAN);
    assert_eq!((ran, kinds(engine)), (runs, short.to_vec()));
    let message = &engine.reruns[0].failure.message;
    for word in words {
        assert!(message.contains(word), "no {word:?} in {message:?}");
    }
}

/// The cgroup that holds this process, with a process limit that can be set: Cordon's own
/// (v2: its `supervisor`), or, where that is a root without one (v1 in a container), a child
/// of it that this process moves into until dropped.
struct OwnCgroup {
    dir: PathBuf,
    moved_from: Option<PathBuf>,
}

impl OwnCgroup {
    fn limitable(cgroups: &Cgroups) -> OwnCgroup {
        let me = std::process::id().to_string();
        let parent = cgroups.dir().parent().unwrap();
        let dir = [parent.join("supervisor"), parent.to_path_buf()]
            .into_iter()
            .find(|dir| {
                std::fs::read_to_string(dir.join("cgroup.procs"))
                    .is_ok_and(|procs| procs.lines().any(|pid| pid == me))
            })
            .unwrap_or_else(|| panic!("this process is not in {}", parent.display()));
        if dir.join("pids.max").exists() {
            return OwnCgroup {
                dir,
                moved_from: None,
            };
        }
        let child = dir.join(format!("shortage-{me}"));
        std::fs::create_dir(&child).unwrap_or_else(|e| panic!("{}: {e}", child.display()));
        std::fs::write(child.join("cgroup.procs"), &me).unwrap();
        OwnCgroup {
            dir: child,
            moved_from: Some(dir),
        }
    }
}

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        if let Some(from) = &self.moved_from {
            let _ = std::fs::write(from.join("cgroup.procs"), std::process::id().to_string());
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Lifts a process limit (writes `max` to `file`) when the workflow says that `plugin` runs
/// again: between its refused run and the next, whatever the machine's speed.
struct LiftAtRerun {
    file: PathBuf,
    plugin: &'static str,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LiftAtRerun {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Plugin(Option<String>);
        impl tracing::field::Visit for Plugin {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                if field.name() == "plugin" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut plugin = Plugin(None);
        event.record(&mut plugin);
        if *event.metadata().level() == tracing::Level::WARN
            && event.metadata().target().starts_with("cordon::workflow")
            && plugin.0.as_deref() == Some(self.plugin)
        {
            std::fs::write(&self.file, "max").unwrap();
        }
    }
}
