//! Shared helpers for the executor and pipeline tests: an executor with a shared compiled-
//! module cache, plugins of each runtime built from the example plugins, samples, and a
//! loopback webhook server that behaves like the `scripted` and hostile plugins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use cordon::executor::{Executor, ExecutorConfig, Invocation, Outcome, Plugin};
use cordon::plugin::{
    Limits, ModuleSource, NativeSandbox, PluginName, PluginSpec, Role, RuntimeKind, RuntimeSpec,
};
use cordon::sample::Sample;
use cordon_tests::artifacts;
use serde_json::{Value, json};

/// The three runtimes, for tests that every runtime must pass.
pub const RUNTIMES: [RuntimeKind; 3] = [
    RuntimeKind::Wasm,
    RuntimeKind::Process,
    RuntimeKind::Webhook,
];

/// An executor whose compiled-module cache is shared by all tests of this binary, plus a
/// scratch directory for samples and work directories.
pub struct Rig {
    pub executor: Executor,
    pub dir: tempfile::TempDir,
}

impl Rig {
    pub fn new() -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ExecutorConfig {
            cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-cache")),
            work_dir: dir.path().join("work"),
            max_concurrent_wasm: 16,
        };
        Rig {
            executor: Executor::new(&config).expect("executor starts"),
            dir,
        }
    }

    /// Load a plugin; panics with the load error.
    pub fn plugin(&self, name: &str, role: Role, runtime: RuntimeSpec, limits: Limits) -> Plugin {
        self.executor
            .prepare(PluginSpec {
                name: PluginName::new(name).unwrap(),
                role,
                runtime,
                limits,
                description: String::new(),
            })
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A sample with `bytes`, named `name`.
    pub fn sample(&self, bytes: &[u8], name: &str) -> Sample {
        Sample::from_bytes(bytes, name, &self.dir.path().join("samples")).expect("sample")
    }

    /// Run `plugin` on `sample` with `stdin` (a JSON value, sent as one line).
    pub async fn run(&self, plugin: &Plugin, sample: &Sample, stdin: &Value) -> Outcome {
        let mut line = serde_json::to_vec(stdin).unwrap();
        line.push(b'\n');
        self.executor
            .invoke(
                plugin,
                Invocation {
                    stdin: &line,
                    sample,
                },
            )
            .await
    }
}

/// Limits small enough for tests to be quick.
pub fn limits(timeout_ms: u64) -> Limits {
    Limits {
        timeout: Duration::from_millis(timeout_ms),
        max_memory_bytes: 64 << 20,
        max_stdout_bytes: 4096,
        max_stderr_bytes: 4096,
        max_open_files: Limits::DEFAULT_MAX_OPEN_FILES,
        max_disk_bytes: Limits::DEFAULT_MAX_DISK_BYTES,
        max_processes: Limits::DEFAULT_MAX_PROCESSES,
    }
}

/// The stdin JSON that makes the `scripted` plugin (and the webhook server's `/scripted`
/// route) print `stdout`, write `stderr`, sleep and exit with `exit`.
pub fn behave(behave: Value) -> Value {
    json!({
        "data_id": "0123456789abcdef0123456789abcdef",
        "file_info": {"display_name": "sample.txt", "file_size": 5},
        "process_info": {"profile": "test", "result": "Processing"},
        "metadata": {"behave": behave},
    })
}

/// A wasm module from the example plugins.
pub fn wasm(path: &str) -> RuntimeSpec {
    RuntimeSpec::Wasm {
        module: ModuleSource::File(PathBuf::from(path)),
    }
}

/// A native program.
pub fn process(path: &str) -> RuntimeSpec {
    RuntimeSpec::Process {
        program: PathBuf::from(path),
        args: Vec::new(),
        env: Vec::new(),
        sandbox: NativeSandbox::default(),
    }
}

/// What the loopback webhook server saw.
#[derive(Default)]
pub struct Seen {
    /// Request bodies, parsed.
    pub bodies: Vec<Value>,
}

