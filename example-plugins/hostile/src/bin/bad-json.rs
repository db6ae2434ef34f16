//! `bad-json`: exits 0 after printing a truncated verdict, which is not JSON:
//! `{"def_time": 1, "scan_result_i": 0, "threat_found": ""` (no closing brace).

fn main() {
    println!("{{\"def_time\": 1, \"scan_result_i\": 0, \"threat_found\": \"\"");
}
