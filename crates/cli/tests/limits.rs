//! Every limit tripped for real, reported by name, with the host unharmed, on each execution
//! path (cold, warm, session) as each caller (root, nobody): `common::for_each_combo`.

mod common;

use common::*;
use std::time::Instant;

/// The run was stopped by the limit `name`, reported by name; a tripped limit ends a session.
fn assert_limit(c: Combo, r: &Run, name: &str) {
    assert_eq!(
        r.outcome.limit.as_deref(),
        Some(name),
        "{c}: expected the {name} limit: {:?}; pysandbox's stderr: {}",
        r.outcome,
        r.cli_stderr
    );
    // Path-specific: only a session outlives a call, and a tripped limit ends it.
    if c.path == ExecPath::Session {
        assert!(
            r.outcome.ended,
            "{c}: the {name} limit did not end the session"
        );
    }
}

/// The exit status of a run a limit stopped differs by path: `pysandbox run` exits 124;
/// `pysandbox batch` exits 0 when every line got an answer (the limit is in the answer).
fn limit_status(c: Combo) -> i32 {
    match c.path {
        ExecPath::Cold => 124,
        ExecPath::Warm | ExecPath::Session => 0,
    }
}

#[test]
fn wall_clock_stops_a_python_loop() {
    for_each_combo(|c| {
        let r = c.run(
            &["--timeout", "1s"],
            "print('IMPORTED', flush=True)\nwhile True: pass",
        );
        assert_limit(c, &r, "wall");
        assert_eq!(r.status, limit_status(c), "{c}: {}", r.all_output());
        let w = r.outcome.wall_time;
        assert!((1.0..1.5).contains(&w), "{c}: wall time {w}");
        // The CPU time of a killed run is measured and reported. The loop spun for 1 s of wall
        // clock, but with the suite's tests in parallel (some spinning too) and other builds on
        // this 2-CPU machine it gets well under a whole CPU (0.38 to 0.47 s seen): 0.2 s.
        assert!(
            r.outcome.cpu_time > 0.2,
            "{c}: cpu time {}",
            r.outcome.cpu_time
        );
    });
}

#[test]
fn wall_clock_stops_a_c_level_computation() {
    // 10**10**8 never returns to the interpreter loop: only killing the process stops it.
    for_each_combo(|c| {
        let start = Instant::now();
        let r = c.run(&["--timeout", "1s", "--memory", "none"], "x = 10**10**8");
        let w = start.elapsed().as_secs_f64();
        assert_limit(c, &r, "wall");
        assert!(
            (1.0..1.5).contains(&r.outcome.wall_time),
            "{c}: {}",
            r.outcome.wall_time
        );
        // The whole command: for warm and session paths, starting a worker (and a session's first
        // call) too; as nobody the interpreter is resolved afresh (no cache in its home): 2.0 s
        // was just exceeded on a loaded machine. The kill itself is `wall_time` above.
        assert!(w < 4.0, "{c}: the CLI took {w}s");
    });
}

#[test]
fn cpu_time_limit() {
    for_each_combo(|c| {
        let r = c.run(&["--cpu-time", "1s", "--timeout", "5s"], "while True: pass");
        assert_limit(c, &r, "cpu");
        // Stopped at the limit: 1 s of CPU (whole seconds), not more.
        assert!(r.outcome.cpu_time < 1.5, "{c}: {}", r.outcome.cpu_time);
        // Well before the wall clock. Under parallel load (the suite's other tests, builds) a
        // second of CPU takes up to 2 s of wall clock here, and more: 4.5 s, below the 5 s
        // timeout (the limit asserted above is the CPU one, not the wall clock).
        assert!(r.outcome.wall_time < 4.5, "{c}: {}", r.outcome.wall_time);
    });
}

#[test]
fn memory_bomb_is_reported_as_memory() {
    for_each_combo(|c| {
        // One allocation too large, and many small ones.
        for code in [
            "x = bytearray(2 << 30)",
            "l = []\nwhile True: l.append(' ' * 10**6)",
        ] {
            let r = c.run(&["--memory", "128M"], code);
            assert_limit(c, &r, "memory");
            assert_eq!(r.status, limit_status(c), "{c}: {}", r.all_output());
            assert!(
                r.cli_stderr.is_empty() || r.cli_stderr.contains("memory"),
                "{c}: {}",
                r.cli_stderr
            );
        }
    });
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
    for_each_combo(|c| {
        let start = Instant::now();
        let r = c.run(&["--processes", "8", "--timeout", "5s"], code);
        let took = start.elapsed().as_secs_f64();
        assert!(took < 6.0, "{c}: took {took}s");
        assert!(
            r.outcome.stdout.contains("IMPORTED"),
            "{c}: {}",
            r.all_output()
        );
        assert!(
            r.outcome.stdout.contains("stopped after 7"),
            "{c}: {}",
            r.all_output()
        );
        assert_limit(c, &r, "processes");
    });
}

