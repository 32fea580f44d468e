//! What the server holds: the operator's policy (the ceiling every request narrows), the warm
//! pools (the ceiling's, and a few for narrowed policies), the live sessions and the metrics.
//! Everything here is blocking (the core's pools and sessions are): handlers call it from
//! `spawn_blocking`.

use crate::metrics::Metrics;
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::{Pool, PoolOptions, Session, SessionOptions, WarmError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// How many pools for narrowed policies stay warm (least recently used beyond this are shut
/// down); each has one worker.
const NARROWED_POOLS: usize = 4;

/// How the server was started.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: std::net::SocketAddr,
    /// Warm workers of the ceiling's pool.
    pub workers: usize,
    /// The operator's policy: the ceiling of every request.
    pub policy: Policy,
    /// Bearer tokens; empty: no authentication (loopback only).
    pub tokens: Vec<String>,
    /// Requests that may wait for a worker before 429.
    pub max_queue: usize,
    /// Live sessions at most (429 beyond).
    pub max_sessions: usize,
    /// A session ends after this long without a call.
    pub session_idle: Duration,
    /// The `pysandbox` binary the workers run.
    pub binary: PathBuf,
    /// Largest request body.
    pub max_body: usize,
    /// How long a client may take to send a request's headers (then it is dropped).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body (then 408).
    pub body_timeout: Duration,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The warm pools: the ceiling's, and pools for narrowed policies made on first use.
pub struct Pools {
    ceiling: Arc<Pool>,
    ceiling_key: String,
    narrowed: Mutex<Vec<(String, Arc<Pool>)>>,
    opts: PoolOptions,
}

impl Pools {
    pub fn start(policy: &Policy, opts: PoolOptions) -> Result<Pools, WarmError> {
        let ceiling = Arc::new(Pool::new(policy.clone(), opts.clone())?);
        Ok(Pools {
            ceiling,
            ceiling_key: key(policy),
            narrowed: Mutex::new(Vec::new()),
            opts,
        })
    }

    pub fn ceiling(&self) -> &Arc<Pool> {
        &self.ceiling
    }

    /// The pool for `policy`: the ceiling's when it is the ceiling, else one of its own (made
    /// now, with one worker, if it is not warm yet).
    pub fn get(&self, policy: &Policy) -> Result<Arc<Pool>, WarmError> {
        let k = key(policy);
        if k == self.ceiling_key {
            return Ok(Arc::clone(&self.ceiling));
        }
        {
            let mut all = lock(&self.narrowed);
            if let Some(i) = all.iter().position(|(have, _)| *have == k) {
                let entry = all.remove(i);
                let pool = Arc::clone(&entry.1);
                all.push(entry);
                return Ok(pool);
            }
        }
        let mut opts = self.opts.clone();
        opts.workers = 1;
        let pool = Arc::new(Pool::new(policy.clone(), opts)?);
        let evicted = {
            let mut all = lock(&self.narrowed);
            all.push((k, Arc::clone(&pool)));
            if all.len() > NARROWED_POOLS {
                Some(all.remove(0).1)
            } else {
                None
            }
        };
        if let Some(old) = evicted {
            old.shutdown();
        }
        Ok(pool)
    }

    pub fn shutdown(&self) {
        self.ceiling.shutdown();
        for (_, p) in lock(&self.narrowed).drain(..) {
            p.shutdown();
        }
    }
}

/// A policy's identity for the pool cache.
fn key(policy: &Policy) -> String {
    serde_json::to_string(policy).unwrap_or_default()
}

/// One live session.
pub struct SessionSlot {
    pub session: Mutex<Session>,
    /// When its idle timeout ends it (moved on by every call).
    pub expires_at: Mutex<SystemTime>,
    pub idle: Duration,
}

/// The live sessions, by id.
pub struct Sessions {
    by_id: Mutex<HashMap<String, Arc<SessionSlot>>>,
    pub max: usize,
    pub idle: Duration,
}

impl Sessions {
    pub fn new(max: usize, idle: Duration) -> Sessions {
        Sessions {
            by_id: Mutex::new(HashMap::new()),
            max,
            idle,
        }
    }

    /// Open a session for `policy`; `None` when `max` are live already.
    pub fn open(
        &self,
        binary: &std::path::Path,
        policy: &Policy,
        idle: Duration,
    ) -> Result<Option<(String, SystemTime)>, WarmError> {
        self.reap();
        if lock(&self.by_id).len() >= self.max {
            return Ok(None);
        }
        let session = Session::open_with_options(binary, policy, SessionOptions::new(idle))?;
        let id = new_id();
        let expires = SystemTime::now() + idle;
        let slot = Arc::new(SessionSlot {
            session: Mutex::new(session),
            expires_at: Mutex::new(expires),
            idle,
        });
        let mut all = lock(&self.by_id);
        if all.len() >= self.max {
            // Another one took the last place meanwhile: this one closes as it drops.
            return Ok(None);
        }
        all.insert(id.clone(), slot);
        Ok(Some((id, expires)))
    }

    pub fn get(&self, id: &str) -> Option<Arc<SessionSlot>> {
        lock(&self.by_id).get(id).cloned()
    }

    /// Close and forget a session; false if there was none.
    pub fn close(&self, id: &str) -> bool {
        let slot = lock(&self.by_id).remove(id);
        match slot {
            Some(s) => {
                lock(&s.session).close();
                true
            }
            None => false,
        }
    }

    /// Forget the sessions that have ended (their idle timeout or lifetime, a limit).
    pub fn reap(&self) {
        let ended: Vec<Arc<SessionSlot>> = {
            let mut all = lock(&self.by_id);
            let gone: Vec<String> = all
                .iter()
                .filter(|(_, s)| match s.session.try_lock() {
                    Ok(session) => !session.is_open(),
                    // In a call: alive.
                    Err(_) => false,
                })
                .map(|(k, _)| k.clone())
                .collect();
            gone.iter().filter_map(|k| all.remove(k)).collect()
        };
        for s in ended {
            lock(&s.session).close();
        }
    }

    pub fn live(&self) -> usize {
        lock(&self.by_id).len()
    }

    pub fn close_all(&self) {
        let all: Vec<_> = lock(&self.by_id).drain().map(|(_, s)| s).collect();
        for s in all {
            lock(&s.session).close();
        }
    }
}

/// A session id: 128 random bits, hex.
fn new_id() -> String {
    let mut buf = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything the handlers share.
pub struct App {
    pub opts: ServerOptions,
    /// The ceiling, as requests see it (with the `stdin` feature: a request's input is the
    /// caller's data).
    pub ceiling: Policy,
    pub pools: Pools,
    pub sessions: Sessions,
    pub metrics: Metrics,
    pub started: Instant,
    /// The interpreter's version, for `/v1/info`.
    pub python_version: String,
    /// Distributions importable beyond the standard library (name, version): the full preset's.
    pub packages: Vec<(String, String)>,
}

/// The distributions installed in `site_packages` (name, version), from their `.dist-info`
/// directories' names: what code under the full preset can import beyond the standard library.
pub fn installed(site_packages: &[PathBuf]) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for dir in site_packages {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".dist-info") {
                if let Some((n, v)) = stem.split_once('-') {
                    all.push((n.replace('_', "-").to_lowercase(), v.to_string()));
                }
            }
        }
    }
    all.sort();
    all.dedup();
    all
}
