//! `cordon serve`: a MetaDefender Core-compatible scanning server with durable results.
//!
//! Existing MetaDefender Core v4 clients work against it unchanged (`metadefender-compat.md`
//! sections 4 to 6). Every route is served at the root and under the legacy `/metascan_rest/`
//! prefix:
//!
//! | route | module |
//! |---|---|
//! | `POST /file`, `GET /file/{id}`, `GET /process/{id}`, `POST /file/{id}/cancel`, `GET /file/webhook/{id}`, `GET /file/converted/{id}`, `GET /hash/{hash}` | [`files`] |
//! | `GET /file/rules`, `GET /stat/engines`, `GET /version`, `POST /login`, `POST /logout`, `GET /readyz`, `GET /metrics` | [`info`] |
//! | `/admin/plugins`, `/admin/workflows`, `/admin/modules` | [`admin`] |
//!
//! Every error is `{"err": "..."}` ([`error`]); unknown ids answer `200 {"<id>": "Not Found"}`.
//!
//! Durability: a file answered with a `data_id` is on disk with its job row in SQLite (WAL,
//! `synchronous = FULL`) before the answer: a small file inside the job's own transaction, a
//! large one as an fsynced file committed before the job; at start-up every job that is not
//! done runs again ([`queue::recover`]), so a SIGKILL loses no accepted file. A final result is
//! shown only once committed the same way, so one a client saw never changes after a crash. On SIGTERM or
//! SIGINT the server stops accepting, lets the scans in flight finish for up to
//! `shutdown_grace_seconds`, and exits; what did not finish runs at the next start.
//!
//! Data directory layout: `cordon.sqlite3` (jobs, results, callback deliveries, inventory
//! changes, and submitted files of at most 256 KiB), `files/<data_id>/<name>` (larger
//! submitted files), `scan/` (reusable directories where a file kept in the database is
//! placed for its scan), `modules/<sha256>.wasm` (uploaded modules), plus the host's
//! `builtin/`, `cache/` and `work/`.
//!
//! Logs: one span per request (`request`, with method, path, caller and data id) and one per
//! scan (`scan`, with the data id): every line about a scan carries its data id.

pub mod admin;
pub mod auth;
pub mod callbacks;
pub mod error;
pub mod files;
pub mod info;
pub mod inventory;
pub mod metrics;
pub mod queue;
pub mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::LoadContext;
use crate::executor::Executor;
use crate::host::{Host, HostError};
use crate::store::{Store, StoreError, now_ms};

use self::auth::Auth;
use self::inventory::LiveInventory;
use self::metrics::Metrics;
use self::queue::Jobs;
use self::settings::ServerSettings;

/// How `cordon serve` was asked to run.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Configuration file; the built-in default without one.
    pub config: Option<PathBuf>,
    /// Data directory (created when missing).
    pub data_dir: PathBuf,
    /// Overrides `[server] listen`.
    pub listen: Option<SocketAddr>,
}

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Configuration, plugins or data directory.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The database or file store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A plugin changed over the API could not be loaded with the rest.
    #[error(transparent)]
    Inventory(#[from] crate::plugin::inventory::InventoryError),
    /// Open mode on a non-loopback address.
    #[error(
        "refusing to listen on {0} without authentication: configure [[server.api_keys]] or \
         [[server.users]], or listen on a loopback address such as 127.0.0.1:8008"
    )]
    OpenNotLoopback(SocketAddr),
    /// The listening socket.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The callback HTTP client.
    #[error("cannot set up the callback HTTP client: {0}")]
    Http(String),
}

/// Everything the handlers share.
pub struct AppState {
    /// The `[server]` settings (with command-line overrides).
    pub settings: Arc<ServerSettings>,
    /// Jobs, results, files.
    pub store: Store,
    /// Runs plugins.
    pub executor: Executor,
    /// Plugins and workflows in force.
    pub inventory: LiveInventory,
    /// The queue and the jobs in flight.
    pub jobs: Jobs,
    /// Keys and sessions.
    pub auth: Auth,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// HTTP client for callbacks.
    pub callback_client: reqwest::Client,
    accepting: AtomicBool,
}

