//! The host side of a jail: starts it, maps its ids, forwards input, drains and bounds its output,
//! enforces the wall clock by killing the whole PID namespace, and collects the outcome.

use crate::jail::{self, InitFds, JailSpec, Prepared, INSIDE_ID};
use crate::layers::Layer;
use crate::limits::Limit;
use crate::mounts::MountError;
use crate::protocol::Relay;
use crate::sys;
use serde::Serialize;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// What the sandboxed code reads on its standard input.
pub enum Stdin {
    /// `/dev/null`: nothing (the default without the `stdin` feature).
    Null,
    /// These bytes, then end of file.
    Data(Vec<u8>),
    /// Everything read from this host descriptor, forwarded as it arrives (the terminal).
    Forward(OwnedFd),
    /// This descriptor itself, handed to the interpreter (a pipe from a trusted client: the
    /// warm worker's request channel, without a forwarding hop).
    Direct(OwnedFd),
}

/// Where the sandboxed code's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Written to the supervisor's own stdout and stderr as it arrives (up to the limit).
    Stream,
    /// Kept in memory (up to the limit) and returned in the [`Outcome`].
    Capture,
    /// Written to the supervisor's own stdout as it arrives (up to the limit), stdout, stderr
    /// and the report pipe each in [`crate::protocol::Relay`] frames of its own: one ordered
    /// channel in which nothing the code writes can pass for something else (`pysandbox repl`).
    Relay,
}

/// Descriptors and modes of one launch.
pub struct Launch {
    pub stdin: Stdin,
    pub output: OutputMode,
    /// Handed to the interpreter as descriptors 3, 4, …
    pub extra_fds: Vec<OwnedFd>,
    /// A pipe's read end whose data (bounded to 64 KiB) is returned as [`Outcome::report`].
    pub report: Option<OwnedFd>,
    /// Hand this descriptor to the interpreter as its stdout instead of capturing it (the warm
    /// worker's answers go straight to its client; the zygote bounds each request's output).
    pub direct_stdout: Option<OwnedFd>,
    /// Bytes kept of the report (the rest is drained and flagged in [`Outcome::report_truncated`]).
    pub report_max: u64,
}

/// How the interpreter ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Exited(i32),
    Signaled(i32),
    /// The supervisor killed the jail (wall clock) before the interpreter's status was known.
    Killed,
}

/// Up to the output limit of one stream, and whether more was discarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub data: Vec<u8>,
    /// Bytes the code wrote, including discarded ones.
    pub total: u64,
    pub truncated: bool,
}

/// Waits for the jail's init when dropped. The outcome is complete as soon as init has reported
/// the interpreter's end; the kernel's teardown of the namespaces then overlaps with the caller's
/// use of the outcome instead of delaying it. A process that exits without dropping it leaves the
/// reaping to the system's init.
#[derive(Debug)]
pub struct Reaper {
    pid: libc::pid_t,
    _pidfd: OwnedFd,
    done: bool,
}

impl Reaper {
    fn reap(mut self) -> Result<sys::Reaped, SupervisorError> {
        self.done = true;
        sys::wait4(self.pid, 0)
            .map_err(SupervisorError::Wait)?
            .ok_or_else(|| SupervisorError::Wait(io::Error::other("no child to reap")))
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if !self.done {
            let _ = sys::wait4(self.pid, 0);
        }
    }
}

/// What happened in one run.
#[derive(Debug)]
pub struct Outcome {
    pub status: Status,
    /// The limit that stopped or hampered the run, if any.
    pub limit: Option<Limit>,
    pub cpu_time: Duration,
    pub wall_time: Duration,
    /// Peak resident memory of the largest process, in bytes.
    pub peak_memory: u64,
    pub stdout: Captured,
    pub stderr: Captured,
    pub report: Vec<u8>,
    /// The report was longer than [`Launch::report_max`].
    pub report_truncated: bool,
    _reaper: Option<Reaper>,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("the jail must be started from a single-threaded process (this one has {0} threads); run the `pysandbox` binary instead")]
    Threaded(usize),
    #[error(transparent)]
    Prepare(#[from] MountError),
    #[error("creating pipes for the jail: {0}")]
    Pipe(io::Error),
    #[error("creating the jail's namespaces failed: {0}; user namespaces may be disabled (check /proc/sys/user/max_user_namespaces, AppArmor's restrict_unprivileged_userns) — run `pysandbox doctor`")]
    Clone(io::Error),
    #[error("writing {path}: {source}")]
    IdMap { path: String, source: io::Error },
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    #[error("waiting for the jail: {0}")]
    Wait(io::Error),
}

