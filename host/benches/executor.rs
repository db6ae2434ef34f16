//! Figures 1 and 2 of `BENCHMARKS.md`: what Cordon's executor costs per scan.
//!
//! 1. **Executor overhead (wasm).** `bench-verdict` (reads its stdin JSON, prints a verdict)
//!    run through [`Executor::invoke`] against the bare floor in the same process: the same
//!    module, compiled by the same engine (same `Config`), linked by the same
//!    [`wasi_p1_linker`], and per scan only a store with a WASI context holding the stdin and
//!    a stdout pipe, `InstancePre::instantiate_async` and a call of `_start`. At concurrency 1
//!    and at the number of cores. Target: Cordon at most 1.5 times the floor.
//! 2. **Sandbox against native.** The same `bench-verdict` source built for wasm32-wasip1 and
//!    natively, both through the executor (wasm and process runtimes) on a 4 KiB file: scans
//!    per second. Target: wasm at least 10 times the process rate.
//!
//! Beside figure 2: what the native sandbox adds to a process scan (the same program with it
//! and without, paired), and what a plugin's pids cgroup adds to starting a process (made,
//! joined before `exec`, removed after; paired against the same start without).
//!
//! `cargo bench -p cordon --bench executor`; the summary at the end gives each figure and its
//! ratio to the target.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cordon::executor::wasm::wasi_p1_linker;
use cordon::executor::{Executor, ExecutorConfig, Invocation, Plugin};
use cordon::plugin::{
    Limits, ModuleSource, NativeSandbox, PluginName, PluginSpec, Role, RuntimeSpec,
};
use cordon::sample::Sample;
use cordon_tests::artifacts;
use criterion::Criterion;
use support::{Goal, Recorder, Summary, micros};
use wasmtime::{InstancePre, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

/// The size of the sample file.
const SAMPLE_BYTES: usize = 4096;

/// Everything the scans share.
struct Fixture {
    executor: Executor,
    wasm: Plugin,
    native: Plugin,
    /// The same native program without its Landlock sandbox: what the sandbox costs a scan.
    native_unconfined: Plugin,
    /// One sample per concurrent scan, each in its own directory, as the server gives each
    /// scan slot its own (`<data_dir>/scan/N`). Scans sharing one directory would contend in
    /// the kernel on that directory's reference count when each opens it for its preopen.
    samples: Vec<Sample>,
    stdin: Vec<u8>,
    floor: Floor,
    _dir: tempfile::TempDir,
}

/// The floor: the executor's engine and linker, and nothing of the executor per scan.
struct Floor {
    pre: InstancePre<WasiP1Ctx>,
    stdin: bytes::Bytes,
}

impl Floor {
    /// One scan at the floor: a store with stdin and stdout, instantiate, `_start`.
    async fn scan(&self) -> Vec<u8> {
        let stdout = MemoryOutputPipe::new(4096);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(self.stdin.clone()))
            .stdout(stdout.clone())
            .build_p1();
        let mut store = Store::new(self.pre.module().engine(), wasi);
        // The engine interrupts at epoch deadlines (Cordon's engine setting); a store must
        // have one, or it traps at the first tick.
        store.set_epoch_deadline(1 << 40);
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .unwrap();
        match start.call_async(&mut store, ()).await {
            Ok(()) => {}
            Err(e) => assert_eq!(e.downcast_ref::<I32Exit>().map(|e| e.0), Some(0), "{e:?}"),
        }
        drop(store);
        stdout.contents().to_vec()
    }
}

