//! Tests of the SDK at its public surface: input parsing, output shape, the harness.

use std::ops::ControlFlow;

use cordon_plugin_sdk::serde_json::{self, Value, json};
use cordon_plugin_sdk::testing::{self, Sample};
use cordon_plugin_sdk::{Input, ResultCode, SampleFile, ScanReport};

const SEED_SCANNER_INPUT: &str = include_str!("fixtures/seed-scanner-input.json");
const SEED_POST_ACTION_RESULT: &str = include_str!("fixtures/seed-post-action-result.json");

#[test]
fn parses_the_seed_scanner_input() {
    // The host sends one compact line; the seed shows it pretty-printed. Both parse.
    let compact =
        serde_json::to_string(&serde_json::from_str::<Value>(SEED_SCANNER_INPUT).unwrap()).unwrap()
            + "\n";
    for text in [SEED_SCANNER_INPUT, compact.as_str()] {
        let input = Input::from_json(text).unwrap();
        assert_eq!(input.data_id(), "091c07fe6203479983682f3b4a491ee6");
        assert_eq!(input.file_name(), "archive.zip");
        assert_eq!(input.file_size(), 2_123_967);
        assert_eq!(input.mime_type(), Some("application/zip"));
        assert_eq!(
            input.file_type_description(),
            Some("ZIP compressed archive")
        );
        assert_eq!(input.md5(), Some("ec8fa3c2897c0956f0e9ed5c092310b9"));
        assert_eq!(
            input.sha1(),
            Some("0027fc18ed97063387bca9c518a02a6faba85c38")
        );
        assert_eq!(
            input.sha256(),
            Some("4fb0083cd3cd966817c1ee4fa3f02519d05eca0b57c2bf71109d3bd69acebd41")
        );
        assert_eq!(input.file_info.upload_timestamp, "2017-04-27T13:05:20.435Z");
        assert_eq!(input.workflow(), "File scan");
        assert_eq!(input.process_result(), "Blocked");
        assert!(input.is_blocked());
        assert_eq!(input.process_info.blocked_reason, "Infected");
        assert_eq!(input.process_info.user_agent, "webscan");
        assert_eq!(input.process_info.progress_percentage, 100);
        assert_eq!(input.overall_result(), Some(ResultCode::Infected));
        let clam = &input.engine_results()["ClamAV"];
        assert_eq!(clam.result_code(), Some(ResultCode::Infected));
        assert!(clam.is_threat());
        assert_eq!(clam.threat_found, "Win.Trojan.Trojan-1082 FOUND");
        assert_eq!(clam.def_time, "2017-04-27T06:59:21.000Z");
        assert_eq!(clam.scan_time, 51);
        assert_eq!(clam.location, "local");
        assert_eq!(input.metadata(), None);
        // What the types do not model stays in the raw JSON.
        assert_eq!(input.raw()["vulnerability_info"], json!({}));
    }
}

#[test]
fn parses_the_seed_post_action_result() {
    let input = Input::from_json(SEED_POST_ACTION_RESULT).unwrap();
    assert_eq!(input.workflow(), "File process");
    assert!(!input.is_blocked());
    assert_eq!(input.process_info.post_processing.actions_ran, "Test PA");
    assert_eq!(input.process_info.username, "LOCAL/admin");
    assert_eq!(input.process_info.verdicts, ["No Threat Detected"]);
    assert_eq!(input.engine_results()["Avira"].eng_id, "avira_1_windows");
    assert_eq!(input.overall_result(), Some(ResultCode::NoThreatDetected));
    assert_eq!(input.raw()["post_action"]["details"][0]["verdict"], 35);
}