const REPORT_MAX: usize = 64 * 1024;

/// Start a jail for `spec`, run it to the end and return what happened.
pub fn run(spec: &JailSpec, launch: Launch) -> Result<Outcome, SupervisorError> {
    crate::layers::check_guard(spec.disabled).map_err(SupervisorError::Setup)?;
    let threads = sys::thread_count();
    if threads > 1 {
        return Err(SupervisorError::Threaded(threads));
    }
    let prepared = Prepared::new(spec)?;
    let pipe = || sys::pipe().map_err(SupervisorError::Pipe);
    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let (out_r, mut out_w) = pipe()?;
    if let Some(direct) = launch.direct_stdout {
        // The capture pipe sees end-of-file at once.
        out_w = direct;
    }
    let (errout_r, errout_w) = pipe()?;
    let mut forward = None;
    let stdin_fd: OwnedFd = match launch.stdin {
        Stdin::Null => std::fs::File::open("/dev/null")
            .map_err(SupervisorError::Pipe)?
            .into(),
        Stdin::Data(data) => sys::sealed_memfd(c"stdin", &data).map_err(SupervisorError::Pipe)?,
        Stdin::Direct(fd) => fd,
        Stdin::Forward(host) => {
            let (r, w) = pipe()?;
            sys::set_nonblocking(w.as_fd()).map_err(SupervisorError::Pipe)?;
            forward = Some((host, w));
            r
        }
    };
    let mut child_fds: Vec<RawFd> = vec![
        stdin_fd.as_raw_fd(),
        out_w.as_raw_fd(),
        errout_w.as_raw_fd(),
    ];
    child_fds.extend(launch.extra_fds.iter().map(|f| f.as_raw_fd()));

    let mut ns = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    if spec.network == jail::Network::None {
        ns |= libc::CLONE_NEWNET;
    }
    for (layer, flag) in [
        (Layer::NetNamespace, libc::CLONE_NEWNET),
        (Layer::IpcNamespace, libc::CLONE_NEWIPC),
        (Layer::PidNamespace, libc::CLONE_NEWPID),
        (Layer::UtsNamespace, libc::CLONE_NEWUTS),
    ] {
        if spec.disabled.off(layer) {
            ns &= !flag;
        }
    }
    let start = Instant::now();
    let (pid, pidfd) = match sys::clone_pidfd(ns).map_err(SupervisorError::Clone)? {
        sys::Forked::Child => jail::init_main(
            prepared,
            InitFds {
                sync: sync_r.as_raw_fd(),
                error: err_w.as_raw_fd(),
                status: status_w.as_raw_fd(),
                child: child_fds,
            },
        ),
        sys::Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    // Our copies of the jail's ends must go, or we would never see end-of-file.
    drop((sync_r, err_w, status_w, out_w, errout_w, stdin_fd));
    drop(launch.extra_fds);
    drop(prepared);

    // Init may have failed already (opening a bind source, before the maps): then its own
    // message says why, not the pipe or map that broke because it was gone.
    let early_failure = |e: SupervisorError| {
        let _ = sys::pidfd_kill(pidfd.as_fd(), libc::SIGKILL);
        let _ = sys::wait4(pid, 0);
        let mut msg = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = sys::read(err_r.as_fd(), &mut buf) {
            msg.extend_from_slice(&buf[..n]);
        }
        let msg = String::from_utf8_lossy(&msg).trim().to_string();
        if msg.is_empty() {
            e
        } else {
            SupervisorError::Setup(msg)
        }
    };
    if let Err(e) = write_id_maps(pid, if spec.warm { 0 } else { INSIDE_ID }) {
        return Err(early_failure(e));
    }
    if let Err(e) = sys::write_all(sync_w.as_raw_fd(), b"1") {
        return Err(early_failure(SupervisorError::Pipe(e)));
    }

    let mut streams = Streams {
        out: Sink::new(out_r, launch.output, 1, spec.limits.output)?,
        err: Sink::new(errout_r, launch.output, 2, spec.limits.output)?,
        setup: Sink::new(err_r, OutputMode::Capture, -1, REPORT_MAX as u64)?,
        status: Sink::new(status_r, OutputMode::Capture, -1, jail::STATUS_LEN as u64)?,
        report: launch
            .report
            .map(|r| {
                let mode = if launch.output == OutputMode::Relay {
                    OutputMode::Relay
                } else {
                    OutputMode::Capture
                };
                Sink::new(r, mode, 3, launch.report_max)
            })
            .transpose()?,
        forward: forward.map(|(host, pipe)| Forwarder {
            host,
            pipe: Some(pipe),
            pending: Vec::new(),
            eof: false,
        }),
    };
    let deadline = start + spec.limits.wall;
    let mut killed = false;
    let mut killed_usage = None;
    let init_exited = loop {
        let timeout = if killed {
            -1
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // The interpreter dies with the namespace and is reaped by the kernel, not by
                // init: take its accounting from /proc first.
                killed_usage = usage_from_proc(pid);
                let _ = sys::pidfd_kill(pidfd.as_fd(), libc::SIGKILL);
                killed = true;
                continue;
            }
            left.as_millis().min(i32::MAX as u128) as i32 + 1
        };
        let exited = streams.poll_once(pidfd.as_raw_fd(), timeout)?;
        // Done when init is gone, or as soon as it has reported the interpreter's end and the
        // output is complete: tearing down the namespaces happens while we report.
        let reported = streams.status.captured.data.len() == jail::STATUS_LEN;
        if exited || (reported && streams.output_done()) {
            break exited;
        }
    };
    // When init is gone, every process of the namespace is gone: the pipes are at end-of-file.
    streams.drain()?;
    let wall_time = start.elapsed();
    let record = jail::parse_status_record(&streams.status.captured.data);
    drop(sync_w);
    let mut reaper = Some(Reaper {
        pid,
        _pidfd: pidfd,
        done: false,
    });
    let reaped = match reaper.take() {
        Some(r) if record.is_none() || init_exited => Some(r.reap()?),
        r => {
            reaper = r;
            None
        }
    };
    let setup = String::from_utf8_lossy(&streams.setup.captured.data)
        .trim()
        .to_string();
    let status = match record.map(|r| r.end) {
        Some(Ok(code)) => Status::Exited(code),
        Some(Err(sig)) => Status::Signaled(sig),
        None if killed => Status::Killed,
        None => {
            let init_code = reaped
                .as_ref()
                .filter(|r| libc::WIFEXITED(r.status))
                .map_or(-1, |r| libc::WEXITSTATUS(r.status));
            let msg = if setup.is_empty() {
                format!("the jail's init ended without a status (exit code {init_code})")
            } else {
                setup
            };
            return Err(SupervisorError::Setup(msg));
        }
    };
    if !setup.is_empty() && status == Status::Exited(127) {
        return Err(SupervisorError::Setup(setup));
    }

    // From init's own wait when the interpreter ended normally; from waiting for init itself
    // (which reaped everything while dying) when the jail was killed.
    let (cpu_time, peak_kib) = match (&reaped, record) {
        (Some(_), None) if killed_usage.is_some() => killed_usage.unwrap_or_default(),
        (Some(r), None) => {
            let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
            (
                tv(r.rusage.ru_utime) + tv(r.rusage.ru_stime),
                r.rusage.ru_maxrss as u64,
            )
        }
        (_, Some(rec)) => (Duration::from_micros(rec.cpu_micros), rec.maxrss_kib),
        _ => (Duration::ZERO, 0),
    };
    let limit = if killed {
        Some(Limit::Wall)
    } else {
        match status {
            Status::Signaled(libc::SIGXCPU) => Some(Limit::Cpu),
            Status::Signaled(libc::SIGKILL)
                if crate::limits::cpu_killed(spec.limits.cpu, cpu_time.as_secs_f64()) =>
            {
                Some(Limit::Cpu)
            }
            Status::Signaled(libc::SIGXFSZ) => Some(Limit::FileSize),
            _ => None,
        }
    };
    let limit = limit.or(
        if streams.out.captured.truncated || streams.err.captured.truncated {
            Some(Limit::Output)
        } else {
            None
        },
    );
    Ok(Outcome {
        status,
        limit,
        cpu_time,
        wall_time,
        peak_memory: peak_kib * 1024,
        stdout: streams.out.captured,
        stderr: streams.err.captured,
        report_truncated: streams
            .report
            .as_ref()
            .is_some_and(|r| r.captured.truncated),
        report: streams.report.map(|r| r.captured.data).unwrap_or_default(),
        _reaper: reaper,
    })
}

