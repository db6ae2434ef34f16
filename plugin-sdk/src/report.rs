//! The scanner's output: a result code from MetaDefender's table and the report that carries it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A result code a scanner may return (`scan_result_i`): MetaDefender's table, every code
/// except 255 "In Progress", which only the host uses (for the overall result while the
/// pipeline runs). A value of this type is therefore always a code the host accepts.
///
/// A single engine normally returns [`NoThreatDetected`](ResultCode::NoThreatDetected),
/// [`Infected`](ResultCode::Infected), [`Suspicious`](ResultCode::Suspicious),
/// [`Failed`](ResultCode::Failed), [`NotScanned`](ResultCode::NotScanned),
/// [`Canceled`](ResultCode::Canceled), [`PotentiallyUnwantedProgram`](ResultCode::PotentiallyUnwantedProgram)
/// or [`UnsupportedFileType`](ResultCode::UnsupportedFileType). Returning `Failed` yourself is
/// allowed, but returning an error from your scanner function is the usual way to fail: the
/// host then records the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ResultCode {
    /// 0: No Threat Detected.
    NoThreatDetected = 0,
    /// 1: Infected.
    Infected = 1,
    /// 2: Suspicious.
    Suspicious = 2,
    /// 3: Failed.
    Failed = 3,
    /// 4: Cleaned / Deleted.
    CleanedDeleted = 4,
    /// 5: Unknown.
    Unknown = 5,
    /// 6: Quarantined.
    Quarantined = 6,
    /// 7: Skipped Clean (MetaDefender v5: Allowlisted).
    SkippedClean = 7,
    /// 8: Skipped Infected (MetaDefender v5: Blocklisted).
    SkippedInfected = 8,
    /// 9: Exceeded Archive Depth.
    ExceededArchiveDepth = 9,
    /// 10: Not Scanned.
    NotScanned = 10,
    /// 11: Aborted.
    Aborted = 11,
    /// 12: Encrypted Archive.
    EncryptedArchive = 12,
    /// 13: Exceeded Archive Size.
    ExceededArchiveSize = 13,
    /// 14: Exceeded Archive File Number.
    ExceededArchiveFileNumber = 14,
    /// 15: Password Protected Document.
    PasswordProtectedDocument = 15,
    /// 16: Exceeded Archive Timeout.
    ExceededArchiveTimeout = 16,
    /// 17: File type Mismatch.
    FileTypeMismatch = 17,
    /// 18: Potentially Vulnerable File.
    PotentiallyVulnerableFile = 18,
    /// 19: Canceled.
    Canceled = 19,
    /// 20: Sensitive data found.
    SensitiveDataFound = 20,
    /// 21: Yara Rule Matched.
    YaraRuleMatched = 21,
    /// 22: Potentially Unwanted Program.
    PotentiallyUnwantedProgram = 22,
    /// 23: Unsupported file type.
    UnsupportedFileType = 23,
}

impl ResultCode {
    /// Every code, in table order.
    pub const ALL: [ResultCode; 24] = [
        ResultCode::NoThreatDetected,
        ResultCode::Infected,
        ResultCode::Suspicious,
        ResultCode::Failed,
        ResultCode::CleanedDeleted,
        ResultCode::Unknown,
        ResultCode::Quarantined,
        ResultCode::SkippedClean,
        ResultCode::SkippedInfected,
        ResultCode::ExceededArchiveDepth,
        ResultCode::NotScanned,
        ResultCode::Aborted,
        ResultCode::EncryptedArchive,
        ResultCode::ExceededArchiveSize,
        ResultCode::ExceededArchiveFileNumber,
        ResultCode::PasswordProtectedDocument,
        ResultCode::ExceededArchiveTimeout,
        ResultCode::FileTypeMismatch,
        ResultCode::PotentiallyVulnerableFile,
        ResultCode::Canceled,
        ResultCode::SensitiveDataFound,
        ResultCode::YaraRuleMatched,
        ResultCode::PotentiallyUnwantedProgram,
        ResultCode::UnsupportedFileType,
    ];