#[test]
fn input_tolerates_missing_fields() {
    for text in [
        "{}",
        "{}\n",
        r#"{"file_info": {}}"#,
        r#"{"scan_results": {"scan_details": {"X": {}}}}"#,
    ] {
        let input = Input::from_json(text).unwrap();
        assert_eq!(input.file_name(), "");
        assert_eq!(input.file_size(), 0);
        assert_eq!(input.sha256(), None);
        assert_eq!(input.workflow(), "");
        assert_eq!(input.metadata(), None);
        assert_eq!(input.overall_result(), None);
    }
    let input = Input::from_json(r#"{"scan_results": {"scan_details": {"X": {}}}}"#).unwrap();
    assert_eq!(input.engine_results()["X"].result_code(), None);
    assert_eq!(Input::default().raw(), &json!({}));
}

#[test]
fn input_tolerates_unknown_fields_and_wrong_types() {
    let text = json!({
        "data_id": "abc",
        "brand_new_section": {"x": [1, 2, 3]},
        "file_info": {
            "display_name": "a.pdf",
            "file_size": "not a number",
            "sha256": null,
            "extra": true
        },
        "process_info": {"profile": 42, "result": "Allowed", "post_processing": "odd"},
        "scan_results": {
            "scan_all_result_i": 255,
            "scan_details": {"E": {"scan_result_i": 2, "def_time": 12345, "new": 1}}
        },
        "metadata": {"behave": {"exit": 3}, "ticket": "T-1"}
    })
    .to_string();
    let input = Input::from_json(&text).unwrap();
    assert_eq!(input.data_id(), "abc");
    assert_eq!(input.file_name(), "a.pdf");
    assert_eq!(input.file_size(), 0);
    assert_eq!(input.sha256(), None);
    assert_eq!(input.workflow(), "");
    assert_eq!(input.process_result(), "Allowed");
    // 255 "In Progress" is not an engine result code.
    assert_eq!(input.scan_results.scan_all_result_i, Some(255));
    assert_eq!(input.overall_result(), None);
    let engine = &input.engine_results()["E"];
    assert_eq!(engine.result_code(), Some(ResultCode::Suspicious));
    assert_eq!(engine.def_time, "");
    assert_eq!(input.metadata_field("ticket"), Some(&json!("T-1")));
    assert_eq!(input.metadata().unwrap()["behave"]["exit"], 3);
    assert_eq!(input.raw()["brand_new_section"]["x"][2], 3);
}

#[test]
fn input_rejects_what_is_not_a_json_object() {
    for text in ["", "not json", "[1, 2]", "42", "{\"data_id\": "] {
        assert!(Input::from_json(text).is_err(), "{text:?} parsed");
    }
}

#[test]
fn report_serializes_to_exactly_the_three_fields() {
    let report = ScanReport::infected("EICAR-Test-File").with_def_time(1_491_288_912_392);
    let value: Value = serde_json::from_str(&report.to_json()).unwrap();
    let object = value.as_object().unwrap();
    assert_eq!(object.len(), 3);
    assert!(object["def_time"].is_u64());
    assert_eq!(object["def_time"], 1_491_288_912_392u64);
    assert!(object["scan_result_i"].is_u64());
    assert_eq!(object["scan_result_i"], 1);
    assert_eq!(object["threat_found"], "EICAR-Test-File");
    assert_eq!(
        serde_json::to_string(&ScanReport::clean()).unwrap(),
        r#"{"def_time":0,"scan_result_i":0,"threat_found":""}"#
    );
}

#[test]
fn report_constructors() {
    assert_eq!(ScanReport::clean().result(), ResultCode::NoThreatDetected);
    assert_eq!(ScanReport::clean().threat_found(), "");
    assert_eq!(ScanReport::clean().def_time_ms(), 0);
    let report = ScanReport::new(ResultCode::FileTypeMismatch, "x").with_def_time(7);
    assert_eq!(
        (
            report.result().code(),
            report.threat_found(),
            report.def_time_ms()
        ),
        (17, "x", 7)
    );
    assert_eq!(ScanReport::suspicious("s").result(), ResultCode::Suspicious);
    // def_time stays within what the host can render.
    assert_eq!(
        ScanReport::clean().with_def_time(u64::MAX).def_time_ms(),
        ScanReport::MAX_DEF_TIME_MS
    );
}

#[test]
fn every_code_round_trips() {
    assert_eq!(ResultCode::ALL.len(), 24);
    for (index, code) in ResultCode::ALL.into_iter().enumerate() {
        assert_eq!(code.code() as usize, index);
        assert_eq!(ResultCode::from_code(index as i64), Some(code));
        assert_eq!(ResultCode::try_from(code.code()), Ok(code));
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, index.to_string());
        assert_eq!(serde_json::from_str::<ResultCode>(&json).unwrap(), code);
        let report = ScanReport::new(code, "t");
        let back: ScanReport = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(back, report);
        assert!(!code.as_str().is_empty());
    }
    assert_eq!(ResultCode::BLOCKLISTED.code(), 8);
    assert_eq!(ResultCode::ALLOWLISTED.code(), 7);
    assert_eq!(
        ResultCode::FileTypeMismatch.to_string(),
        "File type Mismatch"
    );
    assert_eq!(ResultCode::CleanedDeleted.as_str(), "Cleaned / Deleted");
}