/// CPU time and peak RSS (KiB) of the jail's interpreter (init's child) and its reaped children,
/// read from the host's /proc just before the jail is killed.
fn usage_from_proc(init: libc::pid_t) -> Option<(Duration, u64)> {
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
    let child: u32 = children.split_whitespace().next()?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3; utime 14, stime 15,
    // cutime 16, cstime 17 (proc(5)).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{child}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    // USER_HZ is 100 on every Linux architecture pysandbox supports.
    Some((Duration::from_millis(ticks * 10), hwm))
}

/// Map the jail's only user and group: inside [`INSIDE_ID`], outside the caller's own id, or, for
/// root, the host's unprivileged 65534 so that the jail never owns root's files.
fn write_id_maps(pid: libc::pid_t, inside: u32) -> Result<(), SupervisorError> {
    let (uid, gid) = (sys::geteuid(), sys::getegid());
    let root = uid == 0;
    let (out_uid, out_gid) = if root {
        (INSIDE_ID, INSIDE_ID)
    } else {
        (uid, gid)
    };
    let write = |name: &str, text: String| {
        let path = format!("/proc/{pid}/{name}");
        std::fs::write(&path, text).map_err(|source| SupervisorError::IdMap { path, source })
    };
    if !root {
        // Required before an unprivileged gid_map (user_namespaces(7)).
        write("setgroups", "deny".to_string())?;
    }
    write("uid_map", format!("{inside} {out_uid} 1\n"))?;
    write("gid_map", format!("{inside} {out_gid} 1\n"))?;
    Ok(())
}

