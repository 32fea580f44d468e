//! A session's limits are the host's and hold between calls: the CPU limit cannot be lifted by
//! the code, nothing of a call runs once it has returned (threads it left, a forged answer), and
//! the idle timeout and lifetime end the session whether or not anyone calls.

mod common;

use common::*;
use pysandbox_core::limits::Limit;
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::{Session, SessionOptions, WarmError};
use std::path::Path;
use std::time::{Duration, Instant};

fn policy(f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::from_toml_str("preset = \"stdlib\"").unwrap();
    p.limits.wall = Duration::from_secs(10);
    f(&mut p);
    p
}

fn open(p: &Policy, o: SessionOptions) -> Session {
    Session::open_with_options(Path::new(bin()), p, o).expect("open a session")
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Whether a process of ours is gone (reaped, or a zombie).
fn gone(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.contains(") Z ")
}

/// A forged Done frame ("exit 7") on the report pipe.
const FORGE_DONE: &str =
    "import os\nos.write(4, (21).to_bytes(4, 'little') + b'\\x03' + (7).to_bytes(4, 'little') + bytes(16))\n";

#[test]
fn the_cpu_limit_of_a_call_cannot_be_lifted_by_the_code() {
    let p = policy(|p| p.limits.cpu = Some(Duration::from_secs(1)));
    let mut s = open(&p, SessionOptions::new(Duration::from_secs(60)));
    let r = s
        .execute(
            "import resource\n\
             soft, hard = resource.getrlimit(resource.RLIMIT_CPU)\n\
             print('hard == soft', soft == hard)\n\
             try:\n    resource.setrlimit(resource.RLIMIT_CPU, (hard + 1000, hard + 1000))\n    print('raised')\n\
             except (ValueError, OSError):\n    print('refused')\n\
             try:\n    resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n    print('lifted')\n\
             except (ValueError, OSError):\n    print('refused')\n",
        )
        .unwrap();
    assert_eq!(
        r.run.stdout, "hard == soft True\nrefused\nrefused\n",
        "{r:?}"
    );
    // Each call has the policy's CPU limit, measured by the host.
    let t = Instant::now();
    let r = s.execute("x = 0\nwhile True:\n    x += 1").unwrap();
    assert_eq!(r.run.limit, Some(Limit::Cpu), "{r:?}");
    // Stopped by its CPU time, not the 10 s wall clock (a loaded machine gives the loop only
    // part of a CPU: up to 3.4 s of wall time was seen for the 1 s of CPU).
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(r.ended && !s.is_open());
}

#[test]
fn nothing_of_a_call_runs_after_it_returns() {
    let dir = TempDir::new("session").writable_by_all();
    let ticks = dir.join("ticks");
    let p = policy(|p| {
        p.limits.processes = 4;
        p.processes_pinned = true;
        p.allow_write.push(dir.path().to_path_buf());
    });
    let mut s = open(&p, SessionOptions::new(Duration::from_secs(60)));
    // A thread that goes on writing after the call has returned.
    let code = format!(
        "import threading, time\n\
         def tick():\n    with open({:?}, 'a') as f:\n        while True:\n            f.write('.'); f.flush(); time.sleep(0.01)\n\
         threading.Thread(target=tick, daemon=True).start()\n\
         time.sleep(0.2)\n",
        ticks.to_string_lossy()
    );
    let r = s.execute(&code).unwrap();
    assert_eq!(r.run.exit_code, Some(0), "{r:?}");
    let after_call = size(&ticks);
    assert!(after_call > 5, "the thread did not run during the call");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        size(&ticks) <= after_call + 1,
        "the session ran between calls: {after_call} -> {}",
        size(&ticks)
    );
    // Control: it goes on during the next call.
    let before = size(&ticks);
    s.execute("import time\ntime.sleep(0.3)").unwrap();
    assert!(size(&ticks) > before + 5, "the thread did not resume");

    // A forged answer: the call returns at once, and the process that lied is stopped.
    let worker = s.worker_pid().unwrap();
    let r = s
        .execute(&format!("{FORGE_DONE}while True:\n    pass\n"))
        .unwrap();
    assert_eq!(r.run.exit_code, Some(7), "{r:?}");
    std::thread::sleep(Duration::from_millis(200));
    let a = tree_cpu_ticks(worker);
    std::thread::sleep(Duration::from_millis(1000));
    let b = tree_cpu_ticks(worker);
    assert!(b - a < 20, "the liar kept running: {a} -> {b} ticks");
}

#[test]
fn the_idle_timeout_is_the_hosts() {
    let p = policy(|_| {});
    let mut s = open(&p, SessionOptions::new(Duration::from_millis(500)));
    // A forged answer (the child's own idle timer, if it had one, would never run again).
    let r = s
        .execute(&format!("{FORGE_DONE}while True:\n    pass\n"))
        .unwrap();
    assert_eq!(r.run.exit_code, Some(7), "{r:?}");
    let worker = s.worker_pid().unwrap();
    let t = Instant::now();
    while !gone(worker) {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "the session outlived its idle timeout"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert!(!s.is_open());
    match s.execute("print(1)") {
        Err(WarmError::SessionEnded(why)) => assert_eq!(why, "idle timeout"),
        other => panic!("expected the session to have ended, got {other:?}"),
    }
}

#[test]
fn the_lifetime_is_the_hosts() {
    let p = policy(|_| {});
    let mut o = SessionOptions::new(Duration::from_secs(60));
    o.lifetime = Duration::from_millis(1200);
    let mut s = open(&p, o);
    let t = Instant::now();
    let mut calls = 0;
    let why = loop {
        match s.execute("x = 1") {
            Ok(r) => assert_eq!(r.run.exit_code, Some(0), "{r:?}"),
            Err(WarmError::SessionEnded(why)) => break why,
            Err(e) => panic!("{e}"),
        }
        calls += 1;
        assert!(t.elapsed() < Duration::from_secs(5), "never ended");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(why, "lifetime");
    assert!(calls >= 3, "{calls} calls");
    assert!(
        t.elapsed() >= Duration::from_millis(1100),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_garbled_report_ends_the_session() {
    // A forged Done frame and, in the same write, a frame header no report has (2 GiB long),
    // then output after the "end": the host reads both frames at once. Before, the session went
    // on and every later call was answered with the previous call's leftovers ("after\n" for
    // `print(8)`, found by the soak); now the garbled report ends the session.
    let p = policy(|_| {});
    let mut s = open(&p, SessionOptions::new(Duration::from_secs(60)));
    let junk = "(1 << 31).to_bytes(4, 'little') + b'\\xff' * 16";
    let code = format!(
        "import os, time\n\
         os.write(4, (21).to_bytes(4, 'little') + b'\\x03' + bytes(20) + {junk})\n\
         time.sleep(0.2)\nprint('after')\n"
    );
    let r = s.execute(&code).unwrap();
    assert!(r.report_error.is_some(), "{r:?}");
    assert!(r.ended && !s.is_open(), "{r:?}");
    match s.execute("print(8)") {
        Err(WarmError::SessionEnded(_)) => {}
        other => panic!("expected the session to have ended, got {other:?}"),
    }
    // The control: a clean call leaves the session open and answers itself.
    let mut s = open(&p, SessionOptions::new(Duration::from_secs(60)));
    assert_eq!(s.execute("print(7)").unwrap().run.stdout, "7\n");
    assert_eq!(s.execute("print(8)").unwrap().run.stdout, "8\n");
}
