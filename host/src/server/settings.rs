//! The `[server]` table of the configuration file: where `cordon serve` listens, how much work
//! it takes on, who may use it and where it may deliver callbacks. Parsed and validated once,
//! at load, into [`ServerSettings`]; every field is optional and its default is stated on the
//! field. Command-line flags (`--listen`) override the file.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8008"            # a socket address; default 127.0.0.1:8008
//! workers = 4                          # files scanned at once; default: the number of CPUs
//! max_queue = 100                      # accepted files waiting for a worker; default 100
//! max_connections = 512                # client connections served at once; more wait
//! retention_hours = 24                 # results and files older than this are deleted; 0 keeps them
//! session_ttl_minutes = 60             # lifetime of a /login session
//! shutdown_grace_seconds = 30          # SIGTERM: how long scans in flight may take to finish
//! upload_idle_timeout_ms = 60000       # an upload that sends nothing for this long is dropped
//! min_upload_rate_bytes_per_s = 500    # after that long, an upload slower than this is dropped; 0: no floor
//! header_read_timeout_ms = 30000       # a connection with no complete request head for this long is closed
//! callback_allowlist = ["http://127.0.0.1:*", "https://hooks.example.com/cordon/"]
//! callback_timeout_ms = 10000          # one delivery attempt, connect to last byte
//! callback_attempts = 3                # attempts in all
//! callback_backoff_ms = 1000           # wait before the 2nd attempt; doubles after each
//!
//! [[server.api_keys]]
//! name = "ci"                          # owner of the results submitted with this key
//! key = "a-long-random-secret"         # at least 16 characters; or key_sha256 = "<64 hex>"
//! admin = false                        # admins see every result and use the /admin API
//!
//! [[server.users]]                     # for POST /login
//! user = "alice"
//! password_sha256 = "<64 hex>"         # or password = "..." (plain text in the file)
//! admin = true
//! ```
//!
//! **Open mode**: with no `api_keys` and no `users`, every request is accepted without a key.
//! Cordon then refuses to listen on anything but a loopback address, and the `/admin` API stays
//! closed (it needs an admin key).
//!
//! **Callback allowlist**: each entry is `scheme://host[:port][/path-prefix]`. The scheme and
//! host must match exactly (host names are compared as written, not resolved; IP literals as
//! addresses); `:*` allows any port, no port means the scheme's default port; a path prefix,
//! when given, must start the URL's path. An empty list (the default) refuses every
//! `callbackurl`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Default listen address: loopback, MetaDefender Core's port 8008.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8008);
/// Default `max_queue`.
pub const DEFAULT_MAX_QUEUE: usize = 100;
/// Default `max_connections`: well under the usual limit of 1,024 open files, so that client
/// connections cannot take the descriptors the database, the file store and plugins need.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default `retention_hours`: one day.
pub const DEFAULT_RETENTION_HOURS: u64 = 24;
/// Default `session_ttl_minutes`.
pub const DEFAULT_SESSION_TTL_MINUTES: u64 = 60;
/// Default `shutdown_grace_seconds`.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 30;
/// Default `upload_idle_timeout_ms`.
pub const DEFAULT_UPLOAD_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default `min_upload_rate_bytes_per_s`: the minimum rate of Apache's `mod_reqtimeout`.
pub const DEFAULT_MIN_UPLOAD_RATE_BYTES_PER_S: u64 = 500;
/// Default `header_read_timeout_ms`.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 30_000;
/// Default `callback_timeout_ms`.
pub const DEFAULT_CALLBACK_TIMEOUT_MS: u64 = 10_000;
/// Default `callback_attempts`.
pub const DEFAULT_CALLBACK_ATTEMPTS: u32 = 3;
/// Default `callback_backoff_ms`.
pub const DEFAULT_CALLBACK_BACKOFF_MS: u64 = 1_000;
/// Shortest API key accepted in plain text.
pub const MIN_KEY_LEN: usize = 16;

