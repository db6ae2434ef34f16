//! The webhook runtime: POST the current result to an HTTP endpoint.
//!
//! At load: the URL is parsed and checked (http or https, a host, no credentials).
//! Per invocation: one `POST` with `Content-Type: application/json` and the body
//! `{"processing_result": <current result>, "resource_path": "<absolute sample path>"}`.
//!
//! Guarantees, whatever the endpoint does:
//! - the whole exchange (connect, TLS, request, response head and body) ends within `timeout`;
//!   past it the request is dropped and the outcome is `timeout`;
//! - at most `max_stdout_bytes` of response body are read; one byte more stops reading and the
//!   outcome is `output_too_large`;
//! - redirects are not followed and no proxy is used: Cordon talks to the configured host
//!   only, and a 3xx is just a status;
//! - the HTTP status, whatever it is, is the outcome's `exit`; a refused or broken connection is
//!   a `transport` failure, never a host error or a panic.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;

use super::{ExecutorError, Failure, Invocation, Outcome, Stream};
use crate::plugin::Limits;

/// The most a TCP connection to an endpoint may take to establish (the invocation's own
/// `timeout` still bounds the whole exchange when it is shorter).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` of every webhook request: `cordon/<version>`.
pub const USER_AGENT: &str = concat!("cordon/", env!("CARGO_PKG_VERSION"));

/// Sends webhook requests.
pub struct WebhookRuntime {
    client: reqwest::Client,
}

/// A checked endpoint.
pub struct WebhookPlugin {
    /// An http or https URL with a host and no credentials.
    url: reqwest::Url,
}

impl WebhookRuntime {
    /// One HTTP client for all webhooks: no redirects, no proxy (environment variables
    /// included), [`CONNECT_TIMEOUT`], [`USER_AGENT`], TLS by rustls with the ring provider
    /// (installed as the process default unless one is already installed) and the
    /// platform's certificate verifier.
    pub(super) fn new() -> Result<WebhookRuntime, ExecutorError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Fails only when another thread installed one first, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| ExecutorError::Http(error_chain(&e)))?;
        Ok(WebhookRuntime { client })
    }

    /// Check `url`: it parses, its scheme is http or https, it has a host, and it holds no
    /// user name or password (they would end up in logs and results). The error says what to
    /// fix and never repeats a password.
    pub(super) fn prepare(&self, url: &str) -> Result<WebhookPlugin, String> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| format!("url `{url}` is not valid: {e}"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            let mut shown = parsed.clone();
            let _ = shown.set_username("");
            let _ = shown.set_password(None);
            return Err(format!(
                "url `{shown}`: a user name or password in the URL is not supported; remove it"
            ));
        }
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("url `{url}`: only http and https are supported"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("url `{url}`: a host is required"));
        }
        Ok(WebhookPlugin { url: parsed })
    }

    /// POST the invocation to the endpoint once. Never fails and never panics: see the module
    /// documentation for what is guaranteed. `exit` is the HTTP status (kept with an
    /// `output_too_large` failure; `None` after a timeout or a transport error), `stdout` the
    /// response body (what arrived, at most `max_stdout_bytes`), `stderr` is empty, `duration`
    /// the wall time of the whole exchange, `peak_memory_bytes` is `None`.
    pub(super) async fn invoke(
        &self,
        plugin: &WebhookPlugin,
        limits: &Limits,
        invocation: Invocation<'_>,
    ) -> Outcome {
        let started = Instant::now();
        let body = request_body(invocation.stdin, &invocation.sample.path());
        let cap = limits.max_stdout_bytes;
        let mut status: Option<u16> = None;
        let mut received = Vec::new();
        let exchange = async {
            let mut response = self
                .client
                .post(plugin.url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await?;
            status = Some(response.status().as_u16());
            while let Some(chunk) = response.chunk().await? {
                let room = cap.saturating_sub(received.len());
                if chunk.len() > room {
                    received.extend_from_slice(&chunk[..room]);
                    return Ok(false);
                }
                received.extend_from_slice(&chunk);
            }
            Ok::<bool, reqwest::Error>(true)
        };
        let result = tokio::time::timeout(limits.timeout, exchange).await;

        let mut outcome = Outcome {
            duration: started.elapsed(),
            stdout: received,
            ..Outcome::default()
        };
        match result {
            Err(_elapsed) => {
                outcome.failure = Some(Failure::Timeout {
                    limit: limits.timeout,
                });
            }
            Ok(Err(e)) => {
                tracing::debug!(url = %plugin.url, error = %error_chain(&e), "webhook transport error");
                outcome.failure = Some(Failure::Transport {
                    message: error_chain(&e),
                });
            }
            Ok(Ok(complete)) => {
                outcome.exit = status.map(i64::from);
                if !complete {
                    outcome.failure = Some(Failure::OutputTooLarge {
                        stream: Stream::Stdout,
                        limit_bytes: cap,
                    });
                }
            }
        }
        outcome
    }
}

