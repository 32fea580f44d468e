//! The host's side of one request child: its pipes, handed over by the zygote, and the bounded,
//! deadline-driven exchange of one request (or one session call) with it.
//!
//! Everything read here comes from untrusted code: output is kept up to the limit and the rest
//! drained and flagged, the report is bounded, and the only thing parsed is the child's own
//! closing line, into a fixed shape. A child can misreport its own run, never the host's state.

use crate::limits::Limit;
use crate::run::JsonOutcome;
use crate::sys;
use serde::Deserialize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Bytes kept of the report pipe (limit lines and the API result, which the package bounds).
pub(crate) const REPORT_MAX: usize = 16 << 20;
/// After a kill, how long the pipes may take to close (everything in the child's PID namespace
/// dies with it: normally at once).
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The pipes of one isolated child (the zygote kills it when asked: see [`exchange`]).
pub(crate) struct ChildChannel {
    pub seq: u64,
    pub req: OwnedFd,
    pub out: OwnedFd,
    pub err: OwnedFd,
    pub res: OwnedFd,
}

impl ChildChannel {
    /// From the descriptors of a `child` message, in the zygote's order.
    pub fn new(seq: u64, fds: Vec<OwnedFd>) -> Option<ChildChannel> {
        let [req, out, err, res]: [OwnedFd; 4] = fds.try_into().ok()?;
        // The zygote made them non-blocking; make sure (a blocking one would stall the host).
        for fd in [&req, &out, &err, &res] {
            sys::ensure_nonblocking(fd.as_fd()).ok()?;
        }
        Some(ChildChannel {
            seq,
            req,
            out,
            err,
            res,
        })
    }
}

/// The child's closing line (`\0done {...}`), its own account of the run.
#[derive(Debug, Deserialize)]
struct Done {
    exit: i32,
    cpu: f64,
    maxrss: u64,
}

/// How the zygote saw a child end (`exit` message): the kernel's account.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    #[serde(default)]
    pub cpu: f64,
    #[serde(default)]
    pub maxrss: u64,
}

/// Limits of one exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub wall: Duration,
    /// Bytes kept of each of stdout and stderr.
    pub output: usize,
    /// The CPU limit (seconds), to recognise its SIGKILL.
    pub cpu: Option<u64>,
}

/// What one exchange gave before the child's status is known.
pub(crate) struct Exchange {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// The report pipe's bytes before the closing line.
    pub report: Vec<u8>,
    pub done: Option<(i32, f64, u64)>,
    pub killed: bool,
    /// A session child said it ended for lack of calls.
    pub idle: bool,
    /// Killed, its pipes were still open after the grace: the zygote did not do it.
    pub stuck: bool,
    pub wall: Duration,
}

struct Stream {
    fd: std::os::fd::RawFd,
    data: Vec<u8>,
    total: usize,
    cap: usize,
    open: bool,
}

impl Stream {
    fn new(fd: &OwnedFd, cap: usize) -> Stream {
        Stream {
            fd: fd.as_raw_fd(),
            data: Vec::new(),
            total: 0,
            cap,
            open: true,
        }
    }

