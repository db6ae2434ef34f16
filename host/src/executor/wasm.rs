//! The wasm runtime: WASI modules and components under wasmtime, in a sandbox that sees one
//! read-only file.
//!
//! Three kinds of binaries run here, all under the same contract and limits:
//! - a **WASI command module** (wasm32-wasip1): stdin, stdout, exit code, args
//!   `[name, /scan/<file>]`, exactly like a native External Scanner;
//! - a **WASI command component** (wasm32-wasip2 exporting `wasi:cli/run`): the same;
//! - a **component of Cordon's `scanner` or `post-action` world** (`wit/plugin.wit`): called
//!   with a typed input, it returns a typed verdict, which the host renders as the JSON a
//!   command would print so that [`crate::contract`] judges it like any other output.
//!
//! At load (once per plugin): validate the binary, check that it imports nothing but WASI and
//! exports what its role needs, compile it or take it from the on-disk cache, link it and
//! pre-instantiate. Per invocation (only what must be fresh): a WASI context that inherits
//! nothing (no environment, no network, no host stdio), stdin from memory, stdout and stderr
//! into capped memory pipes, a read-only preopen of the sample's directory at `/scan`, a new
//! store with a memory limiter and an epoch deadline.
//!
//! Guarantees, whatever the guest does:
//! - it stops within its timeout (plus one epoch tick): a background thread advances the
//!   engine's epoch every [`TICK`]; at each tick a running guest yields to the async executor
//!   and is interrupted once its deadline has passed;
//! - its linear memories together never exceed `max_memory_bytes`: growth past it fails;
//! - at most `max_stdout_bytes` / `max_stderr_bytes` are kept; a guest that writes past a cap
//!   is stopped at the next tick and the outcome is `output_too_large`;
//! - it holds at most `max_open_files` WASI handles at once (each open file or directory is a
//!   descriptor of the host's process): one more stops it, `open_files_limit`; it can create
//!   no socket;
//! - a trap, an exit code or a deadline is an [`Outcome`], never a host error or a panic.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::AsContextMut;
use wasmtime::component::{Component, ResourceTable, ResourceTableError};
use wasmtime::{
    Caller, Config, Engine, Extern, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::{ExecutorConfig, ExecutorError, Failure, Invocation, Outcome, Stream};
use crate::plugin::{Limits, ModuleSource, PluginName, Role};
use crate::sample::GUEST_DIR;

/// Host bindings of the component worlds in `wit/plugin.wit`.
mod worlds {
    /// The `scanner` world.
    pub mod scanner {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "cordon:plugin/scanner",
            exports: { default: async },
        });
    }
    /// The `post-action` world.
    pub mod post_action {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "cordon:plugin/post-action",
            exports: { default: async },
        });
    }
}

use worlds::post_action::PostActionPre;
use worlds::scanner::ScannerPre;

/// How often the epoch advances: the granularity of wasm deadlines and of a running guest's
/// yields to the async executor.
pub const TICK: Duration = Duration::from_millis(5);

/// The only import module a core-module plugin may use.
pub const WASI_P1_MODULE: &str = "wasi_snapshot_preview1";

/// The types-only interface of Cordon's WIT package. A component of the `scanner` or
/// `post-action` world imports it because its worlds `use` types from it; it holds no
/// functions, so the host provides it as an empty instance.
pub const PLUGIN_TYPES_INTERFACE: &str = "cordon:plugin/types@0.1.0";

/// The export of a `scanner`-world component.
pub const SCANNER_EXPORT: &str = "scan";
/// The export of a `post-action`-world component.
pub const POST_ACTION_EXPORT: &str = "execute";
/// The prefix of the export of a WASI command component (`wasi:cli/run@0.2.x`).
pub const COMMAND_EXPORT_PREFIX: &str = "wasi:cli/run@0.2";

/// Largest single linear memory the engine supports (the 32-bit address space); each plugin's
/// own `max_memory_bytes` applies below it.
const MAX_MEMORY_PER_INSTANCE: usize = 4 << 30;

/// Per-invocation budget for the pooling allocator (a component holds several core
/// instances, memories and tables).
const POOL_CORE_INSTANCES_PER_SLOT: u32 = 16;
const POOL_MEMORIES_PER_SLOT: u32 = 4;
const POOL_TABLES_PER_SLOT: u32 = 16;

/// Most table elements a plugin may have (each costs a pointer on the host).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// How much of each pooled linear memory stays resident between instances, where the kernel
/// supports PAGEMAP_SCAN: enough for a Rust plugin's stack, data and a 1 MiB read buffer. At
/// most this much per slot in use (`max_concurrent_wasm` slots).
const KEEP_RESIDENT_PER_MEMORY: usize = 4 << 20;

/// How much of each pooled table stays resident between instances, where the kernel supports
/// PAGEMAP_SCAN: a Rust plugin's function table is a few hundred entries, one or two pages.
/// Without it every table is given back to the kernel after each instance (an `madvise`, which
/// interrupts every other core to flush its TLB) and faulted in again at the next: that cost
/// each scan of figure 1 (BENCHMARKS.md) about 20 µs on a 2-core VM, two thirds of the scan.
const KEEP_RESIDENT_PER_TABLE: usize = 64 << 10;

/// How many of a trap's innermost wasm frames are captured and named in its message. Every
/// error a host function returns captures a backtrace, `proc_exit` included (a Rust plugin's
/// `std::process::exit`, even with status 0), and naming each frame searches the module's
/// address map. Capture only the frames the message shows. (The SDK's `scanner_main!` returns
/// from `main` on success instead of exiting, which skips all of it: on the EICAR plugin that
/// took a 4 KiB scan from about 130 µs to about 85 µs.)
const BACKTRACE_FRAMES: usize = 5;

/// What kind of wasm binary a file holds, by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    /// A core module (wasm32-wasip1).
    Module,
    /// A component (wasm32-wasip2).
    Component,
}

/// Tell a module from a component by the header; `None` when it is not wasm at all.
pub fn detect_binary(bytes: &[u8]) -> Option<BinaryKind> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return None;
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Some(BinaryKind::Module),
        [_, _, 1, 0] => Some(BinaryKind::Component),
        _ => None,
    }
}

/// How a plugin is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A WASI command module (wasm32-wasip1): stdin, stdout, exit code.
    CommandModule,
    /// A WASI command component (`wasi:cli/run`): stdin, stdout, exit code.
    CommandComponent,
    /// A component of the `scanner` world: typed input, typed verdict.
    ScannerComponent,
    /// A component of the `post-action` world: typed input, typed result.
    PostActionComponent,
}

impl std::fmt::Display for WasmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WasmKind::CommandModule => "command module (wasm32-wasip1)",
            WasmKind::CommandComponent => "command component (wasm32-wasip2, wasi:cli/run)",
            WasmKind::ScannerComponent => "scanner-world component (cordon:plugin/scanner)",
            WasmKind::PostActionComponent => {
                "post-action-world component (cordon:plugin/post-action)"
            }
        })
    }
}

