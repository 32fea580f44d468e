//! The native API's bodies (`/v1/execute`, `/v1/batch`, `/v1/judge`, `/v1/sessions`,
//! `/v1/sessions/{id}/execute`): parsed, checked and narrowed from the operator's policy as the
//! handlers do (`native::parse_*`), nothing run. No panic; what is accepted never gives more
//! than the ceiling; a refusal is a 4xx.
//!
//! Input: byte 0 picks the route and the ceiling, the rest is the body.
#![no_main]
mod common;

use libfuzzer_sys::fuzz_target;
use pysandbox_server::native;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ceiling = common::ceiling(pick >> 4);
    let refused = |e: pysandbox_server::ApiError| {
        assert!(e.status.is_client_error(), "{}: {}", e.status, e.message);
    };
    match pick % 5 {
        0 => match native::parse_execute(&ceiling, body) {
            Ok((policy, req)) => {
                common::assert_within(&policy, &ceiling);
                common::assert_request(&req, &ceiling);
            }
            Err(e) => refused(e),
        },
        1 => match native::parse_batch(&ceiling, body) {
            Ok(items) => {
                for (policy, req) in &items {
                    common::assert_within(policy, &ceiling);
                    common::assert_request(req, &ceiling);
                }
            }
            Err(e) => refused(e),
        },
        2 => match native::parse_judge(&ceiling, body) {
            Ok((policy, _code, _cases, _compare)) => common::assert_within(&policy, &ceiling),
            Err(e) => refused(e),
        },
        3 => {
            let max_idle = Duration::from_secs(600);
            match native::parse_session(&ceiling, max_idle, body) {
                Ok((policy, idle)) => {
                    common::assert_within(&policy, &ceiling);
                    assert!(idle <= max_idle, "{idle:?}");
                }
                Err(e) => refused(e),
            }
        }
        _ => match native::parse_session_execute(&ceiling, body) {
            Ok(req) => common::assert_request(&req, &ceiling),
            Err(e) => refused(e),
        },
    }
});
