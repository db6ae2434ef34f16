//! Figure 5 of `BENCHMARKS.md`: loading a plugin. For each example plugin, the first load of
//! a `.wasm` Cordon has never seen (validate, compile, write the compiled-module cache, link,
//! pre-instantiate) against a load from the compiled cache (read, hash, deserialize, link,
//! pre-instantiate), both through [`Executor::prepare`], as `cordon serve` loads plugins.
//! Target: a cached load under 5 ms.
//!
//! `cargo bench -p cordon --bench plugin_load`; the summary at the end gives each figure and
//! its ratio to the target.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use cordon::executor::{Executor, ExecutorConfig};
use cordon::plugin::{Limits, ModuleSource, PluginName, PluginSpec, Role, RuntimeSpec};
use cordon_tests::artifacts;
use criterion::Criterion;
use support::{Goal, Recorder, Summary};

/// The example plugins, as the names the summary uses and their binaries.
const PLUGINS: &[(&str, &str)] = &[
    ("eicar", artifacts::WASM_EICAR),
    ("sha256-blocklist", artifacts::WASM_SHA256_BLOCKLIST),
    ("filetype", artifacts::WASM_FILETYPE),
    ("bench-verdict", artifacts::WASM_BENCH_VERDICT),
    ("c-pe-detector", artifacts::WASM_C_PE_DETECTOR),
    ("eicar-component", artifacts::WASM_P2_EICAR),
];

fn spec(path: &str) -> PluginSpec {
    PluginSpec {
        name: PluginName::new("Bench").unwrap(),
        role: Role::Scanner,
        runtime: RuntimeSpec::Wasm {
            module: ModuleSource::File(path.into()),
        },
        limits: Limits::default(),
        description: String::new(),
    }
}

fn clear(cache: &Path) {
    for entry in std::fs::read_dir(cache).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let dir = tempfile::tempdir().unwrap();
    let config = ExecutorConfig::under(dir.path());
    let cache = config.cache_dir.clone().unwrap();
    let executor = Executor::new(&config).unwrap();
    let rec = Recorder::default();

    let mut group = c.benchmark_group("plugin_load");
    for &(name, path) in PLUGINS {
        let first = format!("plugin_load/{name}/first");
        group.bench_function(format!("{name}/first"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    clear(&cache);
                    let started = Instant::now();
                    let plugin = executor.prepare(spec(path)).unwrap();
                    total += started.elapsed();
                    assert!(!plugin.info().from_cache);
                }
                rec.record(&first, iters, total)
            })
        });
        let cached = format!("plugin_load/{name}/cached");
        group.bench_function(format!("{name}/cached"), |b| {
            executor.prepare(spec(path)).unwrap();
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let plugin = executor.prepare(spec(path)).unwrap();
                    total += started.elapsed();
                    assert!(plugin.info().from_cache);
                }
                rec.record(&cached, iters, total)
            })
        });
    }
    group.finish();
    c.final_summary();

    let mut summary = Summary::new("plugin load (figure 5)");
    for &(name, path) in PLUGINS {
        let first = rec.per_iter(&format!("plugin_load/{name}/first"));
        let cached = rec.per_iter(&format!("plugin_load/{name}/cached"));
        if let (Some(first), Some(cached)) = (first, cached) {
            let size = std::fs::metadata(path).map_or(0, |m| m.len());
            summary.note(format!(
                "5. {name} ({} KiB): first load (compile) {:.1} ms, cached load {:.2} ms, {:.0}x faster",
                size / 1024,
                first.as_secs_f64() * 1e3,
                cached.as_secs_f64() * 1e3,
                first.as_secs_f64() / cached.as_secs_f64()
            ));
            summary.figure(
                &format!("5. cached load of {name}"),
                cached.as_secs_f64() * 1e3,
                "ms",
                Goal::AtMost,
                5.0,
            );
        }
    }
    summary.print();
}