/// What loading learned about a binary.
#[derive(Debug, Clone)]
pub struct WasmInfo {
    /// sha256 of the bytes, lowercase hex.
    pub sha256: String,
    /// How it is called.
    pub kind: WasmKind,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
    /// Size of the binary in bytes.
    pub size: usize,
    /// Its imports, as `module::name` (modules) or interface names (components).
    pub imports: Vec<String>,
    /// Its exports.
    pub exports: Vec<String>,
    /// The linear memory it needs just to be instantiated: the largest initial size among the
    /// memories it defines, in bytes. `None` when that is not known before instantiation (a
    /// component that instantiates modules it imports) or it defines no memory.
    pub initial_memory_bytes: Option<u64>,
}

/// Bytes in a WebAssembly page (Cordon's engine does not enable custom page sizes).
const WASM_PAGE_BYTES: u64 = 64 << 10;

/// Per-store state: the WASI context, the limiter, the deadline and the output pipes (so that
/// the epoch callback can stop a guest that keeps writing past a cap).
struct State<W> {
    wasi: W,
    limiter: MemoryLimiter,
    deadline: Instant,
    outputs: [CappedPipe; 2],
}

/// WASIp2 state of a component store.
struct P2 {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State<P2> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.wasi.table,
        }
    }
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

    /// What the pipe holds, up to its cap.
    fn kept(&self) -> Vec<u8> {
        let contents = self.pipe.contents();
        contents[..contents.len().min(self.cap)].to_vec()
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

/// A binary ready to instantiate.
pub struct WasmPlugin {
    prepared: PreparedKind,
}

enum PreparedKind {
    Module(InstancePre<State<WasiP1Ctx>>),
    Command(CommandPre<State<P2>>),
    Scanner(ScannerPre<State<P2>>),
    PostAction(PostActionPre<State<P2>>),
}

/// How a run ended when the guest did not trap.
enum RunEnd {
    /// The guest exited (returned from `_start` / `run`: 0; `proc_exit(n)`: n).
    Exit(i32),
    /// A typed component returned: stdout to judge (a verdict rendered as JSON, or nothing).
    Returned(Vec<u8>),
    /// A typed component returned its error type.
    Reported(String),
}

/// A compiled binary of either kind.
enum Compiled {
    Module(Module),
    Component(Component),
}

/// The wasm engine, its linkers and the compiled-module cache.
pub struct WasmRuntime {
    engine: Engine,
    module_linker: Linker<State<WasiP1Ctx>>,
    component_linker: wasmtime::component::Linker<State<P2>>,
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
        let engine_err = |e: wasmtime::Error| ExecutorError::Engine(e.to_string());
        let module_linker =
            wasi_p1_linker(&engine, |s: &mut State<WasiP1Ctx>| &mut s.wasi).map_err(engine_err)?;
        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker).map_err(engine_err)?;
        component_linker
            .instance(PLUGIN_TYPES_INTERFACE)
            .map_err(engine_err)?;
        Ok(WasmRuntime {
            engine,
            module_linker,
            component_linker,
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

    /// Read, validate, compile (or load from cache), link and pre-instantiate a binary for a
    /// plugin of `role`.
    pub(super) fn prepare(
        &self,
        source: &ModuleSource,
        role: Role,
    ) -> Result<(WasmPlugin, WasmInfo), String> {
        let bytes = read_source(source)?;
        self.prepare_bytes(&bytes, role)
            .map_err(|e| format!("module {source:?}: {e}"))
    }

    /// `WasmRuntime::prepare` on bytes in memory.
    pub fn prepare_bytes(
        &self,
        bytes: &[u8],
        role: Role,
    ) -> Result<(WasmPlugin, WasmInfo), String> {
        let binary = detect_binary(bytes).ok_or_else(|| {
            "is not WebAssembly (it does not start with the \\0asm header); build the plugin \
             for wasm32-wasip1 or wasm32-wasip2"
                .to_owned()
        })?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let (compiled, from_cache) = self.compile_cached(bytes, binary, &sha256)?;
        let resources = match &compiled {
            Compiled::Module(module) => Some(module.resources_required()),
            Compiled::Component(component) => component.resources_required(),
        };
        let initial_memory_bytes = resources
            .and_then(|r| r.max_initial_memory_size)
            .map(|pages| pages.saturating_mul(WASM_PAGE_BYTES));
        let (prepared, kind, imports, exports) = match compiled {
            Compiled::Module(module) => {
                let (imports, exports) = check_module_interface(&module)?;
                let pre = self
                    .module_linker
                    .instantiate_pre(&module)
                    .map_err(|e| format!("cannot be linked against WASI: {e:#}"))?;
                (
                    PreparedKind::Module(pre),
                    WasmKind::CommandModule,
                    imports,
                    exports,
                )
            }
            Compiled::Component(component) => {
                let (kind, imports, exports) = self.check_component_interface(&component, role)?;
                let pre = self
                    .component_linker
                    .instantiate_pre(&component)
                    .map_err(|e| format!("cannot be linked against WASI: {e:#}"))?;
                let bind = |e: wasmtime::Error| format!("does not match its world: {e:#}");
                let prepared = match kind {
                    WasmKind::ScannerComponent => {
                        PreparedKind::Scanner(ScannerPre::new(pre).map_err(bind)?)
                    }
                    WasmKind::PostActionComponent => {
                        PreparedKind::PostAction(PostActionPre::new(pre).map_err(bind)?)
                    }
                    _ => PreparedKind::Command(CommandPre::new(pre).map_err(bind)?),
                };
                (prepared, kind, imports, exports)
            }
        };
        Ok((
            WasmPlugin { prepared },
            WasmInfo {
                sha256,
                kind,
                from_cache,
                size: bytes.len(),
                imports,
                exports,
                initial_memory_bytes,
            },
        ))
    }

    /// Compile `bytes`, going through the on-disk cache when there is one. Only binaries that
    /// Cordon compiled itself are ever deserialized.
    fn compile_cached(
        &self,
        bytes: &[u8],
        binary: BinaryKind,
        sha256: &str,
    ) -> Result<(Compiled, bool), String> {
        let what = match binary {
            BinaryKind::Module => "module",
            BinaryKind::Component => "component",
        };
        let invalid = |e: wasmtime::Error| format!("is not a valid WebAssembly {what}: {e:#}");
        let cache_path = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{sha256}-{}.cwasm", self.engine_hash())));
        if let Some(path) = cache_path.as_ref().filter(|p| p.exists()) {
            // SAFETY: the file is in Cordon's private cache directory, written by
            // `precompile_*` of an engine with the same compatibility hash (it is in the
            // name); wasmtime checks that hash again while deserializing.
            let loaded = unsafe {
                match binary {
                    BinaryKind::Module => {
                        Module::deserialize_file(&self.engine, path).map(Compiled::Module)
                    }
                    BinaryKind::Component => {
                        Component::deserialize_file(&self.engine, path).map(Compiled::Component)
                    }
                }
            };
            match loaded {
                Ok(compiled) => return Ok((compiled, true)),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "discarding an unusable compiled-module cache entry"
                ),
            }
        }
        let compiled = match binary {
            BinaryKind::Module => self.engine.precompile_module(bytes),
            BinaryKind::Component => self.engine.precompile_component(bytes),
        }
        .map_err(invalid)?;
        if let Some(path) = &cache_path
            && let Err(e) = write_atomically(path, &compiled)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled module");
        }
        // SAFETY: `compiled` was produced just now by this engine's `precompile_*`.
        let loaded = unsafe {
            match binary {
                BinaryKind::Module => {
                    Module::deserialize(&self.engine, &compiled).map(Compiled::Module)
                }
                BinaryKind::Component => {
                    Component::deserialize(&self.engine, &compiled).map(Compiled::Component)
                }
            }
        };
        Ok((
            loaded.map_err(|e| format!("could not be loaded after compiling: {e:#}"))?,
            false,
        ))
    }

    /// A short hex digest of the engine's precompile compatibility hash.
    fn engine_hash(&self) -> String {
        let mut hasher = DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// A component must import only WASI and export what its role needs: `scan` (scanner
    /// world) for a scanner, `execute` (post-action world) for a post action, or
    /// `wasi:cli/run` (a command) for either.
    fn check_component_interface(
        &self,
        component: &Component,
        role: Role,
    ) -> Result<(WasmKind, Vec<String>, Vec<String>), String> {
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        if let Some(bad) = imports
            .iter()
            .find(|i| !i.starts_with("wasi:") && *i != PLUGIN_TYPES_INTERFACE)
        {
            return Err(format!(
                "imports `{bad}`, which the sandbox does not provide; a plugin may import only \
                 WASI interfaces (wasi:*) and {PLUGIN_TYPES_INTERFACE}"
            ));
        }
        let has = |name: &str| exports.iter().any(|e| e == name);
        let command = exports.iter().any(|e| e.starts_with(COMMAND_EXPORT_PREFIX));
        let kind = match role {
            Role::Scanner if has(SCANNER_EXPORT) => WasmKind::ScannerComponent,
            Role::PostAction if has(POST_ACTION_EXPORT) => WasmKind::PostActionComponent,
            _ if command => WasmKind::CommandComponent,
            Role::Scanner if has(POST_ACTION_EXPORT) => {
                return Err(
                    "is a post-action-world component, but the plugin's role is scanner".into(),
                );
            }
            Role::PostAction if has(SCANNER_EXPORT) => {
                return Err(
                    "is a scanner-world component, but the plugin's role is post_action".into(),
                );
            }
            _ => {
                return Err(format!(
                    "exports neither `{SCANNER_EXPORT}` (cordon:plugin/scanner), \
                     `{POST_ACTION_EXPORT}` (cordon:plugin/post-action) nor wasi:cli/run; \
                     its exports are: [{}]",
                    exports.join(", ")
                ));
            }
        };
        Ok((kind, imports, exports))
    }

    /// A WASI context for one invocation, without its filesystem (`p1` and `p2` add the
    /// sample's directory): inherits nothing; stdin from memory; capped stdout and stderr.
    fn wasi_builder(
        &self,
        name: &PluginName,
        invocation: &Invocation<'_>,
        outputs: &[CappedPipe; 2],
    ) -> WasiCtxBuilder {
        let mut builder = WasiCtxBuilder::new();
        // No sockets at all, not even unconnected ones: every address is already refused
        // (wasmtime-wasi's default check), but a created socket would still be a descriptor
        // of Cordon's process.
        builder
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        builder
            .stdin(MemoryInputPipe::new(invocation.stdin.to_vec()))
            .stdout(outputs[0].pipe.clone())
            .stderr(outputs[1].pipe.clone())
            .args(&[name.as_str(), &invocation.sample.guest_path()]);
        builder
    }

    pub(super) async fn invoke(
        &self,
        plugin: &WasmPlugin,
        name: &PluginName,
        limits: &Limits,
        invocation: Invocation<'_>,
    ) -> Outcome {
        let Ok(_slot) = self.slots.acquire().await else {
            return Outcome::could_not_start("the wasm runtime is shutting down");
        };
        let started = Instant::now();
        let outputs = [
            CappedPipe::new(Stream::Stdout, limits.max_stdout_bytes),
            CappedPipe::new(Stream::Stderr, limits.max_stderr_bytes),
        ];
        let preopen = match invocation
            .sample
            .preopen()
            .get_or_open(invocation.sample.dir())
        {
            Ok(preopen) => preopen,
            Err(message) => return Outcome::could_not_start(message),
        };
        let mut builder = self.wasi_builder(name, &invocation, &outputs);
        match &plugin.prepared {
            PreparedKind::Module(pre) => {
                let mut store =
                    self.store(p1(&mut builder, preopen, limits), limits, started, outputs);
                let end = run_guarded(&mut store, limits, async |store| {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
                    start.call_async(&mut *store, ()).await?;
                    Ok(RunEnd::Exit(0))
                })
                .await;
                outcome(&store, limits, started, end)
            }
            PreparedKind::Command(pre) => {
                let mut store =
                    self.store(p2(&mut builder, preopen, limits), limits, started, outputs);
                let end = run_guarded(&mut store, limits, async |store| {
                    let command = pre.instantiate_async(&mut *store).await?;
                    let ok = command.wasi_cli_run().call_run(&mut *store).await?;
                    Ok(RunEnd::Exit(if ok.is_ok() { 0 } else { 1 }))
                })
                .await;
                outcome(&store, limits, started, end)
            }
            PreparedKind::Scanner(pre) => {
                let input = typed_input::scanner(&invocation);
                let mut store =
                    self.store(p2(&mut builder, preopen, limits), limits, started, outputs);
                let end = run_guarded(&mut store, limits, async |store| {
                    let scanner = pre.instantiate_async(&mut *store).await?;
                    Ok(match scanner.call_scan(&mut *store, &input).await? {
                        Ok(verdict) => RunEnd::Returned(typed_input::render_verdict(&verdict)),
                        Err(error) => RunEnd::Reported(typed_input::scanner_error(&error)),
                    })
                })
                .await;
                outcome(&store, limits, started, end)
            }
            PreparedKind::PostAction(pre) => {
                let input = typed_input::post_action(&invocation);
                let mut store =
                    self.store(p2(&mut builder, preopen, limits), limits, started, outputs);
                let end = run_guarded(&mut store, limits, async |store| {
                    let action = pre.instantiate_async(&mut *store).await?;
                    Ok(match action.call_execute(&mut *store, &input).await? {
                        Ok(()) => RunEnd::Returned(Vec::new()),
                        Err(error) => RunEnd::Reported(typed_input::post_action_error(&error)),
                    })
                })
                .await;
                outcome(&store, limits, started, end)
            }
        }
    }

    /// A fresh store with the memory limiter and the deadline callback installed.
    fn store<W: Send + 'static>(
        &self,
        wasi: W,
        limits: &Limits,
        started: Instant,
        outputs: [CappedPipe; 2],
    ) -> Store<State<W>> {
        let mut store = Store::new(
            &self.engine,
            State {
                wasi,
                limiter: MemoryLimiter {
                    limit: limits.max_memory_bytes,
                    total: 0,
                    peak: 0,
                    denied: false,
                },
                deadline: started + limits.timeout,
                outputs,
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
        store
    }
}

/// A WASIp1 context from `builder`, with the sample's directory preopened and its handle
/// table capped at `max_open_files`. The filesystem context replaced here is all that
/// `allow_blocking_current_thread` sets, so the preopen's (see
/// [`PreopenCache::get_or_open`]) applies.
fn p1(builder: &mut WasiCtxBuilder, preopen: WasiFilesystemCtx, limits: &Limits) -> WasiP1Ctx {
    let mut ctx = builder.build_p1();
    let view = ctx.ctx();
    *view.ctx.filesystem() = preopen;
    view.table.set_max_capacity(limits.max_open_files as usize);
    ctx
}

/// A WASIp2 context from `builder`, with the sample's directory preopened and its handle
/// table capped at `max_open_files`.
fn p2(builder: &mut WasiCtxBuilder, preopen: WasiFilesystemCtx, limits: &Limits) -> P2 {
    let mut ctx = builder.build();
    *ctx.filesystem() = preopen;
    let mut table = ResourceTable::new();
    table.set_max_capacity(limits.max_open_files as usize);
    P2 { ctx, table }
}

/// A sample directory opened as a wasm plugin's read-only preopen at [`GUEST_DIR`], opened
/// once and then lent to every wasm plugin that runs on a sample in that directory: each of a
/// workflow's scanners, and for a server's scan slot ([`crate::sample::SlotPool`]) every sample
/// the slot holds. The open directory is shared, never the guest's view of it: each plugin
/// gets a WASI context of its own, which holds the handle read-only and can neither close it
/// for another plugin nor change its permissions. The directory is closed with the last sample
/// or slot that holds it.
///
/// A cache made `PreopenCache::expecting` a directory checks that the directory it opened is
/// that one (device and inode, read from the open handle): a slot's directory swapped for
/// another while it was opened is refused instead of kept for the slot's later samples.
///
/// What it saves is an `open` and a `close` of the directory per plugin run, about 3 µs on a
/// VM: a quarter of what a small scan costs besides the module's own run (BENCHMARKS.md,
/// figure 1).
#[derive(Default)]
pub struct PreopenCache {
    open: std::sync::OnceLock<WasiFilesystemCtx>,
    /// The device and inode the directory must have, where the caller knows them.
    expected: Option<(u64, u64)>,
}

impl PreopenCache {
    /// A cache for the directory with this device and inode number, and no other.
    pub(crate) fn expecting(dev: u64, ino: u64) -> PreopenCache {
        PreopenCache {
            open: std::sync::OnceLock::new(),
            expected: Some((dev, ino)),
        }
    }

    /// The preopen of `dir`, opened now if it is not yet.
    fn get_or_open(&self, dir: &Path) -> Result<WasiFilesystemCtx, String> {
        if let Some(open) = self.open.get() {
            return Ok(open.clone());
        }
        let mut builder = WasiCtxBuilder::new();
        // Set before the preopen, which takes it. With it, reads of the sample go straight
        // into linear memory on this thread instead of through a `spawn_blocking`, a buffer
        // and a copy per call (3x faster per call; a 64 MiB scan 1.5x faster). One read is
        // bounded by the sample's size. WASIp1's `poll_oneoff` would then serve a sleep with
        // `std::thread::sleep`, which nothing can interrupt: `wasi_p1_linker` shadows it with
        // an asynchronous sleep, so a module cannot hold a thread past its deadline (a
        // component's sleeps are always asynchronous).
        builder.allow_blocking_current_thread(true);
        if let Err(e) = builder.preopened_dir(dir, GUEST_DIR, FsPerms::ReadOnly) {
            return Err(format!(
                "could not open the sample directory {}: {e}",
                dir.display()
            ));
        }
        let mut opened = builder.build().filesystem().clone();
        if let Some(expected) = self.expected {
            let found = identity(&mut opened).map_err(|e| {
                format!(
                    "could not check the sample directory {}: {e}",
                    dir.display()
                )
            })?;
            if found != expected {
                return Err(format!(
                    "the sample directory {} is no longer the one Cordon made for the file \
                     (a native plugin in the workflow may have replaced it); the file was not \
                     scanned",
                    dir.display()
                ));
            }
        }
        // Two plugins racing to open it both succeed; the first one kept is used by all.
        Ok(self.open.get_or_init(|| opened).clone())
    }

    /// Whether the directory has been opened.
    pub fn is_open(&self) -> bool {
        self.open.get().is_some()
    }
}

/// The device and inode of the one directory `fs` preopens, read from its open handle.
fn identity(fs: &mut WasiFilesystemCtx) -> Result<(u64, u64), String> {
    use std::os::unix::fs::MetadataExt;
    use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
    use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
    let mut table = ResourceTable::new();
    let mut view = WasiFilesystemCtxView {
        ctx: fs,
        table: &mut table,
    };
    let dirs = view.get_directories().map_err(|e| e.to_string())?;
    let [(dir, _)] = dirs.as_slice() else {
        return Err(format!("{} preopened directories, not one", dirs.len()));
    };
    let Descriptor::Dir(dir) = table.get(dir).map_err(|e| e.to_string())? else {
        return Err("the preopen is not a directory".into());
    };
    let meta = dir.dir.metadata().map_err(|e| e.to_string())?;
    Ok((meta.dev(), meta.ino()))
}

impl std::fmt::Debug for PreopenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreopenCache")
            .field("open", &self.is_open())
            .finish()
    }
}

