//! `/metrics`, in the Prometheus (OpenMetrics text) format.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `cordon_submissions_total` | `workflow` | files accepted (answered 200) |
//! | `cordon_submissions_rejected_total` | `reason` | files refused: `queue_full`, `too_large`, `unknown_rule`, `bad_request`, `empty`, `no_length`, `stalled` (an upload that sent nothing for `upload_idle_timeout_ms`), `too_slow` (an upload slower than `min_upload_rate_bytes_per_s`), `no_space` (the disk, or the database on it, is full), `shutting_down` |
//! | `cordon_results_total` | `result`, `verdict` | final results: `Allowed`/`Blocked` and `scan_all_result_a` |
//! | `cordon_plugin_duration_seconds` | `plugin`, `role` | histogram of plugin run times: every run of a scanner run again included |
//! | `cordon_plugin_peak_memory_bytes` | `plugin`, `role` | histogram of plugin peak memory, where the runtime measures it (wasm plugins: linear memory; native plugins: their memory cgroup, all their processes together) |
//! | `cordon_plugin_peak_processes` | `plugin`, `role` | histogram of the most processes and threads a native plugin ran at once, where its cgroup tells: against its `max_processes` |
//! | `cordon_plugin_failures_total` | `plugin`, `kind` | plugin failures by kind: `timeout`, `memory_limit`, `open_files_limit`, `disk_limit`, `process_limit`, `trap`, `signal`, `output_too_large`, `transport`, `could_not_start`, `exit_code`, `http_status`, `invalid_output` |
//! | `cordon_plugin_reruns_total` | `plugin`, `kind` | scanner runs stopped for what Cordon and its plugins together, or the machine, ran short of (`memory_limit`, `process_limit`), and run again |
//! | `cordon_http_request_duration_seconds` | `method`, `route`, `status` | histogram of the time to answer each request: `route` is the route's pattern (`/file/{data_id}`), `unmatched` when none matched |
//! | `cordon_callbacks_total` | `outcome` | callback attempts: `delivered`, `retried`, `failed` |
//! | `cordon_result_store_failures_total` | | attempts to store a final result that failed (a full disk, a database error); each is retried until it succeeds, and the file is shown as still in progress meanwhile |
//! | `cordon_queue_depth` | | accepted files waiting for a worker |
//! | `cordon_scans_running` | | files being scanned |
//! | `cordon_store_commit_seconds` | `durability` | histogram of the database writer's commits, `BEGIN` to the end of `COMMIT`: `machine` ones fsync the WAL (a new job, a final result), `process` ones do not (a job marked running). The rate of its `_sum` is how busy the writer, the server's one serial resource, is (1 = always) |
//! | `cordon_store_commit_writes` | | histogram of the writes that share one commit (and its fsync) |
//! | `cordon_store_checkpoint_seconds` | | histogram of checkpoint passes (the WAL copied into the database file) |
//!
//! Per-plugin figures are read from each final result (`scan_details[].scan_time`,
//! `.peak_memory_bytes`, `.peak_processes`, `.failure.kind`, `.reruns[].kind` and
//! `.reruns[].scan_time`,
//! `post_action.details[]`): the
//! result holds every plugin outcome. Label values are plugin and workflow names, which only
//! the configuration and admins choose, so the number of series stays bounded.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use axum::http::Method;

use crate::result::ScanResult;
use crate::store::StoreMetrics;
use crate::verdict::ResultCode;

