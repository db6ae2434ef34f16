//! The plugin's input: the current scan result, as the host wrote it on stdin.
//!
//! The types here follow MetaDefender's result shape and are deliberately forgiving: every
//! field is optional (a missing field takes its default: `""`, `0`, `false`, empty), unknown
//! fields are ignored, and a field of an unexpected type also falls back to its default rather
//! than failing the whole parse. A scanner that only reads the file must never fail because the
//! host added or reshaped a field it does not use. The JSON exactly as received stays available
//! through [`Input::raw`].

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::ResultCode;

/// Deserializes a field as `T`, or as `T::default()` when the JSON value (including `null`)
/// does not fit `T`. Used on every field of the input types.
///
/// Falling back needs a copy of the field's value, and of every value inside it, once per
/// level it is nested in. [`Input::from_value`] first parses without fallback (see
/// [`STRICT`]): when every field fits, as it does for what Cordon sends, nothing is copied.
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    if STRICT.get() {
        return T::deserialize(deserializer);
    }
    let value = Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).unwrap_or_default())
}

thread_local! {
    /// Set while [`Input::from_value`] tries its strict parse: [`lenient`] then deserializes
    /// each field directly and fails on a mismatch instead of falling back.
    static STRICT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `parse` with [`STRICT`] set, and clears it again even if `parse` panics.
fn strictly<T>(parse: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            STRICT.set(false);
        }
    }
    STRICT.set(true);
    let _reset = Reset;
    parse()
}

/// Why stdin could not be read as an [`Input`].
#[derive(Debug)]
pub struct InputError {
    message: String,
}

