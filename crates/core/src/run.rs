//! Running a Python file or string once in a fresh jail: what `pysandbox run` does.

use crate::jail::JailSpec;
use crate::limits::Limit;
use crate::supervisor::{self, Launch, Outcome, OutputMode, Status, Stdin, SupervisorError};
use crate::sys;
use serde::Serialize;
use std::io;
use std::path::PathBuf;

/// The bootstrap that reads the code from descriptor 3 and runs it (small: compiled every run).
pub const BOOTSTRAP: &str = include_str!("bootstrap/run.py");
/// The rest of the bootstrap (guard, repl, tracebacks), on descriptor 5, compiled only if needed.
pub const SUPPORT: &str = include_str!("bootstrap/support.py");
/// The warm worker's zygote, appended to [`SUPPORT`] in warm mode (see `crate::warm`).
pub const WARM: &str = include_str!("bootstrap/warm.py");

/// What to run.
#[derive(Debug, Clone)]
pub enum Source {
    /// A string, shown as `<string>` in tracebacks (like `python -c`).
    Code(String),
    /// A host file, read by the supervisor with the caller's rights; the jail never sees its path.
    File(PathBuf),
    /// An interactive session (`pysandbox repl`): inputs arrive one line at a time on stdin, and
    /// after each the bootstrap writes a line `\0TOKEN STATE` (ready, more, done, exit) on stdout.
    Repl { token: String },
}

pub struct RunRequest {
    pub source: Source,
    pub args: Vec<String>,
    pub stdin: Stdin,
    pub output: OutputMode,
    /// The guard's configuration ([`crate::policy::Resolved::guard`]); `None`: no guard.
    pub guard: Option<String>,
    /// API mode (`pysandbox serve`, the Python package): the request's data (JSON, see
    /// `bootstrap/support.py`); the result comes back after a `result` line of the report, at
    /// most this many bytes.
    pub api: Option<(String, u64)>,
    /// Warm mode: the worker's configuration (JSON, descriptor 6); the code is not used.
    pub warm: Option<String>,
    /// See [`Launch::direct_stdout`].
    pub direct_stdout: Option<std::os::fd::OwnedFd>,
}

/// The largest report kept when no API result is expected.
const REPORT_MAX: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read {path}: {source}")]
    ReadSource { path: PathBuf, source: io::Error },
    #[error("cannot pass the code to the jail: {0}")]
    Code(io::Error),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
}

/// Run `req` in a jail built from `spec` (whose `args` are the interpreter's own flags).
pub fn run(spec: &JailSpec, req: RunRequest) -> Result<Outcome, RunError> {
    let (name, code) = match &req.source {
        Source::Code(c) => ("<string>".to_string(), c.as_bytes().to_vec()),
        Source::Repl { token } => ("<stdin>".to_string(), token.as_bytes().to_vec()),
        Source::File(p) => (
            p.to_string_lossy().into_owned(),
            std::fs::read(p).map_err(|source| RunError::ReadSource {
                path: p.clone(),
                source,
            })?,
        ),
    };
    let code_fd = sys::sealed_memfd(c"code", &code).map_err(RunError::Code)?;
    let (report_r, report_w) = sys::pipe().map_err(RunError::Code)?;
    let support = if req.warm.is_some() {
        format!("{SUPPORT}{WARM}")
    } else {
        SUPPORT.to_string()
    };
    let support_fd = sys::sealed_memfd(c"support", support.as_bytes()).map_err(RunError::Code)?;
    let mut extra_fds = vec![code_fd, report_w, support_fd];
    let mut modes = Vec::new();
    if let Some(cfg) = &req.warm {
        extra_fds.push(sys::sealed_memfd(c"warm", cfg.as_bytes()).map_err(RunError::Code)?);
        modes.push("warm");
    }
    if let Some(cfg) = &req.guard {
        extra_fds.push(sys::sealed_memfd(c"guard", cfg.as_bytes()).map_err(RunError::Code)?);
        modes.push("guard");
    }
    let mut report_max = REPORT_MAX;
    if let Some((input, max)) = &req.api {
        if req.guard.is_none() {
            // Keep the numbering: the API input is always descriptor 7.
            extra_fds.push(sys::sealed_memfd(c"guard", b"").map_err(RunError::Code)?);
        }
        extra_fds.push(sys::sealed_memfd(c"api", input.as_bytes()).map_err(RunError::Code)?);
        modes.push("api");
        report_max = REPORT_MAX + max;
    }
    if matches!(req.source, Source::Repl { .. }) {
        modes.push("repl");
    }
    let mode = if modes.is_empty() {
        "-".to_string()
    } else {
        modes.join(",")
    };
    let mut spec = spec.clone();
    spec.args
        .extend(["-c".to_string(), BOOTSTRAP.to_string(), mode, name]);
    spec.args.extend(req.args);
    let mut outcome = supervisor::run(
        &spec,
        Launch {
            stdin: req.stdin,
            output: req.output,
            extra_fds,
            report: Some(report_r),
            report_max,
            direct_stdout: req.direct_stdout,
        },
    )?;
    if outcome.limit.is_none() || outcome.limit == Some(Limit::Output) {
        if let Some(l) = reported_limit(&outcome.report) {
            outcome.limit = Some(l);
        }
    }
    Ok(outcome)
}

/// The API result: the bytes after the report's `result` line, or `None` if there is none.
pub fn api_result(report: &[u8]) -> Option<&[u8]> {
    let marker = b"\0result\n";
    let at = report.windows(marker.len()).position(|w| w == marker)?;
    Some(&report[at + marker.len()..])
}

/// The limit the bootstrap saw trip (`limit NAME` lines on descriptor 4). The sandboxed code can
/// write this pipe too: it can only misreport its own run, never the host's state.
pub(crate) fn reported_limit(report: &[u8]) -> Option<Limit> {
    let marker = b"\0result\n";
    let end = report
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap_or(report.len());
    String::from_utf8_lossy(&report[..end])
        .lines()
        .filter_map(|l| l.strip_prefix("limit "))
        .find_map(|name| Limit::from_name(name.trim()))
}

/// The machine-readable form of an [`Outcome`] (`pysandbox run --json`, warm answers).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct JsonOutcome {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub limit: Option<Limit>,
    pub cpu_time: f64,
    pub wall_time: f64,
    pub peak_memory: u64,
    pub stdout: String,
    pub stdout_truncated: bool,
    pub stderr: String,
    pub stderr_truncated: bool,
}

impl From<&Outcome> for JsonOutcome {
    fn from(o: &Outcome) -> Self {
        let (exit_code, signal) = match o.status {
            Status::Exited(c) => (Some(c), None),
            Status::Signaled(s) => (None, Some(s)),
            Status::Killed => (None, Some(libc::SIGKILL)),
        };
        JsonOutcome {
            exit_code,
            signal,
            limit: o.limit,
            cpu_time: o.cpu_time.as_secs_f64(),
            wall_time: o.wall_time.as_secs_f64(),
            peak_memory: o.peak_memory,
            stdout: String::from_utf8_lossy(&o.stdout.data).into_owned(),
            stdout_truncated: o.stdout.truncated,
            stderr: String::from_utf8_lossy(&o.stderr.data).into_owned(),
            stderr_truncated: o.stderr.truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_limits() {
        assert_eq!(reported_limit(b"limit memory\n"), Some(Limit::Memory));
        assert_eq!(
            reported_limit(b"junk\nlimit processes\n"),
            Some(Limit::Processes)
        );
        assert_eq!(reported_limit(b"limit nonsense\n"), None);
        assert_eq!(reported_limit(b""), None);
    }
}
