//! The host's clocks for what outlives a call: one thread (for the whole process) that kills
//! processes when their deadline passes, whatever they said.
//!
//! A warm request ends for the host when its child says it is done; the child is still alive
//! then (it exits right after, off the request's path). Its wall clock keeps running here until
//! the process is gone: a child that forged its answer and runs on is killed at its deadline.
//! A session's idle timeout and total lifetime are entries here too. Processes are named by
//! pidfd, so a deadline can never hit a recycled PID.

use crate::sys;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

/// A watch, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WatchId(u64);

struct Entry {
    id: u64,
    deadline: Instant,
    /// SIGKILLed when the deadline passes.
    targets: Vec<OwnedFd>,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    fired: Vec<u64>,
    next: u64,
    /// When the thread wakes next by itself (`None`: only when told).
    wakes_at: Option<Instant>,
}

impl State {
    /// Whether the thread must be woken for a deadline: it sleeps past it. A watch that was
    /// cancelled leaves the thread's wake-up as it was, so a request's watch, which usually
    /// replaces one that ended earlier, costs no wake-up (a context switch) per request.
    fn sleeps_past(&self, deadline: Instant) -> bool {
        match self.wakes_at {
            None => true,
            Some(t) => deadline < t,
        }
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

fn shared() -> &'static Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| {
        let s = Arc::new(Shared::default());
        let t = Arc::clone(&s);
        std::thread::Builder::new()
            .name("pysandbox-watchdog".into())
            .spawn(move || run(&t))
            .expect("starting the watchdog thread");
        s
    })
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(s: &Shared) {
    let mut st = lock(s);
    loop {
        let now = Instant::now();
        let (due, later): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut st.entries)
            .into_iter()
            .partition(|e| e.deadline <= now);
        st.entries = later;
        for e in due {
            for t in &e.targets {
                let _ = sys::pidfd_kill(t.as_fd(), libc::SIGKILL);
            }
            st.fired.push(e.id);
            if st.fired.len() > 4096 {
                st.fired.drain(..2048);
            }
        }
        st.wakes_at = st.entries.iter().map(|e| e.deadline).min();
        st = match st.wakes_at {
            None => s.changed.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(next) => {
                let wait = next.saturating_duration_since(Instant::now());
                s.changed
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

/// SIGKILL every process of `targets` at `deadline` (unless cancelled first).
pub(crate) fn watch(deadline: Instant, targets: Vec<OwnedFd>) -> WatchId {
    let s = shared();
    let mut st = lock(s);
    st.next += 1;
    let id = st.next;
    let earlier = st.sleeps_past(deadline);
    st.entries.push(Entry {
        id,
        deadline,
        targets,
    });
    drop(st);
    if earlier {
        s.changed.notify_all();
    }
    WatchId(id)
}

/// Forget a watch; true if its deadline had not passed (nothing was killed).
pub(crate) fn cancel(id: WatchId) -> bool {
    let s = shared();
    let mut st = lock(s);
    let before = st.entries.len();
    st.entries.retain(|e| e.id != id.0);
    let was_pending = st.entries.len() < before;
    if !was_pending {
        st.fired.retain(|f| *f != id.0);
    }
    was_pending
}

/// Move a watch's deadline; false if its deadline had passed already (its targets were killed).
pub(crate) fn reschedule(id: WatchId, deadline: Instant) -> bool {
    let s = shared();
    let mut st = lock(s);
    let earlier = st.sleeps_past(deadline);
    let Some(e) = st.entries.iter_mut().find(|e| e.id == id.0) else {
        return false;
    };
    e.deadline = deadline;
    drop(st);
    if earlier {
        s.changed.notify_all();
    }
    true
}

/// Whether a watch's deadline has passed and its targets were killed.
pub(crate) fn fired(id: WatchId) -> bool {
    lock(shared()).fired.contains(&id.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_deadline_kills_and_a_cancel_spares() {
        let sleeper = || {
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap()
        };
        let mut a = sleeper();
        let mut b = sleeper();
        let fd = |c: &std::process::Child| sys::pidfd_open(c.id() as libc::pid_t).unwrap();
        let soon = Instant::now() + Duration::from_millis(100);
        let wa = watch(soon, vec![fd(&a)]);
        let wb = watch(soon, vec![fd(&b)]);
        assert!(cancel(wb));
        let status = a.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(fired(wa) && !fired(wb));
        std::thread::sleep(Duration::from_millis(200));
        assert!(b.try_wait().unwrap().is_none(), "cancelled, yet killed");
        b.kill().unwrap();
        b.wait().unwrap();
    }

    #[test]
    fn a_later_deadline_after_a_cancel_still_kills_on_time() {
        // The thread is not woken for a deadline later than its own wake-up (the cancelled
        // watch's): it must still find the new one when it wakes.
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let start = Instant::now();
        let early = watch(start + Duration::from_millis(50), Vec::new());
        assert!(cancel(early));
        let fd = sys::pidfd_open(c.id() as libc::pid_t).unwrap();
        let w = watch(start + Duration::from_millis(150), vec![fd]);
        let status = c.wait().unwrap();
        let took = start.elapsed();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(fired(w));
        assert!(took >= Duration::from_millis(150), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