#[test]
fn in_progress_and_other_codes_are_unrepresentable() {
    for value in [255i64, 24, -1, 256, i64::MAX, i64::MIN] {
        assert_eq!(ResultCode::from_code(value), None);
        assert!(ResultCode::try_from(value).is_err());
        assert!(serde_json::from_str::<ResultCode>(&value.to_string()).is_err());
    }
    assert!(ResultCode::try_from(255u8).is_err());
    let bad = r#"{"def_time": 1, "scan_result_i": 255, "threat_found": ""}"#;
    assert!(serde_json::from_str::<ScanReport>(bad).is_err());
}

#[test]
fn report_reads_back_like_the_host_reads_it() {
    let pretty =
        "{\n  \"def_time\": 1491288912392,\n  \"scan_result_i\": 0,\n  \"threat_found\": \"\"\n}";
    let report: ScanReport = serde_json::from_str(pretty).unwrap();
    assert_eq!(report, ScanReport::clean().with_def_time(1_491_288_912_392));
    for bad in [
        r#"{"scan_result_i": 0, "threat_found": ""}"#,
        r#"{"def_time": -1, "scan_result_i": 0, "threat_found": ""}"#,
        r#"{"def_time": 1.5, "scan_result_i": 0, "threat_found": ""}"#,
        r#"{"def_time": "1", "scan_result_i": 0, "threat_found": ""}"#,
        r#"{"def_time": 1, "scan_result_i": "0", "threat_found": ""}"#,
        r#"{"def_time": 1, "scan_result_i": 0, "threat_found": null}"#,
        r#"{"def_time": 1, "scan_result_i": 0}"#,
    ] {
        assert!(
            serde_json::from_str::<ScanReport>(bad).is_err(),
            "{bad} accepted"
        );
    }
}

