//! The per-file pipeline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;

use super::{Submission, Workflow};
use crate::contract;
use crate::executor::{Executor, Invocation, Outcome, Plugin};
use crate::fileinfo::Fingerprint;
use crate::result::{
    self, EngineResult, FileInfo, POST_ACTION_FAILURE, POST_ACTION_SUCCESS, PostActionDetail,
    PostActionSummary, PostProcessing, ProcessInfo, Rerun, ScanResult, ScanResults, iso_millis,
};
use crate::sample::Sample;
use crate::verdict::ResultCode;

/// Asks a running pipeline to stop. Scanners still running are abandoned (their result is
/// Canceled), no further post action starts, and the file's result is Canceled (19).
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<(AtomicBool, Notify)>,
}

impl CancelToken {
    /// A token nobody has cancelled yet.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancel.
    pub fn cancel(&self) {
        self.inner.0.store(true, Ordering::SeqCst);
        self.inner.1.notify_waiters();
    }

    /// Whether it was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.0.load(Ordering::SeqCst)
    }

    /// Wait until it is cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.1.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Run `workflow` on `sample` and return the final result. Never fails: a plugin's failure is
/// part of the result.
///
/// `on_progress` sees the result each time it changes, first with progress 0, last with
/// progress 100 (the final result). Until then it reads In Progress (255) and `Processing`,
/// even while post actions run: the verdict is decided by then, and post actions see it on
/// their stdin, but a client must not act on a file whose pipeline is not done.
pub async fn run(
    executor: &Executor,
    workflow: &Workflow,
    sample: &Sample,
    file: &Fingerprint,
    submission: &Submission,
    cancel: &CancelToken,
    on_progress: &(dyn Fn(&ScanResult) + Send + Sync),
) -> ScanResult {
    let started = Utc::now();
    let clock = Instant::now();
    let spec = &workflow.spec;
    let steps = workflow.scanners.len() + workflow.post_actions.len();
    let mut done = 0usize;
    let progress = |done: usize| -> u8 { (done * 100 / (steps + 1)).min(99) as u8 };

    let mut result = ScanResult {
        data_id: submission.data_id.clone(),
        file_info: FileInfo::new(&submission.display_name, file, submission.received),
        process_info: ProcessInfo {
            blocked_reason: String::new(),
            blocked_reasons: Vec::new(),
            file_type_skipped_scan: false,
            profile: spec.name.clone(),
            progress_percentage: 0,
            result: result::PROCESSING.to_owned(),
            user_agent: submission.user_agent.clone(),
            username: submission.username.clone(),
            verdicts: Vec::new(),
            queue_time: (started - submission.received).num_milliseconds().max(0),
            processing_time: -1,
            post_processing: PostProcessing::default(),
        },
        scan_results: ScanResults {
            data_id: submission.data_id.clone(),
            progress_percentage: 0,
            scan_all_result_a: ResultCode::IN_PROGRESS.as_str().to_owned(),
            scan_all_result_i: ResultCode::IN_PROGRESS,
            start_time: iso_millis(started),
            total_avs: workflow.scanners.len() as u32,
            total_time: 0,
            scan_details: BTreeMap::new(),
        },
        post_action: (!workflow.post_actions.is_empty()).then(|| PostActionSummary {
            total_post_action: workflow.post_actions.len() as u32,
            ..PostActionSummary::default()
        }),
        metadata: submission.metadata.clone(),
    };
    publish(&result, on_progress);

    // Scanners, concurrently, each on the same snapshot of the result.
    let stdin = result.to_plugin_stdin();
    let mut running: FuturesUnordered<_> = workflow
        .scanners
        .iter()
        .map(|plugin| {
            let stdin = &stdin;
            async move {
                let (outcome, reruns) = scan(executor, plugin, Invocation { stdin, sample }).await;
                (plugin, outcome, reruns, clock.elapsed())
            }
        })
        .collect();
    let mut cancelled = false;
    loop {
        let next = tokio::select! {
            // The cancel first: a file cancelled before its scan began starts no plugin (the
            // scanners' processes and instances start at their first poll).
            biased;
            () = cancel.cancelled(), if !cancelled => {
                cancelled = true;
                break;
            }
            next = running.next() => next,
        };
        let Some((plugin, outcome, reruns, finished_at)) = next else {
            break;
        };
        let verdict = contract::judge_scanner(plugin.runtime(), &outcome);
        log_engine(plugin, &verdict);
        let scan_time = outcome.duration.as_millis() as u64;
        let engine = EngineResult {
            def_time: result::iso_from_epoch_millis(verdict.def_time_ms)
                .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned()),
            eng_id: plugin.engine_id(),
            location: "local".to_owned(),
            scan_result_i: verdict.code,
            scan_time,
            threat_found: verdict.threat_found,
            wait_time: (finished_at.as_millis() as u64).saturating_sub(scan_time),
            failure: verdict.failure,
            peak_memory_bytes: outcome.peak_memory_bytes,
            peak_processes: outcome.peak_processes,
            reruns,
        };
        result
            .scan_results
            .scan_details
            .insert(plugin.name().to_string(), engine);
        done += 1;
        set_progress(&mut result, progress(done));
        publish(&result, on_progress);
    }
    drop(running);
    if cancelled {
        for plugin in &workflow.scanners {
            result
                .scan_results
                .scan_details
                .entry(plugin.name().to_string())
                .or_insert_with(|| EngineResult {
                    def_time: "1970-01-01T00:00:00.000Z".to_owned(),
                    eng_id: plugin.engine_id(),
                    location: "local".to_owned(),
                    scan_result_i: ResultCode::CANCELED,
                    scan_time: 0,
                    threat_found: String::new(),
                    wait_time: clock.elapsed().as_millis() as u64,
                    failure: None,
                    peak_memory_bytes: None,
                    peak_processes: None,
                    reruns: Vec::new(),
                });
        }
    }

    // Aggregate and decide.
    let codes: Vec<ResultCode> = result
        .scan_results
        .scan_details
        .values()
        .map(|e| e.scan_result_i)
        .collect();
    let overall = if cancelled {
        ResultCode::CANCELED
    } else {
        ResultCode::combine(codes.iter().copied())
    };
    let mut verdicts: Vec<ResultCode> = codes;
    verdicts.sort_by_key(|c| c.rank());
    verdicts.dedup();
    let blocked = spec.block_results.contains(&overall);
    let info = &mut result.process_info;
    info.verdicts = verdicts.iter().map(|c| c.as_str().to_owned()).collect();
    if verdicts.is_empty() {
        info.verdicts.push(overall.as_str().to_owned());
    }
    info.decide(overall, blocked);
    result.scan_results.scan_all_result_i = overall;
    result.scan_results.scan_all_result_a = overall.as_str().to_owned();
    publish(&result, on_progress);

    // Post actions, in order, each on the result so far.
    let mut ran = Vec::new();
    let mut failed = Vec::new();
    for plugin in &workflow.post_actions {
        if cancel.is_cancelled() {
            break;
        }
        let stdin = result.to_plugin_stdin();
        let outcome = executor
            .invoke(
                plugin,
                Invocation {
                    stdin: &stdin,
                    sample,
                },
            )
            .await;
        let verdict = contract::judge_post_action(plugin.runtime(), &outcome);
        if let Some(f) = &verdict.failure {
            tracing::warn!(plugin = %plugin.name(), kind = %f.kind, reason = %f.message, "post action failed");
        } else {
            tracing::info!(plugin = %plugin.name(), "post action ran");
        }
        let name = plugin.name().to_string();
        if verdict.success {
            ran.push(name.clone());
        } else {
            failed.push(format!("{name} failed"));
        }
        let summary = result
            .post_action
            .as_mut()
            .expect("a workflow with post actions has a summary");
        summary.details.push(PostActionDetail {
            duration: outcome.duration.as_millis() as u64,
            name,
            return_value: verdict.return_value,
            verdict: if verdict.success {
                POST_ACTION_SUCCESS
            } else {
                POST_ACTION_FAILURE
            },
            failure: verdict.failure,
            peak_memory_bytes: outcome.peak_memory_bytes,
            peak_processes: outcome.peak_processes,
        });
        summary.total_executed += 1;
        if verdict.success {
            summary.total_success += 1;
        } else {
            summary.total_failed += 1;
        }
        let pp = &mut result.process_info.post_processing;
        pp.actions_ran = ran.join(" | ");
        pp.actions_failed = failed.join(" | ");
        done += 1;
        set_progress(&mut result, progress(done));
        publish(&result, on_progress);
    }

    let elapsed = clock.elapsed().as_millis() as u64;
    result.scan_results.total_time = elapsed;
    result.process_info.processing_time = elapsed as i64;
    set_progress(&mut result, 100);
    publish(&result, on_progress);
    tracing::info!(
        result = %result.process_info.result,
        scan_all_result_i = overall.value(),
        total_ms = elapsed,
        "file processed"
    );
    result
}