impl InputError {
    fn new(message: impl Into<String>) -> InputError {
        InputError {
            message: message.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InputError {}

/// The current scan result the host hands to a plugin on stdin (MetaDefender's result shape,
/// without `extracted_files`), plus the submission's `metadata`.
///
/// Read what you need through the accessors ([`file_name`](Input::file_name),
/// [`sha256`](Input::sha256), [`engine_results`](Input::engine_results),
/// [`workflow`](Input::workflow), [`metadata`](Input::metadata), ...) or through the public
/// typed fields; anything the types do not model is in [`raw`](Input::raw).
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The submission's id (`data_id`), 32 lowercase hex digits when the host assigned it.
    pub data_id: String,
    /// What the host knows about the file (`file_info`).
    pub file_info: FileInfo,
    /// The state of the processing (`process_info`): workflow, verdict, post processing.
    pub process_info: ProcessInfo,
    /// The engine results so far (`scan_results`).
    pub scan_results: ScanResults,
    /// The `metadata` object given with the submission; `Value::Null` when there was none.
    pub metadata: Value,
    raw: Raw,
}

/// The JSON as received: the parsed tree, or the text it is parsed from when first asked for.
/// [`Input::from_json`] parses the text straight into the typed fields, and most plugins
/// never look at the tree: building it would be most of what parsing their input costs.
#[derive(Clone)]
struct Raw {
    text: Option<Box<str>>,
    value: OnceLock<Value>,
}

impl Raw {
    fn parsed(value: Value) -> Raw {
        Raw {
            text: None,
            value: OnceLock::from(value),
        }
    }

    /// `text` must be a JSON object, already checked by a parse of it.
    fn unparsed(text: &str) -> Raw {
        Raw {
            text: Some(text.into()),
            value: OnceLock::new(),
        }
    }

    fn get(&self) -> &Value {
        self.value
            .get_or_init(|| parse_checked(self.text.as_deref()))
    }

    fn into_value(self) -> Value {
        match self.value.into_inner() {
            Some(value) => value,
            None => parse_checked(self.text.as_deref()),
        }
    }
}

/// The tree of a text that a parse has already accepted as a JSON object: the same parser
/// gives the same answer, so the fallback (an empty object) is never taken.
fn parse_checked(text: Option<&str>) -> Value {
    text.and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_else(|| Value::Object(Default::default()))
}

impl PartialEq for Raw {
    fn eq(&self, other: &Raw) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// The fields of [`Input`] as they are parsed; `raw` is kept beside them.
#[derive(Deserialize)]
struct InputFields {
    #[serde(default, deserialize_with = "lenient")]
    data_id: String,
    #[serde(default, deserialize_with = "lenient")]
    file_info: FileInfo,
    #[serde(default, deserialize_with = "lenient")]
    process_info: ProcessInfo,
    #[serde(default, deserialize_with = "lenient")]
    scan_results: ScanResults,
    #[serde(default)]
    metadata: Value,
}

impl Input {
    /// Parses the JSON text the host writes on stdin (one compact line; any JSON whitespace,
    /// including a trailing newline, is accepted). Fails only when the text is not JSON or its
    /// top level is not an object.
    pub fn from_json(text: &str) -> Result<Input, InputError> {
        // The usual case: an object whose every field is as it should be, parsed straight into
        // the typed fields, with no tree and no copies. (A struct would also accept a JSON
        // array, hence the check of the first character.)
        if text.trim_start().starts_with('{')
            && let Ok(fields) = strictly(|| serde_json::from_str::<InputFields>(text))
        {
            return Ok(Input::from_fields(fields, Raw::unparsed(text)));
        }
        // Otherwise through the tree: `from_value` tries the strict parse again (it succeeds
        // there on duplicate keys, which the tree resolves to the last one) before the
        // lenient one.
        let value: Value = serde_json::from_str(text)
            .map_err(|err| InputError::new(format!("stdin is not the scan result JSON: {err}")))?;
        Input::from_value(value)
    }

    /// Builds an input from an already parsed JSON value, which must be an object.
    pub fn from_value(value: Value) -> Result<Input, InputError> {
        if !value.is_object() {
            return Err(InputError::new(
                "stdin is not the scan result JSON: the top level is not an object",
            ));
        }
        // Every field as it should be (the usual case) parses without copies; otherwise parse
        // again, with each field that does not fit falling back to its default.
        let fields = match strictly(|| InputFields::deserialize(&value)) {
            Ok(fields) => fields,
            Err(_) => InputFields::deserialize(&value)
                .map_err(|err| InputError::new(format!("stdin has an unreadable field: {err}")))?,
        };
        Ok(Input::from_fields(fields, Raw::parsed(value)))
    }

    fn from_fields(fields: InputFields, raw: Raw) -> Input {
        Input {
            data_id: fields.data_id,
            file_info: fields.file_info,
            process_info: fields.process_info,
            scan_results: fields.scan_results,
            metadata: fields.metadata,
            raw,
        }
    }

    /// The JSON exactly as received (an empty object for [`Input::default`]).
    pub fn raw(&self) -> &Value {
        self.raw.get()
    }

    /// Takes the JSON exactly as received.
    pub fn into_raw(self) -> Value {
        self.raw.into_value()
    }

    /// The submission's id (`data_id`); `""` when absent.
    pub fn data_id(&self) -> &str {
        &self.data_id
    }

    /// The file's name as submitted (`file_info.display_name`); `""` when absent. The name of
    /// the file on disk is [`SampleFile::name`](crate::SampleFile::name).
    pub fn file_name(&self) -> &str {
        &self.file_info.display_name
    }

    /// The file's size in bytes as the host measured it (`file_info.file_size`); 0 when absent.
    pub fn file_size(&self) -> u64 {
        self.file_info.file_size
    }

    /// The file's MIME type as the host detected it (`file_info.file_type`), if known.
    pub fn mime_type(&self) -> Option<&str> {
        non_empty(&self.file_info.file_type)
    }

    /// The host's description of the file type (`file_info.file_type_description`), if known.
    pub fn file_type_description(&self) -> Option<&str> {
        non_empty(&self.file_info.file_type_description)
    }

    /// The file's MD5 (hex, as given by the host), if present.
    pub fn md5(&self) -> Option<&str> {
        non_empty(&self.file_info.md5)
    }

    /// The file's SHA-1 (hex, as given by the host), if present.
    pub fn sha1(&self) -> Option<&str> {
        non_empty(&self.file_info.sha1)
    }

    /// The file's SHA-256 (hex, as given by the host), if present. Check the format before
    /// trusting it for a lookup: [`is_sha256_hex`] does that.
    pub fn sha256(&self) -> Option<&str> {
        non_empty(&self.file_info.sha256)
    }

    /// The name of the workflow (MetaDefender's "rule", `process_info.profile`) the file is
    /// processed under; `""` when absent.
    pub fn workflow(&self) -> &str {
        &self.process_info.profile
    }

    /// The processing verdict so far (`process_info.result`): `"Allowed"`, `"Blocked"` or
    /// `"Processing"`; `""` when absent. Scanners run while it is `"Processing"`; post actions
    /// see the final value.
    pub fn process_result(&self) -> &str {
        &self.process_info.result
    }

    /// Whether the workflow blocked the file (`process_info.result == "Blocked"`): what a post
    /// action usually asks.
    pub fn is_blocked(&self) -> bool {
        self.process_info.result == "Blocked"
    }

    /// The results of the engines that ran before this plugin, by engine name
    /// (`scan_results.scan_details`). Scanners of one workflow run concurrently, so a scanner
    /// usually sees only the results of earlier stages; post actions see all of them.
    pub fn engine_results(&self) -> &BTreeMap<String, EngineResult> {
        &self.scan_results.scan_details
    }

    /// The overall result so far (`scan_results.scan_all_result_i`), if it is a code an engine
    /// could return. While the pipeline runs the host reports 255 "In Progress", which gives
    /// `None` here.
    pub fn overall_result(&self) -> Option<ResultCode> {
        self.scan_results
            .scan_all_result_i
            .and_then(ResultCode::from_code)
    }

    /// The submission's `metadata` object, if one was given (a JSON `null` counts as none).
    pub fn metadata(&self) -> Option<&Value> {
        if self.metadata.is_null() {
            None
        } else {
            Some(&self.metadata)
        }
    }

    /// One field of the submission's metadata: `input.metadata_field("ticket")`.
    pub fn metadata_field(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }
}

/// Whether `text` is a SHA-256 in hex: 64 hex digits, either case.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn non_empty(text: &str) -> Option<&str> {
    if text.is_empty() { None } else { Some(text) }
}

impl Default for Input {
    /// An input with every field at its default, as if the host had sent `{}`.
    fn default() -> Input {
        Input {
            data_id: String::new(),
            file_info: FileInfo::default(),
            process_info: ProcessInfo::default(),
            scan_results: ScanResults::default(),
            metadata: Value::Null,
            raw: Raw::parsed(Value::Object(Default::default())),
        }
    }
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Input, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Input::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Input {
    /// Serializes the JSON as received ([`Input::raw`]).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw().serialize(serializer)
    }
}

/// What the host knows about the file (`file_info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FileInfo {
    /// The file's name as submitted.
    #[serde(default, deserialize_with = "lenient")]
    pub display_name: String,
    /// Size in bytes.
    #[serde(default, deserialize_with = "lenient")]
    pub file_size: u64,
    /// MIME type detected by the host, for example `"application/pdf"`.
    #[serde(default, deserialize_with = "lenient")]
    pub file_type: String,
    /// Human-readable file type, for example `"Adobe Portable Document Format"`.
    #[serde(default, deserialize_with = "lenient")]
    pub file_type_description: String,
    /// MD5, lowercase hex.
    #[serde(default, deserialize_with = "lenient")]
    pub md5: String,
    /// SHA-1, lowercase hex.
    #[serde(default, deserialize_with = "lenient")]
    pub sha1: String,
    /// SHA-256, lowercase hex.
    #[serde(default, deserialize_with = "lenient")]
    pub sha256: String,
    /// When the file was received, ISO-8601 UTC with milliseconds.
    #[serde(default, deserialize_with = "lenient")]
    pub upload_timestamp: String,
}

/// The state of the processing (`process_info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// The workflow (MetaDefender "rule") the file is processed under.
    #[serde(default, deserialize_with = "lenient")]
    pub profile: String,
    /// `"Allowed"`, `"Blocked"` or `"Processing"`.
    #[serde(default, deserialize_with = "lenient")]
    pub result: String,
    /// Why the file was blocked; `""` when allowed.
    #[serde(default, deserialize_with = "lenient")]
    pub blocked_reason: String,
    /// All reasons the file was blocked.
    #[serde(default, deserialize_with = "lenient")]
    pub blocked_reasons: Vec<String>,
    /// The verdicts so far, as display strings.
    #[serde(default, deserialize_with = "lenient")]
    pub verdicts: Vec<String>,
    /// The `user_agent` given with the submission.
    #[serde(default, deserialize_with = "lenient")]
    pub user_agent: String,
    /// The user who submitted the file, when known.
    #[serde(default, deserialize_with = "lenient")]
    pub username: String,
    /// Whether the file type made the workflow skip scanning.
    #[serde(default, deserialize_with = "lenient")]
    pub file_type_skipped_scan: bool,
    /// Progress of the whole processing, 0 to 100.
    #[serde(default, deserialize_with = "lenient")]
    pub progress_percentage: i64,
    /// Processing time in ms; -1 while not final.
    #[serde(default, deserialize_with = "lenient")]
    pub processing_time: i64,
    /// Time spent queued, in ms.
    #[serde(default, deserialize_with = "lenient")]
    pub queue_time: i64,
    /// What post actions did so far.
    #[serde(default, deserialize_with = "lenient")]
    pub post_processing: PostProcessing,
}