/// The validated `[server]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Where to listen. Default [`DEFAULT_LISTEN`].
    pub listen: SocketAddr,
    /// How many files are scanned at once. Default: the number of CPUs (at least 1).
    pub workers: usize,
    /// How many accepted files may wait for a worker; one more is refused with 503.
    /// Default [`DEFAULT_MAX_QUEUE`].
    pub max_queue: usize,
    /// How many client connections are served at once; further ones wait in the kernel's
    /// backlog until one closes. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Results, jobs and files older than this are deleted; `None` keeps them forever
    /// (`retention_hours = 0`). Default [`DEFAULT_RETENTION_HOURS`] hours.
    pub retention: Option<Duration>,
    /// Lifetime of a session from `POST /login`. Default [`DEFAULT_SESSION_TTL_MINUTES`].
    pub session_ttl: Duration,
    /// On SIGTERM, how long scans in flight may take to finish before Cordon exits anyway
    /// (they are re-run at the next start). Default [`DEFAULT_SHUTDOWN_GRACE_SECONDS`].
    pub shutdown_grace: Duration,
    /// An upload whose body sends no bytes for this long is refused (408) and its place in the
    /// queue given back, so that stalled clients cannot hold the queue. Default
    /// [`DEFAULT_UPLOAD_IDLE_TIMEOUT_MS`].
    pub upload_idle_timeout: Duration,
    /// The slowest an upload may be: the time spent waiting for its body may not pass
    /// `upload_idle_timeout` plus one second for every this many bytes received, or it is
    /// refused (408) and its place in the queue given back, so that a client trickling a byte
    /// now and then cannot hold the queue either. Only waiting for the client counts: the
    /// time the server takes with the bytes it has (writing them to a busy disk) is not held
    /// against it. `None` (`min_upload_rate_bytes_per_s = 0`): no floor. Default
    /// [`DEFAULT_MIN_UPLOAD_RATE_BYTES_PER_S`].
    pub min_upload_rate: Option<u64>,
    /// A connection that does not send a complete request head (request line and headers)
    /// within this long is closed; so is a keep-alive connection idle this long between two
    /// requests. Default [`DEFAULT_HEADER_READ_TIMEOUT_MS`].
    pub header_read_timeout: Duration,
    /// API keys. Empty with `users` empty: open mode.
    pub api_keys: Vec<ApiKey>,
    /// Users for `POST /login`.
    pub users: Vec<User>,
    /// Where callbacks may go. Empty: nowhere.
    pub callback_allowlist: Vec<AllowEntry>,
    /// Bound on one delivery attempt. Default [`DEFAULT_CALLBACK_TIMEOUT_MS`].
    pub callback_timeout: Duration,
    /// Delivery attempts in all (at least 1). Default [`DEFAULT_CALLBACK_ATTEMPTS`].
    pub callback_attempts: u32,
    /// Wait before the second attempt; doubles after each further one.
    /// Default [`DEFAULT_CALLBACK_BACKOFF_MS`].
    pub callback_backoff: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: DEFAULT_LISTEN,
            workers: default_workers(),
            max_queue: DEFAULT_MAX_QUEUE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            retention: Some(Duration::from_secs(DEFAULT_RETENTION_HOURS * 3600)),
            session_ttl: Duration::from_secs(DEFAULT_SESSION_TTL_MINUTES * 60),
            shutdown_grace: Duration::from_secs(DEFAULT_SHUTDOWN_GRACE_SECONDS),
            upload_idle_timeout: Duration::from_millis(DEFAULT_UPLOAD_IDLE_TIMEOUT_MS),
            min_upload_rate: Some(DEFAULT_MIN_UPLOAD_RATE_BYTES_PER_S),
            header_read_timeout: Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS),
            api_keys: Vec::new(),
            users: Vec::new(),
            callback_allowlist: Vec::new(),
            callback_timeout: Duration::from_millis(DEFAULT_CALLBACK_TIMEOUT_MS),
            callback_attempts: DEFAULT_CALLBACK_ATTEMPTS,
            callback_backoff: Duration::from_millis(DEFAULT_CALLBACK_BACKOFF_MS),
        }
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// An API key. Only its sha256 is kept in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Who the key stands for; owner of the results submitted with it, and the result's
    /// `process_info.username`.
    pub name: String,
    /// sha256 of the key.
    pub key_sha256: [u8; 32],
    /// Admins see every result and may use the `/admin` API.
    pub admin: bool,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// A user who can log in with `POST /login`. Only the password's sha256 is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The user name.
    pub user: String,
    /// sha256 of the password.
    pub password_sha256: [u8; 32],
    /// Admins see every result and may use the `/admin` API.
    pub admin: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("user", &self.user)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// One entry of `callback_allowlist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    /// As written in the configuration.
    pub text: String,
    scheme: String,
    host: String,
    /// `None`: any port.
    port: Option<u16>,
    path_prefix: String,
}

