//! Helpers for the server tests: a server started in-process on a loopback port with a
//! configuration written for the test, an HTTP client, plugins of each runtime built from
//! source (WAT modules, shell scripts, a loopback HTTP endpoint), and polling with generous
//! deadlines (never a timing assertion).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use cordon::server::{RunningServer, ServeOptions};
use serde_json::Value;

/// How long a test waits for a scan to finish before failing: generous, so that a slow
/// machine never fails a test.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// A server running in this process, with its own temporary data directory.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub running: Option<RunningServer>,
    pub base: String,
    pub client: reqwest::Client,
}

/// The clean verdict every test scanner prints.
pub const CLEAN: &str = r#"{"def_time": 1700000000000, "scan_result_i": 0, "threat_found": ""}"#;
/// An infected verdict.
pub const INFECTED: &str =
    r#"{"def_time": 1700000000000, "scan_result_i": 1, "threat_found": "Test.Evil"}"#;

impl TestServer {
    /// Start a server in `dir` (which may hold the scripts and modules the configuration
    /// uses) with `config` (TOML) written to `<dir>/cordon.toml`; `{dir}` in the text stands
    /// for the directory. Data goes to `<dir>/data`.
    pub async fn start_in(dir: tempfile::TempDir, config: &str) -> TestServer {
        let text = config.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(dir.path().join("cordon.toml"), text).expect("write config");
        let running = spawn(dir.path())
            .await
            .unwrap_or_else(|e| panic!("server starts: {e}"));
        let base = format!("http://{}", running.addr);
        TestServer {
            dir,
            running: Some(running),
            base,
            client: client(),
        }
    }

    /// Shut down gracefully and start again on the same data directory and configuration.
    pub async fn restart(mut self) -> TestServer {
        self.running.take().expect("running").shutdown().await;
        let running = spawn(self.dir.path())
            .await
            .unwrap_or_else(|e| panic!("server restarts: {e}"));
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let resp = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET /metrics");
        resp.text().await.unwrap()
    }

    /// `POST /file` with `body` and `headers`.
    pub async fn submit(&self, body: &[u8], headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.client.post(self.url("/file")).body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("POST /file")
    }