    /// Read what is there; false once nothing more can come now (would block, or end of file).
    fn take(&mut self, scratch: &mut [u8]) -> bool {
        match sys::read_raw(self.fd, scratch) {
            Ok(0) => {
                self.open = false;
                false
            }
            Ok(n) => {
                self.total += n;
                let room = self.cap.saturating_sub(self.data.len());
                self.data.extend_from_slice(&scratch[..n.min(room)]);
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

const DONE: &[u8] = b"\0done ";

/// Look for the closing line in `report` from `*from` on: where it starts and what it says
/// (`None` inside for a line that does not parse: forged garbage, not a closing line). `*from`
/// moves past what need not be searched again, so that a report arriving in many pieces (an
/// API result of megabytes) is searched once, not once per piece.
fn find_done(report: &[u8], from: &mut usize) -> Option<(usize, Option<Done>)> {
    let Some(found) = report[*from..].windows(DONE.len()).position(|w| w == DONE) else {
        // A mark split between two reads may start in the last DONE.len() - 1 bytes.
        *from = report.len().saturating_sub(DONE.len() - 1).max(*from);
        return None;
    };
    let at = *from + found;
    *from = at;
    let rest = &report[at + DONE.len()..];
    let end = rest.iter().position(|&b| b == b'\n')?;
    *from = at + 1;
    Some((at, serde_json::from_slice(&rest[..end]).ok()))
}

/// Send `line` to the child and collect its output and report until its closing line, its end,
/// or the wall clock (then `kill` it: its PID namespace goes with it).
pub(crate) fn exchange(
    ch: &ChildChannel,
    line: &[u8],
    b: Bounds,
    kill: &mut dyn FnMut(),
) -> Exchange {
    let start = Instant::now();
    let deadline = start + b.wall;
    let mut out = Stream::new(&ch.out, b.output);
    let mut err = Stream::new(&ch.err, b.output);
    let mut res = Stream::new(&ch.res, REPORT_MAX);
    let mut written = 0;
    let mut scratch = vec![0u8; 64 * 1024];
    let mut done = None;
    let mut searched = 0;
    let mut killed_at: Option<Instant> = None;
    let mut stuck = false;
    // The request usually fits the pipe: write it before the first poll.
    let write = |written: &mut usize| match sys::write_some(ch.req.as_raw_fd(), &line[*written..]) {
        Ok(n) => *written += n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        // The child is gone: what it left is read below, and its status tells the rest.
        Err(_) => *written = line.len(),
    };
    write(&mut written);
    while out.open || err.open || res.open {
        let now = Instant::now();
        let until = match killed_at {
            Some(t) => t + KILL_GRACE,
            None => deadline,
        };
        if now >= until {
            if killed_at.is_some() {
                stuck = true;
                break;
            }
            kill();
            killed_at = Some(now);
            continue;
        }
        let mut fds = Vec::with_capacity(4);
        for s in [&out, &err, &res] {
            if s.open {
                fds.push(libc::pollfd {
                    fd: s.fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        let wants_write = written < line.len();
        if wants_write {
            fds.push(libc::pollfd {
                fd: ch.req.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        let left = until - now;
        // Rounded up: a poll that returns early would spin until the deadline.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        if sys::poll(&mut fds, ms).is_err() {
            break;
        }
        for p in &fds {
            if p.revents == 0 {
                continue;
            }
            if p.fd == ch.req.as_raw_fd() {
                write(&mut written);
                continue;
            }
            let s = [&mut out, &mut err, &mut res]
                .into_iter()
                .find(|s| s.fd == p.fd && s.open);
            if let Some(s) = s {
                while s.take(&mut scratch) {}
            }
        }
        if killed_at.is_none() {
            while let Some((at, parsed)) = find_done(&res.data, &mut searched) {
                if let Some(d) = parsed {
                    res.data.truncate(at);
                    done = Some((d.exit, d.cpu, d.maxrss));
                    break;
                }
            }
            if done.is_some() {
                // Output written before the closing line is already in the pipes.
                while out.take(&mut scratch) {}
                while err.take(&mut scratch) {}
                break;
            }
            if res.data.starts_with(b"\0idle\n") {
                break;
            }
        }
    }
    let idle = done.is_none() && res.data.starts_with(b"\0idle\n");
    Exchange {
        stdout_truncated: out.total > out.cap,
        stderr_truncated: err.total > err.cap,
        stdout: out.data,
        stderr: err.data,
        report: res.data,
        done,
        killed: killed_at.is_some(),
        idle,
        stuck,
        wall: start.elapsed(),
    }
}

/// The outcome of an exchange: from the child's closing line, or else from its status as the
/// zygote saw it (`exit`; `None` when that never came: an anomaly of the worker).
pub(crate) fn outcome(
    x: &Exchange,
    exit: Option<ExitRecord>,
    b: Bounds,
) -> (JsonOutcome, Option<String>, bool) {
    let reported = crate::run::reported_limit(&x.report);
    let result = crate::run::api_result(&x.report).map(|r| String::from_utf8_lossy(r).into_owned());
    let mut anomaly = false;
    let (exit_code, signal, cpu, maxrss, mut limit) = match (x.done, exit) {
        (Some((code, cpu, maxrss)), _) if !x.killed => (Some(code), None, cpu, maxrss, reported),
        (_, Some(e)) => {
            let cpu_limited = b.cpu.is_some_and(|c| e.cpu >= c as f64 - 0.05);
            let limit = if x.killed {
                Some(Limit::Wall)
            } else if e.signal == Some(libc::SIGXCPU)
                || (e.signal == Some(libc::SIGKILL) && cpu_limited)
                || e.code == Some(128 + libc::SIGXCPU)
            {
                // As PID 1 the child ignores SIGXCPU: the hard limit's SIGKILL ends it.
                Some(Limit::Cpu)
            } else if e.signal == Some(libc::SIGXFSZ) {
                Some(Limit::FileSize)
            } else {
                reported
            };
            let signal = if x.killed {
                Some(libc::SIGKILL)
            } else {
                e.signal
            };
            (e.code, signal, e.cpu, e.maxrss, limit)
        }
        (_, None) => {
            // The zygote did not say how the child ended: the worker is not to be trusted.
            anomaly = true;
            let limit = if x.killed {
                Some(Limit::Wall)
            } else {
                reported
            };
            let signal = x.killed.then_some(libc::SIGKILL);
            (None, signal, 0.0, 0, limit)
        }
    };
    anomaly |= x.stuck;
    if limit.is_none() && (x.stdout_truncated || x.stderr_truncated) {
        limit = Some(Limit::Output);
    }
    let o = JsonOutcome {
        exit_code,
        signal,
        limit,
        cpu_time: cpu,
        wall_time: x.wall.as_secs_f64(),
        peak_memory: maxrss * 1024,
        stdout: String::from_utf8_lossy(&x.stdout).into_owned(),
        stdout_truncated: x.stdout_truncated,
        stderr: String::from_utf8_lossy(&x.stderr).into_owned(),
        stderr_truncated: x.stderr_truncated,
    };
    (o, result, anomaly)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_line_is_found_and_parsed_strictly() {
        let r = b"limit memory\n\0done {\"exit\": 3, \"cpu\": 0.5, \"maxrss\": 10}\n";
        let (at, d) = find_done(r, &mut 0).unwrap();
        assert_eq!(at, 13);
        let d = d.unwrap();
        assert_eq!((d.exit, d.maxrss), (3, 10));
        // Forged garbage is not a closing line.
        let (_, d) = find_done(b"\0done nonsense\n", &mut 0).unwrap();
        assert!(d.is_none());
    }

    #[test]
    fn closing_line_is_found_across_reads() {
        // The report grows as reads come in: the mark may be split, the line unfinished.
        let full = b"xxxxxxxxxx\0done {\"exit\": 0, \"cpu\": 0.0, \"maxrss\": 1}\n";
        let mut from = 0;
        for cut in 1..full.len() {
            assert!(find_done(&full[..cut], &mut from).is_none(), "cut {cut}");
            assert!(from <= 10, "searched past the mark at cut {cut}");
        }
        let (at, d) = find_done(full, &mut from).unwrap();
        assert_eq!((at, d.map(|d| d.maxrss)), (10, Some(1)));
    }
}
