//! The job queue: accepted files wait here for a worker task. At most `workers` files are
//! scanned ([`workflow::run`]) at once; twice as many worker tasks take jobs, so that while one
//! file is scanned the next is made ready (its file placed for plugins, its start recorded in
//! the database): no scan slot waits for the database.
//!
//! Guarantees:
//! - at most `max_queue` files wait; a submission reserves its place **before** its body is
//!   read ([`Jobs::try_reserve`]), so a full queue answers 503 at once, without writing
//!   anything, and memory stays bounded whatever the load (jobs re-queued at start-up wait
//!   for room like the others, so new submissions may see 503 until that backlog drains);
//! - a job is in the queue only once its file is committed and its row is in the database:
//!   a crash loses nothing that was answered with a `data_id`;
//! - the result of a running scan is kept in memory, updated at every step of the pipeline;
//!   the final result is shown only once it is stored (with the job marked done, in one
//!   transaction committed with an fsync): until then readers see the scan in progress, then
//!   they find the final result in the database, the newest [`RECENT_RESULTS`] also in memory
//!   (the same text: the poll that finds a scan done reads no database). A result a client
//!   saw as final is never replaced by another after a crash;
//! - a job cancelled while queued ends as Canceled (19) without running any plugin; a job
//!   whose scan was interrupted [`MAX_RUNS`] times (the server crashed during each) ends as
//!   Failed (3) instead of crashing the server forever. A run is counted when a worker takes
//!   the job and records its start, just before the scan (or, for the next file of a busy
//!   slot, while the previous one is scanned).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tracing::Instrument;

use super::AppState;
use crate::result::{
    self, EngineResult, FileInfo, PostActionSummary, PostProcessing, ProcessInfo, ScanResult,
    ScanResults, iso_millis,
};
use crate::store::{JobRecord, now_ms};
use crate::verdict::ResultCode;
use crate::workflow::{self, CancelToken, Submission, Workflow};

/// A job started this many times without finishing is not started again: it ends as Failed.
pub const MAX_RUNS: u32 = 3;

/// A job waiting for a worker.
pub struct Queued {
    record: JobRecord,
    /// The file's bytes when they are kept in the database and this process received them:
    /// placed for the scan without reading them back (at most `max_queue` of them wait, each
    /// at most [`crate::store::files::INLINE_MAX`] bytes).
    inline: Option<Bytes>,
    /// The workflow it was accepted with; `None` for jobs recovered at start-up (resolved by
    /// name when they run).
    workflow: Option<Arc<Workflow>>,
}

/// A job that is queued or running.
struct Active {
    record: JobRecord,
    workflow: Option<Arc<Workflow>>,
    cancel: CancelToken,
    progress: Option<ScanResult>,
    /// Its final result is known (and being stored): there is nothing left to cancel.
    finished: bool,
}

/// How many final results, the newest stored, [`Jobs`] keeps in memory to answer polls.
pub const RECENT_RESULTS: usize = 2048;

/// Final results stored in the last moments, as their JSON, with their owners: nearly every
/// client polls once more after its scan ends, and that poll is answered from here instead of
/// the database. At most [`RECENT_RESULTS`], the oldest forgotten first; each is the same
/// text as the stored result, and results deleted by the retention sweep are forgotten here
/// too ([`Jobs::forget`]).
#[derive(Default)]
struct Recent {
    results: HashMap<String, (String, Arc<str>)>,
    order: VecDeque<String>,
}

impl Recent {
    fn insert(&mut self, data_id: &str, owner: &str, json: Arc<str>) {
        if self
            .results
            .insert(data_id.to_owned(), (owner.to_owned(), json))
            .is_none()
        {
            self.order.push_back(data_id.to_owned());
        }
        while self.order.len() > RECENT_RESULTS {
            if let Some(oldest) = self.order.pop_front() {
                self.results.remove(&oldest);
            }
        }
    }
}