/// What post actions did so far (`process_info.post_processing`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PostProcessing {
    /// Names of the post actions that failed, as `"<name> failed"`, joined with `" | "`.
    #[serde(default, deserialize_with = "lenient")]
    pub actions_failed: String,
    /// Names of the post actions that ran successfully, joined with `" | "`.
    #[serde(default, deserialize_with = "lenient")]
    pub actions_ran: String,
    /// Where a converted file went.
    #[serde(default, deserialize_with = "lenient")]
    pub converted_destination: String,
    /// What the file was converted to.
    #[serde(default, deserialize_with = "lenient")]
    pub converted_to: String,
    /// Where the file was copied or moved.
    #[serde(default, deserialize_with = "lenient")]
    pub copy_move_destination: String,
}

/// The engine results so far (`scan_results`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScanResults {
    /// Per engine (scanner name), its result.
    #[serde(default, deserialize_with = "lenient")]
    pub scan_details: BTreeMap<String, EngineResult>,
    /// The overall result code so far; 255 "In Progress" while the pipeline runs.
    #[serde(default, deserialize_with = "lenient")]
    pub scan_all_result_i: Option<i64>,
    /// The overall result as a display string.
    #[serde(default, deserialize_with = "lenient")]
    pub scan_all_result_a: String,
    /// Progress of the scanning, 0 to 100.
    #[serde(default, deserialize_with = "lenient")]
    pub progress_percentage: i64,
    /// When scanning started, ISO-8601 UTC with milliseconds.
    #[serde(default, deserialize_with = "lenient")]
    pub start_time: String,
    /// How many engines take part.
    #[serde(default, deserialize_with = "lenient")]
    pub total_avs: i64,
    /// Total scanning time in ms.
    #[serde(default, deserialize_with = "lenient")]
    pub total_time: i64,
}