/// The pauses before a scanner is run again that was stopped for what Cordon and its plugins
/// together, or the machine, ran short of while it ran (memory, processes:
/// [`Failure::elsewhere`](crate::executor::Failure::elsewhere)), one per run again: at most
/// three runs. Such a failure says nothing of the scanner or the file: others' work took what
/// it needed, and may be over by then. A post action is never run again, since it may have
/// done its work, or part of it, before it was stopped.
pub const RERUN_PAUSES: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

/// Run a scanner, and again after each of [`RERUN_PAUSES`] while it is stopped for a shortage
/// that is not its own: its last outcome, and why each run before it failed and how long it
/// took.
async fn scan(
    executor: &Executor,
    plugin: &Plugin,
    invocation: Invocation<'_>,
) -> (Outcome, Vec<Rerun>) {
    let mut reruns = Vec::new();
    loop {
        let outcome = executor.invoke(plugin, invocation).await;
        let pause = match &outcome.failure {
            Some(failure) if failure.elsewhere() => RERUN_PAUSES.get(reruns.len()),
            _ => None,
        };
        // Judged here only when it runs again: the caller judges the last outcome.
        let Some((pause, failure)) = pause.and_then(|pause| {
            let failure = contract::judge_scanner(plugin.runtime(), &outcome).failure?;
            Some((pause, failure))
        }) else {
            return (outcome, reruns);
        };
        tracing::warn!(
            plugin = %plugin.name(),
            kind = %failure.kind,
            reason = %failure.message,
            rerun_in_ms = pause.as_millis() as u64,
            "scanner stopped for a shortage that is not its own; it runs again"
        );
        reruns.push(Rerun {
            failure,
            scan_time: outcome.duration.as_millis() as u64,
        });
        tokio::time::sleep(*pause).await;
    }
}

