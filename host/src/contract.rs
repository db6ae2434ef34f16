//! The contract: the one place that decides what a plugin's [`Outcome`] means, for every
//! runtime alike (DESIGN.md section 2, `metadefender-compat.md` sections 1 and 2).
//!
//! A **scanner**'s outcome is valid when the plugin finished by itself with success (exit 0;
//! a webhook: HTTP 200) and its stdout (a webhook: the response body) holds exactly one JSON
//! object, surrounding whitespace and pretty-printing allowed, with
//! - `def_time`: an integer, milliseconds since the epoch, from 0 to 253402300799999
//!   (the end of year 9999);
//! - `scan_result_i`: an integer result code of the table, 255 (In Progress) excepted;
//! - `threat_found`: a string (`""` when clean).
//!
//! Other fields are ignored, so that scanners may add their own. Anything else makes the
//! engine's result **Failed (3)**, and the reason is kept in the result (`failure`): a
//! timeout, the memory limit, a trap, a signal, output over its cap, a transport error, a
//! plugin that could not start, a non-zero exit code, a non-200 HTTP status, or invalid output
//! (which field, and what was wrong with it).
//!
//! A **post action** succeeds when it finished by itself with exit 0 (a webhook: HTTP 200);
//! its output is ignored. Its `return_value` is the exit code or HTTP status, or -1 when it did
//! not finish by itself.

use serde_json::Value;

use crate::executor::Outcome;
use crate::plugin::RuntimeKind;
use crate::result::FailureReport;
use crate::verdict::ResultCode;

/// The largest `def_time` accepted: 9999-12-31T23:59:59.999Z.
pub const MAX_DEF_TIME_MS: i64 = 253_402_300_799_999;

/// How much of a plugin's stderr is kept in a failure report (its end).
pub const STDERR_EXCERPT_BYTES: usize = 1024;

/// A scanner's valid report, as it printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Milliseconds since the epoch.
    pub def_time_ms: i64,
    /// The verdict.
    pub code: ResultCode,
    /// The threat's description.
    pub threat_found: String,
}

/// What a scanner's outcome means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVerdict {
    /// The verdict: what the scanner said, or Failed.
    pub code: ResultCode,
    /// The scanner's definition time; 0 (1970-01-01) when it failed.
    pub def_time_ms: i64,
    /// The threat's description; `""` when it failed.
    pub threat_found: String,
    /// Why the result is Failed, when it is.
    pub failure: Option<FailureReport>,
}

/// What a post action's outcome means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostActionVerdict {
    /// Whether it succeeded.
    pub success: bool,
    /// Exit code or HTTP status; -1 when it did not finish by itself.
    pub return_value: i64,
    /// Why it failed, when it did.
    pub failure: Option<FailureReport>,
}

/// The return value that means success: exit 0, or HTTP 200 for a webhook.
pub fn success_value(runtime: RuntimeKind) -> i64 {
    match runtime {
        RuntimeKind::Webhook => 200,
        RuntimeKind::Wasm | RuntimeKind::Process => 0,
    }
}

/// Judge a scanner's outcome.
pub fn judge_scanner(runtime: RuntimeKind, outcome: &Outcome) -> EngineVerdict {
    let failed = |kind: &str, message: String| EngineVerdict {
        code: ResultCode::FAILED,
        def_time_ms: 0,
        threat_found: String::new(),
        failure: Some(report(kind, message, outcome)),
    };
    if let Some(failure) = &outcome.failure {
        return failed(failure.kind(), failure.to_string());
    }
    if let Some((kind, message)) = exit_problem(runtime, outcome, "a scanner") {
        return failed(kind, message);
    }
    match parse_scanner_output(&outcome.stdout) {
        Ok(report) => EngineVerdict {
            code: report.code,
            def_time_ms: report.def_time_ms,
            threat_found: report.threat_found,
            failure: None,
        },
        Err(message) => failed("invalid_output", message),
    }
}

/// Judge a post action's outcome.
pub fn judge_post_action(runtime: RuntimeKind, outcome: &Outcome) -> PostActionVerdict {
    let return_value = outcome.exit.unwrap_or(-1);
    let failure = if let Some(failure) = &outcome.failure {
        Some(report(failure.kind(), failure.to_string(), outcome))
    } else {
        exit_problem(runtime, outcome, "a post action")
            .map(|(kind, message)| report(kind, message, outcome))
    };
    PostActionVerdict {
        success: failure.is_none(),
        return_value,
        failure,
    }
}

/// A plugin that finished by itself but not with the success value.
fn exit_problem(
    runtime: RuntimeKind,
    outcome: &Outcome,
    what: &str,
) -> Option<(&'static str, String)> {
    let success = success_value(runtime);
    match (runtime, outcome.exit) {
        (_, Some(v)) if v == success => None,
        (RuntimeKind::Webhook, Some(status)) => Some((
            "http_status",
            format!("answered HTTP {status}; {what} webhook must answer 200"),
        )),
        (_, Some(code)) => Some((
            "exit_code",
            format!("exited with code {code}; {what} must exit 0"),
        )),
        (_, None) => Some((
            "could_not_start",
            "did not finish and reported no reason".to_owned(),
        )),
    }
}

