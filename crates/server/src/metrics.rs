//! Prometheus text for `GET /metrics`: requests by route and status, a latency histogram by
//! route, requests in flight, workers, live sessions, limit trips by kind.

use crate::state::lock;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    total: u64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    limits: Mutex<BTreeMap<String, u64>>,
    pub in_flight: AtomicU64,
}

impl Metrics {
    /// One request answered.
    pub fn record(&self, route: &str, status: u16, took: Duration) {
        *lock(&self.requests)
            .entry((route.to_string(), status))
            .or_default() += 1;
        let mut all = lock(&self.latency);
        let h = all.entry(route.to_string()).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        let secs = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.total += 1;
    }

    /// A run stopped (or cut) by a limit.
    pub fn limit(&self, kind: &str) {
        *lock(&self.limits).entry(kind.to_string()).or_default() += 1;
    }

    /// The text exposition, with the gauges given.
    pub fn render(&self, workers: usize, sessions: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP pysandbox_requests_total Requests answered, by route and HTTP status."
        );
        let _ = writeln!(s, "# TYPE pysandbox_requests_total counter");
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                s,
                "pysandbox_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP pysandbox_request_seconds Time to answer, by route."
        );
        let _ = writeln!(s, "# TYPE pysandbox_request_seconds histogram");
        for (route, h) in lock(&self.latency).iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "pysandbox_request_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                s,
                "pysandbox_request_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.total
            );
            let _ = writeln!(
                s,
                "pysandbox_request_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                s,
                "pysandbox_request_seconds_count{{route=\"{route}\"}} {}",
                h.total
            );
        }
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let busy = (in_flight as usize).min(workers);
        let _ = writeln!(s, "# HELP pysandbox_in_flight Requests being answered.");
        let _ = writeln!(s, "# TYPE pysandbox_in_flight gauge");
        let _ = writeln!(s, "pysandbox_in_flight {in_flight}");
        let _ = writeln!(
            s,
            "# HELP pysandbox_queue_depth Requests waiting for a worker."
        );
        let _ = writeln!(s, "# TYPE pysandbox_queue_depth gauge");
        let _ = writeln!(
            s,
            "pysandbox_queue_depth {}",
            (in_flight as usize).saturating_sub(workers)
        );
        let _ = writeln!(
            s,
            "# HELP pysandbox_workers Warm workers of the ceiling's pool, by state."
        );
        let _ = writeln!(s, "# TYPE pysandbox_workers gauge");
        let _ = writeln!(s, "pysandbox_workers{{state=\"busy\"}} {busy}");
        let _ = writeln!(s, "pysandbox_workers{{state=\"idle\"}} {}", workers - busy);
        let _ = writeln!(s, "# HELP pysandbox_sessions Live sessions.");
        let _ = writeln!(s, "# TYPE pysandbox_sessions gauge");
        let _ = writeln!(s, "pysandbox_sessions {sessions}");
        let _ = writeln!(
            s,
            "# HELP pysandbox_limits_total Runs a limit stopped or cut, by limit."
        );
        let _ = writeln!(s, "# TYPE pysandbox_limits_total counter");
        for (kind, n) in lock(&self.limits).iter() {
            let _ = writeln!(s, "pysandbox_limits_total{{limit=\"{kind}\"}} {n}");
        }
        s
    }
}