impl AppState {
    /// Whether new submissions are taken (false once shutdown began).
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }
}

/// The API routes, without the legacy prefix.
fn api() -> Router<Arc<AppState>> {
    Router::new()
        .route("/file", post(files::submit))
        .route("/file/rules", get(info::rules))
        .route("/file/{data_id}", get(files::result))
        .route("/file/{data_id}/cancel", post(files::cancel))
        .route("/file/webhook/{data_id}", get(files::webhook_status))
        .route("/file/converted/{data_id}", get(files::converted))
        .route("/process/{data_id}", get(files::result))
        .route("/hash/{hash}", get(files::by_hash))
        .route("/stat/engines", get(info::engines))
        .route("/version", get(info::version))
        .route("/login", post(info::login))
        .route("/logout", post(info::logout))
}

fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/plugins", get(admin::list_plugins))
        .route(
            "/admin/plugins/{name}",
            put(admin::put_plugin).delete(admin::delete_plugin),
        )
        .route("/admin/workflows", get(admin::list_workflows))
        .route(
            "/admin/workflows/{name}",
            put(admin::put_workflow).delete(admin::delete_workflow),
        )
        .route(
            "/admin/modules",
            post(admin::upload_module).get(admin::list_modules),
        )
        .layer(DefaultBodyLimit::max(admin::MAX_MODULE_BYTES))
}

/// The whole router over `state`: usable without a socket (`tower::ServiceExt::oneshot`).
pub fn router(state: Arc<AppState>) -> Router {
    let api = api();
    Router::new()
        .merge(api.clone())
        .nest("/metascan_rest", api)
        .merge(admin_routes())
        .route("/readyz", get(info::readyz))
        .route("/metrics", get(info::metrics))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), trace_request))
        .with_state(state)
}

/// One span per request; one log line per answer. Successful reads (`GET`, `HEAD`: clients
/// poll a result many times per file) are logged at DEBUG, everything else at INFO, so that
/// the default log has a line per submission, change and error rather than per poll. Every
/// answer's time goes to `cordon_http_request_duration_seconds`, by method, route and status.
async fn trace_request(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        caller = tracing::field::Empty,
        data_id = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .answered(&method, route, status, elapsed.as_secs_f64());
    let ms = elapsed.as_millis() as u64;
    span.in_scope(|| {
        if read && status < 400 {
            tracing::debug!(status, ms, "answered");
        } else {
            tracing::info!(status, ms, "answered");
        }
    });
    response
}

