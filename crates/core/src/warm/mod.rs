//! Warm mode: a jail and an interpreter set up once, then one isolated child per request.
//!
//! A [`Worker`] is a `pysandbox worker` process supervising one long-lived jail whose interpreter
//! is a zygote (`bootstrap/warm.py`: CPython with modules preloaded, whose loop is this crate's
//! code, [`serve_inside`], loaded as `libpysandbox_zygote.so`). The zygote keeps a request child
//! forked and isolated before the request arrives, by the same steps as a cold run
//! ([`crate::isolate`]): PID 1 of its own PID namespace, its own IPC namespace, a fresh `/tmp`,
//! no capabilities, its own Landlock domain (signals and abstract unix sockets scoped to it), the
//! strict seccomp filter of a cold run on top of the zygote's, its own rlimits and fresh
//! randomness. It hands the host its ends of the child's pipes and a pidfd over a control socket,
//! so that a request is one frame written to the child and one read of its answer, with no process
//! in between (`channel.rs`, [`crate::protocol`]); the host owns every clock (`watchdog.rs`).
//! A [`Pool`] keeps N workers, bounds its queue and replaces workers after K requests or any
//! anomaly. A [`Session`] keeps one child for many calls, stopped between them.
//!
//! Workers are separate processes because a jail is started with `clone`, which the supervisor
//! refuses in a multi-threaded process, and a pool is used from threads.

mod channel;
mod inside;
mod pool;
mod session;
mod tree;
mod watchdog;
mod worker;
mod zygote;

pub use inside::serve as serve_inside;
pub use inside::{request_waiting, trace, REQUEST_FD, ROLE_REQUEST, ROLE_SESSION, ROLE_WAITING};

/// Set in the environment of a pool's host process (its workers inherit it), request children
/// report how long each phase of their start took and the page faults they took in it
/// ([`WarmOutcome::trace`]): `make bench`'s per-phase table. A measurement aid only.
pub const TRACE_ENV: &str = "PYSANDBOX_TRACE_PHASES";
pub use pool::{Pool, PoolOptions};
pub use session::{Session, SessionOptions, DEFAULT_LIFETIME};
pub use worker::Worker;
pub use zygote::{
    adds_bind_now, find_library, zygote_config, WarmUp, ZygoteConfig, ZygoteMode, ZygoteRule,
    BIND_NOW_ENV, LIBRARY_IN_JAIL, LIBRARY_NAME,
};

use crate::outcome::Outcome;
use crate::policy::PolicyError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Environment variable handing the policy (JSON) to `pysandbox worker`.
pub const POLICY_ENV: &str = "PYSANDBOX_WORKER_POLICY";

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
    /// An isolation step failed in a request child: nothing of the request ran, and the worker
    /// is replaced.
    #[error("sandbox setup failed: {step}: {message}")]
    Isolation { step: String, message: String },
}

impl WarmError {
    /// Its row of the error-kind table ([`crate::outcome::ERROR_TABLE`]).
    pub fn kind(&self) -> crate::outcome::ErrorKind {
        use crate::outcome::ErrorKind;
        match self {
            WarmError::Policy(_) | WarmError::Refused(_) => ErrorKind::Policy,
            WarmError::Start { .. } => ErrorKind::Setup,
            WarmError::Busy(_) => ErrorKind::Busy,
            WarmError::Closed | WarmError::SessionEnded(_) => ErrorKind::Closed,
            WarmError::Worker(_) | WarmError::Hung(_) => ErrorKind::Worker,
            WarmError::Isolation { .. } => ErrorKind::Isolation,
        }
    }
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
    /// Files placed in the working directory before the code runs (in JSON: name → base64).
    #[serde(default, with = "files_base64")]
    pub files: Vec<(String, Vec<u8>)>,
    /// Glob patterns of files to send back after the run.
    #[serde(default)]
    pub collect: Vec<String>,
    /// Cell mode (in JSON `"mode": "cell"`, or `"script"`, the default): the last expression's
    /// value and `display()` calls are rich results.
    #[serde(default, rename = "mode", with = "mode_name")]
    pub cell: bool,
    /// `sys.argv[1:]` of the code.
    #[serde(default)]
    pub args: Vec<String>,
    /// Wait until the child's process is gone and take how it ended (exit status or signal, CPU
    /// time, peak memory) from the kernel (the zygote's `wait4`), not from its closing `Done`
    /// frame, which the code can write itself and then run on (or crash) after printing: what a
    /// verdict needs (`crate::judge`). The output written until the end counts too. Costs the
    /// child's exit and one question to the zygote. Host-side only (not part of the frame).
    #[serde(skip)]
    pub until_exit: bool,
    /// A wall-clock limit below the pool's, for this request only (a larger one is ignored:
    /// the pool's is the ceiling). Host-side only.
    #[serde(skip)]
    pub wall: Option<std::time::Duration>,
    /// Called with the output as it arrives (what is kept of it, within the output limit), for
    /// callers that stream it. Host-side only.
    #[serde(skip)]
    pub tap: Option<Tap>,
}