type Labels = Vec<(&'static str, String)>;

/// Buckets of `cordon_plugin_duration_seconds`: 1 ms to about 131 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

/// Buckets of `cordon_plugin_peak_memory_bytes`: 1 MiB to 16 GiB, doubling.
fn memory_histogram() -> Histogram {
    Histogram::new(exponential_buckets(f64::from(1u32 << 20), 2.0, 15))
}

/// Buckets of `cordon_plugin_peak_processes`: 1 to 4096 (the most `max_processes`), doubling.
fn processes_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// Buckets of `cordon_http_request_duration_seconds`: 0.1 ms to about 3.3 s, doubling.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    submissions: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    results: Family<Labels, Counter>,
    plugin_duration: Family<Labels, Histogram, fn() -> Histogram>,
    plugin_memory: Family<Labels, Histogram, fn() -> Histogram>,
    plugin_processes: Family<Labels, Histogram, fn() -> Histogram>,
    plugin_failures: Family<Labels, Counter>,
    plugin_reruns: Family<Labels, Counter>,
    callbacks: Family<Labels, Counter>,
    requests: Family<Labels, Histogram, fn() -> Histogram>,
    /// Failed attempts to store a final result.
    pub result_store_failures: Counter,
    /// Accepted files waiting for a worker.
    pub queue_depth: Gauge,
    /// Files being scanned.
    pub running: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            submissions: Family::default(),
            rejected: Family::default(),
            results: Family::default(),
            plugin_duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            plugin_memory: Family::new_with_constructor(memory_histogram as fn() -> Histogram),
            plugin_processes: Family::new_with_constructor(
                processes_histogram as fn() -> Histogram,
            ),
            plugin_failures: Family::default(),
            plugin_reruns: Family::default(),
            callbacks: Family::default(),
            requests: Family::new_with_constructor(request_histogram as fn() -> Histogram),
            result_store_failures: Counter::default(),
            queue_depth: Gauge::default(),
            running: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "cordon_submissions",
            "Files accepted",
            m.submissions.clone(),
        );
        registry.register(
            "cordon_submissions_rejected",
            "Files refused, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "cordon_results",
            "Final results, by decision and overall verdict",
            m.results.clone(),
        );
        registry.register(
            "cordon_plugin_duration_seconds",
            "How long plugins ran",
            m.plugin_duration.clone(),
        );
        registry.register(
            "cordon_plugin_peak_memory_bytes",
            "Plugins' peak memory, where the runtime measures it",
            m.plugin_memory.clone(),
        );
        registry.register(
            "cordon_plugin_peak_processes",
            "The most processes and threads native plugins ran at once, where their cgroup tells",
            m.plugin_processes.clone(),
        );
        registry.register(
            "cordon_plugin_failures",
            "Plugin failures, by kind",
            m.plugin_failures.clone(),
        );
        registry.register(
            "cordon_plugin_reruns",
            "Scanner runs stopped for a shortage that was not their own, and run again, by kind",
            m.plugin_reruns.clone(),
        );
        registry.register(
            "cordon_http_request_duration_seconds",
            "Time to answer HTTP requests, by method, route and status",
            m.requests.clone(),
        );
        registry.register(
            "cordon_callbacks",
            "Callback delivery attempts, by outcome",
            m.callbacks.clone(),
        );
        registry.register(
            "cordon_result_store_failures",
            "Failed attempts to store a final result (each retried)",
            m.result_store_failures.clone(),
        );
        registry.register(
            "cordon_queue_depth",
            "Accepted files waiting for a worker",
            m.queue_depth.clone(),
        );
        registry.register(
            "cordon_scans_running",
            "Files being scanned",
            m.running.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A file was accepted.
    pub fn submitted(&self, workflow: &str) {
        self.submissions
            .get_or_create(&vec![("workflow", workflow.to_owned())])
            .inc();
    }

    /// A file was refused for `reason`.
    pub fn rejected(&self, reason: &'static str) {
        self.rejected
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// A callback attempt ended with `outcome` (`delivered`, `retried`, `failed`).
    pub fn callback(&self, outcome: &'static str) {
        self.callbacks
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// Record the time to answer one request. `route` is the matched route's pattern (`None`
    /// when no route matched); a method outside HTTP's standard ones counts as `other`, so
    /// that what clients send cannot add series without bound.
    pub fn answered(&self, method: &Method, route: Option<String>, status: u16, seconds: f64) {
        let method = match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            Method::PATCH => "PATCH",
            _ => "other",
        };
        self.requests
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("route", route.unwrap_or_else(|| "unmatched".to_owned())),
                ("status", status.to_string()),
            ])
            .observe(seconds);
    }

    /// Serve the store's figures too (`cordon_store_*`).
    pub fn register_store(&mut self, store: &StoreMetrics) {
        self.registry.register(
            "cordon_store_commit_seconds",
            "Time of the database writer's commits, fsync included where durability is machine",
            store.commit_seconds.clone(),
        );
        self.registry.register(
            "cordon_store_commit_writes",
            "Writes committed together, in one commit",
            store.commit_writes.clone(),
        );
        self.registry.register(
            "cordon_store_checkpoint_seconds",
            "Time of the checkpoint passes, the WAL copied into the database file",
            store.checkpoint_seconds.clone(),
        );
    }

    /// Count a final result and every plugin outcome it holds.
    pub fn finished(&self, result: &ScanResult) {
        self.results
            .get_or_create(&vec![
                ("result", result.process_info.result.clone()),
                ("verdict", result.scan_results.scan_all_result_a.clone()),
            ])
            .inc();
        for (name, engine) in &result.scan_results.scan_details {
            // A scanner abandoned by a cancel did not run to an outcome.
            if engine.scan_result_i == ResultCode::CANCELED && engine.failure.is_none() {
                continue;
            }
            let labels = vec![("plugin", name.clone()), ("role", "scanner".into())];
            self.plugin_duration
                .get_or_create(&labels)
                .observe(engine.scan_time as f64 / 1000.0);
            if let Some(bytes) = engine.peak_memory_bytes {
                self.plugin_memory
                    .get_or_create(&labels)
                    .observe(bytes as f64);
            }
            if let Some(n) = engine.peak_processes {
                self.plugin_processes
                    .get_or_create(&labels)
                    .observe(n as f64);
            }
            if let Some(f) = &engine.failure {
                self.plugin_failures
                    .get_or_create(&vec![("plugin", name.clone()), ("kind", f.kind.clone())])
                    .inc();
            }
            for rerun in &engine.reruns {
                self.plugin_duration
                    .get_or_create(&labels)
                    .observe(rerun.scan_time as f64 / 1000.0);
                self.plugin_reruns
                    .get_or_create(&vec![
                        ("plugin", name.clone()),
                        ("kind", rerun.failure.kind.clone()),
                    ])
                    .inc();
            }
        }
        if let Some(pa) = &result.post_action {
            for d in &pa.details {
                let labels = vec![("plugin", d.name.clone()), ("role", "post_action".into())];
                self.plugin_duration
                    .get_or_create(&labels)
                    .observe(d.duration as f64 / 1000.0);
                if let Some(bytes) = d.peak_memory_bytes {
                    self.plugin_memory
                        .get_or_create(&labels)
                        .observe(bytes as f64);
                }
                if let Some(n) = d.peak_processes {
                    self.plugin_processes
                        .get_or_create(&labels)
                        .observe(n as f64);
                }
                if let Some(f) = &d.failure {
                    self.plugin_failures
                        .get_or_create(&vec![("plugin", d.name.clone()), ("kind", f.kind.clone())])
                        .inc();
                }
            }
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }
}

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
