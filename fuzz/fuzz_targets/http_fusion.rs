//! SandboxFusion's bodies (`/run_code`, `/run_jupyter`): parsed, checked and narrowed as the
//! handlers do (`fusion::parse_*`), nothing run. No panic; what is accepted never gives more
//! than the ceiling; a refusal is a 4xx, or SandboxFusion's 200 `SandboxError`.
//!
//! Input: byte 0 picks the route and the ceiling, the rest is the body.
#![no_main]
mod common;

use libfuzzer_sys::fuzz_target;
use pysandbox_server::fusion;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ceiling = common::ceiling(pick >> 4);
    let refused = |r: axum::response::Response| {
        let s = r.status();
        assert!(s.is_client_error() || s == 200, "{s}");
    };
    if pick % 2 == 0 {
        match fusion::parse_run_code(&ceiling, body) {
            Ok((limits, req, names)) => {
                common::assert_within(&limits.policy, &ceiling);
                common::assert_request(&req, &ceiling);
                for (rel, _) in &names {
                    assert!(
                        pysandbox_core::outcome::check_file_name(rel).is_ok(),
                        "{rel:?}"
                    );
                }
            }
            Err(r) => refused(r),
        }
    } else {
        match fusion::parse_run_jupyter(&ceiling, body) {
            Ok((_, limits, _files)) => common::assert_within(&limits.policy, &ceiling),
            Err(r) => refused(r),
        }
    }
});
