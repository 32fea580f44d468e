//! Piston's body (`/api/v2/execute`): parsed, checked and narrowed as the handler does
//! (`piston::parse_execute`), nothing run. No panic; what is accepted never gives more than the
//! ceiling; a refusal is a 4xx.
//!
//! Input: byte 0 picks the ceiling, the rest is the body.
#![no_main]
mod common;

use libfuzzer_sys::fuzz_target;
use pysandbox_server::piston;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ceiling = common::ceiling(pick);
    match piston::parse_execute(&ceiling, "3.11.7", body) {
        Ok((policy, req)) => {
            common::assert_within(&policy, &ceiling);
            common::assert_request(&req, &ceiling);
        }
        Err(r) => assert!(r.status().is_client_error(), "{}", r.status()),
    }
});
