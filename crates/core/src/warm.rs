//! Warm mode: a jail and an interpreter set up once, then one isolated child per request.
//!
//! A [`Worker`] is a `pysandbox worker` process supervising one long-lived jail whose interpreter
//! is a zygote (`bootstrap/warm.py`). The zygote keeps a request child forked and isolated before
//! the request arrives: PID 1 of its own PID namespace, a fresh `/tmp`, no capabilities,
//! its own Landlock domain (signals and abstract unix sockets scoped to it), the strict seccomp
//! filter of a cold run on top of the zygote's, its own rlimits and fresh randomness. A request
//! only has to be written to it. A [`Pool`] keeps N workers, bounds its queue and replaces
//! workers after K requests or any anomaly. A [`Session`] keeps one child for many calls.
//!
//! Workers are separate processes because a jail is started with `clone`, which the supervisor
//! refuses in a multi-threaded process, and a pool is used from threads.

use crate::jail::Network;
use crate::landlock::{self, Access};
use crate::limits::Limits;
use crate::mounts::DEV_NODES;
use crate::policy::{Policy, PolicyError, Resolved};
use crate::run::JsonOutcome;
use crate::seccomp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Environment variable handing the policy (JSON) to `pysandbox worker`.
pub const POLICY_ENV: &str = "PYSANDBOX_WORKER_POLICY";

/// How long a worker may take to start (jail, interpreter, preloads, first child).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace on top of a request's wall limit before the host gives up on the worker.
const BACKSTOP: Duration = Duration::from_secs(3);

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

/// The zygote's configuration (descriptor 6 of `bootstrap/warm.py`), from a resolved policy.
pub fn zygote_config(resolved: &Resolved, preload: &[String]) -> Result<String, WarmError> {
    let spec = &resolved.spec;
    let abi = landlock::abi().map_err(|e| WarmError::Worker(e.to_string()))?;
    let handled = landlock::fs_rights(abi);
    let mut rules: Vec<(PathBuf, u64)> = Vec::new();
    let mut rule = |path: &Path, access: Access, is_dir: bool| {
        let mut r = landlock::rights(access, handled);
        if !is_dir {
            r &= landlock::FILE_RIGHTS;
        }
        rules.push((path.to_path_buf(), r));
    };
    // The interpreter's files: one rule per directory holding bound files (in the jail's root
    // such a directory holds nothing else), one per bound directory. Fewer rules, each added
    // by every request child.
    let mut dirs: Vec<&Path> = Vec::new();
    for b in &spec.interpreter.binds {
        match b.target.parent() {
            _ if b.is_dir => rule(&b.target, Access::ReadExec, true),
            Some(parent) if parent != Path::new("/") => {
                if !dirs.contains(&parent) {
                    dirs.push(parent);
                }
            }
            _ => rule(&b.target, Access::ReadExec, false),
        }
    }
    for d in dirs {
        rule(d, Access::ReadExec, true);
    }
    for d in DEV_NODES {
        rule(Path::new(d), Access::ReadWrite, false);
    }
    for p in &spec.read_paths {
        rule(p, Access::Read, p.is_dir());
    }
    for p in &spec.write_paths {
        rule(p, Access::ReadWrite, p.is_dir());
    }
    // /tmp is a new tmpfs in each request: the child adds its rule after mounting it.
    let tmp = landlock::rights(Access::ReadWrite, handled);
    let net = if spec.network == Network::None && abi >= 4 {
        landlock::NET_BIND_TCP | landlock::NET_CONNECT_TCP
    } else {
        0
    };
    // Requests of one worker share its network namespace: scope abstract sockets always.
    let scoped = if abi >= 6 {
        landlock::SCOPE_SIGNAL | landlock::SCOPE_ABSTRACT_UNIX_SOCKET
    } else {
        0
    };
    let filter = seccomp::request_program();
    let mut hex = String::with_capacity(filter.len() * 16);
    for f in &filter {
        let mut b = Vec::with_capacity(8);
        b.extend_from_slice(&f.code.to_le_bytes());
        b.push(f.jt);
        b.push(f.jf);
        b.extend_from_slice(&f.k.to_le_bytes());
        for x in b {
            hex.push_str(&format!("{x:02x}"));
        }
    }
    let l: &Limits = &spec.limits;
    Ok(json!({
        "guard": resolved.guard,
        "limits": {
            "wall": l.wall.as_secs_f64(),
            "cpu": l.cpu.map(|c| c.as_secs() + u64::from(c.subsec_nanos() > 0)),
            "memory": l.memory,
            "processes": l.processes,
            "open_files": l.open_files,
            "file_size": l.file_size,
            "tmp_size": l.tmp_size,
            "output": l.output,
        },
        "landlock": {"fs": handled, "net": net, "scoped": scoped, "rules": rules, "tmp": tmp},
        "seccomp": hex,
        "preload": preload,
    })
    .to_string())
}

/// One `pysandbox worker` process and its jail.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    wall: Duration,
    next_id: u64,
    /// Requests served so far.
    pub served: u64,
}

