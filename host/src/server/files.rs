//! Files and results: `POST /file`, `GET /file/{data_id}` (also `/process/{data_id}`),
//! `POST /file/{data_id}/cancel`, `GET /file/webhook/{data_id}`, `GET /hash/{hash}`.
//!
//! `POST /file` takes the raw body and the headers of `metadefender-compat.md` section 4:
//!
//! | header | use |
//! |---|---|
//! | `filename` | URL-encoded UTF-8; the result's `display_name` (default: the data id) |
//! | `rule`, or its old alias `workflow` | URL-encoded; the workflow (default: the configured default) |
//! | `user_agent` | copied into `process_info.user_agent` |
//! | `metadata` | a JSON value (raw or URL-encoded), passed to every plugin in the stdin JSON |
//! | `callbackurl` | where to POST the final result; must match `callback_allowlist` |
//! | `archivepwd` | accepted and ignored (Cordon does not extract archives) |
//! | `filepath`, `downloadfrom` | refused with 400: Cordon scans only what is sent in the body |
//!
//! Checks, in order: key (403), headers (400; a callback URL not allowed: 403), rule (400),
//! `Content-Length` (411 when missing), empty body (422), size over the workflow's
//! `max_file_size_bytes` (400), room in the queue (503, before reading the body). The body is
//! streamed to disk as it arrives (never held in memory), hashed on the way, fsynced and
//! committed with its job row **before** the `{"data_id"}` answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use percent_encoding::percent_decode;
use serde_json::json;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, not_found};
use super::queue::placeholder;
use super::settings::CallbackRefusal;
use crate::result::iso_from_epoch_millis;
use crate::sample::sanitize_file_name;
use crate::store::files::{Content, Received, is_data_id};
use crate::store::{HashKind, JobRecord, JobState, now_ms};
use crate::workflow::Submission;

/// Longest `filename` accepted, in characters after decoding.
pub const MAX_FILENAME_CHARS: usize = 1024;
/// Longest `user_agent` kept, in bytes.
pub const MAX_USER_AGENT_BYTES: usize = 512;
/// Chunks of the body in flight between the connection and the disk writer.
const UPLOAD_CHUNKS_IN_FLIGHT: usize = 8;
/// Uploads up to this size are received and hashed in the request's own task: hashing them
/// (MD5, SHA-1, SHA-256) takes well under a millisecond, less than handing each chunk to a
/// blocking thread costs. Larger ones go through a blocking thread.
const RECEIVE_IN_TASK_MAX: u64 = 64 * 1024;

/// What the headers of `POST /file` ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitHeaders {
    /// Decoded `filename`.
    pub filename: Option<String>,
    /// Decoded `rule` (or `workflow`).
    pub rule: Option<String>,
    /// `user_agent`.
    pub user_agent: String,
    /// Parsed `metadata`.
    pub metadata: Option<serde_json::Value>,
    /// `callbackurl`, allowed.
    pub callback_url: Option<String>,
}

fn header_bytes<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get(name).map(HeaderValue::as_bytes)
}

/// Percent-decode a header into UTF-8 without control characters.
fn decoded(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let Some(raw) = header_bytes(headers, name) else {
        return Ok(None);
    };
    let text = percent_decode(raw).decode_utf8().map_err(|_| {
        ApiError::bad_request(format!("Invalid {name} header: not URL-encoded UTF-8"))
    })?;
    if text.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "Invalid {name} header: control characters are not allowed"
        )));
    }
    Ok(Some(text.trim().to_owned()).filter(|s| !s.is_empty()))
}

