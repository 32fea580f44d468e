//! Relay frames (`protocol::Relay`): a repl's worker process relays its jail's streams to the
//! front process. Decoding a prefix never panics, never claims more bytes than it was given,
//! and what decodes re-encodes to the bytes it took.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pysandbox_core::protocol::Relay;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((r, n))) = Relay::decode_prefix(rest) {
        assert!(n > 0 && n <= rest.len(), "took {n} of {} bytes", rest.len());
        assert_eq!(r.encode(), &rest[..n], "{r:?} re-encodes differently");
        rest = &rest[n..];
    }
});
