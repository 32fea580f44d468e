//! A pool of warm workers shared by threads: a bounded queue, workers replaced after K requests
//! or any anomaly, a clean shutdown.

use super::worker::Worker;
use super::{Request, WarmError, WarmOutcome, WarmUp, ZygoteMode};
use crate::isolate::Injection;
use crate::policy::Policy;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

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
    /// The test-only switch: make an isolation step fail (see [`Injection`]).
    pub inject: Option<Injection>,
}

impl PoolOptions {
    pub fn new(binary: impl Into<PathBuf>) -> PoolOptions {
        PoolOptions {
            binary: binary.into(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_queue: 1024,
            recycle_after: 10_000,
            warm_up: WarmUp::Code,
            inject: None,
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
                let (b, p, w, i) = (
                    opts.binary.clone(),
                    policy.clone(),
                    opts.warm_up,
                    opts.inject,
                );
                std::thread::spawn(move || Worker::start_mode(&b, &p, ZygoteMode::Pool, w, i))
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
            self.opts.inject,
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
            // The worker idle longest: its next child is most likely forked and isolated
            // already (a worker prepares it after each answer), where the one just given back
            // is still at it.
            if !s.idle.is_empty() {
                return Ok(s.idle.remove(0));
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
        self.run_request(&Request::new(name, code, stdin))
    }

    /// Run a whole request on an idle worker.
    pub fn run_request(&self, req: &Request) -> Result<WarmOutcome, WarmError> {
        // Refused before a worker is taken (and so without replacing one).
        req.check(self.policy.effective_limits().tmp_size)
            .map_err(|e| WarmError::Policy(crate::policy::PolicyError::Parse(e)))?;
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
        // Any error (a failed isolation step included) and any anomaly: the worker is replaced.
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
        Worker::stop_all(idle);
    }

    /// The policy every request of this pool runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// How many workers the pool keeps (requests it can run at the same time).
    pub fn workers(&self) -> usize {
        self.opts.workers.max(1)
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