impl SubmitHeaders {
    /// Parse and check the headers; `state` gives the callback allowlist.
    pub fn parse(headers: &HeaderMap, state: &AppState) -> Result<SubmitHeaders, ApiError> {
        for (name, what) in [
            ("filepath", "scanning a file already on the server"),
            ("downloadfrom", "downloading the file from a URL"),
        ] {
            if headers.contains_key(name) {
                return Err(ApiError::bad_request(format!(
                    "The {name} header ({what}) is not supported; send the file in the request body"
                )));
            }
        }
        // A form upload's body is the file wrapped in the form's parts: scanned as it is, its
        // hashes and type would be the envelope's, and a hash blocklist would never match.
        // MetaDefender Core v4 does not take forms either; say what to send instead.
        let multipart = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("multipart/"));
        if multipart {
            return Err(ApiError::bad_request(
                "Multipart form uploads are not supported: send the file itself as the request \
                 body (curl --data-binary @file -H 'filename: <name>'), not as a form field",
            ));
        }
        let filename = decoded(headers, "filename")?;
        if let Some(f) = &filename
            && f.chars().count() > MAX_FILENAME_CHARS
        {
            return Err(ApiError::bad_request(format!(
                "Invalid filename header: longer than {MAX_FILENAME_CHARS} characters"
            )));
        }
        let rule = match decoded(headers, "rule")? {
            Some(r) => Some(r),
            None => decoded(headers, "workflow")?,
        };
        let user_agent = header_bytes(headers, "user_agent")
            .map(|b| {
                let mut s = String::from_utf8_lossy(b).into_owned();
                s.retain(|c| !c.is_control());
                if s.len() > MAX_USER_AGENT_BYTES {
                    let mut end = MAX_USER_AGENT_BYTES;
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.truncate(end);
                }
                s
            })
            .unwrap_or_default();
        let metadata = match header_bytes(headers, "metadata") {
            None => None,
            Some(raw) => {
                let parsed = serde_json::from_slice(raw).or_else(|_| {
                    let text = percent_decode(raw).decode_utf8().map_err(|_| ())?;
                    serde_json::from_str(&text).map_err(|_| ())
                });
                Some(parsed.map_err(|()| {
                    ApiError::bad_request(
                        "Invalid metadata header: it must be JSON (raw or URL-encoded)",
                    )
                })?)
            }
        };
        let callback_url = match header_bytes(headers, "callbackurl") {
            None => None,
            Some(raw) => {
                let text = std::str::from_utf8(raw)
                    .map_err(|_| ApiError::bad_request("Invalid callbackurl header: not a URL"))?;
                let text = text.trim();
                match state.settings.callback_allowed(text) {
                    Ok(url) => Some(url.to_string()),
                    Err(CallbackRefusal::Invalid) => {
                        return Err(ApiError::bad_request(
                            "Invalid callbackurl header: give an http or https URL with a host and no credentials",
                        ));
                    }
                    Err(CallbackRefusal::NotAllowed) => {
                        return Err(ApiError::forbidden(
                            "callbackurl is not allowed: the server's callback_allowlist does not list it",
                        ));
                    }
                }
            }
        };
        Ok(SubmitHeaders {
            filename,
            rule,
            user_agent,
            metadata,
            callback_url,
        })
    }
}

