//! Host → child request frames (`protocol::Request`; the bootstrap has the decoder in use, this
//! one documents and tests the layout). Decoding never panics and allocates no more than the
//! frame's size; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pysandbox_core::protocol::{Request, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data, MAX_FRAME) {
        assert_eq!(r.encode(), data, "{r:?} re-encodes differently");
    }
});