#[test]
fn threads_count_as_processes() {
    // The default allows none besides the interpreter.
    for_each_combo(|c| {
        let r = c.run(
            &["--processes", "1"],
            "import threading\nthreading.Thread(target=print).start()",
        );
        assert_limit(c, &r, "processes");
    });
}

#[test]
fn output_flood_is_truncated_and_the_host_stays_small() {
    // 200 MB through the supervisor (cold) or the pool (warm, session: the batch process reads
    // the child's pipes): kept up to the limit, the rest drained and discarded.
    let code =
        "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(200): sys.stdout.write(chunk)\n";
    if !std::path::Path::new("/usr/bin/time").exists()
        && skip("/usr/bin/time is needed to measure the host's memory")
    {
        return;
    }
    for_each_combo(|c| {
        let opts = RunOpts {
            wrapper: &["/usr/bin/time", "-f", "MAXRSS_KB=%M"],
            ..RunOpts::default()
        };
        let r = c.run_with(&["--max-output", "64K", "--timeout", "20s"], code, &opts);
        let rss_kb: u64 = r
            .cli_stderr
            .lines()
            .find_map(|l| l.strip_prefix("MAXRSS_KB="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{c}: no report of time: {}", r.cli_stderr));
        assert!(r.outcome.stdout_truncated, "{c}");
        assert_eq!(r.outcome.stdout.len(), 64 * 1024, "{c}");
        assert_eq!(r.outcome.limit.as_deref(), Some("output"), "{c}");
        assert!(rss_kb < 64 * 1024, "{c}: the host used {rss_kb} KiB");
    });
}

#[test]
fn file_size_limit() {
    for_each_combo(|c| {
        let r = c.run(
            &["--file-size", "1M"],
            "open('/tmp/big', 'wb').write(b'x' * (4 << 20))",
        );
        assert_limit(c, &r, "file_size");
    });
}

#[test]
fn tmp_size_limit() {
    for_each_combo(|c| {
        let r = c.run(
            &["--tmp-size", "2M", "--file-size", "16M"],
            "open('/tmp/big', 'wb').write(b'x' * (8 << 20))",
        );
        assert_limit(c, &r, "tmp_size");
    });
}

#[test]
fn open_files_limit() {
    for_each_combo(|c| {
        let r = c.run(
            &["--open-files", "32"],
            "fs = [open('/dev/null') for _ in range(100)]",
        );
        assert_limit(c, &r, "open_files");
    });
}

#[test]
fn usage_is_reported_for_every_run() {
    for_each_combo(|c| {
        let r = c.run(&[], "x = sum(range(3_000_000))\nb = bytearray(50 << 20)");
        assert_eq!(r.outcome.exit_code, Some(0), "{c}: {}", r.all_output());
        assert!(r.outcome.cpu_time > 0.0, "{c}");
        assert!(r.outcome.wall_time > 0.0, "{c}");
        assert!(
            r.outcome.peak_memory > 50 << 20,
            "{c}: {}",
            r.outcome.peak_memory
        );
    });
}

/// The code runs from source (`exec(source)`, not `compile()`, where that is the same: see
/// `bootstrap/support.py`'s `_pysandbox_from_source`) on every path: its errors still name
/// `<string>` and show its lines, and under a recursion limit it is compiled before the limit
/// applies (200 nested lists do not compile under a limit of 60; they do without it).
#[test]
fn code_from_source_keeps_its_tracebacks_and_compiles_before_the_recursion_limit() {
    for_each_combo(|c| {
        let r = c.run(&[], "def f():\n    return 1 / 0\nf()");
        let err = &r.outcome.stderr;
        assert!(
            err.contains("File \"<string>\", line 2, in f"),
            "{c}: {err}"
        );
        assert!(
            err.contains("    return 1 / 0") && err.contains("ZeroDivisionError"),
            "{c}: {err}"
        );
        let r = c.run(&[], "x = (");
        let err = &r.outcome.stderr;
        assert!(
            err.contains("File \"<string>\", line 1") && err.contains("SyntaxError"),
            "{c}: {err}"
        );
        let nested = format!("x = {}1{}\nprint(len(x))", "[".repeat(200), "]".repeat(200));
        let r = c.run(&["--recursion-limit", "60"], &nested);
        assert_eq!(r.outcome.stdout, "1\n", "{c}: {}", r.all_output());
    });
}
