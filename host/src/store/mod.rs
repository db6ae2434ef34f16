//! Persistence for `cordon serve`: jobs, results, callback deliveries and the inventory
//! changes made over the API, in SQLite; submitted files too when they are small (at most
//! [`files::INLINE_MAX`] bytes, in `inline_files`, inserted in the job's own transaction), else
//! in the [`files`] store. For a scan, a file kept in the database is written to a reusable
//! slot under `<data_dir>/scan` ([`SlotPool`]): a small submission creates no file or
//! directory of its own and needs no fsync but the one its job's commit shares with others.
//!
//! The database is `<data_dir>/cordon.sqlite3`, in WAL mode. Writes go to one writer thread
//! that owns the write connection and commits them in batches (group commit): it takes every
//! write waiting, runs each in a savepoint of one transaction (a write that fails is rolled
//! back alone), commits once, and only then answers each caller. A write returns once it is
//! committed at its [`Durability`]: [`Durability::Machine`] writes (a new job, a final result,
//! a cancel, callback records, inventory changes, retention) are committed with
//! `synchronous = FULL`, so the WAL is fsynced before the answer and they survive a crash of
//! the machine; [`Durability::Process`] writes (a job marked running) are committed with
//! `synchronous = NORMAL`: written to the WAL (they survive a crash of the process, such as
//! SIGKILL) but not fsynced. A later FULL commit fsyncs them too. Many concurrent writes thus
//! share one fsync instead of queueing for one each. Reads use their own connection (WAL lets
//! them run beside the writer) on tokio's blocking pool ([`tokio::task::spawn_blocking`]);
//! nothing here runs on an async worker thread. Statements are prepared once per connection
//! and cached. The schema is created at [`Store::open`]. Checkpoints (copying the WAL into the
//! database file) run on a third connection and thread, beside the writer rather than inside
//! its commits; the writer only restarts the WAL when it has grown large (past 64 MiB).
//!
//! A job's life: `queued` (inserted with or after its file, before the client gets its
//! `data_id`) → `running` → `done` (its final result is inserted in the same transaction).
//! At start-up every job that is not `done` is run again.

pub mod files;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::fileinfo::Fingerprint;
use crate::sample::{Sample, SlotPool};

pub use files::FileStore;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// A file or directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stored value could not be read back.
    #[error("database {path}: corrupt value: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What.
        message: String,
    },
    /// The transaction holding a write could not be committed; the write is not stored.
    #[error("database {path}: commit failed: {message}")]
    Commit {
        /// The database file.
        path: PathBuf,
        /// Why.
        message: String,
        /// Because the disk (or the database) is full.
        full: bool,
    },
    /// The writer thread is gone (the store is shutting down, or it panicked).
    #[error("database {path}: the writer has stopped")]
    WriterStopped {
        /// The database file.
        path: PathBuf,
    },
}

impl StoreError {
    /// Whether it failed because the disk (or a quota, or the database's size limit) is full:
    /// a state of the server that passes, not a fault of what was written.
    pub fn is_full(&self) -> bool {
        match self {
            StoreError::Sqlite { source, .. } => is_full(source),
            StoreError::Io { source, .. } => is_disk_full(source),
            StoreError::Commit { full, .. } => *full,
            StoreError::Corrupt { .. } | StoreError::WriterStopped { .. } => false,
        }
    }
}

/// Whether a write failed because the disk, or the user's quota on it, is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Whether SQLite refused because the disk or the database is full.
fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// Why the writes of a batch were not stored: the message, and whether the disk was full.
#[derive(Debug, Clone)]
struct Refusal {
    message: String,
    full: bool,
}

impl Refusal {
    fn from_sqlite(context: &str, e: &rusqlite::Error) -> Refusal {
        Refusal {
            message: format!("{context}{e}"),
            full: is_full(e),
        }
    }

    /// What a write of the database at `path` answers when its batch was refused.
    fn error(&self, path: PathBuf) -> StoreError {
        StoreError::Commit {
            path,
            message: self.message.clone(),
            full: self.full,
        }
    }
}

/// How much of a crash a write must survive before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A crash of the machine: its commit fsyncs the WAL (`synchronous = FULL`).
    Machine,
    /// A crash of the process (SIGKILL, a panic): its commit writes the WAL without an fsync
    /// (`synchronous = NORMAL`). For records that are only worth keeping while the machine
    /// stays up, such as a job's run count.
    Process,
}

impl Durability {
    /// Its name in `/metrics` labels.
    fn label(self) -> &'static str {
        match self {
            Durability::Machine => "machine",
            Durability::Process => "process",
        }
    }
}

/// The label of a commit's figures: `durability`, `machine` or `process`.
pub type DurabilityLabel = [(&'static str, &'static str); 1];

/// What the writer and the checkpointer measure, for `/metrics` (the server registers it).
/// Clones share the figures.
#[derive(Clone)]
pub struct StoreMetrics {
    /// How long each of the writer's commits took, from `BEGIN` to the end of `COMMIT` (its
    /// fsync included at [`Durability::Machine`]), by durability: the disk's fsync latency as
    /// the server sees it. The rate of its sum is the writer's busy share, the server's one
    /// serial resource.
    pub commit_seconds: Family<DurabilityLabel, Histogram, fn() -> Histogram>,
    /// Writes per commit: how many writes share one commit, and its fsync.
    pub commit_writes: Histogram,
    /// How long each checkpoint pass took (copying the WAL into the database file).
    pub checkpoint_seconds: Histogram,
}

