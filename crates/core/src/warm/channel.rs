//! The host's side of one request child: its pipes and pidfd, handed over by the zygote, and the
//! bounded, deadline-driven exchange of one request (or one session call) with it.
//!
//! Everything read here comes from untrusted code: output is kept up to the limit and the rest
//! drained and flagged, and the report pipe is decoded as typed frames ([`ReportReader`]). The
//! host's clocks do not depend on what the child says: the wall clock runs until the child says
//! it is done *and* afterwards (the watchdog: `watchdog.rs`), the exchange ends when the process
//! is gone whatever its pipes do, and the kill goes straight to the child's pidfd.

use super::tree;
use crate::limits::Limit;
use crate::outcome::{ErrorInfo, Extras, Outcome};
use crate::protocol::{FrameError, Report, ReportReader};
use crate::sys;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// After a kill, how long the process may take to be gone (normally at once); longer, and the
/// worker is not to be trusted.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often a session call's CPU time is read, at most.
const CPU_POLL_MIN: Duration = Duration::from_millis(10);

/// The pipes and pidfd of one isolated child.
pub(crate) struct ChildChannel {
    pub seq: u64,
    pub req: OwnedFd,
    pub out: OwnedFd,
    pub err: OwnedFd,
    pub res: OwnedFd,
    pub pidfd: OwnedFd,
}

impl ChildChannel {
    /// From the descriptors of a `Child` frame, in the zygote's order.
    pub fn new(seq: u64, fds: Vec<OwnedFd>) -> Option<ChildChannel> {
        let [req, out, err, res, pidfd]: [OwnedFd; crate::protocol::CHILD_FDS] =
            fds.try_into().ok()?;
        // The zygote made the pipes non-blocking; make sure (a blocking one would stall the
        // host).
        for fd in [&req, &out, &err, &res] {
            sys::ensure_nonblocking(fd.as_fd()).ok()?;
        }
        Some(ChildChannel {
            seq,
            req,
            out,
            err,
            res,
            pidfd,
        })
    }
}

/// The kernel's account of how a child ended (from the zygote, which reaped it).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub cpu: f64,
    pub maxrss_kib: u64,
}

/// Limits of one exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub wall: Duration,
    /// Bytes kept of each of stdout and stderr.
    pub output: usize,
    /// The CPU limit (seconds), to recognise its SIGKILL.
    pub cpu: Option<u64>,
    /// Longest API result kept.
    pub result_max: usize,
    /// Go on until the process is gone and take how it ended from the kernel, not from its
    /// `Done` frame ([`super::Request::until_exit`]).
    pub until_exit: bool,
}

/// A session call's CPU limit, measured by the host on the child's process tree.
pub(crate) struct CpuWatch {
    pub pid: libc::pid_t,
    pub limit: Duration,
    /// The tree's CPU time when the call started.
    pub start: Duration,
    /// Processes that may share the work (a check waits at least the budget left divided by
    /// this before looking again).
    pub processes: u32,
}

/// The child's own account of its request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    pub exit: i32,
    pub cpu: f64,
    pub maxrss_kib: u64,
}

/// What one exchange gave before the child's status is known.
pub(crate) struct Exchange {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Limits the bootstrap reported (`Limit` frames).
    pub limits: Vec<Limit>,
    /// The exception the code raised, as the bootstrap described it (`Error` frame).
    pub exception: Option<ErrorInfo>,
    /// Files and rich outputs it sent back.
    pub extras: Extras,
    pub result: Option<Vec<u8>>,
    pub result_truncated: bool,
    /// A file or rich output longer than the bound was left out.
    pub other_truncated: bool,
    pub done: Option<Done>,
    /// An isolation step failed in the child (step, message): nothing ran.
    pub setup_failed: Option<(String, String)>,
    /// The report did not decode (the code wrote its own bytes there).
    pub malformed: Option<FrameError>,
    /// The host killed the child: its wall clock or (sessions) its CPU time ran out.
    pub killed: Option<Limit>,
    /// The process has ended.
    pub gone: bool,
    /// Killed, it was still there after the grace: the worker is not to be trusted.
    pub stuck: bool,
    pub wall: Duration,
    /// A traced child's phases (`PoolOptions::trace`).
    pub trace: Vec<crate::protocol::Mark>,
}

struct Stream {
    fd: std::os::fd::RawFd,
    data: Vec<u8>,
    total: usize,
    cap: usize,
    open: bool,
    /// Bytes of `data` given to the tap so far.
    emitted: usize,
}

impl Stream {
    fn new(fd: &OwnedFd, cap: usize) -> Stream {
        Stream {
            fd: fd.as_raw_fd(),
            data: Vec::new(),
            total: 0,
            cap,
            open: true,
            emitted: 0,
        }
    }

    /// Give the tap what was kept since its last call.
    fn emit(&mut self, tap: Option<&super::Tap>, which: super::OutputStream) {
        if let Some(t) = tap {
            if self.data.len() > self.emitted {
                (t.0)(which, &self.data[self.emitted..]);
                self.emitted = self.data.len();
            }
        }
    }