    /// Submit and return the data id; panics unless the answer is 200 `{"data_id"}`.
    pub async fn submit_ok(&self, body: &[u8], headers: &[(&str, &str)]) -> String {
        let resp = self.submit(body, headers).await;
        let status = resp.status();
        let json: Value = resp.json().await.expect("JSON answer");
        assert_eq!(status, 200, "{json}");
        let id = json["data_id"].as_str().expect("data_id").to_owned();
        assert_eq!(id.len(), 32, "{json}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        id
    }

    /// `GET path` with an optional key; status and JSON body.
    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(self.url(path));
        if let Some(k) = key {
            req = req.header("apikey", k);
        }
        let resp = req.send().await.expect("GET");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Send `method path` with an optional key and JSON body; status and JSON answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(k) = key {
            req = req.header("apikey", k);
        }
        if let Some(b) = body {
            req = req
                .body(b.to_string())
                .header("content-type", "application/json");
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Poll `GET /file/{id}` until both progress fields are 100; the final result.
    pub async fn wait_final(&self, id: &str, key: Option<&str>) -> Value {
        wait_final(&self.client, &self.base, id, key).await
    }
}

/// Poll `<base>/file/{id}` until the result is final.
pub async fn wait_final(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    key: Option<&str>,
) -> Value {
    let started = Instant::now();
    loop {
        let mut req = client.get(format!("{base}/file/{id}"));
        if let Some(k) = key {
            req = req.header("apikey", k);
        }
        if let Ok(resp) = req.send().await {
            let v: Value = resp.json().await.expect("JSON result");
            assert_ne!(v[id], "Not Found", "{id} is unknown");
            let p = v["process_info"]["progress_percentage"].as_u64();
            let s = v["scan_results"]["progress_percentage"].as_u64();
            if p == Some(100) || s == Some(100) {
                assert_eq!(p, s, "both progress fields reach 100 together: {v}");
                return v;
            }
            assert_eq!(
                v["scan_results"]["scan_all_result_i"], 255,
                "in progress: {v}"
            );
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{id} did not finish within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until `check` is true, polling; panics after [`DEADLINE`] with `what`.
pub async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn spawn(dir: &Path) -> Result<RunningServer, cordon::server::ServeError> {
    cordon::server::spawn(ServeOptions {
        config: Some(dir.join("cordon.toml")),
        data_dir: dir.join("data"),
        listen: Some("127.0.0.1:0".parse().unwrap()),
    })
    .await
}

/// An HTTP client for tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A WASI command module that prints `stdout` and exits 0.
pub fn wasm_printing(stdout: &str) -> Vec<u8> {
    let escaped: String = stdout.bytes().map(|b| format!("\\{b:02x}")).collect();
    let wat = format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "{escaped}")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const {len}))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        len = stdout.len()
    );
    wat::parse_str(wat).expect("valid WAT")
}

/// Write an executable shell script `name` into `dir`; its path.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// A process scanner: Infected when the file holds `EVIL`, clean otherwise; sleeps
/// `sleep_s` seconds first, and touches `<marker_dir>/started-<pid>` when it starts (when a
/// marker directory is given as its first argument).
pub fn scanner_script(dir: &Path, name: &str, sleep_s: u32) -> PathBuf {
    write_script(
        dir,
        name,
        &format!(
            r#"for f; do :; done
if [ "$#" -gt 1 ]; then : > "$1/started-$$"; fi
sleep {sleep_s}
if grep -q EVIL "$f"; then
  printf '%s' '{INFECTED}'
else
  printf '%s' '{CLEAN}'
fi"#
        ),
    )
}

/// What a loopback HTTP endpoint received.
#[derive(Clone, Default)]
pub struct Received {
    pub bodies: Arc<Mutex<Vec<Value>>>,
}

impl Received {
    pub fn count(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// A loopback HTTP endpoint: every POST is recorded, then answered with the next status of
/// `statuses` (the last one repeats) and `body`.
pub async fn endpoint(statuses: Vec<u16>, body: &'static str) -> (SocketAddr, Received) {
    #[derive(Clone)]
    struct S {
        received: Received,
        statuses: Arc<Vec<u16>>,
        body: &'static str,
    }
    async fn handle(State(s): State<S>, bytes: Bytes) -> (StatusCode, &'static str) {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let n = {
            let mut all = s.received.bodies.lock().unwrap();
            all.push(v);
            all.len()
        };
        let status = s.statuses[(n - 1).min(s.statuses.len() - 1)];
        (StatusCode::from_u16(status).unwrap(), s.body)
    }
    let received = Received::default();
    let state = S {
        received: received.clone(),
        statuses: Arc::new(statuses),
        body,
    };
    let app = axum::Router::new()
        .route("/{*path}", post(handle))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// Assert that `v[field]` exists and has the JSON type `ty` (`string`, `number`, `integer`,
/// `bool`, `array`, `object`).
pub fn assert_type(v: &Value, path: &str, ty: &str) {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur
            .get(part)
            .unwrap_or_else(|| panic!("field `{path}` is missing from {v}"));
    }
    let ok = match ty {
        "string" => cur.is_string(),
        "number" => cur.is_number(),
        "integer" => cur.is_i64() || cur.is_u64(),
        "bool" => cur.is_boolean(),
        "array" => cur.is_array(),
        "object" => cur.is_object(),
        _ => unreachable!(),
    };
    assert!(ok, "field `{path}` must be a {ty}, is {cur}");
}

/// A plain TCP connection to the server at `base` (`http://addr`).
pub async fn connect(base: &str) -> tokio::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr).await.expect("connect")
}

/// Send `request` as is to the server at `base` (`http://addr`) and read the whole answer.
pub async fn raw_http(base: &str, request: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = connect(base).await;
    stream.write_all(request.as_bytes()).await.expect("write");
    read_until_closed(stream, Duration::from_secs(30))
        .await
        .unwrap_or_else(|partial| partial)
}

/// What the server sends on `stream` until it closes the connection (or the connection
/// fails); `Err` with what came so far if it is still open after `limit`.
pub async fn read_until_closed(
    mut stream: impl tokio::io::AsyncRead + Unpin,
    limit: Duration,
) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(limit, stream.read_to_end(&mut answer))
        .await
        .is_ok();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    if closed { Ok(answer) } else { Err(answer) }
}
