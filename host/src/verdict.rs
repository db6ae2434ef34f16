//! MetaDefender result codes (`scan_result_i`, `scan_all_result_i`) and the one priority order
//! by which Cordon combines engine results into a file's overall result.

use std::fmt;

/// A MetaDefender result code, as used in `scan_result_i` and `scan_all_result_i`.
///
/// Only the codes of the published table exist: constructing one from any other integer fails,
/// so a value of this type is always a code that clients know how to display.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResultCode(u8);

/// Every known code with its display string, in table order.
const TABLE: &[(u8, &str)] = &[
    (0, "No Threat Detected"),
    (1, "Infected"),
    (2, "Suspicious"),
    (3, "Failed"),
    (4, "Cleaned / Deleted"),
    (5, "Unknown"),
    (6, "Quarantined"),
    (7, "Skipped Clean"),
    (8, "Skipped Infected"),
    (9, "Exceeded Archive Depth"),
    (10, "Not Scanned"),
    (11, "Aborted"),
    (12, "Encrypted Archive"),
    (13, "Exceeded Archive Size"),
    (14, "Exceeded Archive File Number"),
    (15, "Password Protected Document"),
    (16, "Exceeded Archive Timeout"),
    (17, "File type Mismatch"),
    (18, "Potentially Vulnerable File"),
    (19, "Canceled"),
    (20, "Sensitive data found"),
    (21, "Yara Rule Matched"),
    (22, "Potentially Unwanted Program"),
    (23, "Unsupported file type"),
    (255, "In Progress"),
];

/// How engine results combine: the first code of this list that any engine returned is the
/// file's `scan_all_result_i`. This order is Cordon's own (MetaDefender does not publish one);
/// its principles:
///
/// 1. a finding beats everything: Infected, then the other threat-like results;
/// 2. any result that means "not (fully) scanned" beats a clean result, so a file that one
///    engine could not scan never looks clean (Failed above the archive/policy limits);
/// 3. clean results come last: Skipped Clean (allowlisted), then No Threat Detected.
///
/// When no engine ran at all the result is Not Scanned (10). In Progress (255) is never an
/// engine result; it is the overall result while the pipeline runs.
pub const PRIORITY: &[u8] = &[
    1,  // Infected
    8,  // Skipped Infected (blocklisted)
    2,  // Suspicious
    22, // Potentially Unwanted Program
    4,  // Cleaned / Deleted (a threat was found and handled)
    6,  // Quarantined
    21, // Yara Rule Matched
    20, // Sensitive data found
    18, // Potentially Vulnerable File
    17, // File type Mismatch
    15, // Password Protected Document
    12, // Encrypted Archive
    9,  // Exceeded Archive Depth
    13, // Exceeded Archive Size
    14, // Exceeded Archive File Number
    16, // Exceeded Archive Timeout
    3,  // Failed
    11, // Aborted
    19, // Canceled
    23, // Unsupported file type
    10, // Not Scanned
    5,  // Unknown
    7,  // Skipped Clean (allowlisted)
    0,  // No Threat Detected
];

impl ResultCode {
    /// No Threat Detected (0).
    pub const CLEAN: ResultCode = ResultCode(0);
    /// Infected (1).
    pub const INFECTED: ResultCode = ResultCode(1);
    /// Suspicious (2).
    pub const SUSPICIOUS: ResultCode = ResultCode(2);
    /// Failed (3): the engine ran but its outcome broke the contract, or it did not finish.
    pub const FAILED: ResultCode = ResultCode(3);
    /// Skipped Clean (7).
    pub const SKIPPED_CLEAN: ResultCode = ResultCode(7);
    /// Not Scanned (10): no engine looked at the file.
    pub const NOT_SCANNED: ResultCode = ResultCode(10);
    /// File type Mismatch (17).
    pub const FILE_TYPE_MISMATCH: ResultCode = ResultCode(17);
    /// Canceled (19).
    pub const CANCELED: ResultCode = ResultCode(19);
    /// In Progress (255): the overall result while the pipeline runs.
    pub const IN_PROGRESS: ResultCode = ResultCode(255);

    /// The code for `value`, if the table has it.
    pub fn new(value: i64) -> Option<ResultCode> {
        TABLE
            .iter()
            .find(|(code, _)| i64::from(*code) == value)
            .map(|(code, _)| ResultCode(*code))
    }

    /// The numeric code.
    pub fn value(self) -> u8 {
        self.0
    }

    /// The display string clients show (`scan_all_result_a`), for example `"Infected"`.
    pub fn as_str(self) -> &'static str {
        TABLE
            .iter()
            .find(|(code, _)| *code == self.0)
            .map(|(_, name)| *name)
            .expect("a ResultCode is always in the table")
    }

    /// Whether an engine may return this code (everything but In Progress).
    pub fn is_engine_result(self) -> bool {
        self != ResultCode::IN_PROGRESS
    }

    /// Position in [`PRIORITY`]: lower wins. In Progress has no rank.
    pub fn rank(self) -> usize {
        PRIORITY
            .iter()
            .position(|c| *c == self.0)
            .unwrap_or(PRIORITY.len())
    }

    /// Every code of the table, In Progress included.
    pub fn all() -> impl Iterator<Item = ResultCode> {
        TABLE.iter().map(|(code, _)| ResultCode(*code))
    }

    /// Combine engine results into the overall result: the highest-priority code present,
    /// or Not Scanned when there is none.
    pub fn combine(codes: impl IntoIterator<Item = ResultCode>) -> ResultCode {
        codes
            .into_iter()
            .min_by_key(|c| c.rank())
            .unwrap_or(ResultCode::NOT_SCANNED)
    }
}

impl fmt::Debug for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.as_str())
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ResultCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ResultCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(d)?;
        ResultCode::new(value).ok_or_else(|| {
            serde::de::Error::custom(format_args!("{value} is not a MetaDefender result code"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_lists_every_engine_code_once() {
        let mut listed: Vec<u8> = PRIORITY.to_vec();
        listed.sort_unstable();
        let mut engine_codes: Vec<u8> = ResultCode::all()
            .filter(|c| c.is_engine_result())
            .map(ResultCode::value)
            .collect();
        engine_codes.sort_unstable();
        assert_eq!(listed, engine_codes);
    }

    #[test]
    fn combine_follows_the_documented_order() {
        let c = |v| ResultCode::new(v).unwrap();
        assert_eq!(ResultCode::combine([c(0), c(2), c(1)]), c(1));
        assert_eq!(ResultCode::combine([c(0), c(22), c(2)]), c(2));
        assert_eq!(
            ResultCode::combine([c(0), c(3)]),
            c(3),
            "a failed engine never looks clean"
        );
        assert_eq!(ResultCode::combine([c(7), c(0)]), c(7));
        assert_eq!(ResultCode::combine([c(17), c(3)]), c(17));
        assert_eq!(ResultCode::combine([]), ResultCode::NOT_SCANNED);
    }

    #[test]
    fn unknown_codes_are_refused() {
        assert!(ResultCode::new(24).is_none());
        assert!(ResultCode::new(-1).is_none());
        assert!(ResultCode::new(256).is_none());
        assert_eq!(ResultCode::new(255), Some(ResultCode::IN_PROGRESS));
        assert_eq!(ResultCode::new(17).unwrap().as_str(), "File type Mismatch");
    }
}
