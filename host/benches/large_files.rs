//! Figure 3 of `BENCHMARKS.md`: large files. The EICAR example scanner on 1 MiB and 64 MiB
//! clean files, and on 4 KiB for reference (pseudo-random bytes, so the whole file is
//! searched): its wasm32-wasip1 build run through [`Executor::invoke`] (instantiate, read the
//! file through WASI, search, print the verdict; the plugin does not read its input, which it
//! needs nothing of) against the same scanning code (`eicar::scan`, the plugin's library) run
//! natively in this process on the same file. Throughput in MB/s (10^6 bytes per second).
//! Target: wasm at least half of native.
//!
//! `cargo bench -p cordon --bench large_files`; the summary at the end gives each figure and
//! its ratio to the target.

mod support;

use std::time::Duration;

use cordon::executor::{Executor, ExecutorConfig, Invocation, Plugin};
use cordon::plugin::{Limits, ModuleSource, PluginName, PluginSpec, Role, RuntimeSpec};
use cordon::sample::Sample;
use cordon_plugin_sdk::SampleFile;
use cordon_tests::artifacts;
use criterion::{Criterion, SamplingMode, Throughput};
use support::{Goal, Recorder, Summary, time_iters};

/// The file sizes, and whether the figure has the target. 4 KiB has none: it shows what a scan
/// costs besides reading and searching, which is what keeps the 1 MiB ratio down.
const SIZES: &[(&str, usize, bool)] = &[
    ("4KiB", 4 << 10, false),
    ("1MiB", 1 << 20, true),
    ("64MiB", 64 << 20, true),
];

/// `len` pseudo-random bytes (xorshift), which never hold the EICAR string.
fn content(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 8);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

struct Case {
    sample: Sample,
    stdin: Vec<u8>,
    len: usize,
    /// Whether this size's ratio has the figure's target.
    has_target: bool,
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let dir = tempfile::tempdir().unwrap();
    let executor = Executor::new(&ExecutorConfig::under(dir.path())).unwrap();
    let plugin: Plugin = executor
        .prepare(PluginSpec {
            name: PluginName::new("EICAR").unwrap(),
            role: Role::Scanner,
            runtime: RuntimeSpec::Wasm {
                module: ModuleSource::File(artifacts::WASM_EICAR.into()),
            },
            limits: Limits::default(),
            description: String::new(),
        })
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rec = Recorder::default();
    let clean = b"{\"def_time\":1767225600000,\"scan_result_i\":0,\"threat_found\":\"\"}\n";

    let cases: Vec<(&str, Case)> = SIZES
        .iter()
        .map(|&(name, len, has_target)| {
            let sample =
                Sample::from_bytes(&content(len), "large.bin", &dir.path().join("samples"))
                    .unwrap();
            let fingerprint = cordon::fileinfo::fingerprint(&sample.path()).unwrap();
            let result =
                cordon::tools::run::default_input("large.bin", &fingerprint, Role::Scanner, None);
            let stdin = result.to_plugin_stdin();
            (
                name,
                Case {
                    sample,
                    stdin,
                    len,
                    has_target,
                },
            )
        })
        .collect();

    let wasm_scan = |case: &Case| {
        runtime.block_on(executor.invoke(
            &plugin,
            Invocation {
                stdin: &case.stdin,
                sample: &case.sample,
            },
        ))
    };
    let native_scan = |case: &Case| {
        let mut file = SampleFile::open(case.sample.path()).unwrap();
        eicar::scan(&mut file).unwrap()
    };

    for (name, case) in &cases {
        // Both give the clean verdict before anything is timed.
        let o = wasm_scan(case);
        assert_eq!((o.exit, &o.failure), (Some(0), &None), "{o:?}");
        assert_eq!(o.stdout, clean);
        assert_eq!(
            native_scan(case).to_json(),
            std::str::from_utf8(clean).unwrap().trim()
        );

        let mut group = c.benchmark_group(format!("large_files/{name}"));
        group
            .throughput(Throughput::Bytes(case.len as u64))
            .sampling_mode(SamplingMode::Flat);
        let wasm_id = format!("large_files/{name}/wasm");
        group.bench_function("wasm", |b| {
            b.iter_custom(|iters| {
                rec.record(&wasm_id, iters, time_iters(iters, || wasm_scan(case)))
            })
        });
        let native_id = format!("large_files/{name}/native");
        group.bench_function("native", |b| {
            b.iter_custom(|iters| {
                rec.record(&native_id, iters, time_iters(iters, || native_scan(case)))
            })
        });
        group.finish();
    }
    c.final_summary();

    let mut summary = Summary::new("large files (figure 3)");
    for (name, case) in &cases {
        let wasm = rec.per_iter(&format!("large_files/{name}/wasm"));
        let native = rec.per_iter(&format!("large_files/{name}/native"));
        if let (Some(wasm), Some(native)) = (wasm, native) {
            let mbps = |d: Duration| case.len as f64 / d.as_secs_f64() / 1e6;
            summary.note(format!(
                "3. {name}: wasm {:.0} MB/s ({:.2} ms/scan), native in-process {:.0} MB/s ({:.2} ms/scan)",
                mbps(wasm),
                wasm.as_secs_f64() * 1e3,
                mbps(native),
                native.as_secs_f64() * 1e3
            ));
            let what = format!("3. {name}: wasm throughput / native throughput");
            summary.note(format!(
                "{what}, from criterion's medians: {:.2} x",
                mbps(wasm) / mbps(native)
            ));
            // Throughput ratio = native time / wasm time, in paired batches.
            let iters = support::batch_iters(wasm);
            let ratio = support::paired(
                support::PAIRED_ROUNDS,
                || time_iters(iters, || native_scan(case)),
                || time_iters(iters, || wasm_scan(case)),
            );
            summary.note(format!(
                "{what}, paired batches of {iters} scans: {ratio}; in them wasm {:.3} ms/scan, \
                 native {:.3} ms/scan (medians)",
                ratio.b.as_secs_f64() * 1e3 / iters as f64,
                ratio.a.as_secs_f64() * 1e3 / iters as f64
            ));
            if case.has_target {
                summary.figure(
                    &format!("{what} (paired)"),
                    ratio.median,
                    "x",
                    Goal::AtLeast,
                    0.5,
                );
            }
        }
    }
    summary.print();
}
