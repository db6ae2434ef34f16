//! The wasm runtime: WASI modules under wasmtime, in a sandbox that sees one read-only file.
//!
//! At load (once per plugin): validate the binary, check that it imports nothing but WASI and
//! exports `_start`, compile it or take it from the on-disk cache, link it and pre-instantiate.
//! Per invocation (only what must be fresh): a WASI context that inherits nothing (no
//! environment, no network, no host stdio), stdin from memory, stdout and stderr into capped
//! memory pipes, a read-only preopen of the sample's directory at `/scan`, args
//! `[name, /scan/<file>]`, a new store with a memory limiter and an epoch deadline.
//!
//! Guarantees, whatever the guest does:
//! - it stops within its timeout (plus one epoch tick): a background thread advances the
//!   engine's epoch every [`TICK`]; at each tick a running guest yields to the async executor
//!   and is interrupted once its deadline has passed;
//! - its linear memories together never exceed `max_memory_bytes`: growth past it fails;
//! - at most `max_stdout_bytes` / `max_stderr_bytes` are kept; a write past the cap fails in
//!   the guest and the outcome is `output_too_large`;
//! - a trap, an exit code or a deadline is an [`Outcome`], never a host error or a panic.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use super::{ExecutorConfig, ExecutorError, Failure, Invocation, Outcome, Stream};
use crate::plugin::{Limits, ModuleSource, PluginName};
use crate::sample::GUEST_DIR;

/// How often the epoch advances: the granularity of wasm deadlines and of a running guest's
/// yields to the async executor.
pub const TICK: Duration = Duration::from_millis(5);

/// The only import module a plugin may use.
pub const WASI_P1_MODULE: &str = "wasi_snapshot_preview1";

/// Largest single linear memory the engine supports (the 32-bit address space); each plugin's
/// own `max_memory_bytes` applies below it.
const MAX_MEMORY_PER_INSTANCE: usize = 4 << 30;

/// Per-invocation budget for the pooling allocator (a component can hold several core
/// instances, memories and tables).
const POOL_CORE_INSTANCES_PER_SLOT: u32 = 16;
const POOL_MEMORIES_PER_SLOT: u32 = 4;
const POOL_TABLES_PER_SLOT: u32 = 8;

/// Most table elements a plugin may have (each costs a pointer on the host).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// What kind of wasm binary a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (wasm32-wasip1).
    Module,
    /// A component (wasm32-wasip2).
    Component,
}

impl std::fmt::Display for WasmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WasmKind::Module => "module",
            WasmKind::Component => "component",
        })
    }
}

/// Tell a module from a component by the header; `None` when it is not wasm at all.
pub fn detect_kind(bytes: &[u8]) -> Option<WasmKind> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return None;
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Some(WasmKind::Module),
        [_, _, 1, 0] => Some(WasmKind::Component),
        _ => None,
    }
}

/// What loading learned about a module.
#[derive(Debug, Clone)]
pub struct WasmInfo {
    /// sha256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Module or component.
    pub kind: WasmKind,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
}

/// Per-store state: the WASI context, the limiter, the deadline and the output pipes (so that
/// the epoch callback can stop a guest that keeps writing past a cap).
struct State {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    deadline: Instant,
    outputs: [CappedPipe; 2],
}

/// An output pipe that holds one byte more than its cap, to tell "at the cap" from "over it".
#[derive(Clone)]
struct CappedPipe {
    stream: Stream,
    pipe: MemoryOutputPipe,
    cap: usize,
}

impl CappedPipe {
    fn new(stream: Stream, cap: usize) -> CappedPipe {
        CappedPipe {
            stream,
            pipe: MemoryOutputPipe::new(cap.saturating_add(1)),
            cap,
        }
    }

    fn is_over(&self) -> bool {
        self.pipe.contents().len() > self.cap
    }
}

/// Caps the total size of a store's linear memories and records what it saw.
struct MemoryLimiter {
    limit: u64,
    total: u64,
    peak: u64,
    denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current) as u64;
        if self.total.saturating_add(grow) > self.limit {
            self.denied = true;
            return Ok(false);
        }
        self.total += grow;
        self.peak = self.peak.max(self.total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }
}

/// A module ready to instantiate.
pub struct WasmPlugin {
    pre: InstancePre<State>,
}

/// The wasm engine, its linker and the compiled-module cache.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<State>,
    cache_dir: Option<PathBuf>,
    slots: Arc<Semaphore>,
    pooling: bool,
}

