//! Policies in JSON (`Policy::from_json_str`): policy files ending in `.json`, the Python
//! package's and the warm workers' policies. No panic; a policy that parses and validates
//! serializes to JSON that parses back to the same policy.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pysandbox_core::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = Policy::from_json_str(text) else {
        return;
    };
    if p.validate().is_err() {
        return;
    }
    let _ = p.effective_limits();
    let json = serde_json::to_string(&p).expect("a policy serializes");
    let back = Policy::from_json_str(&json)
        .unwrap_or_else(|e| panic!("the serialized policy does not parse: {e}\n{json}"));
    let mut want = p.clone();
    want.processes_pinned = back.processes_pinned;
    want.memory_pinned = back.memory_pinned;
    assert_eq!(back, want, "{json}");
    back.validate().expect("the serialized policy validates");
});
