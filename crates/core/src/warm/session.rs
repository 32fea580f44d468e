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
    pid: libc::pid_t,
    stopped: tree::Stopped,
    /// The idle-or-lifetime deadline being watched, and which of the two it is.
    watch: (WatchId, &'static str),
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
        let pid = sys::pidfd_pid(child.pidfd.as_fd())
            .ok_or_else(|| WarmError::Worker("the session child has no process id".into()))?;
        let opened = Instant::now();
        let cpu = policy.effective_limits().cpu;
        let mut s = Session {
            live: None,
            opts,
            opened,
            cpu,
            ended: None,
        };
        let watch = s.arm(&worker, &child)?;
        // No code has run in it yet (its warm-up is pysandbox's): it is stopped after calls.
        s.live = Some(Live {
            worker,
            child,
            pid,
            stopped: tree::Stopped::default(),
            watch,
        });
        Ok(s)
    }

    /// Watch the session's next deadline: its idle timeout or its lifetime, whichever is first.
    fn arm(
        &self,
        worker: &Worker,
        child: &ChildChannel,
    ) -> Result<(WatchId, &'static str), WarmError> {
        let idle = Instant::now() + self.opts.idle;
        let end = self.opened + self.opts.lifetime;
        let (deadline, why) = if idle <= end {
            (idle, "idle timeout")
        } else {
            (end, "lifetime")
        };
        let fd = |r: std::io::Result<OwnedFd>| {
            r.map_err(|e| WarmError::Worker(format!("watching the session: {e}")))
        };
        let targets = vec![fd(child.pidfd.try_clone())?, fd(worker.pidfd())?];
        Ok((watchdog::watch(deadline, targets), why))
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
        if !watchdog::cancel(live.watch.0) {
            // Its deadline passed: the watchdog has killed it.
            let why = live.watch.1.to_string();
            self.finish(live, &why);
            return Err(WarmError::SessionEnded(why));
        }
        let cpu = self.cpu.map(|limit| CpuWatch {
            pid: live.pid,
            limit,
            start: tree::cpu(live.pid),
            processes: live.worker.processes,
        });
        tree::resume(&live.child.pidfd, std::mem::take(&mut live.stopped));
        let result = live.worker.serve(&live.child, req, cpu.as_ref());
        // A tripped limit ends the session (the output limit only cuts the output), those the
        // child reports from an exception (memory, processes, files) included.
        let tripped = |o: &WarmOutcome| o.run.limit.is_some_and(|l| l != Limit::Output);
        match result {
            Ok(o) if !o.ended && !o.anomaly && !tripped(&o) => {
                live.stopped = tree::stop(&live.child.pidfd);
                match self.arm(&live.worker, &live.child) {
                    Ok(w) => {
                        live.watch = w;
                        self.live = Some(live);
                    }
                    Err(e) => {
                        self.finish(live, "the host could not watch it");
                        return Err(e);
                    }
                }
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
            watchdog::cancel(live.watch.0);
            self.finish(live, "closed");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}
