//! The judge's inputs: its cases (a client's JSON lines or JSON array, `judge::cases_from_*`)
//! and the compile check's result (`judge::compile_error`: a second reader of the result codec,
//! in Rust, of bytes the sandboxed check writes). No panic; a case that is taken has its fields.
//!
//! Input: byte 0 picks the decoder (and whether the policy gives the code its stdin).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pysandbox_core::judge;
use pysandbox_core::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let policy = if pick & 0x80 != 0 {
        Policy::from_toml_str("features = [\"stdin\"]").expect("a policy")
    } else {
        Policy::default()
    };
    match pick % 3 {
        0 => {
            if let Ok(cases) = judge::cases_from_jsonl(text, &policy) {
                assert!(!cases.is_empty());
            }
        }
        1 => {
            if let Ok(cases) = judge::cases_from_json(text, &policy) {
                assert!(!cases.is_empty());
            }
        }
        _ => {
            let _ = judge::compile_error(text);
        }
    }
});