/// How long after its deadline a guest blocked in a host call (a WASI sleep, a blocking read)
/// is dropped. A guest running wasm code is interrupted by the epoch deadline within a
/// [`TICK`]; a guest waiting on the host does not run wasm code, so the epoch cannot reach it.
pub const HOST_CALL_GRACE: Duration = Duration::from_millis(100);

/// Run `body` on the store, with an outer timeout at the deadline plus [`HOST_CALL_GRACE`].
/// The epoch deadline normally stops a guest first; this stops one that sits in a host call.
/// `None` when the outer timeout fired.
async fn run_guarded<W, F>(
    store: &mut Store<State<W>>,
    limits: &Limits,
    body: F,
) -> Option<wasmtime::Result<RunEnd>>
where
    F: AsyncFnOnce(&mut Store<State<W>>) -> wasmtime::Result<RunEnd>,
{
    let run = body(store);
    tokio::time::timeout(limits.timeout + HOST_CALL_GRACE, run)
        .await
        .ok()
}

/// Classify how a run ended.
fn outcome<W>(
    store: &Store<State<W>>,
    limits: &Limits,
    started: Instant,
    end: Option<wasmtime::Result<RunEnd>>,
) -> Outcome {
    let state = store.data();
    let mut outcome = Outcome {
        duration: started.elapsed(),
        peak_memory_bytes: Some(state.limiter.peak),
        ..Outcome::default()
    };
    let [stdout, stderr] = &state.outputs;
    outcome.stdout = stdout.kept();
    outcome.stderr = stderr.kept();
    // Output over a cap is the reason whatever the guest did next (it gets write errors, and
    // then usually traps, exits non-zero or is interrupted).
    let over_cap = state
        .outputs
        .iter()
        .find(|o| o.is_over())
        .map(|o| Failure::OutputTooLarge {
            stream: o.stream,
            limit_bytes: o.cap,
        });
    let timeout = Failure::Timeout {
        limit: limits.timeout,
    };
    match end {
        None => outcome.failure = Some(timeout),
        Some(Ok(RunEnd::Exit(code))) => outcome.exit = Some(i64::from(code)),
        Some(Ok(RunEnd::Returned(stdout))) => {
            outcome.exit = Some(0);
            outcome.stdout = stdout;
        }
        Some(Ok(RunEnd::Reported(message))) => {
            outcome.exit = Some(1);
            outcome.failure = Some(Failure::Reported { message });
        }
        Some(Err(error)) => {
            outcome.failure = Some(if let Some(exit) = error.downcast_ref::<I32Exit>() {
                outcome.exit = Some(i64::from(exit.0));
                return finish(outcome, over_cap);
            } else if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt))
                || Instant::now() >= state.deadline
            {
                timeout
            } else if state.limiter.denied {
                Failure::MemoryLimit {
                    limit_bytes: limits.max_memory_bytes,
                    elsewhere: false,
                }
            } else if is_table_full(&error) {
                Failure::OpenFilesLimit {
                    limit: limits.max_open_files,
                }
            } else {
                Failure::Trap {
                    message: describe_error(&error),
                }
            });
        }
    }
    finish(outcome, over_cap)
}