/// `{"processing_result":<stdin>,"resource_path":"<path>"}` without re-parsing `stdin`: it is
/// already one JSON object, followed by a newline that is dropped here. An empty `stdin` (not
/// something the host sends) becomes `null`, so that the body is always JSON.
fn request_body(stdin: &[u8], path: &Path) -> Vec<u8> {
    let result = stdin.trim_ascii();
    let result: &[u8] = if result.is_empty() { b"null" } else { result };
    let path = serde_json::Value::String(path.to_string_lossy().into_owned()).to_string();
    let mut body = Vec::with_capacity(result.len() + path.len() + 42);
    body.extend_from_slice(b"{\"processing_result\":");
    body.extend_from_slice(result);
    body.extend_from_slice(b",\"resource_path\":");
    body.extend_from_slice(path.as_bytes());
    body.push(b'}');
    body
}

/// An error and its sources, on one line, without repeating a message its source already
/// holds.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::sample::Sample;

    fn limits(timeout: Duration) -> Limits {
        Limits {
            timeout,
            max_memory_bytes: 1 << 30,
            max_stdout_bytes: 1 << 20,
            max_stderr_bytes: 1 << 20,
            ..Limits::default()
        }
    }

    /// A request as the test server saw it.
    struct Request {
        head: String,
        body: Vec<u8>,
    }

    /// Read one HTTP/1.1 request (head, then a `Content-Length` body).
    async fn read_request(stream: &mut TcpStream) -> Request {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the request head ended");
            data.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while data.len() < head_end + length {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the request body ended");
            data.extend_from_slice(&buf[..n]);
        }
        Request {
            head,
            body: data[head_end..head_end + length].to_vec(),
        }
    }

    fn response(status: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    /// Serve one connection: answer with `reply` and hand back the request.
    async fn serve_once(reply: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<Request>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let request = read_request(&mut stream).await;
            // The client may hang up early (a body over its cap): not the server's problem.
            let _ = stream.write_all(&reply).await;
            let _ = stream.shutdown().await;
            request
        });
        (addr, task)
    }

    struct Fixture {
        _root: tempfile::TempDir,
        runtime: WebhookRuntime,
        sample: Sample,
    }

    impl Fixture {
        fn new() -> Fixture {
            let root = tempfile::tempdir().unwrap();
            let sample = Sample::from_bytes(b"bytes", "sample \"q\".txt", root.path()).unwrap();
            Fixture {
                runtime: WebhookRuntime::new().unwrap(),
                _root: root,
                sample,
            }
        }

        async fn run(&self, url: &str, limits: &Limits, stdin: &[u8]) -> Outcome {
            let plugin = self.runtime.prepare(url).unwrap();
            self.runtime
                .invoke(
                    &plugin,
                    limits,
                    Invocation {
                        stdin,
                        sample: &self.sample,
                    },
                )
                .await
        }
    }

    const STDIN: &[u8] = b"{\"data_id\":\"abc\",\"scan_results\":{\"scan_all_result_i\":0}}\n";

    #[tokio::test]
    async fn posts_the_contract_body_and_captures_a_200() {
        let f = Fixture::new();
        let verdict = br#"{"def_time":1,"scan_result_i":0,"threat_found":""}"#;
        let (addr, server) = serve_once(response("200 OK", verdict)).await;
        let o = f
            .run(
                &format!("http://{addr}/hook?x=1"),
                &limits(Duration::from_secs(10)),
                STDIN,
            )
            .await;
        assert_eq!(o.failure, None);
        assert_eq!(o.exit, Some(200));
        assert_eq!(o.stdout, verdict);
        assert!(o.stderr.is_empty());

        let request = server.await.unwrap();
        assert!(
            request.head.starts_with("POST /hook?x=1 HTTP/1.1\r\n"),
            "{}",
            request.head
        );
        let head = request.head.to_ascii_lowercase();
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!(
            "\r\nuser-agent: cordon/{}\r\n",
            env!("CARGO_PKG_VERSION")
        )));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let expected: serde_json::Value = serde_json::from_slice(STDIN).unwrap();
        assert_eq!(body["processing_result"], expected);
        assert_eq!(
            body["resource_path"].as_str().unwrap(),
            f.sample.path().to_str().unwrap()
        );
        assert_eq!(body.as_object().unwrap().len(), 2);
    }

    #[test]
    fn the_body_escapes_the_path() {
        let body = request_body(b"{\"a\":1}\n", Path::new("/tmp/x \"y\"\\z.txt"));
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"processing_result":{"a":1},"resource_path":"/tmp/x \"y\"\\z.txt"}"#
        );
        let body: serde_json::Value =
            serde_json::from_slice(&request_body(b"", Path::new("/a"))).unwrap();
        assert!(body["processing_result"].is_null());
    }

    #[tokio::test]
    async fn a_non_200_status_is_the_exit() {
        let f = Fixture::new();
        let (addr, _server) = serve_once(response("503 Service Unavailable", b"busy")).await;
        let o = f
            .run(
                &format!("http://{addr}/"),
                &limits(Duration::from_secs(10)),
                STDIN,
            )
            .await;
        assert_eq!(o.failure, None);
        assert_eq!(o.exit, Some(503));
        assert_eq!(o.stdout, b"busy");
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let f = Fixture::new();
        let reply = b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec();
        let (addr, _server) = serve_once(reply).await;
        let o = f
            .run(
                &format!("http://{addr}/"),
                &limits(Duration::from_secs(10)),
                STDIN,
            )
            .await;
        assert_eq!(o.failure, None);
        assert_eq!(o.exit, Some(302));
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_output_too_large() {
        let f = Fixture::new();
        let (addr, _server) = serve_once(response("200 OK", &vec![b'a'; 200_000])).await;
        let mut l = limits(Duration::from_secs(10));
        l.max_stdout_bytes = 1000;
        let o = f.run(&format!("http://{addr}/"), &l, STDIN).await;
        assert_eq!(
            o.failure,
            Some(Failure::OutputTooLarge {
                stream: Stream::Stdout,
                limit_bytes: 1000
            })
        );
        assert_eq!(o.stdout.len(), 1000);
        assert_eq!(o.exit, Some(200));
    }

    #[tokio::test]
    async fn a_body_exactly_at_the_cap_is_accepted() {
        let f = Fixture::new();
        let (addr, _server) = serve_once(response("200 OK", &[b'a'; 1000])).await;
        let mut l = limits(Duration::from_secs(10));
        l.max_stdout_bytes = 1000;
        let o = f.run(&format!("http://{addr}/"), &l, STDIN).await;
        assert_eq!(o.failure, None);
        assert_eq!(o.stdout.len(), 1000);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let f = Fixture::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = read_request(&mut stream).await;
            // Hold the connection without answering.
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(stream);
        });
        let timeout = Duration::from_millis(500);
        let started = Instant::now();
        let o = f
            .run(&format!("http://{addr}/"), &limits(timeout), STDIN)
            .await;
        let elapsed = started.elapsed();
        server.abort();
        assert_eq!(o.failure, Some(Failure::Timeout { limit: timeout }));
        assert_eq!(o.exit, None);
        assert!(elapsed < timeout + Duration::from_secs(2), "{elapsed:?}");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_transport_failure() {
        let f = Fixture::new();
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let o = f
            .run(
                &format!("http://{addr}/"),
                &limits(Duration::from_secs(10)),
                STDIN,
            )
            .await;
        match &o.failure {
            Some(Failure::Transport { message }) => {
                assert!(
                    message.to_ascii_lowercase().contains("refused"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(o.exit, None);
    }

    #[tokio::test]
    async fn https_to_a_plain_http_server_is_a_transport_failure() {
        // Proves TLS is usable (a crypto provider is installed): the handshake is attempted
        // and fails cleanly instead of panicking.
        let f = Fixture::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            // Answer the ClientHello with plain HTTP: not a TLS record.
            let _ = stream.write_all(&response("400 Bad Request", b"")).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let o = f
            .run(
                &format!("https://{addr}/"),
                &limits(Duration::from_secs(5)),
                STDIN,
            )
            .await;
        server.abort();
        assert!(
            matches!(o.failure, Some(Failure::Transport { .. })),
            "{o:?}"
        );
        assert_eq!(o.exit, None);
    }

    #[test]
    fn prepare_checks_the_url() {
        let runtime = WebhookRuntime::new().unwrap();
        let e = runtime.prepare("ftp://x").err().unwrap();
        assert_eq!(e, "url `ftp://x`: only http and https are supported");
        let e = runtime
            .prepare("https://user:hunter2@example.com/x")
            .err()
            .unwrap();
        assert!(e.contains("user name or password"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(runtime.prepare("http://user@example.com/").is_err());
        assert!(runtime.prepare("not a url").is_err());
        assert!(runtime.prepare("file:///etc/passwd").is_err());
        assert!(runtime.prepare("unix:/run/x.sock").is_err());
        let ok = runtime
            .prepare("https://scanner.example.com:8443/scan")
            .unwrap();
        assert_eq!(ok.url.host_str(), Some("scanner.example.com"));
        assert!(runtime.prepare("http://127.0.0.1:9000").is_ok());
    }
}