fn spec(name: &str, runtime: RuntimeSpec) -> PluginSpec {
    PluginSpec {
        name: PluginName::new(name).unwrap(),
        role: Role::Scanner,
        runtime,
        limits: Limits::default(),
        description: String::new(),
    }
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let executor = Executor::new(&ExecutorConfig::under(dir.path())).unwrap();
        let wasm = executor
            .prepare(spec(
                "Verdict wasm",
                RuntimeSpec::Wasm {
                    module: ModuleSource::File(artifacts::WASM_BENCH_VERDICT.into()),
                },
            ))
            .unwrap();
        let native_with = |name: &str, sandbox: NativeSandbox| {
            executor
                .prepare(spec(
                    name,
                    RuntimeSpec::Process {
                        program: artifacts::NATIVE_BENCH_VERDICT.into(),
                        args: Vec::new(),
                        env: Vec::new(),
                        sandbox,
                    },
                ))
                .unwrap()
        };
        let native = native_with("Verdict native", NativeSandbox::default());
        let native_unconfined = native_with(
            "Verdict open",
            NativeSandbox {
                enabled: false,
                ..NativeSandbox::default()
            },
        );
        let content: Vec<u8> = (0..SAMPLE_BYTES).map(|i| (i * 7 % 251) as u8).collect();
        let samples: Vec<Sample> = (0..support::cores().max(1))
            .map(|_| {
                Sample::from_bytes(&content, "sample.bin", &dir.path().join("samples")).unwrap()
            })
            .collect();
        let fingerprint = cordon::fileinfo::fingerprint(&samples[0].path()).unwrap();
        // What the pipeline hands a scanner of this file.
        let stdin =
            cordon::tools::run::default_input("sample.bin", &fingerprint, Role::Scanner, None)
                .to_plugin_stdin();

        let engine = executor.wasm().engine();
        let module = Module::from_file(engine, artifacts::WASM_BENCH_VERDICT).unwrap();
        let linker = wasi_p1_linker(engine, |ctx: &mut WasiP1Ctx| ctx).unwrap();
        let floor = Floor {
            pre: linker.instantiate_pre(&module).unwrap(),
            stdin: bytes::Bytes::from(stdin.clone()),
        };
        Fixture {
            executor,
            wasm,
            native,
            native_unconfined,
            samples,
            stdin,
            floor,
            _dir: dir,
        }
    }

    /// A scan by the `lane`th of the concurrent tasks, of that task's own sample.
    async fn invoke(&self, plugin: &Plugin, lane: usize) -> cordon::executor::Outcome {
        self.executor
            .invoke(
                plugin,
                Invocation {
                    stdin: &self.stdin,
                    sample: &self.samples[lane % self.samples.len()],
                },
            )
            .await
    }

    /// Every path gives the verdict, before anything is timed.
    async fn check(&self) {
        let verdict = b"{\"def_time\":1767225600000,\"scan_result_i\":0,\"threat_found\":\"\"}\n";
        for plugin in [&self.wasm, &self.native, &self.native_unconfined] {
            let o = self.invoke(plugin, 0).await;
            assert_eq!(
                (o.exit, &o.failure),
                (Some(0), &None),
                "{}: {o:?}",
                plugin.name()
            );
            assert_eq!(o.stdout, verdict, "{}", plugin.name());
        }
        assert_eq!(self.floor.scan().await, verdict);
    }
}

/// What one timed iteration runs.
#[derive(Clone, Copy)]
enum Path {
    Floor,
    Wasm,
    Native,
    NativeUnconfined,
}

impl Path {
    async fn scan(self, fx: &Fixture, lane: usize) {
        match self {
            Path::Floor => {
                std::hint::black_box(fx.floor.scan().await);
            }
            Path::Wasm => {
                std::hint::black_box(fx.invoke(&fx.wasm, lane).await);
            }
            Path::Native => {
                std::hint::black_box(fx.invoke(&fx.native, lane).await);
            }
            Path::NativeUnconfined => {
                std::hint::black_box(fx.invoke(&fx.native_unconfined, lane).await);
            }
        }
    }
}

