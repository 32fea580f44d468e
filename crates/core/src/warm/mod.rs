//! Warm mode: a jail and an interpreter set up once, then one isolated child per request.
//!
//! A [`Worker`] is a `pysandbox worker` process supervising one long-lived jail whose interpreter
//! is a zygote (`bootstrap/warm.py`). The zygote keeps a request child forked and isolated before
//! the request arrives: PID 1 of its own PID namespace, a fresh `/tmp`, no capabilities,
//! its own Landlock domain (signals and abstract unix sockets scoped to it), the strict seccomp
//! filter of a cold run on top of the zygote's, its own rlimits and fresh randomness. It hands
//! the child's pipes and a pidfd to the host over a control socket, so that a request is one
//! write to the child and one read of its answer, with no process in between ([`channel`]).
//! A [`Pool`] keeps N workers, bounds its queue and replaces workers after K requests or any
//! anomaly. A [`Session`] keeps one child for many calls.
//!
//! Workers are separate processes because a jail is started with `clone`, which the supervisor
//! refuses in a multi-threaded process, and a pool is used from threads.

mod channel;
mod zygote;

pub use zygote::{zygote_config, WarmUp, ZygoteMode};

use crate::policy::{Policy, PolicyError};
use crate::run::JsonOutcome;
use crate::sys;
use channel::{Bounds, ChildChannel, ExitRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Environment variable handing the policy (JSON) to `pysandbox worker`.
pub const POLICY_ENV: &str = "PYSANDBOX_WORKER_POLICY";

/// How long a worker may take to start (jail, interpreter, preloads, first child), and the
/// zygote to hand over a child.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the zygote may take to report a child's end once its pipes have closed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Grace past a request's wall clock before a child that answered but runs on is killed.
const BACKSTOP: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("starting a warm worker ({binary}): {message}")]
    Start { binary: PathBuf, message: String },
    #[error("the warm worker failed: {0}")]
    Worker(String),
    #[error("the warm worker did not answer within {0:?}; it was stopped")]
    Hung(Duration),
    #[error("the pool's queue is full ({0} requests waiting); try again later or add workers")]
    Busy(usize),
    #[error("the pool is shut down")]
    Closed,
    #[error("the session has ended: {0}")]
    SessionEnded(String),
    #[error("the warm worker refused the policy: {0}")]
    Refused(String),
}

/// One request: code to run in a fresh child (or a session's), with what goes with it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Request {
    pub code: String,
    /// The code's file name in tracebacks (`<string>` without one).
    #[serde(default)]
    pub name: Option<String>,
    /// What the code reads on its standard input (nothing without it).
    #[serde(default)]
    pub stdin: Option<String>,
    /// The Python package's exec/eval/call data (see `bootstrap/support.py`).
    #[serde(default)]
    pub api: Option<serde_json::Value>,
}

impl Request {
    pub fn code(code: &str) -> Request {
        Request {
            code: code.to_string(),
            ..Request::default()
        }
    }

    /// The child's framing: a line of four byte counts (code, name, stdin or -1, API data or 0),
    /// then those bytes. Nothing in it is parsed as anything but bytes, except the API data.
    fn encode(&self) -> Vec<u8> {
        let name = self.name.as_deref().unwrap_or("");
        let api = self.api.as_ref().map(|a| a.to_string()).unwrap_or_default();
        let stdin_len = self.stdin.as_ref().map_or(-1, |s| s.len() as i64);
        let mut out = format!(
            "{} {} {} {}\n",
            self.code.len(),
            name.len(),
            stdin_len,
            api.len()
        )
        .into_bytes();
        out.reserve(self.code.len() + name.len() + api.len() + stdin_len.max(0) as usize);
        out.extend_from_slice(self.code.as_bytes());
        out.extend_from_slice(name.as_bytes());
        if let Some(s) = &self.stdin {
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(api.as_bytes());
        out
    }
}

/// What one warm request produced: the fields of `pysandbox run --json`, and more.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarmOutcome {
    #[serde(default)]
    pub id: serde_json::Value,
    #[serde(flatten)]
    pub run: JsonOutcome,
    /// Something was wrong with the worker itself: it is replaced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anomaly: bool,
    /// The API result (tagged JSON text from the sandbox, untrusted), for package requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// A session's child ended with this call (a limit, a crash).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended: bool,
}

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
    /// `exit` messages not asked for yet (the last few).
    exits: VecDeque<(u64, ExitRecord)>,
    buf: Vec<u8>,
    bounds: Bounds,
    /// Requests served so far.
    pub served: u64,
}

