//! Policy files in TOML (`Policy::from_toml_str`): `--policy FILE`, the server's `--policy`.
//! No panic; a policy that parses and validates is shown (`to_toml_string`) as TOML that parses
//! back to the same policy.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pysandbox_core::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = Policy::from_toml_str(text) else {
        return;
    };
    if p.validate().is_err() {
        return;
    }
    let _ = p.effective_limits();
    let _ = p.effective_features();
    let shown = p.to_toml_string();
    let back = Policy::from_toml_str(&shown)
        .unwrap_or_else(|e| panic!("the shown policy does not parse: {e}\n{shown}"));
    // Showing a policy writes every limit: they are then all given (pinned).
    let mut want = p.clone();
    want.processes_pinned = back.processes_pinned;
    want.memory_pinned = back.memory_pinned;
    assert_eq!(back, want, "{shown}");
    back.validate().expect("the shown policy validates");
});
