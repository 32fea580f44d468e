//! Many runs in a row, normal and killed, leave nothing behind on the host: no zombie or stray
//! process, no descriptor, no mount, no temporary file.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

#[test]
fn a_thousand_runs_leave_nothing_behind() {
    let marker = format!("hygiene-{}", random_hex(6));
    let fds = fd_count();
    let mount_table = mounts();
    let tmp = tmp_entries();
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
    // The jails are torn down by the kernel after pysandbox reports; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = strays(&[&marker, "_pysandbox_run"]);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(zombie_children().is_empty(), "{:?}", zombie_children());
    assert_eq!(fd_count(), fds, "descriptors leaked");
    assert_eq!(mounts(), mount_table, "the host's mount table changed");
    let new: Vec<_> = tmp_entries().difference(&tmp).cloned().collect();
    let ours: Vec<_> = new.iter().filter(|n| n.contains("pysandbox")).collect();
    assert!(ours.is_empty(), "left in /tmp: {ours:?}");
}