/// Buckets of the store's durations: 0.1 ms to about 3.3 s, doubling.
fn store_seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl StoreMetrics {
    fn new() -> StoreMetrics {
        StoreMetrics {
            commit_seconds: Family::new_with_constructor(
                store_seconds_histogram as fn() -> Histogram,
            ),
            // 1 to 256 (`MAX_BATCH`), doubling.
            commit_writes: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            checkpoint_seconds: store_seconds_histogram(),
        }
    }

    fn committed(&self, durability: Durability, writes: usize, took: std::time::Duration) {
        self.commit_seconds
            .get_or_create(&[("durability", durability.label())])
            .observe(took.as_secs_f64());
        self.commit_writes.observe(writes as f64);
    }
}

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;
/// Shortest time between two passes of the checkpointer.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// The page size of a new database. Every commit writes each page it changed to the WAL,
/// whole, and a job's writes change a few rows in many B-trees (the jobs, their files, the
/// results and their indexes): most of what a commit writes is the pages at the right edge
/// of those trees, written again by the next commit. Pages of half SQLite's default 4 KiB
/// halve each such rewrite: 41 to 43 KiB written to storage per file instead of 60 in the
/// server benchmark (BENCHMARKS.md, figure 4). A database created with another page size
/// keeps it.
const PAGE_SIZE: i64 = 2048;
/// WAL size (bytes of frames) at which the writer restarts the WAL (see [`write_loop`]):
/// about a second of the heaviest load measured. In tests, 64 frames.
const WAL_RESTART_BYTES: i64 = if cfg!(test) { 64 * PAGE_SIZE } else { 64 << 20 };
/// A WAL that grew larger than this (bytes) is cut back to it when it restarts.
const WAL_SIZE_LIMIT: i64 = 64 << 20;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// What a write's caller gets once its transaction is committed (or not).
type Completion = Box<dyn FnOnce(Result<(), &Refusal>) + Send>;

/// A write's body: run on the write connection (or told why there is none); says whether it
/// succeeded and what to answer after the commit.
type WriteFn = Box<dyn FnOnce(Result<&Connection, &Refusal>) -> (Ran, Completion) + Send>;

/// How a write's body went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// It succeeded; its changes wait for the batch's commit.
    Ok,
    /// It failed; `full` when SQLite said the database or disk is full.
    Failed { full: bool },
}

/// A write for the writer thread: runs on the write connection inside the batch's
/// transaction, and says whether it succeeded and what to answer after the commit. Given
/// `Err` (its transaction could not start), it runs nothing and answers with that reason.
struct WriteOp {
    durability: Durability,
    run: WriteFn,
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker started it.
    Running,
    /// Its final result is stored.
    Done,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
        }
    }

    fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            _ => return None,
        })
    }
}

/// Everything known about a submission when it is accepted: enough to run it again after a
/// crash.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// 32 lowercase hex.
    pub data_id: String,
    /// Who may see it (`key:<name>`, `user:<name>`, or `open`).
    pub owner: String,
    /// The workflow (rule) it runs under.
    pub workflow: String,
    /// The name the client gave.
    pub display_name: String,
    /// The stored file's name (sanitized display name).
    pub file_name: String,
    /// The client's `user_agent` header.
    pub user_agent: String,
    /// `process_info.username`.
    pub username: String,
    /// The `metadata` header, parsed.
    pub metadata: Option<serde_json::Value>,
    /// Where to POST the final result.
    pub callback_url: Option<String>,
    /// The file's hashes and type.
    pub fingerprint: Fingerprint,
    /// When the file was received, ms since the epoch.
    pub received_ms: i64,
    /// Current state.
    pub state: JobState,
    /// Whether a cancel was asked for.
    pub cancel_requested: bool,
    /// How many times a worker started it (more than once after crashes).
    pub runs: u32,
}

/// A stored final result.
#[derive(Debug, Clone)]
pub struct StoredResult {
    /// Who may see it.
    pub owner: String,
    /// The result JSON.
    pub json: String,
}

/// One callback delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallbackAttempt {
    /// 1, 2, ...
    pub attempt: u32,
    /// When it started, ms since the epoch.
    pub at_ms: i64,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// What went wrong, when something did (`""` on success).
    pub error: String,
    /// How long it took, in ms.
    pub duration_ms: u64,
}

/// A job's callback and its deliveries.
#[derive(Debug, Clone)]
pub struct CallbackRecord {
    /// Who may see it.
    pub owner: String,
    /// The URL.
    pub url: String,
    /// `pending`, `delivered` or `failed`; `None` while the scan runs.
    pub state: Option<String>,
    /// Every attempt, in order.
    pub attempts: Vec<CallbackAttempt>,
}

/// One change to the inventory made over the API, as recorded.
#[derive(Debug, Clone)]
pub struct InventoryChange {
    /// Order of the change.
    pub seq: i64,
    /// `plugin` or `workflow`.
    pub kind: String,
    /// The plugin or workflow name.
    pub name: String,
    /// The new definition (JSON object); `None` for a removal.
    pub definition: Option<serde_json::Value>,
}

/// Which hash a `/hash` lookup uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// 32 hex characters.
    Md5,
    /// 40 hex characters.
    Sha1,
    /// 64 hex characters.
    Sha256,
}

impl HashKind {
    /// The kind of a lowercase hex hash, by its length.
    pub fn of(hash: &str) -> Option<HashKind> {
        if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        match hash.len() {
            32 => Some(HashKind::Md5),
            40 => Some(HashKind::Sha1),
            64 => Some(HashKind::Sha256),
            _ => None,
        }
    }