/// A place in the queue, reserved by a submission while its file is received.
pub type Reservation = mpsc::OwnedPermit<Queued>;

/// The queue and the jobs in flight.
pub struct Jobs {
    tx: mpsc::Sender<Queued>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Queued>>,
    active: Mutex<HashMap<String, Active>>,
    recent: Mutex<Recent>,
    /// Final results being stored (their jobs still in `active`).
    finalizing: AtomicUsize,
    /// Notified when `finalizing` drops to zero.
    finalized: Notify,
    /// One permit per file that may be scanned at once (`workers`).
    scans: Semaphore,
}

impl Jobs {
    /// A queue with room for `max_queue` waiting jobs, `workers` of them scanned at once.
    pub fn new(max_queue: usize, workers: usize) -> Jobs {
        let (tx, rx) = mpsc::channel(max_queue.max(1));
        Jobs {
            tx,
            rx: tokio::sync::Mutex::new(rx),
            active: Mutex::new(HashMap::new()),
            recent: Mutex::new(Recent::default()),
            finalizing: AtomicUsize::new(0),
            finalized: Notify::new(),
            scans: Semaphore::new(workers.max(1)),
        }
    }

    /// Wait until no final result is being stored.
    pub async fn wait_finalized(&self) {
        loop {
            let notified = self.finalized.notified();
            if self.finalizing.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, Active>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserve a place in the queue; `None` when it is full.
    pub fn try_reserve(&self) -> Option<Reservation> {
        self.tx.clone().try_reserve_owned().ok()
    }

    fn track(&self, record: &JobRecord, workflow: Option<Arc<Workflow>>) {
        let cancel = CancelToken::new();
        if record.cancel_requested {
            cancel.cancel();
        }
        self.active().insert(
            record.data_id.clone(),
            Active {
                record: record.clone(),
                workflow,
                cancel,
                progress: None,
                finished: false,
            },
        );
    }

    /// Queue an accepted job in the place reserved for it.
    pub fn enqueue(
        &self,
        reservation: Reservation,
        record: JobRecord,
        inline: Option<Bytes>,
        workflow: Arc<Workflow>,
    ) {
        self.track(&record, Some(workflow.clone()));
        reservation.send(Queued {
            record,
            inline,
            workflow: Some(workflow),
        });
    }

    /// Queue a job recovered at start-up, waiting for room.
    async fn enqueue_recovered(&self, record: JobRecord) -> bool {
        self.track(&record, None);
        self.tx
            .send(Queued {
                record,
                inline: None,
                workflow: None,
            })
            .await
            .is_ok()
    }

    /// The result so far of a queued or running job, with its owner. Until it is final it
    /// reads In Progress (255) and `Processing` (the pipeline publishes it so).
    pub fn snapshot(&self, data_id: &str) -> Option<(String, ScanResult)> {
        let active = self.active();
        let a = active.get(data_id)?;
        let result = a
            .progress
            .clone()
            .unwrap_or_else(|| placeholder(&a.record, a.workflow.as_deref()));
        Some((a.record.owner.clone(), result))
    }

    /// The owner of a queued or running job.
    pub fn owner(&self, data_id: &str) -> Option<String> {
        self.active().get(data_id).map(|a| a.record.owner.clone())
    }

    /// Cancel a queued or running job; whether it was in flight.
    pub fn cancel(&self, data_id: &str) -> bool {
        match self.active().get(data_id) {
            Some(a) => {
                a.cancel.cancel();
                true
            }
            None => false,
        }
    }

    fn cancel_token(&self, data_id: &str) -> CancelToken {
        self.active()
            .get(data_id)
            .map(|a| a.cancel.clone())
            .unwrap_or_default()
    }

    /// Whether a job in flight already has its final result (it is being stored).
    pub fn is_finished(&self, data_id: &str) -> bool {
        self.active().get(data_id).is_some_and(|a| a.finished)
    }

    fn set_progress(&self, data_id: &str, result: &ScanResult) {
        if let Some(a) = self.active().get_mut(data_id) {
            a.progress = Some(result.clone());
        }
    }

    /// The job's final result is decided: a cancel now answers "already finished". Readers
    /// still see its progress until the result is stored.
    fn set_finished(&self, data_id: &str) {
        if let Some(a) = self.active().get_mut(data_id) {
            a.finished = true;
        }
    }

    /// The job's final result is stored: it leaves the jobs in flight for the recent results.
    fn retire(&self, data_id: &str, owner: &str, json: Arc<str>) {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(data_id, owner, json);
        self.active().remove(data_id);
    }

    /// A final result stored in the last moments, as its stored JSON, with its owner.
    pub fn recent(&self, data_id: &str) -> Option<(String, Arc<str>)> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.results.get(data_id).cloned()
    }

    /// Forget these results (deleted from the database). Their places in the eviction order
    /// stay until they come first (ids are never reused): at most the bound, never more.
    pub fn forget(&self, data_ids: &[String]) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for id in data_ids {
            recent.results.remove(id);
        }
    }