    /// Read what is there into `into` (or the stream's own buffer, bounded); false once nothing
    /// more can come now (would block, or end of file).
    fn take(&mut self, scratch: &mut [u8], into: Option<&mut Vec<u8>>) -> bool {
        if !self.open {
            return false;
        }
        match sys::read_raw(self.fd, scratch) {
            Ok(0) => {
                self.open = false;
                false
            }
            Ok(n) => {
                self.total += n;
                match into {
                    Some(v) => v.extend_from_slice(&scratch[..n]),
                    None => {
                        let room = self.cap.saturating_sub(self.data.len());
                        self.data.extend_from_slice(&scratch[..n.min(room)]);
                    }
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(_) => {
                self.open = false;
                false
            }
        }
    }
}

/// Send `request` (an encoded frame) to the child and collect its output and report until it
/// says it is done, it is gone, or a clock runs out (then the host kills it: its PID namespace
/// goes with it).
/// `after_write` runs once the request's first bytes are in the pipe (a stopped session is
/// continued then: it wakes once, to a request already there).
pub(crate) fn exchange(
    ch: &ChildChannel,
    request: &[u8],
    b: Bounds,
    cpu: Option<&CpuWatch>,
    after_write: &dyn Fn(),
    tap: Option<&super::Tap>,
) -> Exchange {
    let start = Instant::now();
    let deadline = start + b.wall;
    let mut out = Stream::new(&ch.out, b.output);
    let mut err = Stream::new(&ch.err, b.output);
    let mut res = Stream::new(&ch.res, usize::MAX);
    let mut reader = ReportReader::new(b.result_max);
    let mut reports = Vec::new();
    let mut fresh = Vec::new();
    let mut written = 0;
    let mut scratch = vec![0u8; 64 * 1024];
    let mut killed: Option<(Limit, Instant)> = None;
    let mut gone = false;
    let mut stuck = false;
    let mut next_cpu = cpu.map(|_| start + CPU_POLL_MIN);
    let write =
        |written: &mut usize| match sys::write_some(ch.req.as_raw_fd(), &request[*written..]) {
            Ok(n) => *written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // The child is gone or closed its end: its status tells the rest.
            Err(_) => *written = request.len(),
        };
    // The request usually fits the pipe: write it before the first poll.
    write(&mut written);
    after_write();
    let kill = |why: Limit, killed: &mut Option<(Limit, Instant)>| {
        let _ = sys::pidfd_kill(ch.pidfd.as_fd(), libc::SIGKILL);
        *killed = Some((why, Instant::now()));
    };
    loop {
        let finished = reports
            .iter()
            .any(|r| matches!(r, Report::Done { .. } | Report::SetupFailed { .. }));
        if (finished && killed.is_none() && !b.until_exit) || gone {
            break;
        }
        let now = Instant::now();
        if let Some((_, at)) = killed {
            if now >= at + KILL_GRACE {
                stuck = true;
                break;
            }
        } else if now >= deadline {
            kill(Limit::Wall, &mut killed);
            continue;
        } else if let (Some(w), Some(t)) = (cpu, next_cpu) {
            if now >= t {
                let used = tree::cpu(w.pid).saturating_sub(w.start);
                if used >= w.limit {
                    kill(Limit::Cpu, &mut killed);
                    continue;
                }
                let left = (w.limit - used) / w.processes.max(1);
                next_cpu = Some(now + left.max(CPU_POLL_MIN));
            }
        }
        let until = match killed {
            Some((_, at)) => at + KILL_GRACE,
            None => next_cpu.map_or(deadline, |t| t.min(deadline)),
        };
        let mut fds = Vec::with_capacity(5);
        fds.push(libc::pollfd {
            fd: ch.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for s in [&out, &err, &res] {
            if s.open {
                fds.push(libc::pollfd {
                    fd: s.fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        if written < request.len() {
            fds.push(libc::pollfd {
                fd: ch.req.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        let left = until.saturating_duration_since(now);
        // Rounded up: a poll that returns early would spin until the deadline.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        if sys::poll(&mut fds, ms).is_err() {
            break;
        }
        for p in &fds {
            if p.revents == 0 {
                continue;
            }
            if p.fd == ch.pidfd.as_raw_fd() {
                gone = true;
            } else if p.fd == ch.req.as_raw_fd() {
                write(&mut written);
            } else if p.fd == out.fd {
                while out.take(&mut scratch, None) {}
                out.emit(tap, super::OutputStream::Stdout);
            } else if p.fd == err.fd {
                while err.take(&mut scratch, None) {}
                err.emit(tap, super::OutputStream::Stderr);
            } else if p.fd == res.fd {
                fresh.clear();
                while res.take(&mut scratch, Some(&mut fresh)) {}
                reader.feed(&fresh, &mut reports);
            }
        }
    }
    // What was written before the end (or before the closing frame) is in the pipes already.
    while out.take(&mut scratch, None) {}
    while err.take(&mut scratch, None) {}
    out.emit(tap, super::OutputStream::Stdout);
    err.emit(tap, super::OutputStream::Stderr);
    fresh.clear();
    while res.take(&mut scratch, Some(&mut fresh)) {}
    reader.feed(&fresh, &mut reports);
    let mut x = Exchange {
        stdout_truncated: out.total > out.cap,
        stderr_truncated: err.total > err.cap,
        stdout: out.data,
        stderr: err.data,
        limits: Vec::new(),
        exception: None,
        extras: Extras::default(),
        result: None,
        result_truncated: reader.result_truncated,
        other_truncated: reader.other_truncated,
        done: None,
        setup_failed: None,
        malformed: reader.error.clone(),
        killed: killed.map(|(l, _)| l),
        gone,
        stuck,
        wall: start.elapsed(),
        trace: Vec::new(),
    };
    for r in reports {
        // Nothing after the closing frame counts.
        if x.done.is_some() || x.setup_failed.is_some() {
            break;
        }
        if x.extras.take(&r) {
            continue;
        }
        match r {
            Report::Limit(l) => x.limits.push(l),
            Report::Result(data) => x.result = Some(data),
            Report::Done {
                exit,
                cpu_micros,
                maxrss_kib,
            } => {
                x.done = Some(Done {
                    exit,
                    cpu: cpu_micros as f64 / 1e6,
                    maxrss_kib,
                })
            }
            Report::SetupFailed { step, message } => x.setup_failed = Some((step, message)),
            Report::Error {
                kind,
                message,
                traceback,
            } => {
                x.exception = Some(ErrorInfo {
                    kind,
                    message,
                    traceback,
                })
            }
            Report::Trace(marks) => x.trace = marks,
            // Not a warm request's (the repl's): the code's own bytes, ignored.
            Report::Repl(_) => {}
            // Taken by `extras` above.
            Report::File { .. } | Report::FilesTruncated | Report::Display(_) => {}
        }
    }
    x
}

/// The outcome of an exchange: from the child's closing frame, or else from its status as the
/// zygote saw it (`exit`; `None` when that never came: an anomaly of the worker). Also whether
/// the worker is to be replaced.
pub(crate) fn outcome(x: &Exchange, exit: Option<ExitRecord>, b: Bounds) -> (Outcome, bool) {
    let reported = x.limits.first().copied();
    let mut anomaly = x.stuck;
    let (exit_code, signal, cpu, maxrss, mut limit) = match (x.done, exit) {
        (Some(d), _) if x.killed.is_none() && !b.until_exit => {
            (Some(d.exit), None, d.cpu, d.maxrss_kib, reported)
        }
        (_, Some(e)) => {
            let cpu_limited = crate::limits::cpu_killed(b.cpu.map(Duration::from_secs), e.cpu);
            let limit = if x.killed.is_some() {
                x.killed
            } else if e.signal == Some(libc::SIGXCPU)
                || (e.signal == Some(libc::SIGKILL) && cpu_limited)
            {
                // RLIMIT_CPU's hard limit equals its soft one: the kernel's SIGKILL ends it.
                Some(Limit::Cpu)
            } else if e.signal == Some(libc::SIGXFSZ) {
                Some(Limit::FileSize)
            } else {
                reported
            };
            let signal = if x.killed.is_some() {
                Some(libc::SIGKILL)
            } else {
                e.signal
            };
            (e.code, signal, e.cpu, e.maxrss_kib, limit)
        }
        (_, None) => {
            // The zygote did not say how the child ended: the worker is not to be trusted.
            anomaly = true;
            let limit = x.killed.or(reported);
            let signal = x.killed.map(|_| libc::SIGKILL);
            (None, signal, 0.0, 0, limit)
        }
    };
    if limit.is_none() && (x.stdout_truncated || x.stderr_truncated) {
        limit = Some(Limit::Output);
    }
    let mut o = Outcome {
        status: Outcome::status_of(limit, exit_code, signal),
        limit,
        exit_code,
        signal,
        stdout: String::from_utf8_lossy(&x.stdout).into_owned(),
        stdout_truncated: x.stdout_truncated,
        stderr: String::from_utf8_lossy(&x.stderr).into_owned(),
        stderr_truncated: x.stderr_truncated,
        // The code's own account, believed only when its end agrees: it exited non-zero.
        error: x
            .exception
            .clone()
            .filter(|_| exit_code.is_some_and(|c| c != 0)),
        results: Vec::new(),
        files: Default::default(),
        files_truncated: false,
        wall_time: x.wall.as_secs_f64(),
        cpu_time: cpu,
        peak_memory: maxrss * 1024,
    };
    x.extras.clone().fill(&mut o);
    o.files_truncated |= x.other_truncated;
    (o, anomaly)
}
