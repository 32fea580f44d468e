//! Zygote → host frames (`protocol::FromZygote`): a zygote runs the policy's preloads and
//! forks the untrusted children, so the host decodes what it sends as hostile bytes. Decoding
//! never panics; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pysandbox_core::protocol::FromZygote;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = FromZygote::decode(data) {
        assert_eq!(m.encode(), data, "{m:?} re-encodes differently");
    }
});