impl Worker {
    /// Start a worker for `policy` with the `pysandbox` binary at `binary`.
    pub fn start(binary: &Path, policy: &Policy) -> Result<Worker, WarmError> {
        Worker::start_mode(binary, policy, ZygoteMode::Pool, WarmUp::Code)
    }

    fn start_mode(
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
        let mut w = Worker {
            child,
            ctl,
            errors,
            ready: None,
            exits: VecDeque::new(),
            lingering: None,
            buf: vec![0u8; 64 * 1024],
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

    /// The next message on the control channel, waiting until `deadline`.
    fn receive(&mut self, deadline: Instant) -> Result<Message, WarmError> {
        let mut buf = std::mem::take(&mut self.buf);
        let got = self.receive_into(deadline, &mut buf);
        self.buf = buf;
        got
    }

    fn receive_into(&mut self, deadline: Instant, buf: &mut [u8]) -> Result<Message, WarmError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut p = [libc::pollfd {
                fd: self.ctl.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            let ready = sys::poll(&mut p, ms).map_err(|e| WarmError::Worker(e.to_string()))?;
            if ready == 0 {
                if Instant::now() >= deadline {
                    return Err(WarmError::Hung(left.max(Duration::from_millis(1))));
                }
                continue;
            }
            let got = sys::recv_with_fds(self.ctl.as_fd(), buf)
                .map_err(|e| WarmError::Worker(format!("reading from the worker: {e}")))?;
            if got.len == 0 {
                let status = match self.child.try_wait() {
                    Ok(Some(s)) => format!(" ({s})"),
                    _ => String::new(),
                };
                return Err(WarmError::Worker(format!(
                    "the worker ended{status}: {}",
                    self.stderr_text()
                )));
            }
            if got.truncated {
                return Err(WarmError::Worker(
                    "an oversized message from the worker".into(),
                ));
            }
            let v: serde_json::Value = serde_json::from_slice(&buf[..got.len]).map_err(|e| {
                WarmError::Worker(format!(
                    "a bad message from the worker ({e}): {}",
                    String::from_utf8_lossy(&buf[..got.len.min(200)])
                ))
            })?;
            if let Some(seq) = v.get("child").and_then(|s| s.as_u64()) {
                let session = v.get("session").and_then(|s| s.as_bool()) == Some(true);
                let ch = ChildChannel::new(seq, got.fds)
                    .ok_or_else(|| WarmError::Worker("a child without its pipes".into()))?;
                return Ok(Message::Child(ch, session));
            }
            if let Some(seq) = v.get("exit").and_then(|s| s.as_u64()) {
                let rec: ExitRecord = serde_json::from_value(v.clone())
                    .map_err(|e| WarmError::Worker(format!("a bad exit message: {e}")))?;
                return Ok(Message::Exit(seq, rec));
            }
            if v.get("ready").is_some() {
                return Ok(Message::Ready);
            }
            if let Some(message) = v.get("error").and_then(|e| e.as_str()) {
                return Ok(Message::Failed {
                    policy: v.get("kind").and_then(|k| k.as_str()) == Some("policy"),
                    message: message.to_string(),
                });
            }
            // Anything else is ignored (forward compatibility).
        }
    }

    /// The next request child: the one waiting, or the next the zygote hands over.
    fn next_child(&mut self, session: bool) -> Result<ChildChannel, WarmError> {
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
                        let kill = json!({"op": "kill", "seq": seq}).to_string();
                        let _ = sys::send(self.ctl.as_fd(), kill.as_bytes());
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
                Message::Exit(seq, rec) => self.keep_exit(seq, rec),
                Message::Ready => {}
                Message::Failed { message, .. } => return Err(WarmError::Worker(message)),
            }
        }
    }

    fn keep_exit(&mut self, seq: u64, rec: ExitRecord) {
        self.exits.push_back((seq, rec));
        while self.exits.len() > 16 {
            self.exits.pop_front();
        }
    }