/// A loopback HTTP server standing in for a webhook plugin. Routes:
/// - `/scripted`: does what `processing_result.metadata.behave` says, like the `scripted`
///   plugin: `stdout` is the body, `exit` 0 is status 200 and any other value is used as the
///   status when it is a valid one (else 500), `sleep_ms` delays the answer;
/// - `/sleep`: never answers in time (sleeps 1000 s);
/// - `/flood`: answers 200 with a 1 MiB body;
/// - `/echo`: answers 200 with a valid clean verdict.
pub struct WebhookServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    _task: tokio::task::JoinHandle<()>,
}

impl WebhookServer {
    pub async fn start() -> WebhookServer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = axum::Router::new()
            .route("/scripted", post(scripted))
            .route(
                "/sleep",
                post(async || {
                    tokio::time::sleep(Duration::from_secs(1000)).await;
                    "late"
                }),
            )
            .route("/flood", post(async || vec![b'x'; 1 << 20]))
            .route(
                "/echo",
                post(async || r#"{"def_time":0,"scan_result_i":0,"threat_found":""}"#),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        WebhookServer {
            addr,
            seen,
            _task: task,
        }
    }

    pub fn url(&self, route: &str) -> RuntimeSpec {
        RuntimeSpec::Webhook {
            url: format!("http://{}{route}", self.addr),
        }
    }
}

async fn scripted(State(seen): State<Arc<Mutex<Seen>>>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().bodies.push(body.clone());
    let behave = body
        .pointer("/processing_result/metadata/behave")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(ms) = behave.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let exit = behave.get("exit").and_then(Value::as_i64).unwrap_or(0);
    let status = if exit == 0 {
        StatusCode::OK
    } else {
        u16::try_from(exit)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    };
    let stdout = behave
        .get("stdout")
        .and_then(Value::as_str)
        .unwrap_or_default();
    (status, stdout.as_bytes().to_vec())
}

/// The scripted plugin in `runtime` (the webhook at `server`).
pub fn scripted_plugin(runtime: RuntimeKind, server: &WebhookServer) -> RuntimeSpec {
    match runtime {
        RuntimeKind::Wasm => wasm(artifacts::WASM_HOSTILE_SCRIPTED),
        RuntimeKind::Process => process(artifacts::NATIVE_HOSTILE_SCRIPTED),
        RuntimeKind::Webhook => server.url("/scripted"),
    }
}

/// Whether a process with this pid still exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state is the field after the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Whether the process with this pid is gone within `within` (a SIGKILL takes effect
/// asynchronously; a killed orphan is gone once it is a zombie).
pub async fn gone_within(pid: u32, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while process_alive(pid) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    true
}

/// The cgroups Cordon makes for native plugins (`max_processes`), or `None`, having said on
/// stderr that the calling test checks nothing here: where Cordon may make none, the limit is
/// not enforced.
pub fn plugin_cgroups() -> Option<&'static cordon::executor::cgroup::Cgroups> {
    cordon::executor::cgroup::cgroups()
        .map_err(|why| {
            eprintln!("max_processes is not enforced on this machine ({why}): not tested")
        })
        .ok()
}

/// Whether native plugins run in memory cgroups here: their peak memory is measured and
/// `max_memory_bytes` bounds all their processes together.
pub fn native_memory_cgroups() -> bool {
    cordon::executor::cgroup::cgroups().is_ok_and(|c| c.memory().is_ok())
}

/// Whether a native plugin's peak memory is measured in a memory cgroup it is the first to
/// use: where there are memory cgroups, and the kernel keeps their peak (cgroup v2 from
/// Linux 5.19).
pub fn native_peaks_measured() -> bool {
    cordon::executor::cgroup::cgroups().is_ok_and(|c| c.measures_peaks())
}

/// [`plugin_cgroups`] where they have memory cgroups too (`max_memory_bytes` for all of a
/// native plugin's processes together), or `None`, having said on stderr that the calling
/// test checks nothing here.
pub fn plugin_memory_cgroups() -> Option<&'static cordon::executor::cgroup::Cgroups> {
    plugin_cgroups().filter(|cgroups| match cgroups.memory() {
        Ok(_) => true,
        Err(why) => {
            eprintln!(
                "max_memory_bytes bounds each native process, not all together, on this \
                 machine ({why}): not tested"
            );
            false
        }
    })
}

/// Pids printed alone on a line of a plugin's stderr.
pub fn pids_in(stderr: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}