/// Give `on_progress` the result as clients may see it: until it is final, the overall verdict
/// reads In Progress and the decision Processing.
fn publish(result: &ScanResult, on_progress: &(dyn Fn(&ScanResult) + Send + Sync)) {
    if result.is_final() {
        return on_progress(result);
    }
    let mut shown = result.clone();
    shown.scan_results.scan_all_result_i = ResultCode::IN_PROGRESS;
    shown.scan_results.scan_all_result_a = ResultCode::IN_PROGRESS.as_str().to_owned();
    shown.process_info.result = result::PROCESSING.to_owned();
    shown.process_info.blocked_reason.clear();
    shown.process_info.blocked_reasons.clear();
    on_progress(&shown);
}

fn set_progress(result: &mut ScanResult, percent: u8) {
    result.process_info.progress_percentage = percent;
    result.scan_results.progress_percentage = percent;
}

fn log_engine(plugin: &Plugin, verdict: &contract::EngineVerdict) {
    match &verdict.failure {
        Some(f) => tracing::warn!(
            plugin = %plugin.name(),
            kind = %f.kind,
            reason = %f.message,
            "scanner failed"
        ),
        None => tracing::info!(
            plugin = %plugin.name(),
            scan_result_i = verdict.code.value(),
            threat = %verdict.threat_found,
            "scanner finished"
        ),
    }
}