    fn column(self) -> &'static str {
        match self {
            HashKind::Md5 => "md5",
            HashKind::Sha1 => "sha1",
            HashKind::Sha256 => "sha256",
        }
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    data_id          TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    state            TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    display_name     TEXT NOT NULL,
    file_name        TEXT NOT NULL,
    user_agent       TEXT NOT NULL,
    username         TEXT NOT NULL,
    metadata         TEXT,
    callback_url     TEXT,
    callback_state   TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    size             INTEGER NOT NULL,
    md5              TEXT NOT NULL,
    sha1             TEXT NOT NULL,
    sha256           TEXT NOT NULL,
    mime             TEXT NOT NULL,
    type_description TEXT NOT NULL,
    received_ms      INTEGER NOT NULL,
    started_ms       INTEGER,
    runs             INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_received ON jobs(received_ms);
CREATE TABLE IF NOT EXISTS inline_files (
    data_id TEXT PRIMARY KEY,
    content BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    data_id     TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    md5         TEXT NOT NULL,
    sha1        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    result      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_md5 ON results(md5);
CREATE INDEX IF NOT EXISTS results_sha1 ON results(sha1);
CREATE INDEX IF NOT EXISTS results_sha256 ON results(sha256);
CREATE INDEX IF NOT EXISTS results_created ON results(created_ms);
CREATE TABLE IF NOT EXISTS callback_attempts (
    data_id     TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (data_id, attempt)
);
CREATE TABLE IF NOT EXISTS inventory_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    definition TEXT,
    at_ms      INTEGER NOT NULL,
    by_whom    TEXT NOT NULL
);
"#;

/// The store: SQLite database and file store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: mpsc::Sender<WriteOp>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// Submitted files larger than [`files::INLINE_MAX`].
    pub files: FileStore,
    /// Where samples kept in the database are placed for a scan.
    slots: Arc<SlotPool>,
    metrics: StoreMetrics,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    /// Open (creating what is missing) the database and file store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join("cordon.sqlite3");
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        // `first`: the connection that creates the database when there is none yet.
        let open = |first: bool| -> Result<Connection, rusqlite::Error> {
            let conn = Connection::open(&path)?;
            if first {
                // Only takes effect on a new, empty database (before the WAL mode is set).
                conn.pragma_update(None, "page_size", PAGE_SIZE)?;
            }
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            Ok(conn)
        };
        let mut conn = open(true).map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sql)?;
        let wal_restart_frames = WAL_RESTART_BYTES / page_size.max(512);
        let reader = open(false).map_err(sql)?;
        reader
            .pragma_update(None, "query_only", true)
            .map_err(sql)?;
        let files_root = data_dir.join("files");
        let files = FileStore::open(&files_root).map_err(|source| StoreError::Io {
            path: files_root,
            source,
        })?;
        let slots_root = data_dir.join("scan");
        let slots = SlotPool::open(&slots_root).map_err(|source| StoreError::Io {
            path: slots_root,
            source,
        })?;
        let (writer, ops) = mpsc::channel();
        // Checkpoints run on their own thread and connection (see `checkpoint_loop`), not
        // inside the commits of the writer, which only counts the WAL's frames.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(sql)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(sql)?;
        let wal_frames = Arc::new(AtomicI64::new(0));
        let frames = wal_frames.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages| {
            frames.store(i64::from(pages), Ordering::Relaxed);
            Ok(())
        }))
        .map_err(sql)?;
        let checkpointer = open(false).map_err(sql)?;
        let (wal_grew, grown) = mpsc::sync_channel(1);
        let metrics = StoreMetrics::new();
        let checkpoint_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("cordon-db-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, grown, &checkpoint_metrics))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        let writer_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("cordon-db-writer".into())
            .spawn(move || {
                write_loop(
                    conn,
                    ops,
                    wal_grew,
                    wal_frames,
                    wal_restart_frames,
                    &writer_metrics,
                )
            })
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Store {
            writer,
            reader: Arc::new(Mutex::new(reader)),
            path,
            files,
            slots,
            metrics,
        })
    }

    /// What the writer and the checkpointer measure, for `/metrics`.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    fn error(path: PathBuf, source: rusqlite::Error) -> StoreError {
        match source {
            rusqlite::Error::FromSqlConversionFailure(_, _, e) => StoreError::Corrupt {
                path,
                message: e.to_string(),
            },
            source => StoreError::Sqlite { path, source },
        }
    }

    /// Run the read `f` on the read connection, on the blocking pool.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<R, StoreError> {
        let db = self.reader.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn).map_err(|source| Store::error(path, source))
        })
        .await
        .expect("database calls do not panic")
    }

    /// Run the write `f` on the writer thread, in the next batch; return once the batch is
    /// committed at `durability`.
    async fn write<R: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        let path = self.path.clone();
        let run = move |conn: Result<&Connection, &Refusal>| -> (Ran, Completion) {
            let conn = match conn {
                Ok(conn) => conn,
                Err(refusal) => {
                    let error = refusal.error(path);
                    return (
                        Ran::Failed { full: refusal.full },
                        Box::new(move |_| {
                            let _ = tx.send(Err(error));
                        }),
                    );
                }
            };
            match f(conn) {
                Ok(value) => (
                    Ran::Ok,
                    Box::new(move |commit: Result<(), &Refusal>| {
                        let _ = tx.send(commit.map(|()| value).map_err(|r| r.error(path)));
                    }),
                ),
                Err(source) => {
                    let full = is_full(&source);
                    let error = Store::error(path, source);
                    (
                        Ran::Failed { full },
                        Box::new(move |_| {
                            let _ = tx.send(Err(error));
                        }),
                    )
                }
            }
        };
        let stopped = || StoreError::WriterStopped {
            path: self.path.clone(),
        };
        self.writer
            .send(WriteOp {
                durability,
                run: Box::new(run),
            })
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Insert a new job (state `queued`), with its file's bytes when they are kept in the
    /// database (`inline`), in one transaction: the job and its file are stored together or
    /// not at all.
    pub async fn insert_job(
        &self,
        job: JobRecord,
        inline: Option<Bytes>,
    ) -> Result<(), StoreError> {
        self.write(Durability::Machine, move |db| {
            if let Some(content) = &inline {
                db.prepare_cached("INSERT INTO inline_files (data_id, content) VALUES (?1, ?2)")?
                    .execute(params![job.data_id, &content[..]])?;
            }
            let f = &job.fingerprint;
            db.prepare_cached(
                "INSERT INTO jobs (data_id, owner, state, workflow, display_name, file_name,
                    user_agent, username, metadata, callback_url, size, md5, sha1, sha256, mime,
                    type_description, received_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )?
            .execute(params![
                    job.data_id,
                    job.owner,
                    JobState::Queued.as_str(),
                    job.workflow,
                    job.display_name,
                    job.file_name,
                    job.user_agent,
                    job.username,
                    job.metadata.as_ref().map(|m| m.to_string()),
                    job.callback_url,
                    f.size as i64,
                    f.md5,
                    f.sha1,
                    f.sha256,
                    f.mime,
                    f.description,
                    job.received_ms,
            ])
            .map(drop)
        })
        .await
    }

    /// A job's file as a sample for plugins: the bytes kept in the database placed in a
    /// scan slot (see [`SlotPool`]), or the file in the file store.
    pub async fn sample(&self, job: &JobRecord) -> Result<Sample, StoreError> {
        self.sample_from(job, None).await
    }

    /// [`Store::sample`] for a job whose bytes kept in the database the caller still holds
    /// (`inline`, as given to [`Store::insert_job`]): they are placed without being read back.
    pub async fn sample_from(
        &self,
        job: &JobRecord,
        inline: Option<Bytes>,
    ) -> Result<Sample, StoreError> {
        let db = self.reader.clone();
        let (files, slots) = (self.files.clone(), self.slots.clone());
        let (id, name) = (job.data_id.clone(), job.file_name.clone());
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let inline: Option<Bytes> = match inline {
                Some(bytes) => Some(bytes),
                None => {
                    let db = db.lock().unwrap_or_else(|p| p.into_inner());
                    db.prepare_cached("SELECT content FROM inline_files WHERE data_id = ?1")
                        .and_then(|mut stmt| {
                            stmt.query_row(params![id], |r| r.get::<_, Vec<u8>>(0))
                                .optional()
                        })
                        .map_err(|source| Store::error(path.clone(), source))?
                        .map(Bytes::from)
                }
            };
            match inline {
                Some(bytes) => slots
                    .sample(&bytes, &name)
                    .map_err(|source| StoreError::Io {
                        path: path.with_file_name("scan"),
                        source,
                    }),
                None => files.sample(&id, &name).map_err(|source| StoreError::Io {
                    path: files.root().join(&id).join(&name),
                    source,
                }),
            }
        })
        .await
        .expect("placing a sample does not panic")
    }

    /// Mark a job as started by a worker; counts the run.
    pub async fn mark_running(&self, data_id: &str) -> Result<(), StoreError> {
        let id = data_id.to_owned();
        self.write(Durability::Process, move |db| {
            db.prepare_cached(
                "UPDATE jobs SET state = 'running', started_ms = ?2, runs = runs + 1
                 WHERE data_id = ?1 AND state != 'done'",
            )?
            .execute(params![id, now_ms()])
            .map(drop)
        })
        .await
    }

    /// Record that a cancel was asked for, so that it holds across a restart.
    pub async fn request_cancel(&self, data_id: &str) -> Result<(), StoreError> {
        let id = data_id.to_owned();
        self.write(Durability::Machine, move |db| {
            db.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE data_id = ?1",
                params![id],
            )
            .map(drop)
        })
        .await
    }

    /// Store a job's final result and mark it done, in one transaction. When the job has a
    /// callback URL, its delivery becomes `pending`.
    pub async fn finish(&self, job: &JobRecord, result_json: Arc<str>) -> Result<(), StoreError> {
        let job = job.clone();
        self.write(Durability::Machine, move |db| {
            let f = &job.fingerprint;
            db.prepare_cached(
                "INSERT OR REPLACE INTO results (data_id, owner, workflow, md5, sha1, sha256,
                    created_ms, finished_ms, result)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                job.data_id,
                job.owner,
                job.workflow,
                f.md5,
                f.sha1,
                f.sha256,
                job.received_ms,
                now_ms(),
                &*result_json
            ])?;
            db.prepare_cached(
                "UPDATE jobs SET state = 'done',
                    callback_state = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END
                 WHERE data_id = ?1",
            )?
            .execute(params![job.data_id])?;
            Ok(())
        })
        .await
    }

    /// A job.
    pub async fn job(&self, data_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let id = data_id.to_owned();
        self.call(move |db| {
            db.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE data_id = ?1"
            ))?
            .query_row(params![id], job_from_row)
            .optional()
        })
        .await
    }

    /// Every job that is not done, oldest first.
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.call(|db| {
            let mut stmt = db.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state != 'done' ORDER BY received_ms, data_id"
            ))?;
            stmt.query_map([], job_from_row)?.collect()
        })
        .await
    }

    /// A final result.
    pub async fn result(&self, data_id: &str) -> Result<Option<StoredResult>, StoreError> {
        let id = data_id.to_owned();
        self.call(move |db| {
            db.prepare_cached("SELECT owner, result FROM results WHERE data_id = ?1")?
                .query_row(params![id], |r| {
                    Ok(StoredResult {
                        owner: r.get(0)?,
                        json: r.get(1)?,
                    })
                })
                .optional()
        })
        .await
    }

    /// The most recent final result for a file hash, among those of `owner` (every owner's
    /// when `None`), of workflow `rule` when given.
    pub async fn result_by_hash(
        &self,
        kind: HashKind,
        hash: &str,
        owner: Option<&str>,
        rule: Option<&str>,
    ) -> Result<Option<StoredResult>, StoreError> {
        let hash = hash.to_ascii_lowercase();
        let owner = owner.map(str::to_owned);
        let rule = rule.map(str::to_owned);
        let column = kind.column();
        self.call(move |db| {
            db.query_row(
                &format!(
                    "SELECT owner, result FROM results WHERE {column} = ?1
                       AND (?2 IS NULL OR owner = ?2) AND (?3 IS NULL OR workflow = ?3)
                     ORDER BY finished_ms DESC LIMIT 1"
                ),
                params![hash, owner, rule],
                |r| {
                    Ok(StoredResult {
                        owner: r.get(0)?,
                        json: r.get(1)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// Record one callback delivery attempt.
    pub async fn record_callback_attempt(
        &self,
        data_id: &str,
        attempt: CallbackAttempt,
    ) -> Result<(), StoreError> {
        let id = data_id.to_owned();
        self.write(Durability::Machine, move |db| {
            db.execute(
                "INSERT OR REPLACE INTO callback_attempts
                    (data_id, attempt, at_ms, status, error, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    attempt.attempt,
                    attempt.at_ms,
                    attempt.status,
                    attempt.error,
                    attempt.duration_ms as i64
                ],
            )
            .map(drop)
        })
        .await
    }

    /// Set a job's callback state (`delivered` or `failed`).
    pub async fn set_callback_state(&self, data_id: &str, state: &str) -> Result<(), StoreError> {
        let id = data_id.to_owned();
        let state = state.to_owned();
        self.write(Durability::Machine, move |db| {
            db.execute(
                "UPDATE jobs SET callback_state = ?2 WHERE data_id = ?1",
                params![id, state],
            )
            .map(drop)
        })
        .await
    }

    /// A job's callback, with its attempts; `None` when the job has no callback URL.
    pub async fn callback(&self, data_id: &str) -> Result<Option<CallbackRecord>, StoreError> {
        let id = data_id.to_owned();
        self.call(move |db| {
            let head = db
                .query_row(
                    "SELECT owner, callback_url, callback_state FROM jobs
                     WHERE data_id = ?1 AND callback_url IS NOT NULL",
                    params![id],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((owner, url, state)) = head else {
                return Ok(None);
            };
            let mut stmt = db.prepare(
                "SELECT attempt, at_ms, status, error, duration_ms FROM callback_attempts
                 WHERE data_id = ?1 ORDER BY attempt",
            )?;
            let attempts = stmt
                .query_map(params![id], |r| {
                    Ok(CallbackAttempt {
                        attempt: r.get(0)?,
                        at_ms: r.get(1)?,
                        status: r.get(2)?,
                        error: r.get(3)?,
                        duration_ms: r.get::<_, i64>(4)? as u64,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(CallbackRecord {
                owner,
                url,
                state,
                attempts,
            }))
        })
        .await
    }

    /// Jobs whose callback is still `pending`, with their URL and the attempts already made.
    pub async fn pending_callbacks(&self) -> Result<Vec<(String, String, u32)>, StoreError> {
        self.call(|db| {
            let mut stmt = db.prepare(
                "SELECT j.data_id, j.callback_url,
                    (SELECT COUNT(*) FROM callback_attempts a WHERE a.data_id = j.data_id)
                 FROM jobs j WHERE j.callback_state = 'pending' ORDER BY j.received_ms",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .await
    }

    /// Record an inventory change made over the API.
    pub async fn append_inventory_change(
        &self,
        kind: &str,
        name: &str,
        definition: Option<serde_json::Value>,
        by_whom: &str,
    ) -> Result<(), StoreError> {
        let (kind, name, by_whom) = (kind.to_owned(), name.to_owned(), by_whom.to_owned());
        self.write(Durability::Machine, move |db| {
            db.execute(
                "INSERT INTO inventory_changes (kind, name, definition, at_ms, by_whom)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    kind,
                    name,
                    definition.map(|d| d.to_string()),
                    now_ms(),
                    by_whom
                ],
            )
            .map(drop)
        })
        .await
    }

    /// Every inventory change, in the order it was made.
    pub async fn inventory_changes(&self) -> Result<Vec<InventoryChange>, StoreError> {
        self.call(|db| {
            let mut stmt = db.prepare(
                "SELECT seq, kind, name, definition FROM inventory_changes ORDER BY seq",
            )?;
            stmt.query_map([], |r| {
                let definition: Option<String> = r.get(3)?;
                let definition = definition
                    .map(|d| serde_json::from_str(&d))
                    .transpose()
                    .map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            3,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?;
                Ok(InventoryChange {
                    seq: r.get(0)?,
                    kind: r.get(1)?,
                    name: r.get(2)?,
                    definition,
                })
            })?
            .collect()
        })
        .await
    }

    /// Delete finished jobs, their results, callback records and files kept in the database,
    /// received before `before_ms`; returns their data ids (whose file-store files the caller
    /// deletes). Jobs not done are kept whatever their age: an accepted file always reaches a
    /// result.
    pub async fn sweep(&self, before_ms: i64) -> Result<Vec<String>, StoreError> {
        self.write(Durability::Machine, move |db| {
            let ids: Vec<String> = {
                let mut stmt = db.prepare(
                    "SELECT data_id FROM jobs WHERE state = 'done' AND received_ms < ?1
                       AND (callback_state IS NULL OR callback_state != 'pending')",
                )?;
                stmt.query_map(params![before_ms], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            for id in &ids {
                db.execute("DELETE FROM results WHERE data_id = ?1", params![id])?;
                db.execute(
                    "DELETE FROM callback_attempts WHERE data_id = ?1",
                    params![id],
                )?;
                db.execute("DELETE FROM inline_files WHERE data_id = ?1", params![id])?;
                db.execute("DELETE FROM jobs WHERE data_id = ?1", params![id])?;
            }
            db.execute(
                "DELETE FROM results WHERE created_ms < ?1
                   AND data_id NOT IN (SELECT data_id FROM jobs)",
                params![before_ms],
            )?;
            Ok(ids)
        })
        .await
    }

    /// Data ids that have a job row (any state).
    pub async fn job_ids(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        self.call(|db| {
            let mut stmt = db.prepare("SELECT data_id FROM jobs")?;
            stmt.query_map([], |r| r.get(0))?.collect()
        })
        .await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        self.call(|db| db.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await
            .is_ok()
    }
}

/// The checkpointer: copies committed pages from the WAL into the database file, beside the
/// writer (a passive checkpoint takes no lock a commit needs), whenever the writer says the WAL
/// grew, at most once per [`CHECKPOINT_INTERVAL`]. See [`write_loop`] for how the WAL is
/// restarted. Ends when the writer does.
fn checkpoint_loop(conn: Connection, grown: mpsc::Receiver<()>, metrics: &StoreMetrics) {
    while grown.recv().is_ok() {
        if let Err(e) = timed_checkpoint(&conn, metrics) {
            tracing::warn!(error = %e, "database checkpoint failed; will retry");
        }
        std::thread::sleep(CHECKPOINT_INTERVAL);
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: copies what it can without waiting for anyone; returns
/// the number of frames in the WAL.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
}

/// [`passive_checkpoint`], its time observed in `metrics`.
fn timed_checkpoint(conn: &Connection, metrics: &StoreMetrics) -> rusqlite::Result<i64> {
    let started = Instant::now();
    let frames = passive_checkpoint(conn);
    metrics
        .checkpoint_seconds
        .observe(started.elapsed().as_secs_f64());
    frames
}

/// The writer thread: commit the writes in batches until every [`Store`] is dropped.
///
/// After a commit it wakes the checkpointer. The WAL restarts from its beginning (rather than
/// growing) only when a write transaction begins with every frame already copied, which a
/// checkpointer running beside a busy writer never sees: so once the WAL holds
/// `restart_frames` frames (see [`WAL_RESTART_BYTES`]; `wal_frames` is kept by SQLite's WAL
/// hook at every commit), the writer runs a passive checkpoint itself, between two batches.
/// It copies only what was committed since the checkpointer's last pass, and the next batch
/// starts the WAL over.
fn write_loop(
    conn: Connection,
    ops: mpsc::Receiver<WriteOp>,
    wal_grew: mpsc::SyncSender<()>,
    wal_frames: Arc<AtomicI64>,
    restart_frames: i64,
    metrics: &StoreMetrics,
) {
    let mut synchronous = Durability::Machine; // as `Store::open` set it
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // Writes that need no fsync go first, in their own cheap commit, so that they never
        // wait for another's fsync. No write here depends on another of the same batch: a
        // caller sends a write only after the ones it depends on were answered.
        let (process, machine): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|op| op.durability == Durability::Process);
        for (durability, group) in [
            (Durability::Process, process),
            (Durability::Machine, machine),
        ] {
            if !group.is_empty() {
                commit_batch(&conn, &mut synchronous, durability, group, metrics);
            }
        }
        let _ = wal_grew.try_send(());
        if wal_frames.load(Ordering::Relaxed) >= restart_frames
            && let Err(e) = timed_checkpoint(&conn, metrics)
        {
            tracing::warn!(error = %e, "database checkpoint failed; will retry");
        }
    }
}

/// Run `ops` in one transaction, each in its own savepoint, commit at `durability`, answer.
/// The commit's time is observed in `metrics` before any write is answered, so that a caller
/// who reads `/metrics` after its write returned finds that write's commit counted.
fn commit_batch(
    conn: &Connection,
    synchronous: &mut Durability,
    durability: Durability,
    ops: Vec<WriteOp>,
    metrics: &StoreMetrics,
) {
    let (started, writes) = (Instant::now(), ops.len());
    let observe = || metrics.committed(durability, writes, started.elapsed());
    let mut failure: Option<Refusal> = None;
    if *synchronous != durability {
        let level = match durability {
            Durability::Machine => "FULL",
            Durability::Process => "NORMAL",
        };
        match conn.pragma_update(None, "synchronous", level) {
            Ok(()) => *synchronous = durability,
            Err(e) => {
                let context = format!("cannot set synchronous = {level}: ");
                failure = Some(Refusal::from_sqlite(&context, &e));
            }
        }
    }
    if failure.is_none()
        && let Err(e) = control(conn, "BEGIN IMMEDIATE")
    {
        failure = Some(Refusal::from_sqlite("", &e));
    }
    if let Some(refusal) = failure {
        tracing::error!(error = %refusal.message, writes = ops.len(), "database writes could not start");
        observe();
        for op in ops {
            let (_, completion) = (op.run)(Err(&refusal));
            completion(Err(&refusal));
        }
        return;
    }
    let mut completions: Vec<Completion> = Vec::with_capacity(ops.len());
    let mut ops = ops.into_iter();
    while let Some(op) = ops.next() {
        // A savepoint per write: one that fails is undone alone.
        if let Err(e) = control(conn, "SAVEPOINT op") {
            let refusal = Refusal::from_sqlite("", &e);
            let (_, completion) = (op.run)(Err(&refusal));
            completion(Err(&refusal));
            continue;
        }
        let (ran, completion) = (op.run)(Ok(conn));
        let ok = ran == Ran::Ok;
        completions.push(completion);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (an I/O error, a full disk): nothing
            // of this batch is stored. Say so to every write of it, and whether the disk was
            // full, which the write that failed knows.
            let refusal = Refusal {
                message: "the transaction was rolled back by an earlier error".into(),
                full: ran == Ran::Failed { full: true },
            };
            tracing::error!(writes = completions.len(), "{}", refusal.message);
            observe();
            for completion in completions {
                completion(Err(&refusal));
            }
            for op in ops {
                let (_, completion) = (op.run)(Err(&refusal));
                completion(Err(&refusal));
            }
            return;
        }
        let end = if ok {
            control(conn, "RELEASE op")
        } else {
            conn.execute_batch("ROLLBACK TO op; RELEASE op")
        };
        if let Err(e) = end {
            tracing::error!(error = %e, "cannot end a savepoint");
        }
    }
    let commit = control(conn, "COMMIT").map_err(|e| Refusal::from_sqlite("", &e));
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    observe();
    for completion in completions {
        completion(commit.as_ref().map(|_| ()));
    }
}

/// A transaction-control statement the writer runs for every batch or write, prepared once.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

const JOB_COLUMNS: &str = "data_id, owner, state, workflow, display_name, file_name, user_agent,
    username, metadata, callback_url, cancel_requested, size, md5, sha1, sha256, mime,
    type_description, received_ms, runs";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let conversion = |i: usize, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e)
    };
    let state: String = r.get(2)?;
    let metadata: Option<String> = r.get(8)?;
    Ok(JobRecord {
        data_id: r.get(0)?,
        owner: r.get(1)?,
        state: JobState::parse(&state)
            .ok_or_else(|| conversion(2, format!("unknown job state {state:?}").into()))?,
        workflow: r.get(3)?,
        display_name: r.get(4)?,
        file_name: r.get(5)?,
        user_agent: r.get(6)?,
        username: r.get(7)?,
        metadata: metadata
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(|e| conversion(8, Box::new(e)))?,
        callback_url: r.get(9)?,
        cancel_requested: r.get::<_, i64>(10)? != 0,
        fingerprint: Fingerprint {
            size: r.get::<_, i64>(11)? as u64,
            md5: r.get(12)?,
            sha1: r.get(13)?,
            sha256: r.get(14)?,
            mime: r.get(15)?,
            description: r.get(16)?,
        },
        received_ms: r.get(17)?,
        runs: r.get(18)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write for [`commit_batch`] whose body is `body` and whose answer lands in `answer`:
    /// `Ok(())`, or `Err(full)`.
    fn op(
        body: impl FnOnce(&Connection) -> Ran + Send + 'static,
        answer: std::sync::Arc<std::sync::Mutex<Option<Result<(), bool>>>>,
    ) -> WriteOp {
        WriteOp {
            durability: Durability::Machine,
            run: Box::new(move |conn: Result<&Connection, &Refusal>| {
                let ran = match conn {
                    Ok(conn) => body(conn),
                    Err(refusal) => Ran::Failed { full: refusal.full },
                };
                let completion: Completion = Box::new(move |commit: Result<(), &Refusal>| {
                    *answer.lock().unwrap() = Some(commit.map_err(|r| r.full));
                });
                (ran, completion)
            }),
        }
    }

    #[test]
    fn a_batch_rolled_back_by_a_full_disk_tells_its_other_writes_so() {
        for full in [true, false] {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
            let first = std::sync::Arc::new(std::sync::Mutex::new(None));
            let second = std::sync::Arc::new(std::sync::Mutex::new(None));
            let ops = vec![
                op(
                    |conn| {
                        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
                        Ran::Ok
                    },
                    first.clone(),
                ),
                // What SQLite does on some errors (a full disk, an I/O error): the statement
                // fails and the whole transaction is rolled back.
                op(
                    move |conn| {
                        conn.execute_batch("ROLLBACK").unwrap();
                        Ran::Failed { full }
                    },
                    second.clone(),
                ),
            ];
            let mut synchronous = Durability::Machine;
            let metrics = StoreMetrics::new();
            commit_batch(&conn, &mut synchronous, Durability::Machine, ops, &metrics);
            assert_eq!(
                *first.lock().unwrap(),
                Some(Err(full)),
                "the write that succeeded is told its batch was lost, and whether to a full disk"
            );
            let rows: i64 = conn
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(rows, 0, "nothing of the batch is stored");
        }
    }

    fn job(id: &str, received_ms: i64) -> JobRecord {
        JobRecord {
            data_id: id.to_owned(),
            owner: "key:a".into(),
            workflow: "w".into(),
            display_name: "a b.txt".into(),
            file_name: "a_b.txt".into(),
            user_agent: "ua".into(),
            username: "a".into(),
            metadata: Some(serde_json::json!({"k": 1})),
            callback_url: Some("http://127.0.0.1:1/cb".into()),
            fingerprint: Fingerprint {
                size: 3,
                md5: "m".repeat(32),
                sha1: "s".repeat(40),
                sha256: "2".repeat(64),
                mime: "text/plain".into(),
                description: "text".into(),
            },
            received_ms,
            state: JobState::Queued,
            cancel_requested: false,
            runs: 0,
        }
    }

    #[tokio::test]
    async fn jobs_survive_reopening_and_finish_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .insert_job(job(id, 5), Some(Bytes::from_static(b"abc")))
                .await
                .unwrap();
            store.mark_running(id).await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let unfinished = store.unfinished_jobs().await.unwrap();
        assert_eq!(unfinished.len(), 1);
        // The file kept with the job is there after reopening, placed as a sample.
        let sample = store.sample(&unfinished[0]).await.unwrap();
        assert_eq!(sample.file_name(), "a_b.txt");
        assert_eq!(std::fs::read(sample.path()).unwrap(), b"abc");
        assert!(sample.dir().starts_with(dir.path().join("scan")));
        drop(sample);
        assert_eq!(unfinished[0].state, JobState::Running);
        assert_eq!(unfinished[0].runs, 1);
        assert_eq!(unfinished[0].metadata, Some(serde_json::json!({"k": 1})));
        store
            .finish(&unfinished[0], "{\"x\":1}".into())
            .await
            .unwrap();
        assert!(store.unfinished_jobs().await.unwrap().is_empty());
        assert_eq!(store.result(id).await.unwrap().unwrap().json, "{\"x\":1}");
        let by_hash = store
            .result_by_hash(HashKind::Sha256, &"2".repeat(64), Some("key:a"), None)
            .await
            .unwrap();
        assert!(by_hash.is_some());
        let other = store
            .result_by_hash(HashKind::Sha256, &"2".repeat(64), Some("key:b"), None)
            .await
            .unwrap();
        assert!(other.is_none());
        assert_eq!(store.pending_callbacks().await.unwrap().len(), 1);
        store
            .record_callback_attempt(
                id,
                CallbackAttempt {
                    attempt: 1,
                    at_ms: 1,
                    status: Some(200),
                    error: String::new(),
                    duration_ms: 3,
                },
            )
            .await
            .unwrap();
        // A pending callback holds its job against retention.
        assert!(store.sweep(i64::MAX).await.unwrap().is_empty());
        store.set_callback_state(id, "delivered").await.unwrap();
        let cb = store.callback(id).await.unwrap().unwrap();
        assert_eq!(cb.state.as_deref(), Some("delivered"));
        assert_eq!(cb.attempts.len(), 1);
        assert_eq!(store.sweep(4).await.unwrap(), Vec::<String>::new());
        assert_eq!(store.sweep(6).await.unwrap(), vec![id.to_owned()]);
        assert!(store.result(id).await.unwrap().is_none());
        assert!(store.job(id).await.unwrap().is_none());
        // Its file went with it.
        assert!(store.sample(&unfinished[0]).await.is_err());
    }

    #[tokio::test]
    async fn a_job_and_its_inline_file_are_stored_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = "00000000000000000000000000000001";
        let mut big = job(id, 5);
        big.file_name = "big.bin".into();
        store.insert_job(big.clone(), None).await.unwrap();
        // The same data id again, with bytes: the job's insert fails after the file's, and
        // the file's is rolled back with it.
        assert!(
            store
                .insert_job(job(id, 6), Some(Bytes::from_static(b"lost")))
                .await
                .is_err()
        );
        let err = store.sample(&job(id, 6)).await.unwrap_err();
        assert!(
            err.to_string().contains(&format!("files/{id}/a_b.txt")),
            "{err}"
        );
        // The first job is stored, and its file is looked for in the file store.
        assert_eq!(store.job(id).await.unwrap().unwrap().file_name, "big.bin");
        let dir_of = dir.path().join("files").join(id);
        std::fs::create_dir(&dir_of).unwrap();
        std::fs::write(dir_of.join("big.bin"), b"from the file store").unwrap();
        let sample = store.sample(&big).await.unwrap();
        assert_eq!(
            std::fs::read(sample.path()).unwrap(),
            b"from the file store"
        );
    }

    #[tokio::test]
    async fn a_full_database_is_told_apart_from_other_failures() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Cap the writer's database at the pages it has: it is now as full as a full disk
        // would make it, and SQLite answers SQLITE_FULL.
        store
            .write(Durability::Process, |db| {
                let pages: i64 = db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                db.pragma_update(None, "max_page_count", pages)
            })
            .await
            .unwrap();
        let id = "00000000000000000000000000000002";
        let err = store
            .insert_job(job(id, 5), Some(Bytes::from(vec![7u8; 64 << 10])))
            .await
            .unwrap_err();
        assert!(err.is_full(), "{err}");
        assert!(store.job(id).await.unwrap().is_none(), "nothing stored");
        // A write refused for another reason is not "full": the same id twice.
        store
            .write(Durability::Process, |db| {
                db.pragma_update(None, "max_page_count", 1_000_000)
            })
            .await
            .unwrap();
        store.insert_job(job(id, 5), None).await.unwrap();
        let err = store.insert_job(job(id, 6), None).await.unwrap_err();
        assert!(!err.is_full(), "{err}");
    }

    #[test]
    fn a_commit_refused_for_a_full_disk_says_so() {
        // What a COMMIT that cannot append to the WAL on a full disk fails with.
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let refusal = Refusal::from_sqlite("", &full);
        assert!(refusal.full);
        assert_eq!(refusal.message, "database or disk is full");
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(!Refusal::from_sqlite("", &busy).full);
        let commit = |full| StoreError::Commit {
            path: PathBuf::from("db"),
            message: String::new(),
            full,
        };
        assert!(commit(true).is_full());
        assert!(!commit(false).is_full());
        let io = |code| StoreError::Io {
            path: PathBuf::from("f"),
            source: std::io::Error::from_raw_os_error(code),
        };
        assert!(io(28).is_full(), "ENOSPC");
        assert!(!io(5).is_full(), "EIO");
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_and_restarted_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let wal = dir.path().join("cordon.sqlite3-wal");
        let mut largest = 0;
        // 400 jobs of 4 KiB each: well over 1,600 frames written, against a restart
        // threshold of 64 frames in tests. Without checkpoints and restarts the WAL would hold
        // them all (over 6 MiB).
        for i in 0..400u32 {
            let id = format!("{i:032x}");
            store
                .insert_job(job(&id, 5), Some(vec![i as u8; 4096].into()))
                .await
                .unwrap();
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        assert!(
            largest < 2 << 20,
            "the WAL grew to {largest} bytes: it is not being restarted"
        );
        // What was checkpointed is all there.
        assert_eq!(store.job_ids().await.unwrap().len(), 400);
        let last = store.job(&format!("{:032x}", 399)).await.unwrap().unwrap();
        let sample = store.sample(&last).await.unwrap();
        assert_eq!(
            std::fs::read(sample.path()).unwrap(),
            vec![399u32 as u8; 4096]
        );
    }

    #[tokio::test]
    async fn a_new_database_gets_the_small_page_size_and_an_older_one_keeps_its_own() {
        let page_size = |dir: &Path| -> i64 {
            Connection::open(dir.join("cordon.sqlite3"))
                .unwrap()
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        let new = tempfile::tempdir().unwrap();
        drop(Store::open(new.path()).unwrap());
        assert_eq!(page_size(new.path()), PAGE_SIZE);

        // A database made with SQLite's default page size, as earlier versions did: it opens,
        // keeps its page size, and takes and returns jobs and their files.
        let old = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(old.path().join("cordon.sqlite3")).unwrap();
            conn.pragma_update(None, "page_size", 4096).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.execute_batch(SCHEMA).unwrap();
        }
        let store = Store::open(old.path()).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        store
            .insert_job(job(id, 5), Some(Bytes::from_static(b"old")))
            .await
            .unwrap();
        let stored = store.job(id).await.unwrap().unwrap();
        let sample = store.sample(&stored).await.unwrap();
        assert_eq!(std::fs::read(sample.path()).unwrap(), b"old");
        drop((sample, store));
        assert_eq!(page_size(old.path()), 4096);
    }

    #[tokio::test]
    async fn inventory_changes_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .append_inventory_change("plugin", "A", Some(serde_json::json!({"a": 1})), "admin")
            .await
            .unwrap();
        store
            .append_inventory_change("plugin", "A", None, "admin")
            .await
            .unwrap();
        let changes = store.inventory_changes().await.unwrap();
        assert_eq!(changes.len(), 2);
        assert!(changes[0].definition.is_some());
        assert!(changes[1].definition.is_none());
        assert!(changes[0].seq < changes[1].seq);
    }
}