impl WasmRuntime {
    pub(super) fn new(config: &ExecutorConfig) -> Result<WasmRuntime, ExecutorError> {
        let slots = config.max_concurrent_wasm.max(1);
        // The pooling allocator reserves address space up front; where the host limits it,
        // fall back to allocating on demand.
        let (engine, pooling) = match Engine::new(&engine_config(Some(slots))) {
            Ok(engine) => (engine, true),
            Err(pool_err) => {
                tracing::warn!(
                    error = %pool_err,
                    "the pooling allocator is unavailable; allocating wasm instances on demand"
                );
                let engine = Engine::new(&engine_config(None))
                    .map_err(|e| ExecutorError::Engine(e.to_string()))?;
                (engine, false)
            }
        };
        spawn_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State| &mut s.wasi)
            .map_err(|e| ExecutorError::Engine(e.to_string()))?;
        Ok(WasmRuntime {
            engine,
            linker,
            cache_dir: config.cache_dir.clone(),
            slots: Arc::new(Semaphore::new(slots as usize)),
            pooling,
        })
    }

    /// The engine (shared by every plugin).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether instances come from the pooling allocator.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// Read, validate, compile (or load from cache), link and pre-instantiate a module.
    pub(super) fn prepare(&self, source: &ModuleSource) -> Result<(WasmPlugin, WasmInfo), String> {
        let bytes = read_source(source)?;
        let kind = detect_kind(&bytes).ok_or_else(|| {
            format!(
                "module {source:?} is not WebAssembly (it does not start with the \\0asm header); \
                 build the plugin for wasm32-wasip1"
            )
        })?;
        if kind == WasmKind::Component {
            return Err(format!(
                "module {source:?} is a WebAssembly component; this host runs WASI modules \
                 (wasm32-wasip1) only"
            ));
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let (module, from_cache) = self.compile_cached(&bytes, &sha256)?;
        check_module_interface(&module)?;
        let pre = self.linker.instantiate_pre(&module).map_err(|e| {
            format!("module {source:?} cannot be linked against WASI: {e:#}")
        })?;
        Ok((
            WasmPlugin { pre },
            WasmInfo {
                sha256,
                kind,
                from_cache,
            },
        ))
    }

    /// Compile `bytes`, going through the on-disk cache when there is one. Only modules that
    /// Cordon compiled itself are ever deserialized.
    fn compile_cached(&self, bytes: &[u8], sha256: &str) -> Result<(Module, bool), String> {
        let compile = || {
            Module::new(&self.engine, bytes)
                .map_err(|e| format!("is not a valid WebAssembly module: {e:#}"))
        };
        let Some(dir) = &self.cache_dir else {
            return Ok((compile()?, false));
        };
        let path = dir.join(format!("{sha256}-{}.cwasm", self.engine_hash()));
        if path.exists() {
            // SAFETY: the file is in Cordon's private cache directory, written by
            // `precompile_module` of an engine with the same compatibility hash (it is in the
            // name); wasmtime checks that hash again while deserializing.
            match unsafe { Module::deserialize_file(&self.engine, &path) } {
                Ok(module) => return Ok((module, true)),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "discarding an unusable compiled-module cache entry"
                ),
            }
        }
        Module::validate(&self.engine, bytes)
            .map_err(|e| format!("is not a valid WebAssembly module: {e:#}"))?;
        let compiled = self
            .engine
            .precompile_module(bytes)
            .map_err(|e| format!("could not be compiled: {e:#}"))?;
        if let Err(e) = write_atomically(&path, &compiled) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled module");
        }
        // SAFETY: `compiled` was produced just now by this engine's `precompile_module`.
        let module = unsafe { Module::deserialize(&self.engine, &compiled) }
            .map_err(|e| format!("could not be loaded after compiling: {e:#}"))?;
        Ok((module, false))
    }

    /// A short hex digest of the engine's precompile compatibility hash.
    fn engine_hash(&self) -> String {
        let mut hasher = DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    pub(super) async fn invoke(
        &self,
        plugin: &WasmPlugin,
        name: &PluginName,
        limits: &Limits,
        invocation: Invocation<'_>,
    ) -> Outcome {
        let Ok(_slot) = self.slots.acquire().await else {
            return could_not_start("the wasm runtime is shutting down");
        };
        let started = Instant::now();
        let stdout = CappedPipe::new(Stream::Stdout, limits.max_stdout_bytes);
        let stderr = CappedPipe::new(Stream::Stderr, limits.max_stderr_bytes);
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdin(MemoryInputPipe::new(invocation.stdin.to_vec()))
            .stdout(stdout.pipe.clone())
            .stderr(stderr.pipe.clone())
            .args(&[name.as_str(), &invocation.sample.guest_path()])
            // Reads of the sample happen on this thread instead of a `spawn_blocking` per
            // call (3x faster for large files); must be set before the preopen.
            .allow_blocking_current_thread(true);
        if let Err(e) =
            builder.preopened_dir(invocation.sample.dir(), GUEST_DIR, FsPerms::ReadOnly)
        {
            return could_not_start(&format!(
                "could not open the sample directory {}: {e}",
                invocation.sample.dir().display()
            ));
        }
        let mut store = Store::new(
            &self.engine,
            State {
                wasi: builder.build_p1(),
                limiter: MemoryLimiter {
                    limit: limits.max_memory_bytes,
                    total: 0,
                    peak: 0,
                    denied: false,
                },
                deadline: started + limits.timeout,
                outputs: [stdout, stderr],
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        // At every tick: stop a guest past its deadline or one that keeps writing after its
        // output hit the cap (it gets write errors and may ignore them); otherwise yield.
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            Ok(
                if Instant::now() >= state.deadline || state.outputs.iter().any(CappedPipe::is_over)
                {
                    UpdateDeadline::Interrupt
                } else {
                    UpdateDeadline::Yield(1)
                },
            )
        });

        let run = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        };
        // The epoch deadline is what stops a guest; this outer timeout is only a backstop.
        let result = tokio::time::timeout(limits.timeout + Duration::from_secs(2), run).await;
        let duration = started.elapsed();

        let state = store.data();
        let mut outcome = Outcome {
            duration,
            peak_memory_bytes: Some(state.limiter.peak),
            ..Outcome::default()
        };
        // Output over a cap is the reason whatever the guest did next (it gets write errors,
        // and then usually traps, exits non-zero or is interrupted).
        let over_cap = state.outputs.iter().find(|o| o.is_over()).map(|o| Failure::OutputTooLarge {
            stream: o.stream,
            limit_bytes: o.cap,
        });
        let timed_out = Instant::now() >= state.deadline;
        match result {
            Err(_elapsed) => outcome.failure = Some(Failure::Timeout { limit: limits.timeout }),
            Ok(Ok(())) => outcome.exit = Some(0),
            Ok(Err(error)) => {
                if let Some(exit) = error.downcast_ref::<I32Exit>() {
                    outcome.exit = Some(i64::from(exit.0));
                } else if over_cap.is_some() {
                    // Reported below.
                } else if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt))
                    || timed_out
                {
                    outcome.failure = Some(Failure::Timeout {
                        limit: limits.timeout,
                    });
                } else if state.limiter.denied {
                    outcome.failure = Some(Failure::MemoryLimit {
                        limit_bytes: limits.max_memory_bytes,
                    });
                } else {
                    outcome.failure = Some(Failure::Trap {
                        message: describe_error(&error),
                    });
                }
            }
        }
        if over_cap.is_some() {
            outcome.failure = over_cap;
        }
        let [stdout, stderr] = &state.outputs;
        outcome.stdout = kept(stdout);
        outcome.stderr = kept(stderr);
        outcome
    }
}