fn finish(mut outcome: Outcome, over_cap: Option<Failure>) -> Outcome {
    if over_cap.is_some() {
        outcome.failure = over_cap;
    }
    outcome
}

/// The typed input of component worlds, built from the stdin JSON every plugin gets, and the
/// rendering of typed results into what the contract judges.
mod typed_input {
    use serde_json::Value;

    use super::worlds::{post_action, scanner};
    use crate::executor::Invocation;

    struct Fields {
        data_id: String,
        display_name: String,
        file_size: u64,
        file_type: String,
        md5: String,
        sha1: String,
        sha256: String,
        workflow: String,
        metadata_json: String,
        result_json: String,
    }

    fn fields(invocation: &Invocation<'_>) -> Fields {
        let text = String::from_utf8_lossy(invocation.stdin);
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let s = |ptr: &str| {
            json.pointer(ptr)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Fields {
            data_id: s("/data_id"),
            display_name: s("/file_info/display_name"),
            file_size: json
                .pointer("/file_info/file_size")
                .and_then(Value::as_u64)
                .unwrap_or_default(),
            file_type: s("/file_info/file_type"),
            md5: s("/file_info/md5"),
            sha1: s("/file_info/sha1"),
            sha256: s("/file_info/sha256"),
            workflow: s("/process_info/profile"),
            metadata_json: json
                .get("metadata")
                .filter(|m| !m.is_null())
                .map(Value::to_string)
                .unwrap_or_default(),
            result_json: text.trim_end().to_owned(),
        }
    }

    macro_rules! input {
        ($module:path, $invocation:expr) => {{
            use $module as m;
            let f = fields($invocation);
            m::Input {
                data_id: f.data_id,
                path: $invocation.sample.guest_path(),
                display_name: f.display_name,
                file_size: f.file_size,
                file_type: f.file_type,
                md5: f.md5,
                sha1: f.sha1,
                sha256: f.sha256,
                workflow: f.workflow,
                metadata_json: f.metadata_json,
                result_json: f.result_json,
            }
        }};
    }

    pub(super) fn scanner(invocation: &Invocation<'_>) -> scanner::cordon::plugin::types::Input {
        input!(scanner::cordon::plugin::types, invocation)
    }

    pub(super) fn post_action(
        invocation: &Invocation<'_>,
    ) -> post_action::cordon::plugin::types::Input {
        input!(post_action::cordon::plugin::types, invocation)
    }

    /// The verdict as the JSON a command scanner prints (the enum's position is its code).
    pub(super) fn render_verdict(v: &scanner::cordon::plugin::types::Verdict) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "def_time": v.def_time,
            "scan_result_i": v.code as u8,
            "threat_found": v.threat_found,
        }))
        .expect("a verdict serializes")
    }

    macro_rules! describe_error {
        ($e:expr, $module:path) => {{
            use $module as m;
            match $e {
                m::Error::Io(s) => format!("the plugin reported an I/O error: {s}"),
                m::Error::InvalidInput(s) => format!("the plugin reported invalid input: {s}"),
                m::Error::Other(s) => format!("the plugin reported an error: {s}"),
            }
        }};
    }

    pub(super) fn scanner_error(e: &scanner::cordon::plugin::types::Error) -> String {
        describe_error!(e, scanner::cordon::plugin::types)
    }

    pub(super) fn post_action_error(e: &post_action::cordon::plugin::types::Error) -> String {
        describe_error!(e, post_action::cordon::plugin::types)
    }
}