/// One engine's result (`scan_results.scan_details.<engine>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EngineResult {
    /// The engine's result code. Read it typed with [`EngineResult::result_code`].
    #[serde(default, deserialize_with = "lenient")]
    pub scan_result_i: Option<i64>,
    /// The threat the engine found; `""` when none.
    #[serde(default, deserialize_with = "lenient")]
    pub threat_found: String,
    /// The engine's definition time, ISO-8601 UTC with milliseconds (the host renders the
    /// integer a scanner returned this way).
    #[serde(default, deserialize_with = "lenient")]
    pub def_time: String,
    /// How long the engine took, in ms.
    #[serde(default, deserialize_with = "lenient")]
    pub scan_time: i64,
    /// How long the engine waited before it ran, in ms.
    #[serde(default, deserialize_with = "lenient")]
    pub wait_time: i64,
    /// `"local"` for engines on this host.
    #[serde(default, deserialize_with = "lenient")]
    pub location: String,
    /// The engine's id.
    #[serde(default, deserialize_with = "lenient")]
    pub eng_id: String,
}

impl EngineResult {
    /// The engine's result as a [`ResultCode`]; `None` when absent or not in the table.
    pub fn result_code(&self) -> Option<ResultCode> {
        self.scan_result_i.and_then(ResultCode::from_code)
    }

