//! A notebook-like session: one child of a worker of its own keeps its state between calls.
//!
//! The host owns every clock of a session: each call's wall clock and CPU time (measured on the
//! child's process tree: the child's own `RLIMIT_CPU`, hard = soft, bounds the whole session),
//! the idle timeout and the total lifetime (the watchdog kills the worker, and the session with
//! it, when either passes, whether or not anyone calls). Between calls the session's processes
//! are stopped (SIGSTOP): nothing of a call runs once it has returned, threads and processes it
//! left behind included; they go on with the next call, and their CPU time counts there.

use super::channel::{ChildChannel, CpuWatch};
use super::tree;
use super::watchdog::{self, WatchId};
use super::worker::Worker;
use super::{Request, WarmError, WarmOutcome, WarmUp, ZygoteMode};
use crate::isolate::Injection;
use crate::limits::Limit;
use crate::policy::Policy;
use crate::protocol::ToZygote;
use crate::sys;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Default longest life of a session, calls and idle time included.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// How a session lives.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// The session ends after this long without a call.
    pub idle: Duration,
    /// The session ends this long after it opened, whatever it does.
    pub lifetime: Duration,
    pub warm_up: WarmUp,
    /// The test-only switch (see [`Injection`]).
    pub inject: Option<Injection>,
}

impl SessionOptions {
    pub fn new(idle: Duration) -> SessionOptions {
        SessionOptions {
            idle,
            lifetime: DEFAULT_LIFETIME,
            warm_up: WarmUp::Code,
            inject: None,
        }
    }
}

struct Live {
    worker: Worker,
    child: ChildChannel,
    /// The child's process id in the host's PID namespace (for its CPU time).
    pid: Option<libc::pid_t>,
    stopped: tree::Stopped,
    /// The session's watch (its child and worker killed at the deadline), and which deadline it
    /// holds: the idle timeout or the lifetime.
    watch: (WatchId, &'static str),
    /// A process limit of 1: no thread or child to look for when stopping it.
    alone: bool,
}

/// A notebook-like session: one isolated child keeps its state between calls.
pub struct Session {
    live: Option<Live>,
    opts: SessionOptions,
    opened: Instant,
    cpu: Option<Duration>,
    /// Why it ended, once it has.
    ended: Option<String>,
}

impl Session {
    /// Open a session (a worker of its own); it ends after `idle` without calls.
    pub fn open(binary: &Path, policy: &Policy, idle: Duration) -> Result<Session, WarmError> {
        Session::open_with_options(binary, policy, SessionOptions::new(idle))
    }

    /// [`Session::open`] with the request path to warm up.
    pub fn open_with(
        binary: &Path,
        policy: &Policy,
        idle: Duration,
        warm_up: WarmUp,
    ) -> Result<Session, WarmError> {
        let mut o = SessionOptions::new(idle);
        o.warm_up = warm_up;
        Session::open_with_options(binary, policy, o)
    }

    pub fn open_with_options(
        binary: &Path,
        policy: &Policy,
        opts: SessionOptions,
    ) -> Result<Session, WarmError> {
        let mut worker = Worker::start_mode(
            binary,
            policy,
            ZygoteMode::Sessions,
            opts.warm_up,
            opts.inject,
        )?;
        // The child's own CPU limit spans the session: at most its lifetime, rounded up.
        let cpu_seconds = opts.lifetime.as_secs() + 1;
        worker
            .tell(&ToZygote::Session { cpu_seconds })
            .map_err(|e| WarmError::Worker(format!("asking for a session: {e}")))?;
        let child = worker.next_child(true)?;
        // None once the child is gone (its isolation failed: its first call says why).
        let pid = sys::pidfd_pid(child.pidfd.as_fd());
        let limits = policy.effective_limits();
        let cpu = limits.cpu;
        let alone = limits.processes <= 1;
        // Fail closed: a CPU limit per call the host cannot measure is no limit, and processes
        // it cannot find it cannot stop between calls.
        let refused = if pid.is_none() && cpu.is_some() && !gone(&child.pidfd) {
            Some(
                "the host cannot read the session child's CPU time (is /proc mounted?), so it \
                 cannot enforce the CPU limit per call; run without --cpu-time, or cold",
            )
        } else if !alone && pid.is_some_and(|p| !tree::walkable(p)) && !gone(&child.pidfd) {
            // (A child that has already ended, its isolation failed, cannot be listed either:
            // its first call says why.)
            Some(
                "the host cannot list the session's processes (/proc/PID/task/TID/children, \
                 CONFIG_PROC_CHILDREN), so it cannot stop them between calls; run with \
                 --processes 1, or cold",
            )
        } else {
            None
        };
        if let Some(why) = refused {
            worker.stop();
            return Err(WarmError::Worker(why.into()));
        }
        let opened = Instant::now();
        let targets = [child.pidfd.try_clone(), worker.pidfd()]
            .into_iter()
            .collect::<std::io::Result<Vec<OwnedFd>>>()
            .map_err(|e| WarmError::Worker(format!("watching the session: {e}")))?;
        let mut s = Session {
            live: None,
            opts,
            opened,
            cpu,
            ended: None,
        };
        let (deadline, why) = s.next_deadline();
        let watch = (watchdog::watch(deadline, targets), why);
        // No code has run in it yet (its warm-up is pysandbox's): it is stopped after calls.
        s.live = Some(Live {
            worker,
            child,
            pid,
            stopped: tree::Stopped::default(),
            watch,
            alone,
        });
        Ok(s)
    }

