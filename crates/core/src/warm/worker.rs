//! One warm worker: the `pysandbox worker` process, the control channel to its zygote, and the
//! exchange of one request with a child the zygote handed over.

use super::channel::{self, Bounds, ChildChannel, CpuWatch, ExitRecord};
use super::watchdog::{self, WatchId};
use super::{Request, WarmError, WarmOutcome, WarmUp, ZygoteMode, POLICY_ENV};
use crate::isolate::Injection;
use crate::policy::Policy;
use crate::protocol::{FromZygote, ToZygote};
use crate::sys;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a worker may take to start (jail, interpreter, preloads, first child), and the
/// zygote to hand over a child.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the zygote may take to report a child's end once it is gone.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest API result kept (the package bounds it further).
pub(crate) const RESULT_MAX: usize = 16 << 20;

/// The `pysandbox worker` command line for a worker's mode, warm-up and test switch.
fn worker_args(mode: ZygoteMode, warm_up: WarmUp, inject: Option<Injection>) -> Vec<String> {
    let mut args = vec!["worker".to_string()];
    if mode == ZygoteMode::Sessions {
        args.push("--sessions".into());
    }
    if warm_up == WarmUp::Api {
        args.push("--api".into());
    }
    if let Some(i) = inject {
        args.push("--inject-failure".into());
        args.push(format!("{}:{}", i.step.name().replace(' ', "_"), i.child));
    }
    args
}

/// A message from the zygote (or, before the jail runs, from `pysandbox worker` itself).
enum Message {
    Ready,
    Child(ChildChannel, bool),
    Exit(u64, ExitRecord),
    Failed { policy: bool, message: String },
}

enum Incoming {
    Message(Message),
    /// The channel ended or failed (why): nothing more comes.
    Ended(String),
}

#[derive(Default)]
struct Inbox {
    queue: Mutex<VecDeque<Incoming>>,
    arrived: Condvar,
}

/// The worker's reading thread: every message from the zygote, decoded, into `inbox`, until the
/// channel ends (the worker stopped or died).
fn read_messages(ctl: OwnedFd, inbox: &Inbox) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let item = match read_message(ctl.as_fd(), &mut buf) {
            Ok(m) => Incoming::Message(m),
            Err(why) => Incoming::Ended(why),
        };
        let ended = matches!(item, Incoming::Ended(_));
        inbox
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(item);
        inbox.arrived.notify_all();
        if ended {
            return;
        }
    }
}