    /// Whether the engine reported something found: Infected, Suspicious, Skipped Infected
    /// (blocklisted) or Potentially Unwanted Program.
    pub fn is_threat(&self) -> bool {
        self.result_code().is_some_and(ResultCode::is_threat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_SCANNER_INPUT: &str = include_str!("../tests/fixtures/seed-scanner-input.json");

    /// Parses `value`'s fields with every field falling back to its default when it does not
    /// fit: the slow path alone.
    fn leniently(value: &Value) -> InputFields {
        assert!(!STRICT.get());
        InputFields::deserialize(value).unwrap()
    }

    fn same(a: &InputFields, b: &InputFields) -> bool {
        a.data_id == b.data_id
            && a.file_info == b.file_info
            && a.process_info == b.process_info
            && a.scan_results == b.scan_results
            && a.metadata == b.metadata
    }

    #[test]
    fn the_strict_parse_agrees_with_the_lenient_one_where_it_succeeds() {
        let seed: Value = serde_json::from_str(SEED_SCANNER_INPUT).unwrap();
        let strict = strictly(|| InputFields::deserialize(&seed)).unwrap();
        assert!(same(&strict, &leniently(&seed)));
        assert_eq!(strict.file_info.display_name, "archive.zip");
        assert!(!strict.scan_results.scan_details.is_empty());

        // One field of the wrong type, deep inside: the strict parse fails, the lenient one
        // defaults that field only, and `from_value` gives the lenient result.
        let mut odd = seed.clone();
        odd["scan_results"]["scan_all_result_i"] = Value::from("one");
        assert!(strictly(|| InputFields::deserialize(&odd)).is_err());
        let input = Input::from_value(odd.clone()).unwrap();
        assert!(same(
            &InputFields {
                data_id: input.data_id.clone(),
                file_info: input.file_info.clone(),
                process_info: input.process_info.clone(),
                scan_results: input.scan_results.clone(),
                metadata: input.metadata.clone(),
            },
            &leniently(&odd)
        ));
        assert_eq!(input.scan_results.scan_all_result_i, None);
        assert_eq!(input.file_info.display_name, "archive.zip");
    }

    #[test]
    fn parsing_the_text_directly_gives_what_parsing_its_tree_gives() {
        let seed: Value = serde_json::from_str(SEED_SCANNER_INPUT).unwrap();
        let mut odd = seed.clone();
        odd["file_info"]["file_size"] = Value::from("big");
        let mut extra = seed.clone();
        extra["not_modelled"] = serde_json::json!({"nested": [1, 2, {"x": null}]});
        let texts = [
            SEED_SCANNER_INPUT.to_owned(),
            format!("  \n{}\n", serde_json::to_string(&seed).unwrap()),
            serde_json::to_string(&odd).unwrap(),
            serde_json::to_string(&extra).unwrap(),
            // A duplicate key: the tree keeps the last value, and so must the typed field.
            r#"{"data_id": "first", "data_id": "second"}"#.to_owned(),
            r#"{"metadata": {"ticket": 7}, "file_info": null}"#.to_owned(),
            "{}".to_owned(),
        ];
        for text in &texts {
            let direct = Input::from_json(text).unwrap();
            let tree: Value = serde_json::from_str(text).unwrap();
            let via_tree = Input::from_value(tree.clone()).unwrap();
            assert_eq!(direct, via_tree, "{text}");
            assert_eq!(direct.data_id, via_tree.data_id, "{text}");
            assert_eq!(direct.file_info, via_tree.file_info, "{text}");
            assert_eq!(direct.scan_results, via_tree.scan_results, "{text}");
            assert_eq!(direct.metadata, via_tree.metadata, "{text}");
            assert_eq!(direct.raw(), &tree, "{text}");
            assert_eq!(direct.clone().into_raw(), tree, "{text}");
        }
        assert_eq!(Input::from_json(&texts[4]).unwrap().data_id(), "second");
        // What is not an object is refused, whichever way it would be parsed.
        for bad in [
            "[]",
            r#"["a", {}, {}, {}, {}]"#,
            "7",
            "{",
            r#"{"data_id": "x"} trailing"#,
        ] {
            assert!(Input::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_strict_flag_is_cleared_after_a_parse_even_a_panicking_one() {
        Input::from_json(SEED_SCANNER_INPUT).unwrap();
        assert!(!STRICT.get());
        let panicked = std::panic::catch_unwind(|| strictly(|| panic!("in the parse")));
        assert!(panicked.is_err());
        assert!(!STRICT.get());
        // Outside `Input::from_value` the input types stay lenient.
        let info: FileInfo =
            serde_json::from_str(r#"{"display_name": "a", "file_size": "big"}"#).unwrap();
        assert_eq!((info.display_name.as_str(), info.file_size), ("a", 0));
    }
}