impl AllowEntry {
    /// Parse `scheme://host[:port|:*][/path-prefix]`.
    pub fn parse(text: &str) -> Result<AllowEntry, String> {
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            format!("{text:?}: write scheme://host[:port][/path], e.g. http://127.0.0.1:*")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (authority, any_port) = match authority.strip_suffix(":*") {
            Some(a) => (a, true),
            None => (authority, false),
        };
        let url = reqwest::Url::parse(&format!("{scheme}://{authority}{path}"))
            .map_err(|e| format!("{text:?} is not a valid URL pattern: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "{text:?}: only http and https callbacks are supported"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?}: remove the user name and password"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?}: no query or fragment; give a path prefix at most"
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{text:?}: a host is required"))?
            .to_owned();
        Ok(AllowEntry {
            text: text.to_owned(),
            scheme: url.scheme().to_owned(),
            host,
            port: if any_port {
                None
            } else {
                url.port_or_known_default()
            },
            path_prefix: url.path().to_owned(),
        })
    }

    /// Whether `url` is allowed by this entry.
    pub fn allows(&self, url: &reqwest::Url) -> bool {
        url.scheme() == self.scheme
            && url.host_str() == Some(self.host.as_str())
            && self
                .port
                .is_none_or(|p| url.port_or_known_default() == Some(p))
            && url.path().starts_with(&self.path_prefix)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    workers: Option<usize>,
    max_queue: Option<usize>,
    max_connections: Option<usize>,
    retention_hours: Option<u64>,
    session_ttl_minutes: Option<u64>,
    shutdown_grace_seconds: Option<u64>,
    upload_idle_timeout_ms: Option<u64>,
    min_upload_rate_bytes_per_s: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    #[serde(default)]
    api_keys: Vec<RawKey>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    callback_allowlist: Vec<String>,
    callback_timeout_ms: Option<u64>,
    callback_attempts: Option<u32>,
    callback_backoff_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    key: Option<String>,
    key_sha256: Option<String>,
    #[serde(default)]
    admin: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    user: String,
    password: Option<String>,
    password_sha256: Option<String>,
    #[serde(default)]
    admin: bool,
}

/// sha256 of `s`.
pub fn sha256(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

fn secret(
    field: &str,
    plain: Option<String>,
    hashed: Option<String>,
    min_len: usize,
) -> Result<[u8; 32], String> {
    match (plain, hashed) {
        (Some(_), Some(_)) => Err(format!("give `{field}` or `{field}_sha256`, not both")),
        (None, None) => Err(format!("`{field}` (or `{field}_sha256`) is missing")),
        (Some(p), None) => {
            if p.chars().count() < min_len {
                Err(format!(
                    "`{field}` must be at least {min_len} characters long"
                ))
            } else {
                Ok(sha256(p.as_bytes()))
            }
        }
        (None, Some(h)) => {
            let bytes = hex::decode(h.trim()).ok().filter(|b| b.len() == 32);
            bytes
                .map(|b| b.try_into().expect("32 bytes"))
                .ok_or_else(|| format!("`{field}_sha256` must be 64 hexadecimal characters"))
        }
    }
}

impl ServerSettings {
    /// Validate a `[server]` table; every problem is returned, each naming its field.
    pub fn from_table(table: toml::Table) -> Result<ServerSettings, Vec<String>> {
        let raw: RawServer = table
            .try_into()
            .map_err(|e: toml::de::Error| vec![one_line(&e.to_string())])?;
        let mut problems = Vec::new();
        let d = ServerSettings::default();
        let listen = match raw.listen {
            None => d.listen,
            Some(s) => s.parse().unwrap_or_else(|_| {
                problems.push(format!(
                    "field `listen`: {s:?} is not a socket address; write e.g. \"127.0.0.1:8008\" or \"[::1]:8008\""
                ));
                d.listen
            }),
        };
        let mut range =
            |field: &str, value: Option<u64>, min: u64, max: u64, default: u64| match value {
                Some(v) if v < min || v > max => {
                    problems.push(format!("field `{field}`: must be from {min} to {max}"));
                    default
                }
                Some(v) => v,
                None => default,
            };
        let workers = range(
            "workers",
            raw.workers.map(|v| v as u64),
            1,
            1024,
            d.workers as u64,
        );
        let max_queue = range(
            "max_queue",
            raw.max_queue.map(|v| v as u64),
            1,
            1_000_000,
            d.max_queue as u64,
        );
        let max_connections = range(
            "max_connections",
            raw.max_connections.map(|v| v as u64),
            1,
            1_000_000,
            d.max_connections as u64,
        );
        let retention_hours = range(
            "retention_hours",
            raw.retention_hours,
            0,
            24 * 365 * 100,
            DEFAULT_RETENTION_HOURS,
        );
        let ttl = range(
            "session_ttl_minutes",
            raw.session_ttl_minutes,
            1,
            60 * 24 * 365,
            DEFAULT_SESSION_TTL_MINUTES,
        );
        let grace = range(
            "shutdown_grace_seconds",
            raw.shutdown_grace_seconds,
            0,
            3600,
            DEFAULT_SHUTDOWN_GRACE_SECONDS,
        );
        let upload_idle = range(
            "upload_idle_timeout_ms",
            raw.upload_idle_timeout_ms,
            1,
            3_600_000,
            DEFAULT_UPLOAD_IDLE_TIMEOUT_MS,
        );
        let min_upload_rate = range(
            "min_upload_rate_bytes_per_s",
            raw.min_upload_rate_bytes_per_s,
            0,
            1 << 30,
            DEFAULT_MIN_UPLOAD_RATE_BYTES_PER_S,
        );
        let header_read = range(
            "header_read_timeout_ms",
            raw.header_read_timeout_ms,
            1,
            3_600_000,
            DEFAULT_HEADER_READ_TIMEOUT_MS,
        );
        let cb_timeout = range(
            "callback_timeout_ms",
            raw.callback_timeout_ms,
            1,
            600_000,
            DEFAULT_CALLBACK_TIMEOUT_MS,
        );
        let cb_attempts = range(
            "callback_attempts",
            raw.callback_attempts.map(u64::from),
            1,
            100,
            u64::from(DEFAULT_CALLBACK_ATTEMPTS),
        );
        let cb_backoff = range(
            "callback_backoff_ms",
            raw.callback_backoff_ms,
            0,
            3_600_000,
            DEFAULT_CALLBACK_BACKOFF_MS,
        );

        let mut api_keys: Vec<ApiKey> = Vec::new();
        for (i, k) in raw.api_keys.into_iter().enumerate() {
            let label = format!("api_keys #{} ({:?})", i + 1, k.name);
            if k.name.is_empty() || k.name.len() > 64 || k.name.chars().any(char::is_control) {
                problems.push(format!("{label}: `name` must be 1 to 64 characters"));
            }
            match secret("key", k.key, k.key_sha256, MIN_KEY_LEN) {
                Ok(key_sha256) => {
                    if api_keys.iter().any(|o| o.name == k.name) {
                        problems.push(format!("{label}: duplicate name"));
                    } else if api_keys.iter().any(|o| o.key_sha256 == key_sha256) {
                        problems.push(format!("{label}: the same key is given twice"));
                    }
                    api_keys.push(ApiKey {
                        name: k.name,
                        key_sha256,
                        admin: k.admin,
                    });
                }
                Err(e) => problems.push(format!("{label}: {e}")),
            }
        }
        let mut users: Vec<User> = Vec::new();
        for (i, u) in raw.users.into_iter().enumerate() {
            let label = format!("users #{} ({:?})", i + 1, u.user);
            if u.user.is_empty() || u.user.len() > 64 || u.user.chars().any(char::is_control) {
                problems.push(format!("{label}: `user` must be 1 to 64 characters"));
            }
            if users.iter().any(|o| o.user == u.user) {
                problems.push(format!("{label}: duplicate user"));
            }
            match secret("password", u.password, u.password_sha256, 1) {
                Ok(password_sha256) => users.push(User {
                    user: u.user,
                    password_sha256,
                    admin: u.admin,
                }),
                Err(e) => problems.push(format!("{label}: {e}")),
            }
        }
        let mut callback_allowlist = Vec::new();
        for entry in &raw.callback_allowlist {
            match AllowEntry::parse(entry) {
                Ok(e) => callback_allowlist.push(e),
                Err(e) => problems.push(format!("field `callback_allowlist`: {e}")),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ServerSettings {
            listen,
            workers: workers as usize,
            max_queue: max_queue as usize,
            max_connections: max_connections as usize,
            retention: (retention_hours > 0).then(|| Duration::from_secs(retention_hours * 3600)),
            session_ttl: Duration::from_secs(ttl * 60),
            shutdown_grace: Duration::from_secs(grace),
            upload_idle_timeout: Duration::from_millis(upload_idle),
            min_upload_rate: (min_upload_rate > 0).then_some(min_upload_rate),
            header_read_timeout: Duration::from_millis(header_read),
            api_keys,
            users,
            callback_allowlist,
            callback_timeout: Duration::from_millis(cb_timeout),
            callback_attempts: cb_attempts as u32,
            callback_backoff: Duration::from_millis(cb_backoff),
        })
    }

    /// Open mode: no API keys and no users; every request is accepted without a key.
    pub fn is_open(&self) -> bool {
        self.api_keys.is_empty() && self.users.is_empty()
    }

    /// Whether `url` may receive callbacks: it parses, is http or https, carries no
    /// credentials, and an allowlist entry allows it.
    pub fn callback_allowed(&self, url: &str) -> Result<reqwest::Url, CallbackRefusal> {
        let parsed = reqwest::Url::parse(url).map_err(|_| CallbackRefusal::Invalid)?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none_or(str::is_empty)
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(CallbackRefusal::Invalid);
        }
        if self.callback_allowlist.iter().any(|e| e.allows(&parsed)) {
            Ok(parsed)
        } else {
            Err(CallbackRefusal::NotAllowed)
        }
    }
}

/// Why a `callbackurl` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackRefusal {
    /// Not an http(s) URL with a host and without credentials.
    Invalid,
    /// No allowlist entry allows it.
    NotAllowed,
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_apply_to_an_empty_table() {
        let s = ServerSettings::from_table(toml::Table::new()).unwrap();
        assert_eq!(s.listen, DEFAULT_LISTEN);
        assert_eq!(s.max_queue, DEFAULT_MAX_QUEUE);
        assert_eq!(s.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(
            s.upload_idle_timeout,
            Duration::from_millis(DEFAULT_UPLOAD_IDLE_TIMEOUT_MS)
        );
        assert_eq!(
            s.header_read_timeout,
            Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS)
        );
        assert_eq!(s.min_upload_rate, Some(DEFAULT_MIN_UPLOAD_RATE_BYTES_PER_S));
        let off = ServerSettings::from_table(table("min_upload_rate_bytes_per_s = 0")).unwrap();
        assert_eq!(off.min_upload_rate, None);
        assert!(s.is_open());
        assert!(s.workers >= 1);
    }

    #[test]
    fn every_problem_is_reported() {
        let p = ServerSettings::from_table(table(
            r#"
            listen = "nowhere"
            workers = 0
            upload_idle_timeout_ms = 0
            header_read_timeout_ms = 0
            min_upload_rate_bytes_per_s = 2000000000
            max_connections = 0
            callback_allowlist = ["ftp://x", "nonsense"]
            [[api_keys]]
            name = "a"
            key = "short"
            [[users]]
            user = "u"
            "#,
        ))
        .unwrap_err()
        .join("\n");
        assert!(p.contains("field `listen`"), "{p}");
        assert!(p.contains("field `workers`"), "{p}");
        assert!(p.contains("field `upload_idle_timeout_ms`"), "{p}");
        assert!(p.contains("field `header_read_timeout_ms`"), "{p}");
        assert!(p.contains("field `min_upload_rate_bytes_per_s`"), "{p}");
        assert!(p.contains("field `max_connections`"), "{p}");
        assert!(p.contains("only http and https"), "{p}");
        assert!(p.contains("write scheme://host"), "{p}");
        assert!(p.contains("at least 16 characters"), "{p}");
        assert!(
            p.contains("`password` (or `password_sha256`) is missing"),
            "{p}"
        );
        let unknown = ServerSettings::from_table(table("lisen = \"x\"")).unwrap_err();
        assert!(unknown[0].contains("unknown field `lisen`"), "{unknown:?}");
    }

    #[test]
    fn allowlist_matches_scheme_host_port_and_path() {
        let any = AllowEntry::parse("http://127.0.0.1:*").unwrap();
        let fixed = AllowEntry::parse("https://Hooks.Example.com/cordon/").unwrap();
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(any.allows(&url("http://127.0.0.1:9999/x")));
        assert!(any.allows(&url("http://127.0.0.1/x")));
        assert!(!any.allows(&url("https://127.0.0.1:9999/x")));
        assert!(!any.allows(&url("http://127.0.0.2:9999/x")));
        assert!(!any.allows(&url("http://localhost:9999/x")));
        assert!(fixed.allows(&url("https://hooks.example.com/cordon/a")));
        assert!(fixed.allows(&url("https://hooks.example.com:443/cordon/")));
        assert!(!fixed.allows(&url("https://hooks.example.com:8443/cordon/a")));
        assert!(!fixed.allows(&url("https://hooks.example.com/other")));
        assert!(!fixed.allows(&url("https://hooks.example.com.evil.net/cordon/")));
    }
}