/// Which output a [`Tap`] chunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// What a [`Tap`] calls.
pub type TapFn = dyn Fn(OutputStream, &[u8]) + Send + Sync;

/// A callback for output chunks as they arrive ([`Request::tap`]).
#[derive(Clone)]
pub struct Tap(pub std::sync::Arc<TapFn>);

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

/// `"mode": "script" | "cell"` as the flag it is.
mod mode_name {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(cell: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if *cell { "cell" } else { "script" })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        super::cell_mode(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Whether a mode name is cell mode: `"cell"`, or `"script"` (every front end's names).
pub fn cell_mode(name: &str) -> Result<bool, String> {
    match name {
        "script" => Ok(false),
        "cell" => Ok(true),
        other => Err(format!(
            "unknown mode '{other}': expected \"script\" or \"cell\""
        )),
    }
}

/// Files as JSON carries them: an object of name → base64.
mod files_base64 {
    use crate::outcome::{base64_decode, base64_encode};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(files: &[(String, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        let m: BTreeMap<&str, String> = files
            .iter()
            .map(|(k, v)| (k.as_str(), base64_encode(v)))
            .collect();
        m.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, Vec<u8>)>, D::Error> {
        let m = BTreeMap::<String, String>::deserialize(d)?;
        m.into_iter()
            .map(|(k, v)| match base64_decode(&v) {
                Some(data) => Ok((k, data)),
                None => Err(serde::de::Error::custom(format!("file '{k}': not base64"))),
            })
            .collect()
    }
}

impl Request {
    pub fn code(code: &str) -> Request {
        Request::new(None, code, None)
    }

    /// `code` with a file name for tracebacks and standard input.
    pub fn new(name: Option<&str>, code: &str, stdin: Option<&str>) -> Request {
        Request {
            code: code.to_string(),
            name: name.map(str::to_string),
            stdin: stdin.map(str::to_string),
            api: None,
            files: Vec::new(),
            collect: Vec::new(),
            cell: false,
            args: Vec::new(),
            until_exit: false,
            wall: None,
            tap: None,
        }
    }

    /// Refuse what cannot be run before anything runs: a bad file name (naming it), too many
    /// files, a file larger than the whole `/tmp`, an empty or absolute glob.
    pub fn check(&self, tmp_size: u64) -> Result<(), String> {
        check_inputs(&self.files, &self.collect, tmp_size)
    }

    /// The request frame for the child ([`crate::protocol::Request`]).
    fn encode(&self) -> Vec<u8> {
        crate::protocol::Request {
            code: self.code.as_bytes().to_vec(),
            name: self.name.clone().unwrap_or_default(),
            stdin: self.stdin.as_ref().map(|s| s.as_bytes().to_vec()),
            api: self.api.as_ref().map(|a| a.to_string().into_bytes()),
            files: self.files.clone(),
            collect: self.collect.clone(),
            cell: self.cell,
            live: self.tap.is_some(),
            args: self.args.clone(),
        }
        .encode()
    }
}

/// The checks of [`Request::check`], for every front end (files given, globs to collect).
pub fn check_inputs(
    files: &[(String, Vec<u8>)],
    collect: &[String],
    tmp_size: u64,
) -> Result<(), String> {
    use crate::limits::MAX_FILES_IN;
    if files.len() > MAX_FILES_IN {
        return Err(format!(
            "files: {} files given, at most {MAX_FILES_IN}",
            files.len()
        ));
    }
    let mut total = 0u64;
    for (name, data) in files {
        crate::outcome::check_file_name(name).map_err(|e| format!("files: {e}"))?;
        total += data.len() as u64;
    }
    if total > tmp_size {
        return Err(format!(
            "files: {total} bytes given, more than the /tmp size of {tmp_size} bytes they go to; \
             raise it with --tmp-size"
        ));
    }
    for g in collect {
        if g.is_empty() || g.starts_with('/') || g.contains('\0') || g.split('/').any(|c| c == "..")
        {
            return Err(format!(
                "collect: '{g}' is not a glob relative to the working directory (e.g. '*.png', \
                 'out/*.csv')"
            ));
        }
    }
    Ok(())
}

/// What one warm request produced: the fields of `pysandbox run --json`, and more.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarmOutcome {
    #[serde(default)]
    pub id: serde_json::Value,
    #[serde(flatten)]
    pub run: Outcome,
    /// Something was wrong with the worker itself: it is replaced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anomaly: bool,
    /// The API result (tagged JSON text from the sandbox, untrusted), for package requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The result was longer than the host keeps (16 MiB): left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_truncated: bool,
    /// The child's report did not decode (the code wrote its own bytes on it): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_error: Option<String>,
    /// A session's child ended with this call (a limit, a crash).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended: bool,
    /// A traced pool's child: its phases, as it reported them (`PoolOptions::trace`; the
    /// code could forge them: for measurements, never for decisions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<crate::protocol::Mark>,
}