    /// MetaDefender v5's name for [`SkippedClean`](ResultCode::SkippedClean) (7).
    pub const ALLOWLISTED: ResultCode = ResultCode::SkippedClean;
    /// MetaDefender v5's name for [`SkippedInfected`](ResultCode::SkippedInfected) (8).
    pub const BLOCKLISTED: ResultCode = ResultCode::SkippedInfected;

    /// The numeric code (`scan_result_i`).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The code for `value`, if an engine may return it. `None` for 255 "In Progress" and for
    /// anything outside the table.
    pub const fn from_code(value: i64) -> Option<ResultCode> {
        if value >= 0 && value < ResultCode::ALL.len() as i64 {
            Some(ResultCode::ALL[value as usize])
        } else {
            None
        }
    }

    /// The display string clients show (`scan_all_result_a`), for example `"Infected"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResultCode::NoThreatDetected => "No Threat Detected",
            ResultCode::Infected => "Infected",
            ResultCode::Suspicious => "Suspicious",
            ResultCode::Failed => "Failed",
            ResultCode::CleanedDeleted => "Cleaned / Deleted",
            ResultCode::Unknown => "Unknown",
            ResultCode::Quarantined => "Quarantined",
            ResultCode::SkippedClean => "Skipped Clean",
            ResultCode::SkippedInfected => "Skipped Infected",
            ResultCode::ExceededArchiveDepth => "Exceeded Archive Depth",
            ResultCode::NotScanned => "Not Scanned",
            ResultCode::Aborted => "Aborted",
            ResultCode::EncryptedArchive => "Encrypted Archive",
            ResultCode::ExceededArchiveSize => "Exceeded Archive Size",
            ResultCode::ExceededArchiveFileNumber => "Exceeded Archive File Number",
            ResultCode::PasswordProtectedDocument => "Password Protected Document",
            ResultCode::ExceededArchiveTimeout => "Exceeded Archive Timeout",
            ResultCode::FileTypeMismatch => "File type Mismatch",
            ResultCode::PotentiallyVulnerableFile => "Potentially Vulnerable File",
            ResultCode::Canceled => "Canceled",
            ResultCode::SensitiveDataFound => "Sensitive data found",
            ResultCode::YaraRuleMatched => "Yara Rule Matched",
            ResultCode::PotentiallyUnwantedProgram => "Potentially Unwanted Program",
            ResultCode::UnsupportedFileType => "Unsupported file type",
        }
    }

    /// Whether the code reports something found: Infected, Suspicious, Skipped Infected
    /// (blocklisted) or Potentially Unwanted Program.
    pub const fn is_threat(self) -> bool {
        matches!(
            self,
            ResultCode::Infected
                | ResultCode::Suspicious
                | ResultCode::SkippedInfected
                | ResultCode::PotentiallyUnwantedProgram
        )
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ResultCode> for u8 {
    fn from(code: ResultCode) -> u8 {
        code.code()
    }
}

/// The error of converting an integer that is not an engine result code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownResultCode(pub i64);

impl fmt::Display for UnknownResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not a result code a scanner may return (0 to 23)",
            self.0
        )
    }
}

impl std::error::Error for UnknownResultCode {}

impl TryFrom<i64> for ResultCode {
    type Error = UnknownResultCode;
    fn try_from(value: i64) -> Result<ResultCode, UnknownResultCode> {
        ResultCode::from_code(value).ok_or(UnknownResultCode(value))
    }
}

impl TryFrom<u8> for ResultCode {
    type Error = UnknownResultCode;
    fn try_from(value: u8) -> Result<ResultCode, UnknownResultCode> {
        ResultCode::try_from(i64::from(value))
    }
}

impl Serialize for ResultCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for ResultCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ResultCode, D::Error> {
        let value = i64::deserialize(deserializer)?;
        ResultCode::try_from(value).map_err(serde::de::Error::custom)
    }
}