    /// How many jobs are queued or running.
    pub fn in_flight(&self) -> usize {
        self.active().len()
    }
}

/// Re-queue every job that is not done (SIGKILL, crash, or a shutdown that ran out of time):
/// their files are still in the store. Runs in the background, waiting for room.
pub fn recover(state: &Arc<AppState>, jobs: Vec<JobRecord>) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        if !jobs.is_empty() {
            tracing::info!(jobs = jobs.len(), "re-queueing the jobs left unfinished");
        }
        for record in jobs {
            state.metrics.queue_depth.inc();
            if !state.jobs.enqueue_recovered(record).await {
                return;
            }
        }
    })
}

/// One worker task (the server runs two per scan slot): takes jobs until `shutdown` turns
/// true, finishing the job in hand first.
pub async fn worker(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let job = {
            let mut rx = state.jobs.rx.lock().await;
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => None,
                job = rx.recv() => job,
            }
        };
        let Some(job) = job else { return };
        state.metrics.queue_depth.dec();
        run(&state, job).await;
        if *shutdown.borrow() {
            return;
        }
    }
}

async fn run(state: &Arc<AppState>, job: Queued) {
    let record = job.record;
    let span = tracing::info_span!("scan", data_id = %record.data_id, workflow = %record.workflow);
    async {
        let id = record.data_id.clone();
        let cancel = state.jobs.cancel_token(&id);
        let workflow = job.workflow.or_else(|| {
            state
                .inventory
                .current()
                .inventory
                .workflow(Some(&record.workflow))
        });
        let result = match &workflow {
            _ if cancel.is_cancelled() => {
                tracing::info!("cancelled before it started");
                final_without_run(&record, workflow.as_deref(), ResultCode::CANCELED)
            }
            _ if record.runs >= MAX_RUNS => {
                tracing::error!(
                    runs = record.runs,
                    "the scan was interrupted {MAX_RUNS} times; not starting it again"
                );
                final_without_run(&record, workflow.as_deref(), ResultCode::FAILED)
            }
            None => {
                tracing::error!("its workflow no longer exists; the file is not scanned");
                final_without_run(&record, None, ResultCode::NOT_SCANNED)
            }
            Some(wf) => match place_sample(state, &record, job.inline, &cancel).await {
                Err(_) if cancel.is_cancelled() => {
                    tracing::info!("cancelled before it started");
                    final_without_run(&record, Some(wf), ResultCode::CANCELED)
                }
                Err(e) => {
                    tracing::error!(error = %e, "the stored file cannot be opened");
                    final_without_run(&record, Some(wf), ResultCode::FAILED)
                }
                Ok(sample) => {
                    if let Err(e) = state.store.mark_running(&id).await {
                        tracing::error!(error = %e, "cannot record that the scan started");
                    }
                    let _scan = state
                        .jobs
                        .scans
                        .acquire()
                        .await
                        .expect("the scan semaphore is never closed");
                    let submission = Submission {
                        data_id: id.clone(),
                        display_name: record.display_name.clone(),
                        user_agent: record.user_agent.clone(),
                        username: record.username.clone(),
                        metadata: record.metadata.clone(),
                        received: received_at(&record),
                    };
                    state.metrics.running.inc();
                    let jobs = &state.jobs;
                    // The final result is shown once stored (see `finalize`), not when the
                    // pipeline publishes it.
                    let on_progress = |r: &ScanResult| {
                        if !r.is_final() {
                            jobs.set_progress(&id, r);
                        }
                    };
                    let result = workflow::run(
                        &state.executor,
                        wf,
                        &sample,
                        &record.fingerprint,
                        &submission,
                        &cancel,
                        &on_progress,
                    )
                    .await;
                    state.metrics.running.dec();
                    result
                }
            },
        };
        // The worker goes on to its next job while the result is committed: the commit
        // waits for an fsync (shared with other writes), the scan does not need to.
        state.jobs.finalizing.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        tokio::spawn(
            async move {
                finalize(&state, &record, result).await;
                if state.jobs.finalizing.fetch_sub(1, Ordering::SeqCst) == 1 {
                    state.jobs.finalized.notify_waiters();
                }
            }
            .in_current_span(),
        );
    }
    .instrument(span)
    .await
}

