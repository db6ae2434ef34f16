//! The example scanner written in C (`example-plugins/c/pe-detector.c`, built with clang for
//! WASI): the contract serves any language that targets WASI. It runs through the executor and
//! the contract like the Rust plugins.

use cordon::contract;
use cordon::plugin::{Role, RuntimeKind};
use cordon::verdict::ResultCode;
use cordon_tests::artifacts::WASM_C_PE_DETECTOR;
use serde_json::json;

use crate::harness::{Rig, limits, wasm};

/// A PE header: "MZ", e_lfanew (at 0x3c) pointing to "PE\0\0" at `pe_at`, optionally the
/// DOS stub's message.
fn pe(pe_at: u32, stub: bool) -> Vec<u8> {
    let mut bytes = vec![0u8; 0x200];
    bytes[..2].copy_from_slice(b"MZ");
    bytes[0x3c..0x40].copy_from_slice(&pe_at.to_le_bytes());
    if stub {
        let message = b"This program cannot be run in DOS mode.\r\r\n$";
        bytes[0x4e..0x4e + message.len()].copy_from_slice(message);
    }
    let at = pe_at as usize;
    if at + 4 <= bytes.len() {
        bytes[at..at + 4].copy_from_slice(b"PE\0\0");
    }
    bytes
}

#[tokio::test]
async fn the_c_scanner_flags_pe_executables_and_nothing_else() {
    let rig = Rig::new();
    let plugin = rig.plugin(
        "PE",
        Role::Scanner,
        wasm(WASM_C_PE_DETECTOR),
        limits(20_000),
    );
    assert_eq!(
        plugin.info().wasm_kind.as_deref(),
        Some("command module (wasm32-wasip1)")
    );
    let mut no_signature = pe(0x80, false);
    no_signature[0x80..0x84].copy_from_slice(b"NE\0\0");
    let cases: Vec<(&str, Vec<u8>, ResultCode, &str)> = vec![
        (
            "stub.exe",
            pe(0x80, true),
            ResultCode::SUSPICIOUS,
            "Windows PE executable (DOS stub)",
        ),
        (
            "plain.dll",
            pe(0x100, false),
            ResultCode::SUSPICIOUS,
            "Windows PE executable",
        ),
        ("old.exe", no_signature, ResultCode::CLEAN, ""),
        // e_lfanew past the end of the file.
        ("cut.exe", pe(0x4000, false), ResultCode::CLEAN, ""),
        (
            "notes.txt",
            b"MZ is a postcode".to_vec(),
            ResultCode::CLEAN,
            "",
        ),
        ("empty", Vec::new(), ResultCode::CLEAN, ""),
    ];
    for (name, bytes, code, threat) in cases {
        let sample = rig.sample(&bytes, name);
        let outcome = rig.run(&plugin, &sample, &json!({"data_id": "x"})).await;
        let v = contract::judge_scanner(RuntimeKind::Wasm, &outcome);
        assert_eq!(v.failure, None, "{name}");
        assert_eq!((v.code, v.threat_found.as_str()), (code, threat), "{name}");
        assert_eq!(v.def_time_ms, 1_767_225_600_000, "{name}");
    }
}