/// `POST /file`.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let refuse = |reason: &'static str, e: ApiError| {
        state.metrics.rejected(reason);
        tracing::info!(reason, err = %e.message, "submission refused");
        e
    };
    if !state.is_accepting() {
        return Err(refuse(
            "shutting_down",
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Server is shutting down. Try again later.",
            ),
        ));
    }
    let h = SubmitHeaders::parse(&headers, &state).map_err(|e| refuse("bad_request", e))?;
    let current = state.inventory.current();
    let workflow = current
        .inventory
        .workflow(h.rule.as_deref())
        .ok_or_else(|| {
            let names: Vec<_> = current
                .inventory
                .workflows()
                .map(|w| w.spec.name.clone())
                .collect();
            refuse(
                "unknown_rule",
                ApiError::bad_request(format!(
                    "Unknown rule {:?}; GET /file/rules lists them: {}",
                    h.rule.as_deref().unwrap_or_default(),
                    names.join(", ")
                )),
            )
        })?;
    drop(current);
    let length = match headers.get(header::CONTENT_LENGTH) {
        None => {
            return Err(refuse(
                "no_length",
                ApiError::new(StatusCode::LENGTH_REQUIRED, "Content-Length is required"),
            ));
        }
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                refuse(
                    "bad_request",
                    ApiError::bad_request("Invalid Content-Length header"),
                )
            })?,
    };
    if length == 0 {
        return Err(refuse(
            "empty",
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The file is empty: send it as the request body",
            ),
        ));
    }
    let max = workflow.spec.max_file_size_bytes;
    if length > max {
        return Err(refuse(
            "too_large",
            ApiError::bad_request(format!(
                "The file is {length} bytes; rule {:?} accepts at most {max} bytes",
                workflow.spec.name
            )),
        ));
    }
    let Some(reservation) = state.jobs.try_reserve() else {
        return Err(refuse("queue_full", ApiError::busy()));
    };
    let data_id = Submission::new_data_id();
    tracing::Span::current().record("data_id", data_id.as_str());
    let received_ms = now_ms();
    let upload = receive(&state, body, length).await?;
    let Received {
        fingerprint,
        content,
    } = upload;
    let display_name = h.filename.unwrap_or_else(|| data_id.clone());
    let file_name = sanitize_file_name(&display_name);
    let inline = match content {
        // Stored with the job, below.
        Content::Inline(bytes) => Some(Bytes::from(bytes)),
        Content::Staged(staged) => {
            let files = state.store.files.clone();
            let (id, name) = (data_id.clone(), file_name.clone());
            tokio::task::spawn_blocking(move || files.commit(staged, &id, &name))
                .await
                .expect("committing a file does not panic")
                .map_err(|e| ApiError::internal("cannot store the file", &e))?;
            None
        }
    };
    let record = JobRecord {
        data_id: data_id.clone(),
        owner: principal.owner.clone(),
        workflow: workflow.spec.name.clone(),
        display_name,
        file_name,
        user_agent: h.user_agent,
        username: principal.name.clone(),
        metadata: h.metadata,
        callback_url: h.callback_url,
        fingerprint,
        received_ms,
        state: JobState::Queued,
        cancel_requested: false,
        runs: 0,
    };
    let in_file_store = inline.is_none();
    if let Err(e) = state.store.insert_job(record.clone(), inline.clone()).await {
        if in_file_store {
            let _ = state.store.files.remove(&data_id);
        }
        if e.is_full() {
            state.metrics.rejected("no_space");
        }
        return Err(e.into());
    }
    state.metrics.queue_depth.inc();
    state.metrics.submitted(&workflow.spec.name);
    tracing::info!(
        workflow = %workflow.spec.name,
        size = record.fingerprint.size,
        sha256 = %record.fingerprint.sha256,
        "file accepted"
    );
    state.jobs.enqueue(reservation, record, inline, workflow);
    Ok(Json(json!({ "data_id": data_id })))
}

