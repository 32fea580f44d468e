//! Every limit tripped for real, reported by name, with the host unharmed.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Instant;

fn assert_limit(r: &Run, name: &str) {
    assert_eq!(
        r.outcome.limit.as_deref(),
        Some(name),
        "expected the {name} limit: {}",
        r.all_output()
    );
}

#[test]
fn wall_clock_stops_a_python_loop() {
    let r = sandbox(
        &["--timeout", "1s"],
        "print('IMPORTED', flush=True)\nwhile True: pass",
    );
    assert_limit(&r, "wall");
    assert_eq!(r.status, 124);
    let w = r.outcome.wall_time;
    assert!((1.0..1.5).contains(&w), "wall time {w}");
    assert!(r.outcome.cpu_time > 0.5, "cpu time {}", r.outcome.cpu_time);
}

#[test]
fn wall_clock_stops_a_c_level_computation() {
    // 10**10**8 never returns to the interpreter loop: only killing the process stops it.
    let start = Instant::now();
    let r = sandbox(&["--timeout", "1s", "--memory", "none"], "x = 10**10**8");
    assert_limit(&r, "wall");
    let w = start.elapsed().as_secs_f64();
    assert!(
        (1.0..1.5).contains(&r.outcome.wall_time),
        "{}",
        r.outcome.wall_time
    );
    assert!(w < 2.0, "the CLI took {w}s");
}

#[test]
fn cpu_time_limit() {
    let r = sandbox(&["--cpu-time", "1s", "--timeout", "5s"], "while True: pass");
    assert_limit(&r, "cpu");
    assert!(r.outcome.wall_time < 3.0, "{}", r.outcome.wall_time);
}

#[test]
fn memory_bomb_is_reported_as_memory() {
    for code in [
        "x = bytearray(2 << 30)",
        "l = []\nwhile True: l.append(' ' * 10**6)",
    ] {
        let r = sandbox(&["--memory", "128M"], code);
        assert_limit(&r, "memory");
        assert_eq!(r.status, 124);
        assert!(r.cli_stderr.is_empty() || r.cli_stderr.contains("memory"));
    }
}

#[test]
fn fork_bomb_is_bounded() {
    let code = r#"
import os
print("IMPORTED", flush=True)
n = 0
try:
    while True:
        if os.fork() == 0:
            import time
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as e:
    print("stopped after", n, e.errno, flush=True)
    raise
"#;
    let start = Instant::now();
    let r = sandbox(&["--processes", "8", "--timeout", "5s"], code);
    assert!(start.elapsed().as_secs_f64() < 6.0);
    assert!(r.outcome.stdout.contains("IMPORTED"), "{}", r.all_output());
    assert!(
        r.outcome.stdout.contains("stopped after 7"),
        "{}",
        r.outcome.stdout
    );
    assert_limit(&r, "processes");
    // Threads count too: the default allows none besides the interpreter.
    let r = sandbox(
        &["--processes", "1"],
        "import threading\nthreading.Thread(target=print).start()",
    );
    assert_limit(&r, "processes");
}

#[test]
fn output_flood_is_truncated_and_the_host_stays_small() {
    // 200 MB through the supervisor: kept up to the limit, the rest drained and discarded.
    let code =
        "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(200): sys.stdout.write(chunk)\n";
    let mut child = Command::new("/usr/bin/time")
        .args(["-f", "MAXRSS_KB=%M"])
        .arg(bin())
        .args(["run", "--json", "--max-output", "64K", "--timeout", "20s"])
        .args(BASE_ARGS)
        .args(["-c", code])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let out = match child.as_mut() {
        Ok(_) => child.unwrap().wait_with_output().unwrap(),
        Err(_) => {
            if skip("/usr/bin/time is needed to measure the host's memory") {
                return;
            }
            unreachable!()
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss_kb: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("MAXRSS_KB="))
        .and_then(|v| v.trim().parse().ok())
        .expect("time's report");
    let outcome: Outcome = serde_json::from_slice(&out.stdout).unwrap();
    assert!(outcome.stdout_truncated);
    assert_eq!(outcome.stdout.len(), 64 * 1024);
    assert_eq!(outcome.limit.as_deref(), Some("output"));
    assert!(rss_kb < 64 * 1024, "the host used {rss_kb} KiB");
}

#[test]
fn file_size_and_tmp_size() {
    let r = sandbox(
        &["--file-size", "1M"],
        "open('/tmp/big', 'wb').write(b'x' * (4 << 20))",
    );
    assert_limit(&r, "file_size");
    let r = sandbox(
        &["--tmp-size", "2M", "--file-size", "16M"],
        "open('/tmp/big', 'wb').write(b'x' * (8 << 20))",
    );
    assert_limit(&r, "tmp_size");
}

#[test]
fn open_files_limit() {
    let r = sandbox(
        &["--open-files", "32"],
        "fs = [open('/dev/null') for _ in range(100)]",
    );
    assert_limit(&r, "open_files");
}

#[test]
fn usage_is_reported_for_every_run() {
    let r = sandbox(&[], "x = sum(range(3_000_000))\nb = bytearray(50 << 20)");
    assert_eq!(r.outcome.exit_code, Some(0), "{}", r.all_output());
    assert!(r.outcome.cpu_time > 0.0);
    assert!(r.outcome.wall_time > 0.0);
    assert!(
        r.outcome.peak_memory > 50 << 20,
        "{}",
        r.outcome.peak_memory
    );
}
