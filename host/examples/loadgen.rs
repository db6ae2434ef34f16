//! Load generator for figure 4 of `BENCHMARKS.md` (server end to end): submits `--files`
//! distinct files of `--size` bytes to a running `cordon serve` over HTTP, `--concurrency` at a
//! time, polls each one to its final result, and reports files per second, the p50 and p99
//! time from submission to final result, the server's resident memory (`VmRSS` of `--pid`)
//! sampled every second, what the server wrote to storage per file (`write_bytes` of
//! `/proc/PID/io`), the CPU time the server and the load generator used per file, and how
//! busy the server's database writer was (from its `/metrics`: the share of the run spent in
//! commits, the commits with and without an fsync and their mean time, writes per commit).
//! `scripts/bench-server` builds and runs it against a fresh server; run by hand:
//!
//! ```sh
//! cargo run --release -p cordon --example loadgen -- --url http://127.0.0.1:8008 \
//!     --files 20000 --concurrency 32 --pid "$(pidof cordon)"
//! ```
//!
//! Each of the `--concurrency` workers has one HTTP/1.1 connection, kept alive, and runs on one
//! thread with the others, so that the generator takes as little as it can of the cores the
//! server is measured on. A worker submits a file (`POST /file`), then polls
//! `GET /file/{data_id}` after 1 ms, and again at intervals that double up to `--max-poll-ms`,
//! until both progress fields are 100.
//! Every final result must be No Threat Detected (the files are clean); anything else is
//! counted as an error. It stops by itself after `--files` files (or `--max-seconds`).
//! Benchmarks are not tests: it exits 0 whatever the figures, and 1 only on errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use clap::Parser;
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// Load generator for `cordon serve` (figure 4 of BENCHMARKS.md).
#[derive(Parser)]
struct Args {
    /// The server, e.g. http://127.0.0.1:8008 (plain HTTP: the generator is meant for
    /// loopback).
    #[arg(long = "url", value_parser = parse_url)]
    authority: String,
    /// Files to submit in all.
    #[arg(long, default_value_t = 10_000)]
    files: u64,
    /// Files in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Size of each file in bytes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    size: u32,
    /// The server's pid, to sample its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Longest wait between two polls of one file, in milliseconds.
    #[arg(long = "max-poll-ms", default_value = "16", value_parser = parse_millis)]
    max_poll: Duration,
    /// Stop after this many seconds whatever the count.
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
    /// The workflow (`rule` header) to submit under; the server's default when absent.
    #[arg(long)]
    rule: Option<String>,
}

/// The `host:port` of an `http://host:port` URL.
fn parse_url(url: &str) -> Result<String, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url:?}: give an http:// URL (no TLS)"));
    }
    if !matches!(uri.path(), "" | "/") {
        return Err(format!("{url:?}: give the server's root, without a path"));
    }
    let authority = uri.authority().ok_or(format!("{url:?}: no host"))?;
    Ok(match authority.port() {
        Some(_) => authority.to_string(),
        None => format!("{}:80", authority.host()),
    })
}

fn parse_millis(ms: &str) -> Result<Duration, String> {
    ms.parse()
        .map(Duration::from_millis)
        .map_err(|e| format!("{ms:?}: {e}"))
}

/// The parts of a result the generator reads.
#[derive(Deserialize)]
struct Progress {
    process_info: ProcessInfo,
    scan_results: ScanResults,
}

#[derive(Deserialize)]
struct ProcessInfo {
    progress_percentage: u8,
}

#[derive(Deserialize)]
struct ScanResults {
    progress_percentage: u8,
    scan_all_result_i: u16,
}

#[derive(Deserialize)]
struct Submitted {
    data_id: String,
}

