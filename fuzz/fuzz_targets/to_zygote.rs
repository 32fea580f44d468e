//! Host → zygote frames (`protocol::ToZygote`): decoded by the zygote, inside the jail's
//! namespaces. Decoding never panics; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pysandbox_core::protocol::ToZygote;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ToZygote::decode(data) {
        assert_eq!(m.encode(), data, "{m:?} re-encodes differently");
    }
});