/// What a pipe holds, up to its cap.
fn kept(output: &CappedPipe) -> Vec<u8> {
    let contents = output.pipe.contents();
    contents[..contents.len().min(output.cap)].to_vec()
}

/// A module must be a WASI command: import only WASI, export `_start` and its memory.
fn check_module_interface(module: &Module) -> Result<(), String> {
    for import in module.imports() {
        if import.module() != WASI_P1_MODULE {
            return Err(format!(
                "imports `{}::{}`, which the sandbox does not provide; a plugin may import only \
                 WASI ({WASI_P1_MODULE})",
                import.module(),
                import.name()
            ));
        }
    }
    let start = module.get_export("_start").and_then(|e| e.func().cloned());
    match start {
        Some(ty) if ty.params().len() == 0 && ty.results().len() == 0 => {}
        Some(_) => return Err("exports `_start` with the wrong signature; it must take and return nothing".into()),
        None => {
            return Err("exports no `_start` function; build the plugin as a WASI command \
                        (a binary with `fn main`, target wasm32-wasip1), not as a library"
                .into());
        }
    }
    if module.get_export("memory").and_then(|e| e.memory().cloned()).is_none() {
        return Err("exports no memory named `memory`, which WASI needs".into());
    }
    Ok(())
}

fn read_source(source: &ModuleSource) -> Result<Arc<[u8]>, String> {
    match source {
        ModuleSource::File(path) => std::fs::read(path)
            .map(Arc::from)
            .map_err(|e| format!("cannot read module {}: {e}", path.display())),
        ModuleSource::Builtin { bytes, .. } => Ok(Arc::from(*bytes)),
        ModuleSource::Bytes(bytes) => Ok(bytes.clone()),
    }
}