/// `iters` scans on `runtime`, `concurrency` at a time (each task runs its share in a loop);
/// the wall time.
fn timed(
    runtime: &tokio::runtime::Runtime,
    fx: &Arc<Fixture>,
    path: Path,
    concurrency: usize,
    iters: u64,
) -> Duration {
    runtime.block_on(async {
        let started = Instant::now();
        if concurrency == 1 {
            for _ in 0..iters {
                path.scan(fx, 0).await;
            }
        } else {
            let tasks: Vec<_> = (0..concurrency as u64)
                .map(|i| {
                    let share =
                        iters / concurrency as u64 + u64::from(i < iters % concurrency as u64);
                    let fx = fx.clone();
                    tokio::spawn(async move {
                        for _ in 0..share {
                            path.scan(&fx, i as usize).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        }
        started.elapsed()
    })
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let fx = Arc::new(Fixture::new());
    let cores = support::cores();
    let levels: Vec<usize> = if cores > 1 { vec![1, cores] } else { vec![1] };
    runtime(cores).block_on(fx.check());
    let rec = Recorder::default();

    for &n in &levels {
        let rt = runtime(n);
        let mut group = c.benchmark_group(format!("executor_overhead/c{n}"));
        for (name, path) in [("floor", Path::Floor), ("cordon", Path::Wasm)] {
            let id = format!("executor_overhead/c{n}/{name}");
            group.bench_function(name, |b| {
                b.iter_custom(|iters| rec.record(&id, iters, timed(&rt, &fx, path, n, iters)))
            });
        }
        group.finish();
    }
    for &n in &levels {
        let rt = runtime(n);
        let mut group = c.benchmark_group(format!("sandbox_vs_native/c{n}"));
        for (name, path) in [("wasm", Path::Wasm), ("process", Path::Native)] {
            let id = format!("sandbox_vs_native/c{n}/{name}");
            group.bench_function(name, |b| {
                b.iter_custom(|iters| rec.record(&id, iters, timed(&rt, &fx, path, n, iters)))
            });
        }
        group.finish();
    }
    c.final_summary();

    let mut summary = Summary::new("executor (figures 1 and 2)");
    for &n in &levels {
        let floor = rec.per_iter(&format!("executor_overhead/c{n}/floor"));
        let cordon = rec.per_iter(&format!("executor_overhead/c{n}/cordon"));
        if let (Some(floor), Some(cordon)) = (floor, cordon) {
            summary.note(format!(
                "1. concurrency {n}: floor {:.1} us/scan, Cordon {:.1} us/scan (wall time per \
                 scan, criterion's medians; their ratio {:.2} x)",
                micros(floor),
                micros(cordon),
                cordon.as_secs_f64() / floor.as_secs_f64()
            ));
            let (rt, iters) = (runtime(n), support::batch_iters(cordon));
            let ratio = support::paired(
                support::PAIRED_ROUNDS,
                || timed(&rt, &fx, Path::Wasm, n, iters),
                || timed(&rt, &fx, Path::Floor, n, iters),
            );
            summary.note(format!(
                "1. concurrency {n}: Cordon / floor, paired batches of {iters} scans: {ratio}; \
                 in them Cordon {:.1} us/scan, floor {:.1} us/scan (medians)",
                micros(ratio.a) / iters as f64,
                micros(ratio.b) / iters as f64
            ));
            summary.figure(
                &format!("1. executor overhead, concurrency {n}: Cordon / floor (paired)"),
                ratio.median,
                "x",
                Goal::AtMost,
                1.5,
            );
        }
    }
    for &n in &levels {
        let wasm = rec.per_iter(&format!("sandbox_vs_native/c{n}/wasm"));
        let native = rec.per_iter(&format!("sandbox_vs_native/c{n}/process"));
        if let (Some(wasm), Some(native)) = (wasm, native) {
            summary.note(format!(
                "2. concurrency {n}, {SAMPLE_BYTES}-byte file: wasm {:.0} scans/s, process {:.0} scans/s",
                1.0 / wasm.as_secs_f64(),
                1.0 / native.as_secs_f64()
            ));
            summary.figure(
                &format!("2. sandbox against native, concurrency {n}: wasm rate / process rate"),
                native.as_secs_f64() / wasm.as_secs_f64(),
                "x",
                Goal::AtLeast,
                10.0,
            );
            // What the native sandbox adds to a process scan: building its Landlock ruleset
            // (about forty paths opened) and applying it and the seccomp filter in the child.
            let (rt, iters) = (runtime(n), support::batch_iters(native));
            let ratio = support::paired(
                support::PAIRED_ROUNDS,
                || timed(&rt, &fx, Path::Native, n, iters),
                || timed(&rt, &fx, Path::NativeUnconfined, n, iters),
            );
            summary.note(format!(
                "2. concurrency {n}: process scan in its sandbox / unconfined, paired \
                 batches of {iters} scans: {ratio}; in them {:.0} us/scan against {:.0} us/scan",
                micros(ratio.a) / iters as f64,
                micros(ratio.b) / iters as f64
            ));
        }
    }
    cgroup_cost(&mut summary);
    summary.print();
}

/// What a plugin's cgroups add to starting a native plugin: its pids cgroup (`max_processes`)
/// and, where Cordon may use the memory controller, its memory cgroup from the pool
/// (`max_memory_bytes`). Batches of `bench-verdict` started (by `fork` and `exec`) and waited
/// for, each in cgroups made or leased for it, joined in the child before `exec`, read as an
/// invocation reads them at its end (OOM kills, refused `fork`s, both peaks) and removed
/// after, paired against the same starts without.
fn cgroup_cost(summary: &mut Summary) {
    let cgroups = match cordon::executor::cgroup::cgroups() {
        Ok(cgroups) => cgroups,
        Err(why) => {
            summary.note(format!(
                "2. a plugin's cgroup: none on this machine ({why})"
            ));
            return;
        }
    };
    let start = |cgroup: bool, iters: u64| {
        let started = Instant::now();
        for _ in 0..iters {
            let mut command = std::process::Command::new(artifacts::NATIVE_BENCH_VERDICT);
            command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let made = cgroup.then(|| {
                Arc::new(
                    cgroups
                        .create(
                            Limits::DEFAULT_MAX_PROCESSES,
                            Limits::DEFAULT_MAX_MEMORY_BYTES,
                            artifacts::NATIVE_BENCH_VERDICT,
                        )
                        .unwrap(),
                )
            });
            let join = made.clone();
            // Both with a closure before `exec`, as the process runtime always has one: with
            // none, the standard library starts the program without a `fork` of this process,
            // which is much faster, and the comparison would be of that.
            // SAFETY: `join` makes only `open` and `write` calls.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || match &join {
                    Some(cgroup) => cgroup.join(),
                    None => Ok(()),
                });
            }
            command.status().unwrap();
            if let Some(made) = made {
                std::hint::black_box((
                    made.oom_kills(),
                    made.limit_hits(),
                    made.peak(),
                    made.peak_memory(),
                ));
                made.remove();
            }
        }
        started.elapsed()
    };
    let iters = support::batch_iters(start(false, 20) / 20);
    let ratio = support::paired(
        support::PAIRED_ROUNDS,
        || start(true, iters),
        || start(false, iters),
    );
    summary.note(format!(
        "2. a plugin's cgroups ({}; {}): a process start with them / without, paired batches \
         of {iters}: {ratio}; in them {:.0} us against {:.0} us per start",
        cgroups.describe(),
        cgroups
            .memory()
            .unwrap_or_else(|why| format!("no memory cgroup: {why}")),
        micros(ratio.a) / iters as f64,
        micros(ratio.b) / iters as f64
    ));
}
