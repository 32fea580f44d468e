//! E2B's bodies (`POST /v2/sandboxes`, the code interpreter's `/execute` and `/contexts`) and
//! the paths of its file routes (`e2b::local_name`): parsed and checked as the handlers do
//! (`e2b::parse_*`), nothing run. No panic; a refusal is a 4xx; a path taken names a file in
//! the working directory (relative, no `..`).
//!
//! Input: byte 0 picks the route, the rest is the body (or the path).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pysandbox_server::e2b;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let refused = |r: axum::response::Response| {
        assert!(r.status().is_client_error(), "{}", r.status());
    };
    match pick % 4 {
        0 => {
            let server = Duration::from_secs(300);
            match e2b::parse_new_sandbox(server, body) {
                Ok((_, idle)) => assert!(idle <= server, "{idle:?}"),
                Err(r) => refused(r),
            }
        }
        1 => {
            if let Err(r) = e2b::parse_execute(body) {
                refused(r);
            }
        }
        2 => {
            if let Err(r) = e2b::parse_new_context(body) {
                refused(r);
            }
        }
        _ => {
            let Ok(path) = std::str::from_utf8(body) else {
                return;
            };
            if let Ok(name) = e2b::local_name(path) {
                assert!(
                    pysandbox_core::outcome::check_file_name(&name).is_ok(),
                    "{name:?}"
                );
                assert!(!name.starts_with('/') && !name.split('/').any(|c| c == ".."));
            }
        }
    }
});