/// Distinct content for file `i`: a header naming it, then bytes of a simple generator.
fn content(i: u64, size: usize) -> Vec<u8> {
    let mut bytes = format!("cordon loadgen file {i}\n").into_bytes();
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while bytes.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// The number after `key` in `/proc/<pid>/<file>` (a file of `key: number` lines).
fn proc_number(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The resident set of `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    proc_number(pid, "status", "VmRSS:")
}

/// What `pid` has caused to be written to storage so far (`write_bytes` of `/proc/PID/io`:
/// the database's WAL, its checkpoints, files kept on disk).
fn written_bytes(pid: u32) -> Option<u64> {
    proc_number(pid, "io", "write_bytes:")
}

/// CPU time `pid` (a number or `self`) has used so far, user and system, in seconds (from
/// `/proc/PID/stat`, whose times are in clock ticks of 1/100 s on Linux).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' start at 3 (state).
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace().skip(11);
    let (user, system): (u64, u64) = (fields.next()?.parse().ok()?, fields.next()?.parse().ok()?);
    Some((user + system) as f64 / 100.0)
}

#[derive(Default)]
struct Totals {
    polls: AtomicU64,
    errors: AtomicU64,
    done: AtomicU64,
}

/// One HTTP/1.1 connection to the server, kept alive across a worker's requests and opened
/// again when the server closes it. Each worker has its own, so no request waits for a pool.
/// (A general client such as reqwest, with its pool, redirects and timeouts, cost 1.6 times
/// the CPU per file here, on the two cores the server needs.)
struct Connection {
    /// `host:port`.
    authority: String,
    /// The same, as every request's `Host` header.
    host: header::HeaderValue,
    sender: Option<SendRequest<Body>>,
}

impl Connection {
    /// `authority` as `parse_url` gives it: a URI's authority, which is a valid header value.
    fn new(authority: &str) -> Connection {
        Connection {
            authority: authority.to_owned(),
            host: header::HeaderValue::from_str(authority)
                .expect("a URI's authority is a valid header value"),
            sender: None,
        }
    }

    /// Sends `request` (a path, method, headers and body) and reads the whole answer.
    async fn send(&mut self, mut request: Request<Body>) -> Result<(StatusCode, Bytes), String> {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => {
                let stream = tokio::net::TcpStream::connect(&self.authority)
                    .await
                    .map_err(|e| format!("connect to {}: {e}", self.authority))?;
                stream
                    .set_nodelay(true)
                    .map_err(|e| format!("set_nodelay: {e}"))?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| format!("HTTP handshake: {e}"))?;
                tokio::spawn(connection);
                self.sender.insert(sender)
            }
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        request
            .headers_mut()
            .insert(header::HOST, self.host.clone());
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        })
        .await;
        match answer {
            Ok(Ok(answer)) => Ok(answer),
            // The connection is in an unknown state: open a new one for the next request.
            Ok(Err(e)) => {
                self.sender = None;
                Err(e.to_string())
            }
            Err(_) => {
                self.sender = None;
                Err(format!("no answer within {REQUEST_TIMEOUT:?}"))
            }
        }
    }
}

/// The database writer's figures in the server's `/metrics` (`cordon_store_commit_*`):
/// seconds spent and commits made, with and without an fsync, and writes committed.
#[derive(Clone, Copy, Default)]
struct WriterFigures {
    fsynced_seconds: f64,
    fsynced: f64,
    unsynced_seconds: f64,
    unsynced: f64,
    writes: f64,
}

impl WriterFigures {
    /// Read from the server's `/metrics`; `None` when it has none (an older build, or
    /// `/metrics` closed to this client).
    async fn fetch(connection: &mut Connection) -> Option<WriterFigures> {
        let request = Request::get("/metrics").body(Body::default()).ok()?;
        let (status, body) = connection.send(request).await.ok()?;
        if !status.is_success() {
            return None;
        }
        let text = std::str::from_utf8(&body).ok()?;
        let value = |series: &str| -> Option<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))?
                .parse()
                .ok()
        };
        let commits = |durability: &str, part: &str| {
            value(&format!(
                "cordon_store_commit_seconds_{part}{{durability=\"{durability}\"}}"
            ))
            .unwrap_or(0.0)
        };
        Some(WriterFigures {
            writes: value("cordon_store_commit_writes_sum")?,
            fsynced_seconds: commits("machine", "sum"),
            fsynced: commits("machine", "count"),
            unsynced_seconds: commits("process", "sum"),
            unsynced: commits("process", "count"),
        })
    }

    /// What happened between `self` and `later`, over `elapsed`, for people.
    fn describe(self, later: WriterFigures, elapsed: Duration) -> String {
        let (fsynced, unsynced) = (later.fsynced - self.fsynced, later.unsynced - self.unsynced);
        let (fsynced_s, unsynced_s) = (
            later.fsynced_seconds - self.fsynced_seconds,
            later.unsynced_seconds - self.unsynced_seconds,
        );
        let mean_ms = |s: f64, n: f64| if n > 0.0 { s * 1e3 / n } else { 0.0 };
        format!(
            "database writer: busy {:.0} % of the run; {fsynced:.0} commits with an fsync \
             ({:.2} ms each), {unsynced:.0} without ({:.2} ms each), {:.1} writes per commit",
            (fsynced_s + unsynced_s) * 100.0 / elapsed.as_secs_f64(),
            mean_ms(fsynced_s, fsynced),
            mean_ms(unsynced_s, unsynced),
            (later.writes - self.writes) / (fsynced + unsynced).max(1.0),
        )
    }
}

/// How long one request may take before the file counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn one_file(
    connection: &mut Connection,
    args: &Args,
    i: u64,
    totals: &Totals,
) -> Result<(Duration, Duration), String> {
    let started = Instant::now();
    let mut request = Request::post("/file").header("filename", format!("file{i}.bin"));
    if let Some(rule) = &args.rule {
        request = request.header("rule", rule);
    }
    let request = request
        .body(Body::from(content(i, args.size as usize)))
        .map_err(|e| format!("submit: {e}"))?;
    let (status, body) = connection
        .send(request)
        .await
        .map_err(|e| format!("submit: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "submit: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let submitted: Submitted =
        serde_json::from_slice(&body).map_err(|e| format!("submit answer: {e}"))?;
    let accepted = started.elapsed();
    let path = format!("/file/{}", submitted.data_id);
    let mut wait = Duration::from_millis(1);
    loop {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(args.max_poll);
        totals.polls.fetch_add(1, Ordering::Relaxed);
        let request = Request::get(path.as_str())
            .body(Body::empty())
            .map_err(|e| format!("poll: {e}"))?;
        let (status, body) = connection
            .send(request)
            .await
            .map_err(|e| format!("poll: {e}"))?;
        if !status.is_success() {
            return Err(format!("poll: HTTP {status}"));
        }
        let progress: Progress = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "poll answer: {e}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )
        })?;
        if progress.process_info.progress_percentage == 100
            && progress.scan_results.progress_percentage == 100
        {
            let elapsed = started.elapsed();
            if progress.scan_results.scan_all_result_i != 0 {
                return Err(format!(
                    "{}: final result {} instead of 0",
                    submitted.data_id, progress.scan_results.scan_all_result_i
                ));
            }
            return Ok((accepted, elapsed));
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One thread: the load generator shares the machine with the server, and a second thread
/// would only add wake-ups between the two.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Arc::new(Args::parse());
    let totals = Arc::new(Totals::default());
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let started = Instant::now();
    let written_before = args.pid.and_then(written_bytes);
    let server_cpu_before = args.pid.and_then(|pid| cpu_seconds(&pid.to_string()));
    let own_cpu_before = cpu_seconds("self");
    let mut metrics = Connection::new(&args.authority);
    let writer_before = WriterFigures::fetch(&mut metrics).await;

    // RSS and progress, every second.
    let sampler = {
        let (args, totals) = (args.clone(), totals.clone());
        tokio::spawn(async move {
            let mut samples: Vec<(f64, u64, u64)> = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let done = totals.done.load(Ordering::Relaxed);
                let rss = args.pid.and_then(rss_kib).unwrap_or(0);
                let t = started.elapsed().as_secs_f64();
                samples.push((t, done, rss));
                eprintln!(
                    "loadgen: {t:6.1} s  {done:>8} files done  {:>7.0} files/s  server RSS {} MiB",
                    done as f64 / t.max(1e-9),
                    rss / 1024
                );
                if done >= args.files {
                    return samples;
                }
            }
        })
    };

    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (args, totals, next) = (args.clone(), totals.clone(), next.clone());
            tokio::spawn(async move {
                let mut connection = Connection::new(&args.authority);
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= args.files || Instant::now() > deadline {
                        return latencies;
                    }
                    match one_file(&mut connection, &args, i, &totals).await {
                        Ok(latency) => latencies.push(latency),
                        Err(e) => {
                            if totals.errors.fetch_add(1, Ordering::Relaxed) < 10 {
                                eprintln!("loadgen: file {i}: {e}");
                            }
                        }
                    }
                    totals.done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let (mut accepted, mut latencies): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for w in workers {
        for (a, l) in w.await.expect("a worker does not panic") {
            accepted.push(a);
            latencies.push(l);
        }
    }
    let elapsed = started.elapsed();
    let written = written_before.zip(args.pid.and_then(written_bytes));
    let server_cpu = server_cpu_before.zip(args.pid.and_then(|pid| cpu_seconds(&pid.to_string())));
    let own_cpu = own_cpu_before.zip(cpu_seconds("self"));
    let writer = writer_before.zip(WriterFigures::fetch(&mut metrics).await);
    totals.done.store(args.files, Ordering::Relaxed);
    let samples = sampler.await.expect("the sampler does not panic");
    latencies.sort();
    accepted.sort();

    let ok = latencies.len() as u64;
    let errors = totals.errors.load(Ordering::Relaxed);
    let polls = totals.polls.load(Ordering::Relaxed);
    println!(
        "files: {ok} final, {errors} errors, {:.1} s",
        elapsed.as_secs_f64()
    );
    println!(
        "throughput: {:.0} files/s (concurrency {}, {} B files, {:.1} polls per file)",
        ok as f64 / elapsed.as_secs_f64(),
        args.concurrency,
        args.size,
        polls as f64 / ok.max(1) as f64
    );
    println!(
        "latency submit -> final: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "of which submit -> data_id: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&accepted, 50.0).as_secs_f64() * 1e3,
        percentile(&accepted, 99.0).as_secs_f64() * 1e3,
    );
    if args.pid.is_some() && !samples.is_empty() {
        // RSS after each tenth of the files, to show whether it grows with the count.
        let mut marks = Vec::new();
        for tenth in 1..=10u64 {
            let want = args.files * tenth / 10;
            if let Some((_, _, rss)) = samples.iter().find(|(_, done, _)| *done >= want) {
                marks.push(format!("{}", rss / 1024));
            }
        }
        let max = samples.iter().map(|s| s.2).max().unwrap_or(0);
        println!(
            "server RSS (MiB) after each tenth of the files: {}; max {} MiB",
            marks.join(" "),
            max / 1024
        );
    }
    if let Some((before, after)) = written {
        println!(
            "server writes to storage: {:.1} KiB per file ({:.0} MiB in all)",
            after.saturating_sub(before) as f64 / 1024.0 / ok.max(1) as f64,
            after.saturating_sub(before) as f64 / (1024.0 * 1024.0)
        );
    }
    // CPU per file, which drifts less with the machine than files/s does; the load generator's
    // own share shows what the server had left of the cores.
    let per_file = |(before, after): (f64, f64)| (after - before) * 1e6 / ok.max(1) as f64;
    if let Some(server) = server_cpu.map(per_file) {
        let own = own_cpu.map(per_file).unwrap_or(f64::NAN);
        println!(
            "CPU per file: server {server:.0} us, load generator {own:.0} us \
             ({:.2} of the {} cores busy with the two)",
            (server + own) * ok as f64 / 1e6 / elapsed.as_secs_f64(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
    }
    if let Some((before, after)) = writer {
        println!("{}", before.describe(after, elapsed));
    }
    if errors > 0 {
        std::process::exit(1);
    }
}