/// A module must be a WASI command: import only WASI, export `_start` and its memory.
/// Returns its imports and exports, for display.
fn check_module_interface(module: &Module) -> Result<(Vec<String>, Vec<String>), String> {
    let mut imports = Vec::new();
    for import in module.imports() {
        if import.module() != WASI_P1_MODULE {
            return Err(format!(
                "imports `{}::{}`, which the sandbox does not provide; a plugin may import only \
                 WASI ({WASI_P1_MODULE})",
                import.module(),
                import.name()
            ));
        }
        imports.push(format!("{}::{}", import.module(), import.name()));
    }
    let start = module.get_export("_start").and_then(|e| e.func().cloned());
    match start {
        Some(ty) if ty.params().len() == 0 && ty.results().len() == 0 => {}
        Some(_) => {
            return Err(
                "exports `_start` with the wrong signature; it must take and return nothing".into(),
            );
        }
        None => {
            return Err(
                "exports no `_start` function; build the plugin as a WASI command \
                        (a binary with `fn main`, target wasm32-wasip1), not as a library"
                    .into(),
            );
        }
    }
    if module
        .get_export("memory")
        .and_then(|e| e.memory().cloned())
        .is_none()
    {
        return Err("exports no memory named `memory`, which WASI needs".into());
    }
    let exports = module.exports().map(|e| e.name().to_owned()).collect();
    Ok((imports, exports))
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

/// The linker of every WASI command module (wasm32-wasip1): WASIp1 with async host calls,
/// nothing else. Public (hidden) so that the benchmarks' floor (`host/benches/executor.rs`)
/// links a module exactly as the runtime does; use [`WasmRuntime::engine`] for the engine.
///
/// Modules run with `allow_blocking_current_thread` (see `PreopenCache::get_or_open`), so
/// that their file reads go straight into linear memory on the calling thread. wasmtime-wasi
/// then serves a `poll_oneoff` on one relative clock (a plain sleep) with a blocking
/// `std::thread::sleep`, which nothing could interrupt at the deadline. This linker shadows
/// `poll_oneoff`: that one case sleeps asynchronously here (so the outer timeout of
/// `run_guarded` drops it at the deadline), and every other call goes to wasmtime-wasi's
/// own implementation, which is asynchronous for anything but that case.
#[doc(hidden)]
pub fn wasi_p1_linker<T: Send + 'static>(
    engine: &Engine,
    wasi: impl Fn(&mut T) -> &mut WasiP1Ctx + Copy + Send + Sync + 'static,
) -> wasmtime::Result<Linker<T>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        WASI_P1_MODULE,
        "poll_oneoff",
        move |mut caller: Caller<'_, T>, (subs, events, nsubs, nevents): (i32, i32, i32, i32)| {
            Box::new(async move {
                let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                    return Err(wasmtime::Error::msg(
                        "poll_oneoff: the module exports no memory named `memory`",
                    ));
                };
                if let Some(sleep) =
                    LoneSleep::parse(memory.data(&caller), subs, events, nsubs, nevents)
                {
                    tokio::time::sleep(sleep.duration).await;
                    sleep.write_event(memory.data_mut(&mut caller));
                    return Ok(0); // errno `success`
                }
                // As wasmtime-wasi's own binding does (wiggle's `wasmtime_integration`).
                let fuel = caller.as_context_mut().hostcall_fuel();
                let (bytes, data) = memory.data_and_store_mut(&mut caller);
                let ctx = wasi(data);
                ctx.set_hostcall_fuel(fuel);
                let mut guest = wiggle::GuestMemory::Unshared(bytes);
                wasmtime_wasi::p1::wasi_snapshot_preview1::poll_oneoff(
                    ctx, &mut guest, subs, events, nsubs, nevents,
                )
                .await
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// A WASIp1 `poll_oneoff` that waits on one relative clock subscription: a plain sleep (what
/// Rust's `std::thread::sleep` and C's `nanosleep` do). Only a call whose subscription, event
/// and count lie in bounds and aligned is one; anything else goes to wasmtime-wasi, which
/// checks and reports it.
struct LoneSleep {
    userdata: u64,
    duration: Duration,
    event_at: usize,
    nevents_at: usize,
}

impl LoneSleep {
    /// Size of a `subscription` and of an `event` in WASIp1's layout.
    const SUBSCRIPTION_SIZE: usize = 48;
    const EVENT_SIZE: usize = 32;
    /// `subclockflags::subscription_clock_abstime`.
    const ABSTIME: u16 = 1;
    /// Longer than any plugin timeout; keeps the sleep's arithmetic far from overflow.
    const LONGEST: Duration = Duration::from_secs(86_400);

    fn parse(memory: &[u8], subs: i32, events: i32, nsubs: i32, nevents: i32) -> Option<Self> {
        if nsubs != 1 {
            return None;
        }
        let region = |ptr: i32, len: usize, align: usize| -> Option<usize> {
            let at = ptr as u32 as usize;
            (at.is_multiple_of(align) && at.checked_add(len)? <= memory.len()).then_some(at)
        };
        let sub_at = region(subs, Self::SUBSCRIPTION_SIZE, 8)?;
        let event_at = region(events, Self::EVENT_SIZE, 8)?;
        let nevents_at = region(nevents, 4, 4)?;
        let sub = &memory[sub_at..sub_at + Self::SUBSCRIPTION_SIZE];
        let u64_at = |i: usize| u64::from_le_bytes(sub[i..i + 8].try_into().expect("8 bytes"));
        // userdata at 0; the union's tag at 8 (0: clock); the clock's id at 16, timeout at 24,
        // precision at 32, flags at 40.
        let flags = u16::from_le_bytes([sub[40], sub[41]]);
        if sub[8] != 0 || flags & Self::ABSTIME != 0 {
            return None;
        }
        Some(LoneSleep {
            userdata: u64_at(0),
            duration: Duration::from_nanos(u64_at(24)).min(Self::LONGEST),
            event_at,
            nevents_at,
        })
    }

    /// Write what wasmtime-wasi writes for it: one clock event, no error, and a count of 1.
    fn write_event(&self, memory: &mut [u8]) {
        let event = &mut memory[self.event_at..self.event_at + Self::EVENT_SIZE];
        event[0..8].copy_from_slice(&self.userdata.to_le_bytes()); // userdata
        event[8..10].copy_from_slice(&0u16.to_le_bytes()); // error: success
        event[10] = 0; // type: clock
        event[16..24].copy_from_slice(&1u64.to_le_bytes()); // fd_readwrite.nbytes
        event[24..26].copy_from_slice(&0u16.to_le_bytes()); // fd_readwrite.flags
        memory[self.nevents_at..self.nevents_at + 4].copy_from_slice(&1u32.to_le_bytes());
    }
}

fn engine_config(pool_slots: Option<u32>) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_backtrace_max_frames(NonZeroUsize::new(BACKTRACE_FRAMES));
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
        // Where the kernel can tell which pages an instance dirtied (PAGEMAP_SCAN, Linux 6.7
        // and later), keep the first pages of each slot's memory resident and reset only the
        // dirtied ones with a memset, instead of giving every page back and faulting it in
        // again at the next instance (a 1 MiB read buffer is 256 page faults a scan).
        // Elsewhere keeping pages resident would memset all of them at every reset: don't.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT_PER_MEMORY)
                .table_keep_resident(KEEP_RESIDENT_PER_TABLE);
        }
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