/// What a scanner reports: serializes to exactly the three fields of the contract,
/// `{"def_time": <integer>, "scan_result_i": <integer>, "threat_found": <string>}`.
///
/// Every value of this type is output the host accepts: the code comes from [`ResultCode`]
/// and `def_time` stays within [`ScanReport::MAX_DEF_TIME_MS`].
///
/// ```
/// use cordon_plugin_sdk::{ResultCode, ScanReport};
///
/// /// When this scanner's rules were last updated (ms since epoch): 2026-01-01T00:00:00Z.
/// const DEF_TIME: u64 = 1_767_225_600_000;
///
/// let clean = ScanReport::clean().with_def_time(DEF_TIME);
/// let found = ScanReport::infected("Example.Threat").with_def_time(DEF_TIME);
/// let odd = ScanReport::new(ResultCode::Suspicious, "looks packed");
/// assert_eq!(
///     found.to_json(),
///     r#"{"def_time":1767225600000,"scan_result_i":1,"threat_found":"Example.Threat"}"#
/// );
/// # let _ = (clean, odd);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ScanReport {
    #[serde(rename = "def_time")]
    def_time_ms: u64,
    #[serde(rename = "scan_result_i")]
    result: ResultCode,
    threat_found: String,
}

impl ScanReport {
    /// The largest `def_time` a report carries: 9999-12-31T23:59:59.999Z, the last instant
    /// that ISO-8601's four-digit years (in which the host renders `def_time`) can show.
    /// [`with_def_time`](ScanReport::with_def_time) clamps to it.
    pub const MAX_DEF_TIME_MS: u64 = 253_402_300_799_999;

    /// A report with `result` and `threat_found`, and `def_time` 0 (set it with
    /// [`with_def_time`](ScanReport::with_def_time)).
    pub fn new(result: ResultCode, threat_found: impl Into<String>) -> ScanReport {
        ScanReport {
            def_time_ms: 0,
            result,
            threat_found: threat_found.into(),
        }
    }

    /// No Threat Detected (0), `threat_found` `""`.
    pub fn clean() -> ScanReport {
        ScanReport::new(ResultCode::NoThreatDetected, "")
    }

    /// Infected (1) with the name of the threat.
    pub fn infected(threat: impl Into<String>) -> ScanReport {
        ScanReport::new(ResultCode::Infected, threat)
    }

    /// Suspicious (2) with a description of what looks suspicious.
    pub fn suspicious(threat: impl Into<String>) -> ScanReport {
        ScanReport::new(ResultCode::Suspicious, threat)
    }

    /// Sets `def_time`, the time of the scanner's definitions in ms since the Unix epoch. A
    /// scanner normally passes a constant it updates with its rules; no clock is needed (and a
    /// wasm plugin should not depend on one). Values above [`MAX_DEF_TIME_MS`](ScanReport::MAX_DEF_TIME_MS)
    /// are clamped to it.
    pub fn with_def_time(mut self, def_time_ms: u64) -> ScanReport {
        self.def_time_ms = def_time_ms.min(ScanReport::MAX_DEF_TIME_MS);
        self
    }

    /// The definition time, ms since the Unix epoch.
    pub fn def_time_ms(&self) -> u64 {
        self.def_time_ms
    }

    /// The result code.
    pub fn result(&self) -> ResultCode {
        self.result
    }

    /// The threat description; `""` when none.
    pub fn threat_found(&self) -> &str {
        &self.threat_found
    }

    /// The report as the one-line JSON object a scanner prints (without the newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ScanReport always serializes")
    }
}

impl<'de> Deserialize<'de> for ScanReport {
    /// Reads a scanner's output the way the host does: the three fields are required and must
    /// have the right type and range; other fields are ignored.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ScanReport, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            def_time: u64,
            scan_result_i: ResultCode,
            threat_found: String,
        }
        let wire = Wire::deserialize(deserializer)?;
        if wire.def_time > ScanReport::MAX_DEF_TIME_MS {
            return Err(serde::de::Error::custom(format!(
                "def_time {} is past {}",
                wire.def_time,
                ScanReport::MAX_DEF_TIME_MS
            )));
        }
        Ok(ScanReport {
            def_time_ms: wire.def_time,
            result: wire.scan_result_i,
            threat_found: wire.threat_found,
        })
    }
}
