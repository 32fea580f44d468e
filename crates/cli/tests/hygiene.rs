//! Many runs in a row, normal and killed, leave nothing behind on the host: no zombie or stray
//! process, no descriptor, no mount, no temporary file. Cold runs, warm requests and session
//! calls, through the command line as each caller and through the Rust API in this process.

mod common;

use common::*;
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::{Pool, PoolOptions, Request, Session};
use serde_json::json;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests count this process's descriptors and threads: one at a time.
static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Threads of this process named like the current one, but the current one: those the test
/// started (a thread inherits its creator's name), not the other tests' threads. (Counting the
/// test's own thread too once read 0 before a run and 1 after it, with nothing left behind: one
/// CI run; the thread itself is not what is looked for.)
fn thread_count() -> usize {
    let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    let me = std::fs::read_link("/proc/thread-self").unwrap();
    let me = me.file_name().unwrap().to_os_string();
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| t.file_name() != me)
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c == name))
        .count()
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn mounts() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

fn tmp_entries() -> BTreeSet<String> {
    std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Host processes that are still running the interpreter or pysandbox, or are zombies of them.
fn strays(markers: &[&str]) -> Vec<String> {
    let me = std::process::id();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if markers.iter().any(|m| cmdline.contains(m)) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

fn run_quiet(args: &[&str]) -> i32 {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

/// What the host looked like before the runs.
struct Before {
    fds: usize,
    threads: usize,
    mounts: String,
    tmp: BTreeSet<String>,
}

impl Before {
    fn now() -> Before {
        Before {
            fds: fd_count(),
            threads: thread_count(),
            mounts: mounts(),
            tmp: tmp_entries(),
        }
    }

    /// Nothing of the runs is left: no process whose command line has one of `markers`, no
    /// zombie child, no descriptor or thread of this process, no mount, nothing in /tmp.
    fn assert_nothing_left(&self, what: &str, markers: &[&str]) {
        // The jails are torn down by the kernel after pysandbox reports, and a worker's threads
        // end once its process has: give them a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = strays(markers);
            let settled = left.is_empty() && thread_count() == self.threads;
            if settled {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: processes left behind: {left:?}; threads {} (before: {})",
                thread_count(),
                self.threads
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            zombie_children().is_empty(),
            "{what}: {:?}",
            zombie_children()
        );
        assert_eq!(fd_count(), self.fds, "{what}: descriptors leaked");
        assert_eq!(
            mounts(),
            self.mounts,
            "{what}: the host's mount table changed"
        );
        let new: Vec<_> = tmp_entries().difference(&self.tmp).cloned().collect();
        let ours: Vec<_> = new.iter().filter(|n| n.contains("pysandbox")).collect();
        assert!(ours.is_empty(), "{what}: left in /tmp: {ours:?}");
    }
}

#[test]
fn a_thousand_runs_leave_nothing_behind() {
    let _alone = alone();
    let marker = format!("hygiene-{}", random_hex(6));
    let before = Before::now();
    let start = Instant::now();
    let normal = format!("x = '{marker}'");
    let killed = format!("x = '{marker}'\nwhile True: pass");
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let normal = normal.clone();
            let killed = killed.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    if i % 50 == w {
                        // A run killed by the wall clock.
                        let c = run_quiet(&["run", "--timeout", "100ms", "-c", &killed]);
                        assert_eq!(c, 124);
                    } else {
                        assert_eq!(run_quiet(&["run", "-c", &normal]), 0);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let took = start.elapsed();
    eprintln!("1000 runs in {took:?}");
    before.assert_nothing_left("1000 cold runs", &[&marker, "_pysandbox_run"]);
}

/// Processes of this test's own binaries (the caller's copy included): a batch, its workers and
/// their jails' init (a clone of the worker). The jail's other processes cannot outlive its
/// init, PID 1 of their PID namespace.
fn our_binaries(callers: &[Caller]) -> Vec<String> {
    callers.iter().map(|c| c.binary()).collect()
}

#[test]
fn warm_requests_and_sessions_through_batch_leave_nothing_behind() {
    let _alone = alone();
    // Made before the snapshot: the copy of the binary nobody runs stays for later tests.
    let callers = callers();
    let binaries = our_binaries(&callers);
    let markers: Vec<&str> = binaries.iter().map(String::as_str).collect();
    let before = Before::now();
    let killed = "while True: pass";
    for caller in &callers {
        // 200 fresh children of two workers, every 50th killed by the wall clock.
        let lines: Vec<_> = (0..200)
            .map(|i| {
                let code = if i % 50 == 7 { killed } else { "x = 1" };
                json!({"id": i, "code": code})
            })
            .collect();
        let b = caller.batch(
            &["--workers", "2", "--timeout", "500ms"],
            &lines,
            &RunOpts::default(),
        );
        assert_eq!(b.answers.len(), 200, "as {caller}: {}", b.cli_stderr);
        for i in 0..200 {
            let a = b
                .answer(i)
                .unwrap_or_else(|| panic!("as {caller}: no answer {i}"));
            if i % 50 == 7 {
                assert_eq!(a["limit"], "wall", "as {caller}: {a}");
            } else {
                assert_eq!(a["exit_code"], 0, "as {caller}: {a}");
            }
        }
        assert_eq!(b.status, 0, "as {caller}: {}", b.cli_stderr);
        // A session of 100 calls, still open at the end of the batch (the batch closes it),
        // and one that a limit ends.
        let mut lines: Vec<_> = (0..100)
            .map(|i| json!({"id": i, "code": "n = globals().get('n', 0) + 1\nprint(n)", "session": "kept"}))
            .collect();
        lines.extend((100..110).map(|i| {
            let code = if i == 109 { killed } else { "x = 1" };
            json!({"id": i, "code": code, "session": "ended"})
        }));
        let b = caller.batch(
            &["--workers", "1", "--timeout", "500ms"],
            &lines,
            &RunOpts::default(),
        );
        assert_eq!(b.answers.len(), 110, "as {caller}: {}", b.cli_stderr);
        let last = b.answer(99).unwrap();
        assert_eq!(last["stdout"], "100\n", "as {caller}: {last}");
        let ended = b.answer(109).unwrap();
        assert_eq!(ended["ended"], true, "as {caller}: {ended}");
    }
    before.assert_nothing_left("warm batches", &markers);
}

fn policy() -> Policy {
    let mut p = Policy::from_toml_str("preset = \"stdlib\"").unwrap();
    p.limits.wall = Duration::from_millis(500);
    p
}

#[test]
fn the_warm_api_leaves_nothing_behind_in_this_process() {
    // Through the Rust API, as the Python package uses it: what a pool or a session leaves
    // would stay in the caller's process (descriptors, threads, children).
    let _alone = alone();
    let before = Before::now();
    let killed = "while True: pass";
    {
        let mut opts = PoolOptions::new(bin());
        opts.workers = 2;
        let pool = Pool::new(policy(), opts).expect("start a pool");
        for i in 0..200 {
            let r = pool.run(if i % 50 == 7 { killed } else { "x = 1" }, None);
            let r = r.unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert!(r.run.exit_code == Some(0) || i % 50 == 7, "{r:?}");
        }
        pool.shutdown();
    }
    let binary = std::path::Path::new(bin());
    let mut kept = Session::open(binary, &policy(), Duration::from_secs(60)).expect("a session");
    for _ in 0..100 {
        let r = kept
            .execute_request(&Request::code("n = globals().get('n', 0) + 1"))
            .unwrap();
        assert_eq!(r.run.exit_code, Some(0), "{r:?}");
    }
    let r = kept.execute_request(&Request::code("print(n)")).unwrap();
    assert_eq!(r.run.stdout, "100\n", "{r:?}");
    kept.close();
    let mut ended = Session::open(binary, &policy(), Duration::from_secs(60)).expect("a session");
    let r = ended.execute_request(&Request::code(killed)).unwrap();
    assert!(r.run.limit.is_some() && !ended.is_open(), "{r:?}");
    drop(ended);
    before.assert_nothing_left("the warm API", &[bin()]);
}