/// One stream from the jail: bounded, either forwarded to a host descriptor or kept.
struct Sink {
    fd: Option<OwnedFd>,
    mode: OutputMode,
    host_fd: RawFd,
    limit: u64,
    captured: Captured,
}

impl Sink {
    fn new(
        fd: OwnedFd,
        mode: OutputMode,
        host_fd: RawFd,
        limit: u64,
    ) -> Result<Sink, SupervisorError> {
        sys::set_nonblocking(fd.as_fd()).map_err(SupervisorError::Pipe)?;
        Ok(Sink {
            fd: Some(fd),
            mode,
            host_fd,
            limit,
            captured: Captured::default(),
        })
    }

    /// Read what is available; false once at end of file.
    fn pump(&mut self, buf: &mut [u8]) -> bool {
        loop {
            let Some(fd) = &self.fd else { return false };
            match sys::read(fd.as_fd(), buf) {
                Ok(0) => {
                    self.fd = None;
                    return false;
                }
                Ok(n) => self.accept(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => {
                    self.fd = None;
                    return false;
                }
            }
        }
    }

    fn accept(&mut self, data: &[u8]) {
        let c = &mut self.captured;
        let room = self.limit.saturating_sub(c.total) as usize;
        c.total += data.len() as u64;
        let keep = &data[..data.len().min(room)];
        if keep.len() < data.len() {
            c.truncated = true;
        }
        if keep.is_empty() {
            return;
        }
        match self.mode {
            // A closed host stdout (EPIPE) must not stop the supervisor: the jail is still drained.
            OutputMode::Stream => {
                let _ = sys::write_all(self.host_fd, keep);
            }
            OutputMode::Capture => c.data.extend_from_slice(keep),
            OutputMode::Relay => {
                let data = keep.to_vec();
                let frame = match self.host_fd {
                    1 => Relay::Stdout(data),
                    2 => Relay::Stderr(data),
                    _ => Relay::Report(data),
                };
                let _ = sys::write_all(1, &frame.encode());
            }
        }
    }
}

/// Forwards a host descriptor (the terminal) to the jail's stdin without ever blocking.
struct Forwarder {
    host: OwnedFd,
    pipe: Option<OwnedFd>,
    pending: Vec<u8>,
    eof: bool,
}

struct Streams {
    out: Sink,
    err: Sink,
    setup: Sink,
    status: Sink,
    report: Option<Sink>,
    forward: Option<Forwarder>,
}

impl Streams {
    /// One poll round; true once the jail's init has exited.
    fn poll_once(&mut self, pidfd: RawFd, timeout: i32) -> Result<bool, SupervisorError> {
        let mut pfds = vec![libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        }];
        let sinks: [Option<&Sink>; 5] = [
            Some(&self.out),
            Some(&self.err),
            Some(&self.setup),
            Some(&self.status),
            self.report.as_ref(),
        ];
        for s in sinks.into_iter().flatten() {
            pfds.push(libc::pollfd {
                fd: s.fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let fwd_base = pfds.len();
        if let Some(f) = &self.forward {
            let want_in = !f.eof && f.pending.is_empty() && f.pipe.is_some();
            pfds.push(libc::pollfd {
                fd: if want_in { f.host.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            });
            pfds.push(libc::pollfd {
                fd: match (&f.pipe, f.pending.is_empty()) {
                    (Some(p), false) => p.as_raw_fd(),
                    _ => -1,
                },
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        sys::poll(&mut pfds, timeout).map_err(SupervisorError::Wait)?;
        let mut buf = vec![0u8; 64 * 1024];
        let ready = |i: usize| pfds[i].revents != 0;
        if ready(1) {
            self.out.pump(&mut buf);
        }
        if ready(2) {
            self.err.pump(&mut buf);
        }
        if ready(3) {
            self.setup.pump(&mut buf);
        }
        if ready(4) {
            self.status.pump(&mut buf);
        }
        if let Some(r) = &mut self.report {
            if ready(5) {
                r.pump(&mut buf);
            }
        }
        if let Some(f) = &mut self.forward {
            if ready(fwd_base) {
                match sys::read(f.host.as_fd(), &mut buf) {
                    Ok(0) | Err(_) => {
                        f.eof = true;
                    }
                    Ok(n) => f.pending.extend_from_slice(&buf[..n]),
                }
            }
            if ready(fwd_base + 1) || (!f.pending.is_empty() && f.pipe.is_some()) {
                if let Some(p) = &f.pipe {
                    match nonblocking_write(p.as_raw_fd(), &f.pending) {
                        Ok(n) => {
                            f.pending.drain(..n);
                        }
                        Err(_) => {
                            f.pipe = None;
                            f.pending.clear();
                        }
                    }
                }
            }
            if f.eof && f.pending.is_empty() {
                f.pipe = None;
            }
        }
        Ok(ready(0))
    }

    /// stdout, stderr and the report pipe are at end of file.
    fn output_done(&self) -> bool {
        self.out.fd.is_none()
            && self.err.fd.is_none()
            && self.report.as_ref().is_none_or(|r| r.fd.is_none())
    }

    fn drain(&mut self) -> Result<(), SupervisorError> {
        let mut buf = vec![0u8; 64 * 1024];
        for s in [
            &mut self.out,
            &mut self.err,
            &mut self.setup,
            &mut self.status,
        ]
        .into_iter()
        .chain(self.report.as_mut())
        {
            // The jail is dead, so a pipe that would block has no writer left but a stray
            // descriptor; stop rather than wait.
            s.pump(&mut buf);
        }
        Ok(())
    }
}

fn nonblocking_write(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    match sys::write_some(fd, data) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}
