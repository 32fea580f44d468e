//! One warm worker: the `pysandbox worker` process, the control channel to its zygote, and the
//! exchange of one request with a child the zygote handed over.

use super::channel::{self, Bounds, ChildChannel, ExitRecord};
use super::{Request, WarmError, WarmOutcome, WarmUp, ZygoteMode, POLICY_ENV};
use crate::policy::Policy;
use crate::sys;
use serde_json::json;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a worker may take to start (jail, interpreter, preloads, first child), and the
/// zygote to hand over a child.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the zygote may take to report a child's end once its pipes have closed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Grace past a request's wall clock before a child that answered but runs on is killed.
const BACKSTOP: Duration = Duration::from_secs(1);

/// The `pysandbox worker` command line for a worker's mode and warm-up.
fn worker_args(mode: ZygoteMode, warm_up: WarmUp) -> Vec<&'static str> {
    let mut args = vec!["worker"];
    if mode == ZygoteMode::Sessions {
        args.push("--sessions");
    }
    if warm_up == WarmUp::Api {
        args.push("--api");
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
            Ok(Some(m)) => Incoming::Message(m),
            Ok(None) => continue,
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

/// One message from the zygote; `None` for one of a kind this version does not know.
fn read_message(ctl: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<Message>, String> {
    let got = sys::recv_with_fds(ctl, buf).map_err(|e| format!("reading from it: {e}"))?;
    if got.len == 0 {
        return Err("end of its control channel".into());
    }
    if got.truncated {
        return Err("an oversized message".into());
    }
    let v: serde_json::Value = serde_json::from_slice(&buf[..got.len]).map_err(|e| {
        format!(
            "a bad message ({e}): {}",
            String::from_utf8_lossy(&buf[..got.len.min(200)])
        )
    })?;
    if let Some(seq) = v.get("child").and_then(|s| s.as_u64()) {
        let session = v.get("session").and_then(|s| s.as_bool()) == Some(true);
        let ch = ChildChannel::new(seq, got.fds).ok_or("a child without its pipes")?;
        return Ok(Some(Message::Child(ch, session)));
    }
    if let Some(seq) = v.get("exit").and_then(|s| s.as_u64()) {
        let rec: ExitRecord =
            serde_json::from_value(v.clone()).map_err(|e| format!("a bad exit message: {e}"))?;
        return Ok(Some(Message::Exit(seq, rec)));
    }
    if v.get("ready").is_some() {
        return Ok(Some(Message::Ready));
    }
    if let Some(message) = v.get("error").and_then(|e| e.as_str()) {
        return Ok(Some(Message::Failed {
            policy: v.get("kind").and_then(|k| k.as_str()) == Some("policy"),
            message: message.to_string(),
        }));
    }
    Ok(None)
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
    /// The last request child that answered, and when its wall clock runs out.
    lingering: Option<(u64, Instant)>,
    /// Messages from the zygote, read as they arrive by a thread of the worker's own, so that a
    /// request finds its child's pipes ready to use rather than receiving and decoding them.
    inbox: Arc<Inbox>,
    pub(super) bounds: Bounds,
    /// Requests served so far.
    pub served: u64,
}

impl Worker {
    /// Start a worker for `policy` with the `pysandbox` binary at `binary`.
    pub fn start(binary: &Path, policy: &Policy) -> Result<Worker, WarmError> {
        Worker::start_mode(binary, policy, ZygoteMode::Pool, WarmUp::Code)
    }

    pub(super) fn start_mode(
        binary: &Path,
        policy: &Policy,
        mode: ZygoteMode,
        warm_up: WarmUp,
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
            .args(worker_args(mode, warm_up))
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
            },
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
                return Err(WarmError::Hung(Duration::from_millis(1)));
            }
            q = self
                .inbox
                .arrived
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The next request child: the one waiting, or the next the zygote hands over.
    pub(super) fn next_child(&mut self, session: bool) -> Result<ChildChannel, WarmError> {
        if !session {
            if let Some(c) = self.ready.take() {
                return Ok(c);
            }
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // The zygote forks the next request child once the last one has ended, which it
            // does right after its answer, unless it forged that answer and runs on: then it
            // is killed when its wall clock runs out.
            let until = match self.lingering {
                Some((_, t)) if !session => (t + BACKSTOP).min(deadline),
                _ => deadline,
            };
            let msg = match self.receive(until) {
                Err(WarmError::Hung(_)) if Instant::now() < deadline => {
                    if let Some((seq, _)) = self.lingering.take() {
                        let _ = self.tell(&json!({"op": "kill", "seq": seq}));
                    }
                    continue;
                }
                other => other?,
            };
            match msg {
                Message::Child(c, false) => {
                    self.lingering = None;
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

    /// Send the zygote one request (`{"op": ...}`).
    pub(super) fn tell(&self, msg: &serde_json::Value) -> std::io::Result<()> {
        sys::send(self.ctl.as_fd(), msg.to_string().as_bytes()).map(|_| ())
    }

    /// How child `seq` ended, as the zygote saw it (it reaps every child and says so when asked).
    fn exit_of(&mut self, seq: u64) -> Option<ExitRecord> {
        self.tell(&json!({"op": "status", "seq": seq})).ok()?;
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
    pub(super) fn serve(&mut self, ch: &ChildChannel, req: &Request) -> Result<Served, WarmError> {
        let this = &*self;
        let kill = json!({"op": "kill", "seq": ch.seq});
        let x = channel::exchange(ch, &req.encode(), self.bounds, &mut || {
            let _ = this.tell(&kill);
        });
        if x.idle {
            return Ok(Served::Idle);
        }
        let exit = if x.done.is_some() && !x.killed {
            None
        } else {
            self.exit_of(ch.seq)
        };
        let (run, result, anomaly) = channel::outcome(&x, exit, self.bounds);
        let ended = x.done.is_none() || x.killed;
        Ok(Served::Done(WarmOutcome {
            id: serde_json::Value::Null,
            run,
            anomaly,
            result,
            ended,
        }))
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

    /// Run a whole request in a fresh isolated child.
    pub fn run_request(&mut self, req: &Request) -> Result<WarmOutcome, WarmError> {
        let ch = self.next_child(false)?;
        let started = Instant::now();
        let served = self.serve(&ch, req)?;
        if matches!(&served, Served::Done(o) if !o.ended) {
            // It answered and should be ending; see `next_child`.
            self.lingering = Some((ch.seq, started + self.bounds.wall));
        }
        drop(ch);
        self.served += 1;
        match served {
            Served::Done(mut o) => {
                // A fresh child always ends; `ended` only means something for sessions.
                o.ended = false;
                Ok(o)
            }
            Served::Idle => Err(WarmError::Worker("a request child went idle".into())),
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Process id of the `pysandbox worker` process (for memory accounting).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stop the worker: end of file on the control channel makes the zygote kill its children
    /// and exit, and the jail ends with it.
    pub fn stop(mut self) {
        self.ready = None;
        let _ = sys::shutdown(self.ctl.as_fd(), libc::SHUT_WR);
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

impl Drop for Worker {
    /// The reading thread holds the control socket too: shut it down, so that the zygote sees
    /// the end of it and the thread ends.
    fn drop(&mut self) {
        let _ = sys::shutdown(self.ctl.as_fd(), libc::SHUT_RDWR);
    }
}

pub(super) enum Served {
    Done(WarmOutcome),
    /// A session child that ended for lack of calls.
    Idle,
}