fn engine_config(pool_slots: Option<u32>) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    if let Some(slots) = pool_slots {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots * POOL_CORE_INSTANCES_PER_SLOT)
            .total_memories(slots * POOL_MEMORIES_PER_SLOT)
            .total_tables(slots * POOL_TABLES_PER_SLOT)
            .total_stacks(slots)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memories_per_component(POOL_MEMORIES_PER_SLOT)
            .max_tables_per_component(POOL_TABLES_PER_SLOT)
            .max_core_instances_per_component(POOL_CORE_INSTANCES_PER_SLOT)
            .max_memory_size(MAX_MEMORY_PER_INSTANCE);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advance the engine's epoch every [`TICK`] for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("cordon-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch thread");
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A trap's message with its wasm backtrace, on as few lines as possible.
fn describe_error(error: &wasmtime::Error) -> String {
    let mut message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.to_string(),
    };
    if let Some(bt) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames: Vec<String> = bt
            .frames()
            .iter()
            .take(5)
            .map(|f| f.func_name().unwrap_or("<unnamed>").to_owned())
            .collect();
        if !frames.is_empty() {
            message.push_str(&format!(" (in {})", frames.join(" <- ")));
        }
    }
    message
}

fn could_not_start(message: &str) -> Outcome {
    Outcome {
        failure: Some(Failure::CouldNotStart {
            message: message.to_owned(),
        }),
        ..Outcome::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{Executor, ExecutorConfig, Plugin};
    use crate::plugin::{PluginSpec, Role, RuntimeSpec};
    use crate::sample::Sample;

    /// A module whose `_start` runs `body`, with WASI's fd_write and proc_exit imported and a
    /// data segment at 0 holding `data`.
    fn module(body: &str, data: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
                (import "wasi_snapshot_preview1" "fd_write"
                    (func $fd_write (param i32 i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
                (memory (export "memory") 1)
                (data (i32.const 64) "{escaped}")
                ;; iovec at 0: base 64, length of data
                (func $write (param $fd i32) (result i32)
                    (i32.store (i32.const 0) (i32.const 64))
                    (i32.store (i32.const 4) (i32.const {len}))
                    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
                (func (export "_start") {body}))"#,
            len = data.len(),
            escaped = data.bytes().map(|b| format!("\\{b:02x}")).collect::<String>(),
        ))
        .expect("test WAT is valid")
    }

    fn setup(bytes: Vec<u8>, limits: Limits) -> (Executor, Result<Plugin, String>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = ExecutorConfig {
            cache_dir: Some(dir.path().join("cache")),
            work_dir: dir.path().join("work"),
            max_concurrent_wasm: 4,
        };
        let executor = Executor::new(&config).unwrap();
        let plugin = executor
            .prepare(PluginSpec {
                name: PluginName::new("t").unwrap(),
                role: Role::Scanner,
                runtime: RuntimeSpec::Wasm {
                    module: ModuleSource::Bytes(bytes.into()),
                },
                limits,
                description: String::new(),
            })
            .map_err(|e| e.to_string());
        (executor, plugin, dir)
    }

    async fn run(body: &str, data: &str, limits: Limits) -> Outcome {
        let (executor, plugin, dir) = setup(module(body, data), limits);
        let plugin = plugin.unwrap();
        let sample = Sample::from_bytes(b"x", "x.txt", dir.path()).unwrap();
        executor
            .invoke(
                &plugin,
                Invocation {
                    stdin: b"{}\n",
                    sample: &sample,
                },
            )
            .await
    }

    fn short(timeout_ms: u64) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            max_memory_bytes: 4 << 20,
            max_stdout_bytes: 1024,
            max_stderr_bytes: 1024,
        }
    }

    #[tokio::test]
    async fn output_and_exit_code_are_reported() {
        let o = run("(drop (call $write (i32.const 1)))", r#"{"ok":1}"#, short(5000)).await;
        assert_eq!(o.exit, Some(0));
        assert_eq!(o.failure, None);
        assert_eq!(o.stdout, br#"{"ok":1}"#);

        let o = run(
            "(drop (call $write (i32.const 2))) (call $proc_exit (i32.const 7))",
            "oops",
            short(5000),
        )
        .await;
        assert_eq!((o.exit, o.failure), (Some(7), None));
        assert_eq!(o.stderr, b"oops");
    }

    #[tokio::test]
    async fn an_infinite_loop_is_interrupted_at_the_deadline() {
        let started = Instant::now();
        let o = run("(loop $l (br $l))", "", short(300)).await;
        assert_eq!(
            o.failure,
            Some(Failure::Timeout {
                limit: Duration::from_millis(300)
            })
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn memory_growth_stops_at_the_limit() {
        // Grow one page at a time; trap when growth is refused.
        let body = "(loop $l (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) \
                    (then unreachable)) (br $l))";
        let o = run(body, "", short(5000)).await;
        assert_eq!(o.failure, Some(Failure::MemoryLimit { limit_bytes: 4 << 20 }));
        assert!(o.peak_memory_bytes.unwrap() <= 4 << 20);
    }

    #[tokio::test]
    async fn a_trap_is_an_outcome() {
        let o = run("unreachable", "", short(5000)).await;
        match o.failure {
            Some(Failure::Trap { message }) => assert!(message.contains("unreachable"), "{message}"),
            other => panic!("expected a trap, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn exit_codes_wasi_cannot_carry_are_failures() {
        let o = run("(call $proc_exit (i32.const 200))", "", short(5000)).await;
        assert_eq!(o.exit, None);
        assert!(matches!(o.failure, Some(Failure::Trap { .. })), "{:?}", o.failure);
    }

    #[tokio::test]
    async fn a_stdout_flood_is_capped() {
        let o = run("(loop $l (drop (call $write (i32.const 1))) (br $l))", "flood!", short(5000)).await;
        assert_eq!(
            o.failure,
            Some(Failure::OutputTooLarge {
                stream: Stream::Stdout,
                limit_bytes: 1024
            })
        );
        assert_eq!(o.stdout.len(), 1024);
    }

    #[test]
    fn modules_that_are_not_wasi_commands_are_refused_at_load() {
        let load = |bytes: Vec<u8>| setup(bytes, Limits::default()).1.map(|_| ()).unwrap_err();
        let e = load(b"MZ not wasm".to_vec());
        assert!(e.contains("is not WebAssembly"), "{e}");
        let e = load(wat::parse_str(r#"(module (import "env" "socket" (func)) (memory (export "memory") 1) (func (export "_start")))"#).unwrap());
        assert!(e.contains("imports `env::socket`"), "{e}");
        let e = load(wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap());
        assert!(e.contains("exports no `_start`"), "{e}");
        let e = load(wat::parse_str(r#"(module (import "wasi_snapshot_preview1" "no_such_call" (func)) (memory (export "memory") 1) (func (export "_start")))"#).unwrap());
        assert!(e.contains("cannot be linked"), "{e}");
        let mut broken = module("", "");
        broken.truncate(broken.len() - 3);
        let e = load(broken);
        assert!(e.contains("not a valid WebAssembly module"), "{e}");
    }

    #[test]
    fn compiled_modules_come_from_the_cache_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = ExecutorConfig {
            cache_dir: Some(dir.path().join("cache")),
            work_dir: dir.path().join("work"),
            max_concurrent_wasm: 2,
        };
        let spec = PluginSpec {
            name: PluginName::new("t").unwrap(),
            role: Role::Scanner,
            runtime: RuntimeSpec::Wasm {
                module: ModuleSource::Bytes(module("", "").into()),
            },
            limits: Limits::default(),
            description: String::new(),
        };
        let first = Executor::new(&config).unwrap().prepare(spec.clone()).unwrap();
        assert!(!first.info().from_cache);
        let second = Executor::new(&config).unwrap().prepare(spec).unwrap();
        assert!(second.info().from_cache);
        assert_eq!(first.info().sha256, second.info().sha256);
    }
}