/// Stream `body` (announced as `length` bytes) to a new upload in the file store: a small one
/// in this task, a larger one on a blocking thread with a bounded number of chunks in flight.
async fn receive(state: &AppState, body: Body, length: u64) -> Result<Received, ApiError> {
    let files = state.store.files.clone();
    let mut pace = Pace::new(
        state.settings.upload_idle_timeout,
        state.settings.min_upload_rate,
    );
    let mut stream = body.into_data_stream();
    let (failure, written) = if length <= RECEIVE_IN_TASK_MAX {
        // Kept in memory (`length` is below `INLINE_MAX`): nothing here blocks.
        let mut upload = files
            .incoming(length)
            .map_err(|e| ApiError::internal("cannot receive the file", &e))?;
        let mut written = Ok(());
        let failure = loop {
            match next_chunk(&mut stream, length, &mut pace).await {
                Ok(Some(chunk)) => {
                    written = upload.write(&chunk);
                    if written.is_err() {
                        break None;
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        (failure, written.and_then(|()| upload.finish()))
    } else {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(UPLOAD_CHUNKS_IN_FLIGHT);
        let writer = tokio::task::spawn_blocking(move || {
            let mut upload = files.incoming(length)?;
            while let Some(chunk) = rx.blocking_recv() {
                upload.write(&chunk)?;
            }
            upload.finish()
        });
        let failure = loop {
            match next_chunk(&mut stream, length, &mut pace).await {
                Ok(Some(chunk)) => {
                    if tx.send(chunk).await.is_err() {
                        break None; // The writer failed; its error is reported below.
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        drop(tx);
        let written = writer.await.expect("the upload writer does not panic");
        (failure, written)
    };
    if let Some(f) = failure {
        state.metrics.rejected(f.reason);
        return Err(f.error);
    }
    let received = written.map_err(|e| {
        if crate::store::is_disk_full(&e) {
            state.metrics.rejected("no_space");
        }
        write_error(&e)
    })?;
    if received.fingerprint.size != length {
        state.metrics.rejected("bad_request");
        return Err(ApiError::bad_request(format!(
            "The body has {} bytes, but Content-Length announced {length}",
            received.fingerprint.size
        )));
    }
    Ok(received)
}

/// The answer when an upload cannot be written: a full disk (or a quota reached) is a state
/// of the server that passes, so 503 with what to do, and logged; anything else is an
/// internal error.
fn write_error(e: &std::io::Error) -> ApiError {
    if crate::store::is_disk_full(e) {
        tracing::error!(error = %e, "cannot write an upload: out of disk space");
        return ApiError::no_space();
    }
    ApiError::internal("cannot write the file", e)
}

/// How long an upload may take: no gap between two chunks longer than `idle`, and, with a
/// minimum rate, no more time spent waiting for chunks in all than `idle` plus one second
/// per `min_rate` bytes received. Only the waiting counts: the time the server takes with the
/// chunks it has (writing them to a busy disk) is its own, so a client is never refused as
/// slow because the server was. Not `Copy`: a copy would count its waits apart.
#[derive(Debug)]
struct Pace {
    idle: Duration,
    min_rate: Option<u64>,
    /// Bytes received so far.
    received: u64,
    /// Time spent waiting for chunks so far.
    waited: Duration,
}

impl Pace {
    fn new(idle: Duration, min_rate: Option<u64>) -> Pace {
        Pace {
            idle,
            min_rate,
            received: 0,
            waited: Duration::ZERO,
        }
    }

    /// How long to wait for the next chunk, and whether the wait ends at the minimum rate's
    /// deadline (rather than at the idle timeout).
    fn wait(&self) -> (Duration, bool) {
        let Some(rate) = self.min_rate else {
            return (self.idle, false);
        };
        let for_bytes = Duration::try_from_secs_f64(self.received as f64 / rate as f64);
        let allowed = self.idle.saturating_add(for_bytes.unwrap_or(Duration::MAX));
        let left = allowed.saturating_sub(self.waited);
        if left < self.idle {
            (left, true)
        } else {
            (self.idle, false)
        }
    }
}

/// Why an upload was refused, and the `reason` label of the refusals metric.
struct Refusal {
    error: ApiError,
    reason: &'static str,
}

/// The next chunk of an upload announced as `length` bytes (`None` at its end), counted in
/// `pace` with the time waited for it; an error once the body is longer than announced, the
/// connection fails, or the client is slower than `pace` allows. A chunk already waiting is
/// taken even past the deadline: only waiting for one is bounded.
async fn next_chunk(
    stream: &mut axum::body::BodyDataStream,
    length: u64,
    pace: &mut Pace,
) -> Result<Option<Bytes>, Refusal> {
    let (wait, at_rate_deadline) = pace.wait();
    let total = pace.received;
    let asked = Instant::now();
    let next = tokio::time::timeout(wait, stream.next()).await;
    pace.waited = pace.waited.saturating_add(asked.elapsed());
    let Ok(next) = next else {
        let (reason, message) = if at_rate_deadline {
            let message = format!(
                "The upload is too slow: {total} of {length} bytes in {} ms of waiting for \
                 them; the server expects at least {} bytes per second after the first {} ms \
                 (its min_upload_rate_bytes_per_s and upload_idle_timeout_ms)",
                pace.waited.as_millis(),
                pace.min_rate.unwrap_or_default(),
                pace.idle.as_millis()
            );
            ("too_slow", message)
        } else {
            let message = format!(
                "The upload stalled: no data for {} ms (the server's upload_idle_timeout_ms) \
                 after {total} of {length} bytes",
                pace.idle.as_millis()
            );
            ("stalled", message)
        };
        return Err(Refusal {
            error: ApiError::new(StatusCode::REQUEST_TIMEOUT, message),
            reason,
        });
    };
    let bad_request = |message: String| Refusal {
        error: ApiError::bad_request(message),
        reason: "bad_request",
    };
    match next {
        None => Ok(None),
        Some(Ok(chunk)) => {
            pace.received += chunk.len() as u64;
            if pace.received > length {
                return Err(bad_request("The body is longer than Content-Length".into()));
            }
            Ok(Some(chunk))
        }
        Some(Err(e)) => Err(bad_request(format!("The upload was interrupted: {e}"))),
    }
}

fn json_response(json: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// `GET /file/{data_id}` and `GET /process/{data_id}`: the result so far.
pub async fn result(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(data_id): Path<String>,
) -> Result<Response, ApiError> {
    tracing::Span::current().record("data_id", data_id.as_str());
    if !is_data_id(&data_id) {
        return Ok(not_found(&data_id));
    }
    if let Some((owner, result)) = state.jobs.snapshot(&data_id) {
        return Ok(if principal.may_see(&owner) {
            Json(result).into_response()
        } else {
            not_found(&data_id)
        });
    }
    if let Some((owner, json)) = state.jobs.recent(&data_id) {
        return Ok(if principal.may_see(&owner) {
            json_response(json.to_string())
        } else {
            not_found(&data_id)
        });
    }
    if let Some(stored) = state.store.result(&data_id).await? {
        return Ok(if principal.may_see(&stored.owner) {
            json_response(stored.json)
        } else {
            not_found(&data_id)
        });
    }
    // A job not done and not in memory: it is being re-queued at start-up.
    if let Some(job) = state.store.job(&data_id).await?
        && job.state != JobState::Done
        && principal.may_see(&job.owner)
    {
        let workflow = state
            .inventory
            .current()
            .inventory
            .workflow(Some(&job.workflow));
        return Ok(Json(placeholder(&job, workflow.as_deref())).into_response());
    }
    Ok(not_found(&data_id))
}

/// `POST /file/{data_id}/cancel`: `200 {"<data_id>": "cancelled"}` for a queued or running
/// scan (a queued one ends without running any plugin); 400 when it is already done.
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(data_id): Path<String>,
) -> Result<Response, ApiError> {
    tracing::Span::current().record("data_id", data_id.as_str());
    if !is_data_id(&data_id) {
        return Ok(not_found(&data_id));
    }
    if let Some(owner) = state.jobs.owner(&data_id) {
        if !principal.may_see(&owner) {
            return Ok(not_found(&data_id));
        }
        if state.jobs.is_finished(&data_id) {
            return Err(already_finished(&data_id));
        }
        state.store.request_cancel(&data_id).await?;
        state.jobs.cancel(&data_id);
        tracing::info!("cancel requested");
        let mut body = serde_json::Map::new();
        body.insert(data_id, "cancelled".into());
        return Ok(Json(serde_json::Value::Object(body)).into_response());
    }
    match state.store.result(&data_id).await? {
        Some(stored) if principal.may_see(&stored.owner) => Err(already_finished(&data_id)),
        _ => Ok(not_found(&data_id)),
    }
}

fn already_finished(data_id: &str) -> ApiError {
    ApiError::bad_request(format!("The scan of {data_id} is already finished"))
}

/// `GET /file/webhook/{data_id}`: the callback of a submission and every delivery attempt:
/// `{"data_id", "url", "status": "waiting" | "pending" | "delivered" | "failed",
/// "attempts": [{"attempt", "time", "http_status", "error", "duration_ms"}]}`.
pub async fn webhook_status(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(data_id): Path<String>,
) -> Result<Response, ApiError> {
    tracing::Span::current().record("data_id", data_id.as_str());
    if !is_data_id(&data_id) {
        return Ok(not_found(&data_id));
    }
    let Some(cb) = state.store.callback(&data_id).await? else {
        return Ok(not_found(&data_id));
    };
    if !principal.may_see(&cb.owner) {
        return Ok(not_found(&data_id));
    }
    let attempts: Vec<_> = cb
        .attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "time": iso_from_epoch_millis(a.at_ms).unwrap_or_default(),
                "http_status": a.status,
                "error": a.error,
                "duration_ms": a.duration_ms,
            })
        })
        .collect();
    Ok(Json(json!({
        "data_id": data_id,
        "url": cb.url,
        "status": cb.state.as_deref().unwrap_or("waiting"),
        "attempts": attempts,
    }))
    .into_response())
}

/// `GET /file/converted/{data_id}`: MetaDefender's download of a file's sanitized copy.
/// Cordon's workflows do not sanitize (no result lists `Sanitized` among the post actions
/// that ran, which is what clients check before they ask), so there is never a copy to give:
/// 404 with an `err` that says so for a file the caller may see, and 404 `Not Found` for any
/// other id. Never 200, which a client would take for the file's bytes.
pub async fn converted(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(data_id): Path<String>,
) -> Result<Response, ApiError> {
    tracing::Span::current().record("data_id", data_id.as_str());
    let job = if is_data_id(&data_id) {
        state.store.job(&data_id).await?
    } else {
        None
    };
    match job {
        Some(job) if principal.may_see(&job.owner) => Err(ApiError::not_found(format!(
            "No converted file for {data_id}: Cordon's workflows do not sanitize files, \
             the submitted file is the only one"
        ))),
        _ => Err(ApiError::not_found("Not Found")),
    }
}

/// `GET /hash/{md5|sha1|sha256}`: the most recent final result for that hash among those
/// the caller may see (of the rule in the optional `rule` header).
pub async fn by_hash(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    let Some(kind) = HashKind::of(&hash) else {
        return Err(ApiError::bad_request(
            "Invalid hash: give an md5, sha1 or sha256 in hexadecimal",
        ));
    };
    let rule = decoded(&headers, "rule")?;
    let owner = (!principal.sees_all).then_some(principal.owner.as_str());
    match state
        .store
        .result_by_hash(kind, &hash, owner, rule.as_deref())
        .await?
    {
        Some(stored) => Ok(json_response(stored.json)),
        None => Ok(not_found(&hash)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_or_database_answers_503_and_other_write_errors_500() {
        let full = std::io::Error::from_raw_os_error(28); // ENOSPC
        assert_eq!(write_error(&full).status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(write_error(&full).message.contains("out of disk space"));
        let quota = std::io::Error::from_raw_os_error(122); // EDQUOT
        assert_eq!(write_error(&quota).status, StatusCode::SERVICE_UNAVAILABLE);
        let io = std::io::Error::from_raw_os_error(5); // EIO
        assert_eq!(write_error(&io).status, StatusCode::INTERNAL_SERVER_ERROR);
        // The same for the database: full is 503, anything else 500.
        let commit = |full| crate::store::StoreError::Commit {
            path: "db".into(),
            message: "database or disk is full".into(),
            full,
        };
        let answer = ApiError::from(commit(true));
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            answer.message.contains("out of disk space"),
            "{}",
            answer.message
        );
        assert_eq!(
            ApiError::from(commit(false)).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn the_rate_budget_counts_only_the_time_waited() {
        let idle = Duration::from_secs(1);
        let mut pace = Pace::new(idle, Some(1000));
        // 1,000 bytes buy one second on top of the idle timeout: 2 s in all.
        pace.received = 1000;
        assert_eq!(pace.wait(), (idle, false));
        pace.waited = Duration::from_millis(800);
        assert_eq!(pace.wait(), (idle, false));
        pace.waited = Duration::from_millis(1500);
        assert_eq!(pace.wait(), (Duration::from_millis(500), true));
        pace.waited = Duration::from_secs(5);
        assert_eq!(pace.wait(), (Duration::ZERO, true));
        // Without a floor only the idle timeout applies, however long it waited.
        let mut no_floor = Pace::new(idle, None);
        no_floor.waited = Duration::from_secs(3600);
        assert_eq!(no_floor.wait(), (idle, false));
    }

    /// A body whose chunks the test sends when it likes.
    fn body() -> (
        tokio::sync::mpsc::UnboundedSender<Bytes>,
        axum::body::BodyDataStream,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
        });
        (tx, Body::from_stream(chunks).into_data_stream())
    }

    /// The server busy with what it has (here: asleep) for longer than the client's whole
    /// rate budget does not make the client too slow: it is refused only once the server has
    /// waited for it, and then for stalling, not for its rate.
    #[tokio::test]
    async fn time_the_server_spends_on_its_own_is_not_held_against_the_client() {
        let idle = Duration::from_millis(200);
        // 20 bytes at 20 bytes per second: a budget of idle + 1 s.
        let mut pace = Pace::new(idle, Some(20));
        let (tx, mut stream) = body();
        tx.send(Bytes::from_static(b"0123456789")).unwrap();
        let first = next_chunk(&mut stream, 100, &mut pace).await;
        assert_eq!(first.ok().flatten().as_deref(), Some(&b"0123456789"[..]));
        tx.send(Bytes::from_static(b"abcdefghij")).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let second = next_chunk(&mut stream, 100, &mut pace).await;
        assert_eq!(second.ok().flatten().as_deref(), Some(&b"abcdefghij"[..]));
        let asked = Instant::now();
        let Err(refusal) = next_chunk(&mut stream, 100, &mut pace).await else {
            panic!("a client that sends nothing more is refused");
        };
        assert_eq!(refusal.reason, "stalled", "{}", refusal.error.message);
        assert!(asked.elapsed() >= idle, "refused before the idle timeout");
        assert_eq!(pace.received, 20);
        drop(tx);
    }

    /// A client that trickles is refused at its rate's deadline, which its waits use up.
    #[tokio::test]
    async fn waiting_for_a_trickle_uses_up_the_budget() {
        let idle = Duration::from_millis(300);
        // 2 bytes at 10 bytes per second: a budget of idle + 0.2 s = 0.5 s of waiting.
        let mut pace = Pace::new(idle, Some(10));
        let (tx, mut stream) = body();
        let sender = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                if tx.send(Bytes::from_static(b"x")).is_err() {
                    return;
                }
            }
        });
        let refusal = loop {
            match next_chunk(&mut stream, 100, &mut pace).await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the body does not end"),
                Err(refusal) => break refusal,
            }
        };
        assert_eq!(refusal.reason, "too_slow", "{}", refusal.error.message);
        assert_eq!(refusal.error.status, StatusCode::REQUEST_TIMEOUT);
        assert!(
            pace.waited >= idle,
            "refused after waiting {:?}, before the idle timeout",
            pace.waited
        );
        sender.abort();
    }
}