fn report(kind: &str, message: String, outcome: &Outcome) -> FailureReport {
    FailureReport {
        kind: kind.to_owned(),
        message,
        exit: outcome.exit,
        stderr: stderr_excerpt(&outcome.stderr),
    }
}

/// The last [`STDERR_EXCERPT_BYTES`] of stderr, as text, trimmed.
pub fn stderr_excerpt(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_EXCERPT_BYTES);
    let text = String::from_utf8_lossy(&stderr[start..]);
    let text = text.trim();
    if start > 0 {
        format!("…{text}")
    } else {
        text.to_owned()
    }
}

/// Parse a scanner's stdout. The error says, for the plugin's author, exactly what is wrong:
/// every problem found, field by field.
pub fn parse_scanner_output(stdout: &[u8]) -> Result<ScanReport, String> {
    let text = std::str::from_utf8(stdout).map_err(|e| {
        format!(
            "stdout is not UTF-8 text (invalid byte at offset {}); print the verdict as JSON",
            e.valid_up_to()
        )
    })?;
    if text.trim().is_empty() {
        return Err(
            "stdout is empty; a scanner must print a JSON object with def_time, \
                    scan_result_i and threat_found"
                .to_owned(),
        );
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value: Value = serde::Deserialize::deserialize(&mut de)
        .map_err(|e| format!("stdout is not valid JSON: {e}"))?;
    de.end().map_err(|e| {
        format!("stdout holds more than one JSON value ({e}); print exactly one object")
    })?;
    let Value::Object(fields) = value else {
        return Err(format!(
            "stdout holds {}, not a JSON object with def_time, scan_result_i and threat_found",
            describe(&value)
        ));
    };

    let mut problems = Vec::new();
    let def_time_ms = match fields.get("def_time") {
        None => {
            problems
                .push("missing field `def_time` (integer, milliseconds since the epoch)".into());
            None
        }
        // A u64 beyond i64 is out of range too, not "not an integer".
        Some(v) => match v.as_i64().or_else(|| v.as_u64().map(|_| i64::MAX)) {
            Some(ms) if (0..=MAX_DEF_TIME_MS).contains(&ms) => Some(ms),
            Some(_) => {
                problems.push(format!(
                    "def_time: {v} is out of range; expected milliseconds since the epoch, \
                     0 to {MAX_DEF_TIME_MS}"
                ));
                None
            }
            None => {
                problems.push(format!(
                    "def_time: expected an integer (milliseconds since the epoch), got {}",
                    describe(v)
                ));
                None
            }
        },
    };
    let code = match fields.get("scan_result_i") {
        None => {
            problems.push("missing field `scan_result_i` (integer result code)".into());
            None
        }
        Some(v) => match v.as_i64().map(|i| (i, ResultCode::new(i))) {
            Some((_, Some(code))) if code.is_engine_result() => Some(code),
            Some((_, Some(code))) => {
                problems.push(format!(
                    "scan_result_i: {} ({code}) is not a result an engine may return",
                    code.value()
                ));
                None
            }
            Some((i, None)) => {
                problems.push(format!(
                    "scan_result_i: {i} is not a result code of the table (0 to 23)"
                ));
                None
            }
            None => {
                problems.push(format!(
                    "scan_result_i: expected an integer result code, got {}",
                    describe(v)
                ));
                None
            }
        },
    };
    let threat_found = match fields.get("threat_found") {
        None => {
            problems.push("missing field `threat_found` (string, \"\" when clean)".into());
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            problems.push(format!(
                "threat_found: expected a string (\"\" when clean), got {}",
                describe(v)
            ));
            None
        }
    };
    match (def_time_ms, code, threat_found) {
        (Some(def_time_ms), Some(code), Some(threat_found)) => Ok(ScanReport {
            def_time_ms,
            code,
            threat_found,
        }),
        _ => Err(problems.join("; ")),
    }
}

/// A JSON value described for an error message: `the string "1"`, `the number 1.5`...
fn describe(value: &Value) -> String {
    const MAX: usize = 40;
    let shorten = |s: String| {
        if s.chars().count() > MAX {
            format!("{}…", s.chars().take(MAX).collect::<String>())
        } else {
            s
        }
    };
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {}", shorten(n.to_string())),
        Value::String(s) => format!("the string {}", shorten(format!("{s:?}"))),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{Failure, Stream};
    use std::time::Duration;

    fn ok(stdout: &str) -> Outcome {
        Outcome {
            exit: Some(0),
            stdout: stdout.as_bytes().to_vec(),
            ..Outcome::default()
        }
    }

    #[test]
    fn the_seed_output_is_valid() {
        let out =
            ok("{\n\"def_time\": 1491288912392,\n\"scan_result_i\": 0,\n\"threat_found\": \"\"\n}");
        let v = judge_scanner(RuntimeKind::Process, &out);
        assert_eq!(v.code, ResultCode::CLEAN);
        assert_eq!(v.def_time_ms, 1491288912392);
        assert_eq!(v.failure, None);
    }

    #[test]
    fn extra_fields_are_ignored_and_whitespace_allowed() {
        let out =
            ok("  {\"def_time\":0,\"scan_result_i\":1,\"threat_found\":\"X\",\"extra\":[1]}\n\n");
        let v = judge_scanner(RuntimeKind::Wasm, &out);
        assert_eq!(v.code, ResultCode::INFECTED);
        assert_eq!(v.threat_found, "X");
    }

    fn message(stdout: &str) -> String {
        let v = judge_scanner(RuntimeKind::Wasm, &ok(stdout));
        assert_eq!(v.code, ResultCode::FAILED);
        let f = v.failure.expect("failed verdict has a reason");
        assert_eq!(f.kind, "invalid_output");
        f.message
    }

    #[test]
    fn each_invalid_output_is_failed_with_a_precise_reason() {
        assert!(message("").contains("stdout is empty"));
        assert!(message("{\"def_time\": 1").contains("not valid JSON"));
        assert!(message("[]").contains("an array"));
        assert!(message("{} {}").contains("more than one JSON value"));
        assert_eq!(
            message(r#"{"def_time":1,"scan_result_i":"1","threat_found":""}"#),
            r#"scan_result_i: expected an integer result code, got the string "1""#
        );
        assert!(
            message(r#"{"def_time":1,"scan_result_i":24,"threat_found":""}"#)
                .contains("24 is not a result code")
        );
        assert!(
            message(r#"{"def_time":1,"scan_result_i":255,"threat_found":""}"#)
                .contains("In Progress")
        );
        assert!(
            message(r#"{"def_time":1.5,"scan_result_i":0,"threat_found":""}"#)
                .contains("def_time: expected an integer")
        );
        assert!(
            message(r#"{"def_time":-1,"scan_result_i":0,"threat_found":""}"#)
                .contains("out of range")
        );
        assert!(
            message(r#"{"def_time":18446744073709551615,"scan_result_i":0,"threat_found":""}"#)
                .contains("out of range")
        );
        assert!(
            message(r#"{"def_time":1,"scan_result_i":0,"threat_found":null}"#)
                .contains("threat_found: expected a string (\"\" when clean), got null")
        );
        let all_missing = message("{}");
        for field in ["def_time", "scan_result_i", "threat_found"] {
            assert!(
                all_missing.contains(&format!("missing field `{field}`")),
                "{all_missing}"
            );
        }
    }

    #[test]
    fn non_success_exits_fail_with_the_code() {
        let mut out = ok(r#"{"def_time":1,"scan_result_i":0,"threat_found":""}"#);
        out.exit = Some(7);
        out.stderr = b"boom\n".to_vec();
        let v = judge_scanner(RuntimeKind::Process, &out);
        assert_eq!(v.code, ResultCode::FAILED);
        let f = v.failure.unwrap();
        assert_eq!(
            (f.kind.as_str(), f.exit, f.stderr.as_str()),
            ("exit_code", Some(7), "boom")
        );

        out.exit = Some(200);
        assert_eq!(
            judge_scanner(RuntimeKind::Webhook, &out).code,
            ResultCode::CLEAN
        );
        out.exit = Some(0);
        let v = judge_scanner(RuntimeKind::Webhook, &out);
        assert_eq!(v.failure.unwrap().kind, "http_status");
    }

    #[test]
    fn runtime_failures_win_over_output() {
        let mut out = ok(r#"{"def_time":1,"scan_result_i":0,"threat_found":""}"#);
        out.failure = Some(Failure::OutputTooLarge {
            stream: Stream::Stderr,
            limit_bytes: 10,
        });
        let v = judge_scanner(RuntimeKind::Wasm, &out);
        assert_eq!(v.code, ResultCode::FAILED);
        assert_eq!(v.failure.unwrap().kind, "output_too_large");

        out.failure = Some(Failure::Timeout {
            limit: Duration::from_millis(5),
        });
        assert!(!judge_post_action(RuntimeKind::Wasm, &out).success);
    }

    #[test]
    fn post_actions_follow_the_seed() {
        let pa = judge_post_action(RuntimeKind::Process, &ok(""));
        assert!(pa.success);
        assert_eq!(pa.return_value, 0);
        let mut out = ok("");
        out.exit = Some(1);
        let pa = judge_post_action(RuntimeKind::Process, &out);
        assert!(!pa.success);
        assert_eq!(pa.return_value, 1);
        out.exit = Some(200);
        assert!(judge_post_action(RuntimeKind::Webhook, &out).success);
        out.exit = None;
        out.failure = Some(Failure::Transport {
            message: "refused".into(),
        });
        let pa = judge_post_action(RuntimeKind::Webhook, &out);
        assert_eq!((pa.success, pa.return_value), (false, -1));
    }

    #[test]
    fn stderr_excerpt_keeps_the_end() {
        let long = vec![b'a'; 5000];
        let e = stderr_excerpt(&long);
        assert!(e.starts_with('…'));
        assert_eq!(e.len(), STDERR_EXCERPT_BYTES + '…'.len_utf8());
    }
}
