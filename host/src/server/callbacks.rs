//! Callback delivery: when a file that came with a `callbackurl` is done, its final result is
//! POSTed there (`Content-Type: application/json`, the same JSON as `GET /file/{data_id}`).
//!
//! Guarantees:
//! - the URL is checked against `callback_allowlist` when the file is submitted and again
//!   before every attempt (the configuration may have changed across a restart);
//! - no redirect is followed and no proxy is used (as for webhook plugins), so an allowed URL
//!   cannot bounce the request elsewhere;
//! - each attempt is bounded by `callback_timeout_ms`; at most `callback_attempts` are made,
//!   `callback_backoff_ms` apart, doubling; any 2xx answer is a delivery;
//! - every attempt is recorded in the database (`GET /file/webhook/{data_id}`), and a delivery
//!   that a restart interrupted resumes at the next start with the attempts left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::AppState;
use crate::executor::webhook::USER_AGENT;
use crate::store::{CallbackAttempt, now_ms};

/// The HTTP client for callbacks: no redirects, no proxy, `connect_timeout` and overall
/// timeout of `timeout`.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| e.to_string())
}

/// Deliver `data_id`'s final result to `url`, `done` attempts having been made already.
/// Never fails: the outcome is recorded.
pub async fn deliver(state: Arc<AppState>, data_id: String, url: String, done: u32) {
    let span = tracing::info_span!("callback", data_id = %data_id);
    async move {
        let settings = &state.settings;
        let body = match state.store.result(&data_id).await {
            Ok(Some(r)) => r.json,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the result to deliver; will retry at the next start");
                return;
            }
        };
        let mut attempt = done;
        while attempt < settings.callback_attempts {
            if attempt > 0 {
                let wait = settings
                    .callback_backoff
                    .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
                tokio::time::sleep(wait).await;
            }
            attempt += 1;
            let started = Instant::now();
            let at_ms = now_ms();
            let (status, error) = match settings.callback_allowed(&url) {
                Err(_) => (None, "the URL is not allowed by callback_allowlist".to_owned()),
                Ok(parsed) => {
                    let sent = state
                        .callback_client
                        .post(parsed)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(mut resp) => {
                            let status = resp.status();
                            // Read at most 64 KiB of the answer, then drop the connection.
                            let mut read = 0usize;
                            while let Ok(Some(chunk)) = resp.chunk().await {
                                read += chunk.len();
                                if read > 64 << 10 {
                                    break;
                                }
                            }
                            if status.is_success() {
                                (Some(status.as_u16()), String::new())
                            } else {
                                (Some(status.as_u16()), format!("answered HTTP {status}"))
                            }
                        }
                        Err(e) => (None, error_chain(&e)),
                    }
                }
            };
            let delivered = error.is_empty();
            let record = CallbackAttempt {
                attempt,
                at_ms,
                status,
                error: error.clone(),
                duration_ms: started.elapsed().as_millis() as u64,
            };
            if let Err(e) = state.store.record_callback_attempt(&data_id, record).await {
                tracing::error!(error = %e, "cannot record a callback attempt");
            }
            if delivered {
                state.metrics.callback("delivered");
                tracing::info!(attempt, status = status.unwrap_or(0), "callback delivered");
                set_state(&state, &data_id, "delivered").await;
                return;
            }
            let last = attempt >= settings.callback_attempts
                || error.starts_with("the URL is not allowed");
            state
                .metrics
                .callback(if last { "failed" } else { "retried" });
            tracing::warn!(attempt, reason = %error, last, "callback attempt failed");
            if last {
                break;
            }
        }
        set_state(&state, &data_id, "failed").await;
    }
    .instrument(span)
    .await
}

async fn set_state(state: &AppState, data_id: &str, value: &str) {
    if let Err(e) = state.store.set_callback_state(data_id, value).await {
        tracing::error!(error = %e, "cannot record the callback state");
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