/// Whether the guest was stopped because its WASI handle table was full: it tried to open
/// more than `max_open_files` handles at once. wasmtime-wasi turns a full table into a trap
/// whose cause is the table's error.
fn is_table_full(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    })
}

/// A trap's message with its wasm backtrace, on one line.
fn describe_error(error: &wasmtime::Error) -> String {
    let mut message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        // wasmtime-wasi refuses `proc_exit` statuses of 126 and above with a plain error.
        None if error
            .root_cause()
            .to_string()
            .contains("invalid exit status") =>
        {
            "called proc_exit with a status of 126 or more, which WASI cannot carry; \
             exit with 1 to 125 to report a failure"
                .to_owned()
        }
        None => error.root_cause().to_string(),
    };
    if let Some(bt) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames: Vec<String> = bt
            .frames()
            .iter()
            .take(BACKTRACE_FRAMES)
            .map(|f| f.func_name().unwrap_or("<unnamed>").to_owned())
            .collect();
        if !frames.is_empty() {
            message.push_str(&format!(" (in {})", frames.join(" <- ")));
        }
    }
    message
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
                (import "wasi_snapshot_preview1" "poll_oneoff"
                    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
                (memory (export "memory") 1)
                (data (i32.const 64) "{escaped}")
                ;; iovec at 0: base 64, length of data
                (func $write (param $fd i32) (result i32)
                    (i32.store (i32.const 0) (i32.const 64))
                    (i32.store (i32.const 4) (i32.const {len}))
                    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
                (func (export "_start") {body}))"#,
            len = data.len(),
            escaped = data
                .bytes()
                .map(|b| format!("\\{b:02x}"))
                .collect::<String>(),
        ))
        .expect("test WAT is valid")
    }

    fn setup(
        bytes: Vec<u8>,
        limits: Limits,
    ) -> (Executor, Result<Plugin, String>, tempfile::TempDir) {
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
        run_timed(body, data, limits).await.0
    }

    /// [`run`], and how long the invocation took, set-up (the engine, the compile) excluded.
    async fn run_timed(body: &str, data: &str, limits: Limits) -> (Outcome, Duration) {
        let (executor, plugin, dir) = setup(module(body, data), limits);
        let plugin = plugin.unwrap();
        let sample = Sample::from_bytes(b"x", "x.txt", dir.path()).unwrap();
        let started = Instant::now();
        let outcome = executor
            .invoke(
                &plugin,
                Invocation {
                    stdin: b"{}\n",
                    sample: &sample,
                },
            )
            .await;
        (outcome, started.elapsed())
    }

    fn short(timeout_ms: u64) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            max_memory_bytes: 4 << 20,
            max_stdout_bytes: 1024,
            max_stderr_bytes: 1024,
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn output_and_exit_code_are_reported() {
        let o = run(
            "(drop (call $write (i32.const 1)))",
            r#"{"ok":1}"#,
            short(5000),
        )
        .await;
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

    /// A plugin that prints `{}`, and a pool of scan slots in the executor's directory.
    fn slot_rig() -> (
        Executor,
        Plugin,
        Arc<crate::sample::SlotPool>,
        tempfile::TempDir,
    ) {
        let (executor, plugin, dir) = setup(
            module("(drop (call $write (i32.const 1)))", "{}"),
            short(5000),
        );
        let pool = crate::sample::SlotPool::open(&dir.path().join("slots")).unwrap();
        (executor, plugin.unwrap(), pool, dir)
    }

    #[tokio::test]
    async fn a_sample_directory_is_opened_once_and_a_scan_slot_keeps_it_open() {
        let (executor, plugin, pool, dir) = slot_rig();
        let first = pool.sample(b"x", "a.txt").unwrap();
        assert!(!first.preopen().is_open(), "opened on first use only");
        for _ in 0..2 {
            let invocation = Invocation {
                stdin: b"{}\n",
                sample: &first,
            };
            let o = executor.invoke(&plugin, invocation).await;
            assert_eq!((o.exit, o.failure), (Some(0), None));
            assert!(
                first.preopen().is_open(),
                "kept for the sample's next plugin"
            );
        }
        let kept: *const PreopenCache = first.preopen();
        drop(first);
        let second = pool.sample(b"yy", "b.txt").unwrap();
        assert!(
            std::ptr::eq(second.preopen(), kept) && second.preopen().is_open(),
            "the slot's next sample uses the directory its first opened"
        );
        let other = Sample::from_bytes(b"x", "x.txt", dir.path()).unwrap();
        assert!(!other.preopen().is_open(), "another directory is not");
    }

    /// A slot's directory swapped for a look-alike (a native plugin runs as Cordon's user and
    /// could) before a wasm plugin first opens it: the plugin does not start, rather than
    /// scan the look-alike, and the look-alike is not kept for the slot's later samples.
    #[tokio::test]
    async fn a_scan_slot_directory_swapped_for_another_is_refused() {
        let (executor, plugin, pool, dir) = slot_rig();
        let sample = pool.sample(b"x", "a.txt").unwrap();
        let slot = sample.dir().to_owned();
        let moved = dir.path().join("moved");
        std::fs::rename(&slot, &moved).unwrap();
        std::fs::create_dir(&slot).unwrap();
        std::fs::write(slot.join("a.txt"), b"planted").unwrap();
        let invocation = Invocation {
            stdin: b"{}\n",
            sample: &sample,
        };
        let o = executor.invoke(&plugin, invocation).await;
        match &o.failure {
            Some(Failure::CouldNotStart { message })
                if message.contains("is no longer the one Cordon made") => {}
            other => panic!("the look-alike was opened: {other:?}"),
        }
        assert!(!sample.preopen().is_open());
        // Put back, the slot is whole again: its next sample is scanned.
        std::fs::remove_dir_all(&slot).unwrap();
        std::fs::rename(&moved, &slot).unwrap();
        drop(sample);
        let next = pool.sample(b"y", "b.txt").unwrap();
        assert_eq!(next.dir(), slot);
        let invocation = Invocation {
            stdin: b"{}\n",
            sample: &next,
        };
        let o = executor.invoke(&plugin, invocation).await;
        assert_eq!((o.exit, o.failure), (Some(0), None));
    }

    /// A plugin that closes its preopen closes its own handle only: the next plugin on the
    /// sample, which shares the host's open directory, still opens the sample through it.
    #[tokio::test]
    async fn a_plugin_that_closes_its_scan_directory_does_not_close_it_for_the_next() {
        // Writes three WASI errnos as bytes: opening `x.txt` under the preopen (descriptor 3),
        // closing descriptor 3, opening `x.txt` again.
        let open = "(call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 5)
                (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 8))";
        let wat = format!(
            r#"(module
                (import "wasi_snapshot_preview1" "fd_write"
                    (func $fd_write (param i32 i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
                (import "wasi_snapshot_preview1" "path_open"
                    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
                (memory (export "memory") 1)
                (data (i32.const 64) "x.txt")
                (func (export "_start")
                    (i32.store8 (i32.const 100) {open})
                    (i32.store8 (i32.const 101) (call $fd_close (i32.const 3)))
                    (i32.store8 (i32.const 102) {open})
                    (i32.store (i32.const 0) (i32.const 100))
                    (i32.store (i32.const 4) (i32.const 3))
                    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#
        );
        let (executor, plugin, dir) = setup(wat::parse_str(wat).unwrap(), short(5000));
        let plugin = plugin.unwrap();
        let sample = Sample::from_bytes(b"x", "x.txt", dir.path()).unwrap();
        const EBADF: u8 = 8;
        for run in 0..2 {
            let invocation = Invocation {
                stdin: b"{}\n",
                sample: &sample,
            };
            let o = executor.invoke(&plugin, invocation).await;
            assert_eq!((o.exit, o.failure), (Some(0), None), "run {run}");
            assert_eq!(
                o.stdout,
                [0, 0, EBADF],
                "run {run}: opened, closed its /scan, could not open again"
            );
        }
        assert!(
            sample.preopen().is_open(),
            "both runs used one open directory"
        );
    }

    /// WAT storing a WASIp1 clock subscription at `at`: `userdata`, tag clock, monotonic
    /// clock, relative timeout `ns`, precision 0, no flags.
    fn clock_subscription(at: u32, userdata: i64, ns: i64) -> String {
        format!(
            "(i64.store (i32.const {at}) (i64.const {userdata}))
             (i32.store8 (i32.const {}) (i32.const 0))
             (i32.store (i32.const {}) (i32.const 1))
             (i64.store (i32.const {}) (i64.const {ns}))
             (i64.store (i32.const {}) (i64.const 0))
             (i32.store16 (i32.const {}) (i32.const 0))",
            at + 8,
            at + 16,
            at + 24,
            at + 32,
            at + 40
        )
    }

    /// The plugin failed with a timeout of `ms`, and its invocation returned within 2 s.
    fn assert_stopped_at_deadline(o: &Outcome, took: Duration, ms: u64) {
        assert_eq!(
            o.failure,
            Some(Failure::Timeout {
                limit: Duration::from_millis(ms)
            })
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn an_infinite_loop_is_interrupted_at_the_deadline() {
        let (o, took) = run_timed("(loop $l (br $l))", "", short(300)).await;
        assert_stopped_at_deadline(&o, took, 300);
    }

    #[tokio::test]
    async fn an_infinite_loop_in_the_start_function_is_interrupted_at_the_deadline() {
        // A module's `start` function runs while it is instantiated, before `_start`: the
        // deadline must already hold then.
        let bytes = wat::parse_str(
            r#"(module
                (memory (export "memory") 1)
                (func $spin (loop $l (br $l)))
                (start $spin)
                (func (export "_start")))"#,
        )
        .unwrap();
        let (executor, plugin, dir) = setup(bytes, short(300));
        let plugin = plugin.unwrap();
        let sample = Sample::from_bytes(b"x", "x.txt", dir.path()).unwrap();
        let started = Instant::now();
        let o = executor
            .invoke(
                &plugin,
                Invocation {
                    stdin: b"{}\n",
                    sample: &sample,
                },
            )
            .await;
        assert_stopped_at_deadline(&o, started.elapsed(), 300);
    }

    #[tokio::test]
    async fn a_guest_sleeping_in_the_host_is_stopped_at_the_deadline() {
        // One relative clock subscription of 60 s at 128 (monotonic clock, no flags): the
        // case WASIp1 may serve with a blocking sleep.
        let body = format!(
            "{} (drop (call $poll_oneoff (i32.const 128) (i32.const 256) (i32.const 1) (i32.const 512)))",
            clock_subscription(128, 0, 60_000_000_000)
        );
        let (o, took) = run_timed(&body, "", short(300)).await;
        assert_stopped_at_deadline(&o, took, 300);
    }

    #[tokio::test]
    async fn sleeps_return_their_events() {
        let check = |cond: &str, code: u32| {
            format!("(if {cond} (then (call $proc_exit (i32.const {code}))))")
        };
        // One relative clock: the host's own asynchronous sleep. Its event and count are as
        // wasmtime-wasi writes them.
        let one = format!(
            "{} {} {} {} {} (drop (call $write (i32.const 1)))",
            clock_subscription(128, 42, 1_000_000),
            check(
                "(i32.ne (call $poll_oneoff (i32.const 128) (i32.const 256) (i32.const 1) (i32.const 512)) (i32.const 0))",
                3
            ),
            check("(i32.ne (i32.load (i32.const 512)) (i32.const 1))", 4),
            check("(i64.ne (i64.load (i32.const 256)) (i64.const 42))", 5),
            check(
                "(i32.or (i32.load16_u (i32.const 264)) (i32.load8_u (i32.const 266)))",
                6
            ),
        );
        // Two clocks: wasmtime-wasi's implementation, reached through the shadow.
        let two = format!(
            "{} {} {} {} (drop (call $write (i32.const 1)))",
            clock_subscription(128, 1, 1_000_000),
            clock_subscription(176, 2, 2_000_000),
            check(
                "(i32.ne (call $poll_oneoff (i32.const 128) (i32.const 256) (i32.const 2) (i32.const 512)) (i32.const 0))",
                3
            ),
            check("(i32.eqz (i32.load (i32.const 512)))", 4),
        );
        for (i, body) in [one, two].into_iter().enumerate() {
            let o = run(&body, "slept", short(5000)).await;
            assert_eq!((o.exit, &o.failure), (Some(0), &None), "case {i}: {o:?}");
            assert_eq!(o.stdout, b"slept");
        }
    }

    #[tokio::test]
    async fn memory_growth_stops_at_the_limit() {
        // Grow one page at a time; trap when growth is refused.
        let body = "(loop $l (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) \
                    (then unreachable)) (br $l))";
        let o = run(body, "", short(5000)).await;
        assert_eq!(
            o.failure,
            Some(Failure::MemoryLimit {
                limit_bytes: 4 << 20,
                elsewhere: false,
            })
        );
        assert!(o.peak_memory_bytes.unwrap() <= 4 << 20);
    }

    #[tokio::test]
    async fn a_trap_is_an_outcome() {
        let o = run("unreachable", "", short(5000)).await;
        match o.failure {
            Some(Failure::Trap { message }) => {
                assert!(message.contains("unreachable"), "{message}")
            }
            other => panic!("expected a trap, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn exit_codes_wasi_cannot_carry_are_failures() {
        let o = run("(call $proc_exit (i32.const 200))", "", short(5000)).await;
        assert_eq!(o.exit, None);
        assert!(
            matches!(o.failure, Some(Failure::Trap { .. })),
            "{:?}",
            o.failure
        );
    }

    #[tokio::test]
    async fn a_stdout_flood_is_capped() {
        let o = run(
            "(loop $l (drop (call $write (i32.const 1))) (br $l))",
            "flood!",
            short(5000),
        )
        .await;
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

    /// A module whose initial memory is above `max_memory_bytes` could never be instantiated;
    /// it is refused at load, and one that fits exactly is not.
    #[test]
    fn a_module_whose_initial_memory_exceeds_the_limit_is_refused_at_load() {
        let pages = 40; // 2.5 MiB
        let bytes = wat::parse_str(format!(
            r#"(module (memory (export "memory") {pages}) (func (export "_start")))"#
        ))
        .unwrap();
        let limits = |max_memory_bytes| Limits {
            max_memory_bytes,
            ..Limits::default()
        };
        let needed = pages * WASM_PAGE_BYTES;
        let e = setup(bytes.clone(), limits(needed - 1))
            .1
            .map(|_| ())
            .unwrap_err();
        assert!(
            e.starts_with(
                "plugin \"t\": its module needs 2.5 MiB (2621440 bytes) of linear memory"
            ) && e.contains(&format!("Raise max_memory_bytes to at least {needed},")),
            "{e}"
        );
        let (executor, plugin, _dir) = setup(bytes, limits(needed));
        let plugin = plugin.unwrap();
        let sample = Sample::from_bytes(b"x", "x.txt", _dir.path()).unwrap();
        let o = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(executor.invoke(
                &plugin,
                Invocation {
                    stdin: b"{}\n",
                    sample: &sample,
                },
            ));
        assert_eq!((o.exit, o.failure), (Some(0), None));
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
        let first = Executor::new(&config)
            .unwrap()
            .prepare(spec.clone())
            .unwrap();
        assert!(!first.info().from_cache);
        let second = Executor::new(&config).unwrap().prepare(spec).unwrap();
        assert!(second.info().from_cache);
        assert_eq!(first.info().sha256, second.info().sha256);
    }
}
