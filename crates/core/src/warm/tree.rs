//! A session child's process tree, seen from the host's /proc: its CPU time (each call's CPU
//! limit is the host's to enforce: the child's own limit spans the whole session), and
//! stopping it between calls so that nothing of a call runs once it has returned.
//!
//! The child is PID 1 of its own PID namespace, so every process of the session is in its tree
//! (orphans are adopted by it). Threads are stopped with their process.

use crate::sys;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// Clock ticks per second of /proc's times (`USER_HZ`, 100 on every architecture supported).
const TICKS: u64 = 100;

/// The direct children of `pid` (of all its threads).
fn children(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<libc::pid_t>().ok()),
            );
        }
    }
    out
}

/// Whether the host can list `pid`'s children (`/proc/PID/task/TID/children` needs
/// `CONFIG_PROC_CHILDREN`).
pub(crate) fn walkable(pid: libc::pid_t) -> bool {
    std::fs::metadata(format!("/proc/{pid}/task/{pid}/children")).is_ok()
}

/// `pid` and every descendant.
fn tree(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() && all.len() < 65_536 {
        let kids = children(all[i]);
        all.extend(kids);
        i += 1;
    }
    all
}

/// utime + stime + cutime + cstime of one process (proc(5) fields 14 to 17).
fn process_cpu(pid: libc::pid_t) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return Duration::ZERO;
    };
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 1000 / TICKS)
}

/// CPU time used so far by the tree rooted at `pid` (reaped descendants included).
pub(crate) fn cpu(pid: libc::pid_t) -> Duration {
    tree(pid).into_iter().map(process_cpu).sum()
}

/// Processes of a stopped tree other than its root, to continue them later.
#[derive(Default)]
pub(crate) struct Stopped(Vec<OwnedFd>);

/// SIGSTOP the child `root` and every process of its tree. A stop signal cannot be caught,
/// blocked or ignored, and one sent from an ancestor PID namespace reaches a namespace's init
/// too; a stopped process cannot fork, so the walk ends once a pass finds nothing new.
/// With `alone` (a process limit of 1: no thread, no child can exist), only the root.
pub(crate) fn stop(root: &OwnedFd, alone: bool) -> Stopped {
    let _ = sys::pidfd_kill(root.as_fd(), libc::SIGSTOP);
    let mut done = Stopped::default();
    if alone {
        return done;
    }
    let Some(pid) = sys::pidfd_pid(root.as_fd()) else {
        return done;
    };
    let mut seen = vec![pid];
    loop {
        let fresh: Vec<libc::pid_t> = tree(pid)
            .into_iter()
            .filter(|p| !seen.contains(p))
            .collect();
        if fresh.is_empty() {
            return done;
        }
        for p in fresh {
            seen.push(p);
            if let Ok(fd) = sys::pidfd_open(p) {
                let _ = sys::pidfd_kill(fd.as_fd(), libc::SIGSTOP);
                done.0.push(fd);
            }
        }
    }
}

/// Continue what [`stop`] stopped.
pub(crate) fn resume(root: &OwnedFd, stopped: Stopped) {
    for fd in &stopped.0 {
        let _ = sys::pidfd_kill(fd.as_fd(), libc::SIGCONT);
    }
    let _ = sys::pidfd_kill(root.as_fd(), libc::SIGCONT);
}