/// One message from the zygote: a typed frame, descriptors with a `Child` one.
fn read_message(ctl: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Message, String> {
    let got = sys::recv_with_fds(ctl, buf).map_err(|e| format!("reading from it: {e}"))?;
    if got.len == 0 {
        return Err("end of its control channel".into());
    }
    if got.truncated {
        return Err("an oversized message".into());
    }
    let frame = FromZygote::decode(&buf[..got.len]).map_err(|e| format!("a bad message: {e}"))?;
    Ok(match frame {
        FromZygote::Ready => Message::Ready,
        FromZygote::Child { seq, session } => {
            let ch = ChildChannel::new(seq, got.fds).ok_or("a child without its descriptors")?;
            Message::Child(ch, session)
        }
        FromZygote::Exit {
            seq,
            end,
            cpu_micros,
            maxrss_kib,
        } => {
            let (code, signal) = end.code_and_signal();
            Message::Exit(
                seq,
                ExitRecord {
                    code,
                    signal,
                    cpu: cpu_micros as f64 / 1e6,
                    maxrss_kib,
                },
            )
        }
        FromZygote::Failed { policy, message } => Message::Failed { policy, message },
    })
}

/// One `pysandbox worker` process, its jail and a control channel to its zygote. Requests go
/// straight to the isolated child the zygote handed over; the worker process only supervises
/// the jail.
pub struct Worker {
    child: Child,
    ctl: OwnedFd,
    errors: Arc<Mutex<String>>,
    /// The next request child, isolated and waiting.
    ready: Option<ChildChannel>,
    /// The last request child that answered: the watchdog kills it at its deadline unless it is
    /// gone before (the zygote hands over the next child once it is).
    lingering: Option<(WatchId, Instant)>,
    /// Messages from the zygote, read as they arrive by a thread of the worker's own, so that a
    /// request finds its child's pipes ready to use rather than receiving and decoding them.
    inbox: Arc<Inbox>,
    pub(super) bounds: Bounds,
    pub(super) processes: u32,
    /// The /tmp size, which bounds the files a request gives.
    tmp_size: u64,
    /// Requests served so far.
    pub served: u64,
}

impl Worker {
    /// Start a worker for `policy` with the `pysandbox` binary at `binary`.
    pub fn start(binary: &Path, policy: &Policy) -> Result<Worker, WarmError> {
        Worker::start_mode(binary, policy, ZygoteMode::Pool, WarmUp::Code, None)
    }

    pub(super) fn start_mode(
        binary: &Path,
        policy: &Policy,
        mode: ZygoteMode,
        warm_up: WarmUp,
        inject: Option<Injection>,
    ) -> Result<Worker, WarmError> {
        policy.validate()?;
        let start_err = |message: String| WarmError::Start {
            binary: binary.to_path_buf(),
            message,
        };
        // The effective limits, stated: the worker must not re-derive them.
        let limits = policy.effective_limits();
        let mut stated = policy.clone();
        stated.limits = limits.clone();
        let text = serde_json::to_string(&stated).map_err(|e| start_err(e.to_string()))?;
        let (ctl, theirs) = sys::seqpacket_pair().map_err(|e| start_err(e.to_string()))?;
        let theirs_too = theirs.try_clone().map_err(|e| start_err(e.to_string()))?;
        let mut child = Command::new(binary)
            .args(worker_args(mode, warm_up, inject))
            .env(POLICY_ENV, text)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::from(theirs_too))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| start_err(e.to_string()))?;
        let stderr = child.stderr.take().expect("piped");
        let errors = Arc::new(Mutex::new(String::new()));
        let errs = Arc::clone(&errors);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut e) = errs.lock() {
                    if e.len() < 64 * 1024 {
                        e.push_str(&line);
                        e.push('\n');
                    }
                }
            }
        });
        let inbox = Arc::new(Inbox::default());
        let reading = ctl.try_clone().map_err(|e| start_err(e.to_string()))?;
        let to = Arc::clone(&inbox);
        std::thread::spawn(move || read_messages(reading, &to));
        let mut w = Worker {
            child,
            ctl,
            errors,
            ready: None,
            lingering: None,
            inbox,
            bounds: Bounds {
                wall: limits.wall,
                output: usize::try_from(limits.output).unwrap_or(usize::MAX),
                cpu: limits
                    .cpu
                    .map(|c| c.as_secs() + u64::from(c.subsec_nanos() > 0)),
                result_max: RESULT_MAX,
                until_exit: false,
            },
            processes: limits.processes,
            tmp_size: limits.tmp_size,
            served: 0,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match w.receive(deadline) {
                Ok(Message::Ready) => return Ok(w),
                Ok(Message::Child(c, _)) => w.ready = Some(c),
                Ok(Message::Exit(..)) => {}
                Ok(Message::Failed {
                    policy: true,
                    message,
                }) => {
                    w.kill();
                    return Err(WarmError::Refused(message));
                }
                Ok(Message::Failed { message, .. }) => {
                    w.kill();
                    return Err(start_err(message));
                }
                Err(e) => {
                    w.kill();
                    std::thread::sleep(Duration::from_millis(50));
                    let detail = w.stderr_text();
                    return Err(start_err(format!("{e} {detail}").trim().to_string()));
                }
            }
        }
    }

    fn stderr_text(&self) -> String {
        self.errors
            .lock()
            .map(|e| e.trim().to_string())
            .unwrap_or_default()
    }

    /// The next message from the zygote, waiting until `deadline`.
    fn receive(&mut self, deadline: Instant) -> Result<Message, WarmError> {
        let mut q = self.inbox.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match q.pop_front() {
                Some(Incoming::Message(m)) => return Ok(m),
                Some(Incoming::Ended(why)) => {
                    q.push_front(Incoming::Ended(why.clone()));
                    drop(q);
                    let status = match self.child.try_wait() {
                        Ok(Some(s)) => format!(" ({s})"),
                        _ => String::new(),
                    };
                    return Err(WarmError::Worker(format!(
                        "the worker ended{status}: {why} {}",
                        self.stderr_text()
                    )));
                }
                None => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WarmError::Hung(START_TIMEOUT));
            }
            q = self
                .inbox
                .arrived
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The next request child: the one waiting, or the next the zygote hands over (once the
    /// last one is gone: at the latest, when the watchdog kills it at its deadline).
    pub(super) fn next_child(&mut self, session: bool) -> Result<ChildChannel, WarmError> {
        if !session {
            if let Some(c) = self.ready.take() {
                self.forget_lingering();
                return Ok(c);
            }
        }
        let after = self.lingering.map_or(Instant::now(), |(_, t)| t);
        let deadline = after.max(Instant::now()) + START_TIMEOUT;
        loop {
            match self.receive(deadline)? {
                Message::Child(c, false) => {
                    self.forget_lingering();
                    if !session {
                        return Ok(c);
                    }
                    self.ready = Some(c);
                }
                Message::Child(c, true) if session => return Ok(c),
                Message::Child(..) => {
                    return Err(WarmError::Worker("a session child nobody asked for".into()))
                }
                // An answer to a question given up on (`exit_of`).
                Message::Exit(..) | Message::Ready => {}
                Message::Failed { message, .. } => return Err(WarmError::Worker(message)),
            }
        }
    }

    /// The last child is gone (the zygote forks the next only then): its deadline no longer
    /// needs watching.
    fn forget_lingering(&mut self) {
        if let Some((id, _)) = self.lingering.take() {
            watchdog::cancel(id);
        }
    }

    /// Send the zygote one message.
    pub(super) fn tell(&self, msg: &ToZygote) -> std::io::Result<()> {
        sys::send(self.ctl.as_fd(), &msg.encode()).map(|_| ())
    }

    /// How child `seq` ended, as the zygote saw it (it reaps every child and says so when asked).
    pub(super) fn exit_of(&mut self, seq: u64) -> Option<ExitRecord> {
        self.tell(&ToZygote::Status { seq }).ok()?;
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            match self.receive(deadline).ok()? {
                Message::Exit(s, rec) if s == seq => return Some(rec),
                Message::Child(c, false) => self.ready = Some(c),
                _ => {}
            }
        }
    }

    /// One exchange with `ch`, and its outcome.
    pub(super) fn serve(
        &mut self,
        ch: &ChildChannel,
        req: &Request,
        cpu: Option<&CpuWatch>,
        after_write: &dyn Fn(),
    ) -> Result<WarmOutcome, WarmError> {
        let b = Bounds {
            until_exit: req.until_exit,
            wall: req
                .wall
                .map_or(self.bounds.wall, |w| w.min(self.bounds.wall)),
            ..self.bounds
        };
        let x = channel::exchange(ch, &req.encode(), b, cpu, after_write, req.tap.as_ref());
        if let Some((step, message)) = x.setup_failed {
            return Err(WarmError::Isolation { step, message });
        }
        let exit = if x.done.is_some() && x.killed.is_none() && !b.until_exit {
            None
        } else {
            self.exit_of(ch.seq)
        };
        let (run, anomaly) = channel::outcome(&x, exit, b);
        let ended = x.done.is_none() || x.killed.is_some() || x.gone;
        Ok(WarmOutcome {
            id: serde_json::Value::Null,
            run,
            anomaly,
            result: x.result.map(|r| String::from_utf8_lossy(&r).into_owned()),
            result_truncated: x.result_truncated,
            report_error: x.malformed.map(|e| e.to_string()),
            ended,
            trace: x.trace,
        })
    }

    /// Run `code` in a fresh isolated child; `name` is its file name in tracebacks.
    pub fn run(
        &mut self,
        name: Option<&str>,
        code: &str,
        stdin: Option<&str>,
    ) -> Result<WarmOutcome, WarmError> {
        self.run_request(&Request::new(name, code, stdin))
    }

    /// Refuse a request that cannot run (its files and globs), before it reaches a child.
    pub(super) fn check(&self, req: &Request) -> Result<(), WarmError> {
        req.check(self.tmp_size)
            .map_err(|e| WarmError::Policy(crate::policy::PolicyError::Parse(e)))
    }

    /// Run a whole request in a fresh isolated child.
    pub fn run_request(&mut self, req: &Request) -> Result<WarmOutcome, WarmError> {
        self.check(req)?;
        let ch = self.next_child(false)?;
        let started = Instant::now();
        let served = self.serve(&ch, req, None, &|| ());
        self.served += 1;
        let mut o = served?;
        if !o.ended {
            // It answered and should be ending: its wall clock keeps running until it is gone.
            let deadline = started + self.bounds.wall;
            if let Ok(fd) = ch.pidfd.try_clone() {
                self.lingering = Some((watchdog::watch(deadline, vec![fd]), deadline));
            }
        }
        // A fresh child always ends; `ended` only means something for sessions.
        o.ended = false;
        Ok(o)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Process id of the `pysandbox worker` process (for memory accounting).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A pidfd of the `pysandbox worker` process (killing it ends its jail).
    pub(super) fn pidfd(&self) -> std::io::Result<OwnedFd> {
        sys::pidfd_open(self.child.id() as libc::pid_t)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stop the worker: end of file on the control channel makes the zygote kill its children
    /// and exit, and the jail ends with it.
    pub fn stop(self) {
        Worker::stop_all(vec![self]);
    }

    /// Stop `workers` together: every one is told first, then each is waited for (up to 1 s
    /// from the telling, then killed), woken by its pidfd as soon as it has ended rather than
    /// by a polling interval.
    pub(crate) fn stop_all(mut workers: Vec<Worker>) {
        for w in &mut workers {
            w.ready = None;
            w.forget_lingering();
            let _ = sys::shutdown(w.ctl.as_fd(), libc::SHUT_WR);
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        for mut w in workers {
            let pidfd = sys::pidfd_open(w.child.id() as libc::pid_t).ok();
            loop {
                if let Ok(Some(_)) = w.child.try_wait() {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    w.kill();
                    break;
                }
                let ms = left.as_millis().clamp(1, 1000) as libc::c_int;
                match &pidfd {
                    Some(fd) => drop(sys::readable(fd.as_raw_fd(), ms)),
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }
}

impl Drop for Worker {
    /// The reading thread holds the control socket too: shut it down, so that the zygote sees
    /// the end of it and the thread ends.
    fn drop(&mut self) {
        let _ = sys::shutdown(self.ctl.as_fd(), libc::SHUT_RDWR);
    }
}