    /// The session's next deadline once a call has returned: its idle timeout or its lifetime,
    /// whichever comes first.
    fn next_deadline(&self) -> (Instant, &'static str) {
        let idle = Instant::now() + self.opts.idle;
        let end = self.opened + self.opts.lifetime;
        if idle <= end {
            (idle, "idle timeout")
        } else {
            (end, "lifetime")
        }
    }

    /// Run `code` in the session. A limit tripped ends the session.
    pub fn execute(&mut self, code: &str) -> Result<WarmOutcome, WarmError> {
        self.execute_request(&Request::code(code))
    }

    /// [`Session::execute`] with a whole request.
    pub fn execute_request(&mut self, req: &Request) -> Result<WarmOutcome, WarmError> {
        let Some(mut live) = self.live.take() else {
            let why = self.ended.clone().unwrap_or_else(|| "closed".into());
            return Err(WarmError::SessionEnded(why));
        };
        if let Err(e) = live.worker.check(req) {
            // A request refused before it ran: the session goes on.
            self.live = Some(live);
            return Err(e);
        }
        // During a call only the lifetime runs (the call has its own clocks).
        if !watchdog::reschedule(live.watch.0, self.opened + self.opts.lifetime) {
            // A deadline passed: the watchdog has killed it.
            let why = live.watch.1.to_string();
            self.finish(live, &why);
            return Err(WarmError::SessionEnded(why));
        }
        live.watch.1 = "lifetime";
        let cpu = self.cpu.zip(live.pid).map(|(limit, pid)| CpuWatch {
            pid,
            limit,
            start: tree::cpu(pid),
            processes: live.worker.processes,
        });
        let stopped = std::cell::Cell::new(Some(std::mem::take(&mut live.stopped)));
        let resume = || {
            if let Some(s) = stopped.take() {
                tree::resume(&live.child.pidfd, s);
            }
        };
        let result = live.worker.serve(&live.child, req, cpu.as_ref(), &resume);
        resume();
        // A tripped limit ends the session (the output limit only cuts the output), those the
        // child reports from an exception (memory, processes, files) included.
        let tripped = |o: &WarmOutcome| o.run.limit.is_some_and(|l| l != Limit::Output);
        // A report that did not decode (the code wrote its own bytes on the report channel):
        // what is left in the channel would be read as the next call's answer.
        let garbled = |o: &WarmOutcome| o.report_error.is_some();
        match result {
            Ok(o) if !o.ended && !o.anomaly && !tripped(&o) && !garbled(&o) => {
                live.stopped = tree::stop(&live.child.pidfd, live.alone);
                let (deadline, why) = self.next_deadline();
                if !watchdog::reschedule(live.watch.0, deadline) {
                    self.finish(live, "lifetime");
                    return Err(WarmError::SessionEnded("lifetime".into()));
                }
                live.watch.1 = why;
                self.live = Some(live);
                Ok(o)
            }
            Ok(mut o) => {
                o.ended = true;
                self.finish(live, "a limit or a crash ended it");
                Ok(o)
            }
            Err(e) => {
                self.finish(live, &e.to_string());
                Err(e)
            }
        }
    }

    fn finish(&mut self, live: Live, why: &str) {
        self.ended = Some(why.to_string());
        watchdog::cancel(live.watch.0);
        live.worker.stop();
    }

    /// Open, and its idle timeout or lifetime has not passed.
    pub fn is_open(&self) -> bool {
        self.live
            .as_ref()
            .is_some_and(|l| !watchdog::fired(l.watch.0))
    }

    /// Process id of the session's `pysandbox worker` process (its jail and the session's
    /// processes are its descendants), while the session is open.
    pub fn worker_pid(&self) -> Option<u32> {
        self.live.as_ref().map(|l| l.worker.pid())
    }

    /// How long the session has been open.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    pub fn close(&mut self) {
        if let Some(live) = self.live.take() {
            self.finish(live, "closed");
        }
    }
}

/// Whether the process behind `pidfd` has ended.
fn gone(pidfd: &OwnedFd) -> bool {
    sys::readable(std::os::fd::AsRawFd::as_raw_fd(pidfd), 0).unwrap_or(false)
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}