/// A scanner written as a plugin author would: finds "EVIL" anywhere, including across chunks.
fn evil_scanner(input: &Input, file: &mut SampleFile) -> Result<ScanReport, String> {
    if input.metadata_field("fail") == Some(&json!(true)) {
        return Err("asked to fail".to_owned());
    }
    let mut carry = Vec::new();
    let mut found = false;
    file.read_chunks(3, |chunk| {
        carry.extend_from_slice(chunk);
        found = carry.windows(4).any(|w| w == b"EVIL");
        let keep = carry.len().saturating_sub(3);
        carry.drain(..keep);
        if found {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .map_err(|err| err.to_string())?;
    Ok(if found {
        ScanReport::infected(format!("Evil in {}", file.name()))
    } else {
        ScanReport::clean()
    }
    .with_def_time(1_000))
}

#[test]
fn harness_runs_a_scanner() {
    let report = testing::scan(evil_scanner, Sample::bytes("x.txt", b"abcdEVILefg")).unwrap();
    assert_eq!(
        report,
        ScanReport::infected("Evil in x.txt").with_def_time(1_000)
    );
    let report = testing::scan(evil_scanner, Sample::bytes("y.txt", b"abcdEVXILefg")).unwrap();
    assert_eq!(report.result(), ResultCode::NoThreatDetected);
    let report = testing::scan(evil_scanner, Sample::bytes("empty", b"")).unwrap();
    assert_eq!(report.result(), ResultCode::NoThreatDetected);
    let err = testing::scan(
        evil_scanner,
        Sample::bytes("z.txt", b"EVIL").with_metadata(json!({"fail": true})),
    )
    .unwrap_err();
    assert_eq!(err, "asked to fail");
}

#[test]
fn harness_generates_the_input_from_the_sample() {
    let seen = testing::scan(
        |input: &Input, file: &mut SampleFile| -> Result<ScanReport, std::io::Error> {
            assert_eq!(input.file_name(), "report.pdf");
            assert_eq!(input.file_size(), 5);
            assert_eq!(file.name(), "report.pdf");
            assert_eq!(file.extension().as_deref(), Some("pdf"));
            assert_eq!(file.size()?, 5);
            assert_eq!(file.bytes()?, b"%PDF-");
            assert_eq!(file.head(2)?, b"%P");
            assert_eq!(input.workflow(), "wf");
            assert_eq!(input.process_result(), "Processing");
            assert_eq!(input.overall_result(), None);
            assert_eq!(input.metadata_field("k"), Some(&json!("v")));
            Ok(ScanReport::clean())
        },
        Sample::bytes("report.pdf", "%PDF-")
            .with_workflow("wf")
            .with_metadata(json!({"k": "v"})),
    );
    assert_eq!(seen.unwrap(), ScanReport::clean());
}

#[test]
fn harness_reads_files_on_disk() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seed-scanner-input.json");
    let report = testing::scan(evil_scanner, Sample::path(&path)).unwrap();
    assert_eq!(report.result(), ResultCode::NoThreatDetected);
}

#[test]
fn full_run_prints_one_json_line() {
    let run = testing::run_scanner(evil_scanner, Sample::bytes("x.bin", "..EVIL.."));
    assert_eq!(run.exit_code, 0);
    assert_eq!(run.stderr, "");
    assert!(run.stdout.ends_with('\n'));
    assert_eq!(run.stdout.lines().count(), 1);
    assert_eq!(
        run.report(),
        Some(ScanReport::infected("Evil in x.bin").with_def_time(1_000))
    );
}

#[test]
fn full_run_turns_an_error_into_a_clean_failure() {
    let run = testing::run_scanner(
        evil_scanner,
        Sample::bytes("x.bin", "x").with_metadata(json!({"fail": true})),
    );
    assert_eq!(run.exit_code, 1);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!("{}: asked to fail\n", testing::PLUGIN_NAME)
    );
    assert_eq!(run.report(), None);
}

#[test]
fn full_run_turns_a_panic_into_a_clean_failure() {
    let run = testing::run_scanner(
        |_: &Input, _: &mut SampleFile| -> Result<ScanReport, String> { panic!("boom") },
        Sample::bytes("x.bin", "x"),
    );
    assert_eq!(run.exit_code, 1);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with(testing::PLUGIN_NAME),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("boom"), "{}", run.stderr);
}

#[test]
fn full_run_fails_cleanly_on_bad_invocations() {
    let run = testing::run_scanner_raw(evil_scanner, b"not json", None);
    assert_eq!((run.exit_code, run.stdout.as_str()), (1, ""));
    assert!(
        run.stderr.contains("not the scan result JSON"),
        "{}",
        run.stderr
    );

    let run = testing::run_scanner_raw(evil_scanner, b"{}\n", None);
    assert_eq!(run.exit_code, 1);
    assert!(run.stderr.contains("last argument"), "{}", run.stderr);

    let missing = std::path::Path::new("/nonexistent/cordon/sample.bin");
    let run = testing::run_scanner_raw(evil_scanner, b"{}\n", Some(missing));
    assert_eq!(run.exit_code, 1);
    assert!(run.stderr.contains("cannot open"), "{}", run.stderr);
}

/// A scanner of the file alone: Suspicious for an empty file, an error for one that starts
/// with `!`.
fn empty_file_scanner(file: &mut SampleFile) -> Result<ScanReport, String> {
    let head = file.head(1).map_err(|e| e.to_string())?;
    match head.first() {
        None => Ok(ScanReport::suspicious("Empty")),
        Some(b'!') => Err(format!("{} starts with !", file.name())),
        Some(_) => Ok(ScanReport::clean()),
    }
}