/// A server ready to take requests: everything loaded, jobs recovered, workers running; no
/// socket yet.
pub struct Server {
    state: Arc<AppState>,
    stop_workers: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Server {
    /// Load the configuration and plugins, open the store, replay the inventory changes,
    /// re-queue the unfinished jobs, resume pending callbacks and start the workers.
    pub async fn start(options: ServeOptions) -> Result<Server, ServeError> {
        let data_dir =
            std::path::absolute(&options.data_dir).map_err(|source| HostError::DataDir {
                path: options.data_dir.clone(),
                source,
            })?;
        let host = {
            let (config, dir) = (options.config.clone(), data_dir.clone());
            tokio::task::spawn_blocking(move || Host::load(config.as_deref(), &dir))
                .await
                .expect("loading does not panic")?
        };
        let mut settings = host.config.server.clone();
        if let Some(listen) = options.listen {
            settings.listen = listen;
        }
        if settings.is_open() && !settings.listen.ip().is_loopback() {
            return Err(ServeError::OpenNotLoopback(settings.listen));
        }
        let settings = Arc::new(settings);
        let store = {
            let dir = data_dir.clone();
            tokio::task::spawn_blocking(move || Store::open(&dir))
                .await
                .expect("opening the store does not panic")?
        };
        let changes = store.inventory_changes().await?;
        let inventory = {
            let Host {
                executor,
                inventory,
                config,
                data_dir,
            } = host;
            // Plugins defined through the admin API: relative paths start at the data
            // directory, and no sandbox may reach the configuration file either.
            let ctx = LoadContext {
                base_dir: data_dir.clone(),
                data_dir: data_dir.clone(),
                builtin_scripts_dir: data_dir.join("builtin"),
                config_file: options
                    .config
                    .as_deref()
                    .and_then(|p| std::path::absolute(p).ok()),
            };
            let modules = inventory::modules_dir(&data_dir);
            tokio::task::spawn_blocking(move || {
                let exec = executor.clone();
                LiveInventory::start(config, inventory, changes, exec, ctx, modules)
                    .map(|inv| (inv, executor))
            })
            .await
            .expect("loading does not panic")?
        };
        let (inventory, executor) = inventory;
        warn_if_open_files_short(&inventory.current().inventory, settings.workers);
        crate::executor::log_native_sandbox(
            inventory.current().inventory.plugins().map(|p| &**p),
            true,
        );
        for warning in inventory.current().inventory.warnings() {
            tracing::warn!("{warning}");
        }
        let callback_client =
            callbacks::client(settings.callback_timeout).map_err(ServeError::Http)?;

        // Files without a job: a crash between writing a file and recording its job.
        let known = store.job_ids().await?;
        let files = store.files.clone();
        let orphans = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
            let mut n = 0;
            for id in files.data_ids()? {
                if !known.contains(&id) {
                    files.remove(&id)?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
        .expect("cleaning does not panic")
        .map_err(|source| StoreError::Io {
            path: store.files.root().to_owned(),
            source,
        })?;
        if orphans > 0 {
            tracing::warn!(files = orphans, "removed files that no job refers to");
        }

        if settings.is_open() {
            tracing::warn!(
                listen = %settings.listen,
                "no api_keys or users are configured: the server runs OPEN, without authentication, on loopback only; the admin API is closed"
            );
        }
        let mut metrics = Metrics::new();
        metrics.register_store(store.metrics());
        let state = Arc::new(AppState {
            jobs: Jobs::new(settings.max_queue, settings.workers),
            auth: Auth::new(settings.clone()),
            metrics,
            settings: settings.clone(),
            store: store.clone(),
            executor,
            inventory,
            callback_client,
            accepting: AtomicBool::new(true),
        });

        let unfinished = store.unfinished_jobs().await?;
        let mut background = vec![queue::recover(&state, unfinished)];
        for (data_id, url, done) in store.pending_callbacks().await? {
            background.push(tokio::spawn(callbacks::deliver(
                state.clone(),
                data_id,
                url,
                done,
            )));
        }
        if let Some(retention) = settings.retention {
            background.push(tokio::spawn(sweeper(state.clone(), retention)));
        }
        let (stop_workers, stop_rx) = watch::channel(false);
        // Two tasks per scan slot: one scans while the other makes its next file ready.
        let workers = (0..2 * settings.workers)
            .map(|_| tokio::spawn(queue::worker(state.clone(), stop_rx.clone())))
            .collect();
        tracing::info!(
            workers = settings.workers,
            max_queue = settings.max_queue,
            data_dir = %data_dir.display(),
            "server started"
        );
        Ok(Server {
            state,
            stop_workers,
            workers,
            background,
        })
    }

    /// The router over this server's state.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stop taking jobs, let the scans in flight finish until `deadline`, then abandon what
    /// is left (it stays unfinished in the database and runs at the next start).
    async fn stop(self, deadline: tokio::time::Instant) {
        self.state.accepting.store(false, Ordering::SeqCst);
        let _ = self.stop_workers.send(true);
        for mut worker in self.workers {
            if tokio::time::timeout_at(deadline, &mut worker)
                .await
                .is_err()
            {
                worker.abort();
                tracing::warn!("a scan did not finish in time; it runs again at the next start");
            }
        }
        // The final results of the scans that did finish are being committed.
        if tokio::time::timeout_at(deadline, self.state.jobs.wait_finalized())
            .await
            .is_err()
        {
            tracing::warn!(
                "final results still being stored; those scans run again at the next start"
            );
        }
        for task in self.background {
            task.abort();
        }
    }
}

/// Log a warning when this process's open files limit is below what the wasm plugins of
/// `inventory`, `workers` files at once, could hold with the server's own descriptors: at
/// start, and after each change of the inventory over the admin API.
fn warn_if_open_files_short(inventory: &crate::plugin::inventory::Inventory, workers: usize) {
    let plugins = open_files_of_wasm_plugins(inventory, workers);
    if let Some(warning) =
        crate::executor::open_files_warning(crate::executor::open_files_limit(), plugins)
    {
        tracing::warn!("{warning}");
    }
}

/// The most files the wasm plugins of `workers` files scanned at once may hold open, each at
/// its `max_open_files`: a workflow runs its scanners at once, then its post actions one by
/// one.
fn open_files_of_wasm_plugins(
    inventory: &crate::plugin::inventory::Inventory,
    workers: usize,
) -> u64 {
    let cap = |p: &crate::executor::Plugin| {
        (p.runtime() == crate::plugin::RuntimeKind::Wasm)
            .then(|| u64::from(p.spec().limits.max_open_files))
    };
    let per_file = inventory
        .workflows()
        .map(|w| {
            let scanners: u64 = w.scanners.iter().filter_map(|p| cap(p)).sum();
            let post_action = w.post_actions.iter().filter_map(|p| cap(p)).max();
            scanners.max(post_action.unwrap_or(0))
        })
        .max()
        .unwrap_or(0);
    per_file.saturating_mul(workers as u64)
}

/// Delete results, jobs and files older than `retention`, at start and then every
/// `retention / 4` (at least a minute, at most an hour).
async fn sweeper(state: Arc<AppState>, retention: Duration) {
    let period = (retention / 4).clamp(Duration::from_secs(60), Duration::from_secs(3600));
    loop {
        let before = now_ms() - retention.as_millis() as i64;
        match state.store.sweep(before).await {
            Ok(ids) if !ids.is_empty() => {
                state.jobs.forget(&ids);
                let files = state.store.files.clone();
                let n = ids.len();
                let _ = tokio::task::spawn_blocking(move || {
                    for id in ids {
                        if let Err(e) = files.remove(&id) {
                            tracing::error!(data_id = %id, error = %e, "cannot delete an expired file");
                        }
                    }
                })
                .await;
                tracing::info!(results = n, "expired results and files deleted");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
        tokio::time::sleep(period).await;
    }
}

/// A server listening on a socket, running in the background.
pub struct RunningServer {
    /// The address it listens on (the actual port when `:0` was asked).
    pub addr: SocketAddr,
    server: Server,
    stop_http: oneshot::Sender<()>,
    http: JoinHandle<()>,
}

impl RunningServer {
    /// The shared state.
    pub fn state(&self) -> &Arc<AppState> {
        self.server.state()
    }

    /// Graceful shutdown: stop accepting connections and submissions, let scans in flight
    /// finish for up to `shutdown_grace_seconds`, then return.
    pub async fn shutdown(self) {
        let grace = self.server.state.settings.shutdown_grace;
        let deadline = tokio::time::Instant::now() + grace;
        tracing::info!(grace_s = grace.as_secs(), "shutting down");
        self.server.state.accepting.store(false, Ordering::SeqCst);
        let _ = self.stop_http.send(());
        self.server.stop(deadline).await;
        let mut http = self.http;
        if tokio::time::timeout_at(deadline + Duration::from_secs(1), &mut http)
            .await
            .is_err()
        {
            http.abort();
        }
        tracing::info!("stopped");
    }
}

/// Serve `app` over HTTP/1.1 on `listener` until `stop` fires, then let each open connection
/// finish the request it is in and return once all are closed. What `axum::serve` does, plus
/// hyper's header read timeout, which `axum::serve` leaves off: a client that does not send a
/// request's headers within `header_timeout` (an idle keep-alive connection included) is
/// disconnected, so connections that never finish a request cannot pile up; and at most
/// `max_connections` are served at once (the next is accepted when one closes), so that clients
/// cannot take every file descriptor the server has.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    max_connections: usize,
    stop: oneshot::Receiver<()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    // `closing` tells the connections to finish; each holds a clone of `alive` until it ends.
    let (closing_tx, closing) = watch::channel(());
    let (alive_tx, alive) = watch::channel(());
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut stop = std::pin::pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let (mut closing, alive) = (closing.clone(), alive.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = closing.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(alive);
        });
    }
    drop(listener);
    let _ = closing_tx.send(());
    drop(alive);
    alive_tx.closed().await;
}

/// Start a server (see [`Server::start`]) and listen on `[server] listen` (or
/// `options.listen`), in the background.
pub async fn spawn(options: ServeOptions) -> Result<RunningServer, ServeError> {
    let server = Server::start(options).await?;
    let addr = server.state.settings.listen;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(source) => {
            server.stop(tokio::time::Instant::now()).await;
            return Err(ServeError::Listen { addr, source });
        }
    };
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Listen { addr, source })?;
    let (stop_http, stopped) = oneshot::channel::<()>();
    let app = server.router();
    let settings = &server.state.settings;
    let http = tokio::spawn(serve_http(
        listener,
        app,
        settings.header_read_timeout,
        settings.max_connections,
        stopped,
    ));
    tracing::info!(%addr, "listening");
    Ok(RunningServer {
        addr,
        server,
        stop_http,
        http,
    })
}