    /// How child `seq` ended, as the zygote saw it (it reaps every child and says so).
    fn exit_of(&mut self, seq: u64) -> Option<ExitRecord> {
        if let Some(i) = self.exits.iter().position(|(s, _)| *s == seq) {
            return self.exits.remove(i).map(|(_, r)| r);
        }
        let ask = json!({"op": "status", "seq": seq}).to_string();
        sys::send(self.ctl.as_fd(), ask.as_bytes()).ok()?;
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            match self.receive(deadline).ok()? {
                Message::Exit(s, rec) if s == seq => return Some(rec),
                Message::Exit(s, rec) => self.keep_exit(s, rec),
                Message::Child(c, false) => self.ready = Some(c),
                _ => {}
            }
        }
    }

    /// One exchange with `ch`, and its outcome.
    fn serve(&mut self, ch: &ChildChannel, req: &Request) -> Result<Served, WarmError> {
        let ctl = self.ctl.as_fd();
        let kill = json!({"op": "kill", "seq": ch.seq}).to_string();
        let x = channel::exchange(ch, &req.encode(), self.bounds, &mut || {
            let _ = sys::send(ctl, kill.as_bytes());
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
        self.run_request(&Request {
            code: code.to_string(),
            name: name.map(str::to_string),
            stdin: stdin.map(str::to_string),
            api: None,
        })
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
        let _ = sys::shutdown_write(self.ctl.as_fd());
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

enum Served {
    Done(WarmOutcome),
    /// A session child that ended for lack of calls.
    Idle,
}

/// A notebook-like session: one isolated child keeps its state between calls.
pub struct Session {
    worker: Option<Worker>,
    child: Option<ChildChannel>,
}

impl Session {
    /// Open a session (a worker of its own); the child ends after `idle` without calls.
    pub fn open(binary: &Path, policy: &Policy, idle: Duration) -> Result<Session, WarmError> {
        Session::open_with(binary, policy, idle, WarmUp::Code)
    }

    /// [`Session::open`] with the request path to warm up.
    pub fn open_with(
        binary: &Path,
        policy: &Policy,
        idle: Duration,
        warm_up: WarmUp,
    ) -> Result<Session, WarmError> {
        let mut worker = Worker::start_mode(binary, policy, ZygoteMode::Sessions, warm_up)?;
        let ask = json!({"op": "session", "idle": idle.as_secs_f64()}).to_string();
        sys::send(worker.ctl.as_fd(), ask.as_bytes())
            .map_err(|e| WarmError::Worker(format!("asking for a session: {e}")))?;
        let child = worker.next_child(true)?;
        Ok(Session {
            worker: Some(worker),
            child: Some(child),
        })
    }

    /// Run `code` in the session. A limit tripped ends the session.
    pub fn execute(&mut self, code: &str) -> Result<WarmOutcome, WarmError> {
        self.execute_request(&Request::code(code))
    }

    /// [`Session::execute`] with a whole request.
    pub fn execute_request(&mut self, req: &Request) -> Result<WarmOutcome, WarmError> {
        let (Some(w), Some(ch)) = (self.worker.as_mut(), self.child.as_ref()) else {
            return Err(WarmError::SessionEnded("closed".into()));
        };
        match w.serve(ch, req) {
            Ok(Served::Done(o)) => {
                if o.ended {
                    self.close();
                }
                Ok(o)
            }
            Ok(Served::Idle) => {
                self.close();
                Err(WarmError::SessionEnded("idle timeout".into()))
            }
            Err(e) => {
                self.close();
                Err(e)
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.worker.is_some()
    }

    pub fn close(&mut self) {
        self.child = None;
        if let Some(w) = self.worker.take() {
            w.stop();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// How a [`Pool`] behaves.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// The `pysandbox` binary the workers run.
    pub binary: PathBuf,
    /// Workers (default: the number of CPUs).
    pub workers: usize,
    /// Requests that may wait for a worker before [`WarmError::Busy`].
    pub max_queue: usize,
    /// A worker is replaced after this many requests.
    pub recycle_after: u64,
    /// The request path the workers' children take ahead of their request.
    pub warm_up: WarmUp,
}

impl PoolOptions {
    pub fn new(binary: impl Into<PathBuf>) -> PoolOptions {
        PoolOptions {
            binary: binary.into(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_queue: 1024,
            recycle_after: 10_000,
            warm_up: WarmUp::Code,
        }
    }
}

struct State {
    idle: Vec<Worker>,
    waiting: usize,
    closed: bool,
}

/// N warm workers serving requests from any number of threads.
pub struct Pool {
    policy: Policy,
    opts: PoolOptions,
    state: Mutex<State>,
    ready: Condvar,
}

impl Pool {
    /// Start `opts.workers` workers for `policy` (in parallel).
    pub fn new(policy: Policy, opts: PoolOptions) -> Result<Pool, WarmError> {
        policy.validate()?;
        let starts: Vec<_> = (0..opts.workers.max(1))
            .map(|_| {
                let (b, p, w) = (opts.binary.clone(), policy.clone(), opts.warm_up);
                std::thread::spawn(move || Worker::start_mode(&b, &p, ZygoteMode::Pool, w))
            })
            .collect();
        let mut idle = Vec::new();
        let mut first_err = None;
        for s in starts {
            match s.join() {
                Ok(Ok(w)) => idle.push(w),
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(_) => first_err = first_err.or(Some(WarmError::Worker("panicked".into()))),
            }
        }
        if let Some(e) = first_err {
            for w in idle {
                w.stop();
            }
            return Err(e);
        }
        Ok(Pool {
            policy,
            opts,
            state: Mutex::new(State {
                idle,
                waiting: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        })
    }

    fn start_worker(&self) -> Result<Worker, WarmError> {
        Worker::start_mode(
            &self.opts.binary,
            &self.policy,
            ZygoteMode::Pool,
            self.opts.warm_up,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Result<Worker, WarmError> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return Err(WarmError::Closed);
            }
            if let Some(w) = s.idle.pop() {
                return Ok(w);
            }
            if s.waiting >= self.opts.max_queue {
                return Err(WarmError::Busy(s.waiting));
            }
            s.waiting += 1;
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
            s.waiting -= 1;
        }
    }

    fn give_back(&self, w: Worker) {
        let mut s = self.lock();
        if s.closed {
            drop(s);
            w.stop();
            return;
        }
        s.idle.push(w);
        drop(s);
        self.ready.notify_one();
    }

    /// Run `code` on an idle worker (waiting for one, up to the queue bound).
    pub fn run(&self, code: &str, stdin: Option<&str>) -> Result<WarmOutcome, WarmError> {
        self.run_named(None, code, stdin)
    }

    /// [`Pool::run`] with a file name for tracebacks.
    pub fn run_named(
        &self,
        name: Option<&str>,
        code: &str,
        stdin: Option<&str>,
    ) -> Result<WarmOutcome, WarmError> {
        self.run_request(&Request {
            code: code.to_string(),
            name: name.map(str::to_string),
            stdin: stdin.map(str::to_string),
            api: None,
        })
    }

    /// Run a whole request on an idle worker.
    pub fn run_request(&self, req: &Request) -> Result<WarmOutcome, WarmError> {
        let mut w = self.take()?;
        if !w.alive() {
            // It died while idle: replace it before use, so no request sees that crash.
            w.stop();
            w = match self.start_worker() {
                Ok(fresh) => fresh,
                Err(e) => {
                    self.ready.notify_one();
                    return Err(e);
                }
            };
        }
        let result = w.run_request(req);
        let healthy = match &result {
            Ok(o) => !o.anomaly && w.served < self.opts.recycle_after && w.alive(),
            Err(_) => false,
        };
        if healthy {
            self.give_back(w);
        } else {
            // Replace it; the request that saw the failure gets its error, no other one does.
            w.stop();
            match self.start_worker() {
                Ok(fresh) => self.give_back(fresh),
                Err(e) => {
                    eprintln!("pysandbox: replacing a warm worker failed: {e}");
                    self.ready.notify_one();
                }
            }
        }
        result
    }

    /// Stop every worker; requests still waiting get [`WarmError::Closed`].
    pub fn shutdown(&self) {
        let idle = {
            let mut s = self.lock();
            s.closed = true;
            std::mem::take(&mut s.idle)
        };
        self.ready.notify_all();
        for w in idle {
            w.stop();
        }
    }

    /// Process ids of the idle workers' `pysandbox worker` processes.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.lock().idle.iter().map(|w| w.pid()).collect()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}