#[test]
fn a_scanner_of_the_file_alone_runs_in_the_harness() {
    assert_eq!(
        testing::scan_file(empty_file_scanner, Sample::bytes("e.bin", "")),
        Ok(ScanReport::suspicious("Empty"))
    );
    assert_eq!(
        testing::scan_file(empty_file_scanner, Sample::bytes("x.bin", "x")),
        Ok(ScanReport::clean())
    );
}

#[test]
fn a_scanner_of_the_file_alone_follows_the_contract() {
    let run = testing::run_file_scanner(empty_file_scanner, Sample::bytes("e.bin", ""));
    assert_eq!((run.exit_code, run.stderr.as_str()), (0, ""));
    assert_eq!(
        run.stdout,
        "{\"def_time\":0,\"scan_result_i\":2,\"threat_found\":\"Empty\"}\n"
    );

    let run = testing::run_file_scanner(empty_file_scanner, Sample::bytes("bang.bin", "!x"));
    assert_eq!((run.exit_code, run.stdout.as_str()), (1, ""));
    assert_eq!(
        run.stderr,
        format!("{}: bang.bin starts with !\n", testing::PLUGIN_NAME)
    );

    let run = testing::run_file_scanner(
        |_: &mut SampleFile| -> Result<ScanReport, String> { panic!("boom") },
        Sample::bytes("x.bin", "x"),
    );
    assert_eq!((run.exit_code, run.stdout.as_str()), (1, ""));
    assert!(run.stderr.contains("boom"), "{}", run.stderr);
}

#[test]
fn post_actions_run_in_the_harness() {
    fn act(input: &Input, file: &mut SampleFile) -> Result<(), String> {
        if input.is_blocked() {
            Err(format!("would quarantine {}", file.name()))
        } else {
            Ok(())
        }
    }
    assert_eq!(
        testing::post_action(act, Sample::bytes("a", "x").with_process_result("Allowed")),
        Ok(())
    );
    assert_eq!(
        testing::post_action(act, Sample::bytes("a", "x").with_process_result("Blocked")),
        Err("would quarantine a".to_owned())
    );
    let run = testing::run_post_action(act, Sample::bytes("a", "x").with_process_result("Allowed"));
    assert_eq!(
        (run.exit_code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "", "")
    );
    let run = testing::run_post_action(act, Sample::bytes("a", "x").with_process_result("Blocked"));
    assert_eq!(run.exit_code, 1);
    assert!(run.stderr.ends_with(": would quarantine a\n"));
}

#[test]
fn read_chunks_gives_full_chunks_and_counts_bytes() {
    testing::scan(
        |_: &Input, file: &mut SampleFile| -> Result<ScanReport, std::io::Error> {
            let mut sizes = Vec::new();
            let total = file.read_chunks(4, |chunk| {
                sizes.push(chunk.len());
                ControlFlow::Continue(())
            })?;
            assert_eq!((total, sizes), (10, vec![4, 4, 2]));
            let mut seen = 0;
            let total = file.read_chunks(4, |_| {
                seen += 1;
                ControlFlow::Break(())
            })?;
            assert_eq!((total, seen), (4, 1));
            // Chunks as large as the file or larger (the buffer is cut to the file's size).
            for chunk_size in [10, 11, 1 << 20] {
                let mut chunks = Vec::new();
                let total = file.read_chunks(chunk_size, |chunk| {
                    chunks.push(chunk.to_vec());
                    ControlFlow::Continue(())
                })?;
                assert_eq!((total, chunks), (10, vec![b"0123456789".to_vec()]));
            }
            let mut all = Vec::new();
            assert_eq!(
                file.for_each_chunk(|chunk| all.extend_from_slice(chunk))?,
                10
            );
            assert_eq!(all, b"0123456789");
            Ok(ScanReport::clean())
        },
        Sample::bytes("digits", "0123456789"),
    )
    .unwrap();
}