impl Worker {
    /// Start a worker for `policy` with the `pysandbox` binary at `binary`.
    pub fn start(binary: &Path, policy: &Policy) -> Result<Worker, WarmError> {
        policy.validate()?;
        let start_err = |message: String| WarmError::Start {
            binary: binary.to_path_buf(),
            message,
        };
        // The effective limits, stated: the worker must not re-derive them.
        let mut stated = policy.clone();
        stated.limits = policy.effective_limits();
        let text = serde_json::to_string(&stated).map_err(|e| start_err(e.to_string()))?;
        let mut child = Command::new(binary)
            .arg("worker")
            .env(POLICY_ENV, text)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| start_err(e.to_string()))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
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
            stdin: None,
            lines,
            wall: policy.effective_limits().wall,
            next_id: 0,
            served: 0,
        };
        w.stdin = w.child.stdin.take();
        match w.lines.recv_timeout(START_TIMEOUT) {
            Ok(line) if line.contains("\"ready\"") => Ok(w),
            other => {
                w.kill();
                std::thread::sleep(Duration::from_millis(50));
                let detail = errors
                    .lock()
                    .map(|e| e.trim().to_string())
                    .unwrap_or_default();
                let got = match other {
                    Ok(l) => l,
                    Err(_) => "no answer".into(),
                };
                Err(start_err(format!("{got} {detail}").trim().to_string()))
            }
        }
    }

    fn send(&mut self, mut req: serde_json::Value, wait: Duration) -> Result<String, WarmError> {
        self.next_id += 1;
        req["id"] = json!(self.next_id);
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(WarmError::Worker("stopped".into()));
        };
        let mut line = req.to_string();
        line.push('\n');
        if let Err(e) = stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush()) {
            self.kill();
            return Err(WarmError::Worker(format!("writing the request: {e}")));
        }
        loop {
            match self.lines.recv_timeout(wait) {
                Ok(l) => {
                    let v: serde_json::Value = serde_json::from_str(&l)
                        .map_err(|e| WarmError::Worker(format!("bad answer ({e}): {l}")))?;
                    if v.get("id") == Some(&json!(self.next_id)) {
                        return Ok(l);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    return Err(WarmError::Hung(wait));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(WarmError::Worker(format!("the worker ended ({status})")));
                }
            }
        }
    }

    /// Run `code` in a fresh isolated child; `name` is its file name in tracebacks.
    pub fn run(
        &mut self,
        name: Option<&str>,
        code: &str,
        stdin: Option<&str>,
    ) -> Result<WarmOutcome, WarmError> {
        let line = self.send(
            json!({"op": "run", "code": code, "stdin": stdin, "name": name}),
            self.wall + BACKSTOP,
        )?;
        self.served += 1;
        serde_json::from_str(&line).map_err(|e| WarmError::Worker(format!("{e}: {line}")))
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None)) && self.stdin.is_some()
    }

    /// Process ids of the worker (for memory accounting): the `pysandbox worker` process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stop the worker: end of input makes the zygote exit and the jail end with it.
    pub fn stop(mut self) {
        self.stdin = None;
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

/// A notebook-like session: one isolated child keeps its state between calls.
pub struct Session {
    worker: Option<Worker>,
}

impl Session {
    /// Open a session; it ends after `idle` without calls.
    pub fn open(binary: &Path, policy: &Policy, idle: Duration) -> Result<Session, WarmError> {
        let mut worker = Worker::start(binary, policy)?;
        worker.send(
            json!({"op": "open", "session": "s", "idle": idle.as_secs_f64()}),
            START_TIMEOUT,
        )?;
        Ok(Session {
            worker: Some(worker),
        })
    }

    /// Run `code` in the session. A limit tripped ends the session.
    pub fn execute(&mut self, code: &str) -> Result<WarmOutcome, WarmError> {
        let w = self
            .worker
            .as_mut()
            .ok_or_else(|| WarmError::SessionEnded("closed".into()))?;
        let line = w.send(
            json!({"op": "exec", "session": "s", "code": code}),
            w.wall + BACKSTOP,
        )?;
        if line.contains("\"error\":\"no such session\"") {
            self.close();
            return Err(WarmError::SessionEnded("idle timeout".into()));
        }
        let out: WarmOutcome =
            serde_json::from_str(&line).map_err(|e| WarmError::Worker(format!("{e}: {line}")))?;
        if out.ended {
            self.close();
        }
        Ok(out)
    }

    pub fn is_open(&self) -> bool {
        self.worker.is_some()
    }

    pub fn close(&mut self) {
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
}

impl PoolOptions {
    pub fn new(binary: impl Into<PathBuf>) -> PoolOptions {
        PoolOptions {
            binary: binary.into(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_queue: 1024,
            recycle_after: 10_000,
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
                let (b, p) = (opts.binary.clone(), policy.clone());
                std::thread::spawn(move || Worker::start(&b, &p))
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
        let mut w = self.take()?;
        if !w.alive() {
            // It died while idle: replace it before use, so no request sees that crash.
            w.stop();
            w = match Worker::start(&self.opts.binary, &self.policy) {
                Ok(fresh) => fresh,
                Err(e) => {
                    self.ready.notify_one();
                    return Err(e);
                }
            };
        }
        let result = w.run(name, code, stdin);
        let healthy = match &result {
            Ok(o) => !o.anomaly && w.served < self.opts.recycle_after && w.alive(),
            Err(_) => false,
        };
        if healthy {
            self.give_back(w);
        } else {
            // Replace it; the request that saw the failure gets its error, no other one does.
            w.stop();
            match Worker::start(&self.opts.binary, &self.policy) {
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