/// The job's file, placed for its scan. When the disk is full (the scan slot's copy cannot
/// be written), that passes: the job waits, in progress, and tries again (waits as for
/// [`finalize`]) until it is placed or cancelled, instead of ending Failed for want of space.
async fn place_sample(
    state: &Arc<AppState>,
    record: &JobRecord,
    inline: Option<Bytes>,
    cancel: &CancelToken,
) -> Result<crate::sample::Sample, crate::store::StoreError> {
    let mut wait = STORE_RETRY_FIRST;
    loop {
        match state.store.sample_from(record, inline.clone()).await {
            Err(e) if e.is_full() && !cancel.is_cancelled() => {
                tracing::error!(
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "no disk space to place the file for its scan; it waits until there is"
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = cancel.cancelled() => {}
                }
                wait = (wait * 2).min(STORE_RETRY_MAX);
            }
            placed => return placed,
        }
    }
}

/// The first wait before trying again to store a final result (or to place a file for its
/// scan), after an attempt that failed.
const STORE_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between such attempts.
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Store the final result, then let go of the job (readers find the result in the
/// database from then on), count it and start its callback. A final result is shown only
/// once stored: one shown before its commit could be lost to a crash, and the file scanned
/// again with another result. So an attempt that fails (a full disk, a database error) is
/// tried again, after 0.1 s and then waits doubling up to 5 s, for as long as it takes;
/// meanwhile readers see the scan still in progress. A server stopped before it succeeds
/// leaves the job `running` in the database, and it runs again at the next start.
async fn finalize(state: &Arc<AppState>, record: &JobRecord, result: ScanResult) {
    let json: Arc<str> = serde_json::to_string(&result)
        .expect("a ScanResult always serializes")
        .into();
    state.jobs.set_finished(&record.data_id);
    let mut wait = STORE_RETRY_FIRST;
    let mut failures = 0u32;
    while let Err(e) = state.store.finish(record, json.clone()).await {
        if matches!(e, crate::store::StoreError::WriterStopped { .. }) {
            // The store is closing (or its writer died): no attempt can succeed any more.
            // The job stays `running` in the database and runs again at the next start.
            tracing::error!(error = %e, "cannot store the final result; the file runs again at the next start");
            return;
        }
        failures += 1;
        state.metrics.result_store_failures.inc();
        tracing::error!(
            error = %e,
            failures,
            retry_in_ms = wait.as_millis() as u64,
            "cannot store the final result; the file stays in progress until it is stored"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(STORE_RETRY_MAX);
    }
    if failures > 0 {
        tracing::info!(failures, "final result stored after failed attempts");
    }
    state.jobs.retire(&record.data_id, &record.owner, json);
    state.metrics.finished(&result);
    if let Some(url) = &record.callback_url {
        tokio::spawn(super::callbacks::deliver(
            state.clone(),
            record.data_id.clone(),
            url.clone(),
            0,
        ));
    }
}

fn received_at(record: &JobRecord) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(record.received_ms).unwrap_or_else(Utc::now)
}

/// The result of a job that waits for a worker: every field clients require, progress 0,
/// `scan_all_result_i` 255 (In Progress).
pub fn placeholder(record: &JobRecord, workflow: Option<&Workflow>) -> ScanResult {
    let received = received_at(record);
    ScanResult {
        data_id: record.data_id.clone(),
        file_info: FileInfo::new(&record.display_name, &record.fingerprint, received),
        process_info: ProcessInfo {
            blocked_reason: String::new(),
            blocked_reasons: Vec::new(),
            file_type_skipped_scan: false,
            profile: record.workflow.clone(),
            progress_percentage: 0,
            result: result::PROCESSING.to_owned(),
            user_agent: record.user_agent.clone(),
            username: record.username.clone(),
            verdicts: Vec::new(),
            queue_time: (now_ms() - record.received_ms).max(0),
            processing_time: -1,
            post_processing: PostProcessing::default(),
        },
        scan_results: ScanResults {
            data_id: record.data_id.clone(),
            progress_percentage: 0,
            scan_all_result_a: ResultCode::IN_PROGRESS.as_str().to_owned(),
            scan_all_result_i: ResultCode::IN_PROGRESS,
            start_time: iso_millis(received),
            total_avs: workflow.map_or(0, |w| w.scanners.len() as u32),
            total_time: 0,
            scan_details: Default::default(),
        },
        post_action: workflow
            .filter(|w| !w.post_actions.is_empty())
            .map(|w| PostActionSummary {
                total_post_action: w.post_actions.len() as u32,
                ..PostActionSummary::default()
            }),
        metadata: record.metadata.clone(),
    }
}

/// The final result of a job that ends without running: cancelled while queued, interrupted
/// too often, or whose workflow is gone. Blocked when the workflow blocks `code` (always
/// when the workflow is unknown: an unscanned file is never let through).
fn final_without_run(
    record: &JobRecord,
    workflow: Option<&Workflow>,
    code: ResultCode,
) -> ScanResult {
    let mut r = placeholder(record, workflow);
    if code == ResultCode::CANCELED
        && let Some(wf) = workflow
    {
        for p in &wf.scanners {
            r.scan_results.scan_details.insert(
                p.name().to_string(),
                EngineResult {
                    def_time: "1970-01-01T00:00:00.000Z".to_owned(),
                    eng_id: p.engine_id(),
                    location: "local".to_owned(),
                    scan_result_i: ResultCode::CANCELED,
                    scan_time: 0,
                    threat_found: String::new(),
                    wait_time: 0,
                    failure: None,
                    peak_memory_bytes: None,
                    peak_processes: None,
                    reruns: Vec::new(),
                },
            );
        }
    }
    let blocked = workflow.is_none_or(|w| w.spec.block_results.contains(&code));
    let info = &mut r.process_info;
    info.verdicts = vec![code.as_str().to_owned()];
    info.decide(code, blocked);
    info.processing_time = 0;
    info.progress_percentage = 100;
    r.scan_results.progress_percentage = 100;
    r.scan_results.scan_all_result_i = code;
    r.scan_results.scan_all_result_a = code.as_str().to_owned();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileinfo::Fingerprint;
    use crate::store::JobState;

    fn record(data_id: &str, owner: &str, workflow: &str, sha256: &str, at: i64) -> JobRecord {
        JobRecord {
            data_id: data_id.to_owned(),
            owner: owner.to_owned(),
            workflow: workflow.to_owned(),
            display_name: "f.bin".to_owned(),
            file_name: "f.bin".to_owned(),
            user_agent: String::new(),
            username: String::new(),
            metadata: None,
            callback_url: None,
            fingerprint: Fingerprint {
                size: 1,
                md5: "0".repeat(32),
                sha1: "1".repeat(40),
                sha256: sha256.to_owned(),
                mime: "application/octet-stream".to_owned(),
                description: "data".to_owned(),
            },
            received_ms: at,
            state: JobState::Running,
            cancel_requested: false,
            runs: 1,
        }
    }

    #[test]
    fn a_result_being_stored_is_shown_as_progress_until_it_is_stored() {
        let jobs = Jobs::new(8, 1);
        let job = record(&"1".repeat(32), "k1", "w", &"a".repeat(64), 1);
        jobs.track(&job, None);
        jobs.set_progress(&job.data_id, &placeholder(&job, None));
        // The final result is decided and being stored (or retried): readers still see the
        // progress, never a final result that a crash could take back.
        jobs.set_finished(&job.data_id);
        assert!(jobs.is_finished(&job.data_id));
        let (_, shown) = jobs.snapshot(&job.data_id).unwrap();
        assert!(!shown.is_final(), "not shown as final");
        assert_eq!(shown.process_info.progress_percentage, 0);
        assert_eq!(jobs.recent(&job.data_id), None);
        // Stored: it leaves the jobs in flight, and the stored text answers.
        jobs.retire(&job.data_id, "k1", "{}".into());
        assert!(jobs.snapshot(&job.data_id).is_none());
        assert_eq!(
            jobs.recent(&job.data_id),
            Some(("k1".to_owned(), "{}".into()))
        );
    }

    #[test]
    fn stored_results_are_kept_in_memory_newest_first_within_the_bound_until_swept() {
        let jobs = Jobs::new(8, 1);
        let id = |i: usize| format!("{i:032x}");
        let job = record(&id(0), "k1", "w", &"a".repeat(64), 1);
        jobs.track(&job, None);
        assert_eq!(jobs.recent(&id(0)), None, "not final yet");
        jobs.retire(&id(0), "k1", "{\"n\":0}".into());
        assert!(jobs.snapshot(&id(0)).is_none(), "no longer in flight");
        assert_eq!(
            jobs.recent(&id(0)),
            Some(("k1".to_owned(), "{\"n\":0}".into()))
        );

        // The bound: the oldest go first.
        for i in 1..=RECENT_RESULTS {
            jobs.retire(&id(i), "k2", format!("{{\"n\":{i}}}").into());
        }
        assert_eq!(jobs.recent(&id(0)), None, "the oldest is forgotten");
        assert_eq!(jobs.recent(&id(1)).unwrap().1.as_ref(), "{\"n\":1}");
        assert_eq!(jobs.recent(&id(RECENT_RESULTS)).unwrap().0, "k2");
        let kept = |jobs: &Jobs| {
            (0..=RECENT_RESULTS)
                .filter(|&i| jobs.recent(&id(i)).is_some())
                .count()
        };
        assert_eq!(kept(&jobs), RECENT_RESULTS);

        // Swept from the database, forgotten here; the bound still holds after.
        jobs.forget(&[id(1), id(2)]);
        assert_eq!((jobs.recent(&id(1)), jobs.recent(&id(2))), (None, None));
        assert!(jobs.recent(&id(3)).is_some());
        for i in RECENT_RESULTS + 1..=RECENT_RESULTS + 2 {
            jobs.retire(&id(i), "k2", "{}".into());
        }
        assert!(
            jobs.recent(&id(3)).is_some(),
            "the swept ones made room first"
        );
        jobs.retire(&id(RECENT_RESULTS + 3), "k2", "{}".into());
        assert_eq!(jobs.recent(&id(3)), None);
        let recent = jobs.recent.lock().unwrap();
        assert!(recent.order.len() <= RECENT_RESULTS && recent.results.len() <= RECENT_RESULTS);
    }
}