/// `cordon serve`: run until SIGTERM or SIGINT, then shut down gracefully. Prints
/// `cordon: listening on http://<addr>` on stderr once the socket is open.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let running = spawn(options).await?;
    eprintln!("cordon: listening on http://{}", running.addr);
    wait_for_signal().await;
    eprintln!("cordon: shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadContext, parse};
    use crate::executor::{Executor, ExecutorConfig};
    use crate::plugin::inventory::Inventory;

    #[test]
    fn the_open_files_of_wasm_plugins_add_up_per_workflow_and_worker() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = LoadContext {
            base_dir: dir.path().to_owned(),
            data_dir: dir.path().to_owned(),
            builtin_scripts_dir: dir.path().join("builtin"),
            config_file: None,
        };
        crate::builtin::install_scripts(&ctx.builtin_scripts_dir).unwrap();
        let config = parse(
            r#"
            [[plugin]]
            name = "A"
            role = "scanner"
            runtime = "wasm"
            module = "builtin:eicar"
            max_open_files = 100

            [[plugin]]
            name = "B"
            role = "scanner"
            runtime = "wasm"
            module = "builtin:eicar"
            max_open_files = 50

            [[plugin]]
            name = "Native"
            role = "scanner"
            runtime = "process"
            command = "builtin:exec-detector.sh"
            max_open_files = 5000

            [[plugin]]
            name = "After"
            role = "post_action"
            runtime = "wasm"
            module = "builtin:eicar"
            max_open_files = 120

            [[workflow]]
            name = "Both"
            scanners = ["A", "B", "Native"]
            post_actions = ["After"]

            [[workflow]]
            name = "One"
            scanners = ["B"]
            "#,
            "test.toml",
            &ctx,
        )
        .unwrap();
        let executor = Executor::new(&ExecutorConfig::under(dir.path())).unwrap();
        let inventory = Inventory::load(&config, &executor, None).unwrap();
        // "Both" runs A and B at once (150), then After alone (120); the process plugin holds
        // no descriptor of the server's. Three files at once: 450.
        assert_eq!(open_files_of_wasm_plugins(&inventory, 3), 450);
        assert_eq!(open_files_of_wasm_plugins(&inventory, 1), 150);
    }
}
