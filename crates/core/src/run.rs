//! Running a Python file or string once in a fresh jail: what `pysandbox run` does.

use crate::jail::JailSpec;
use crate::limits::Limit;
use crate::outcome::{ErrorInfo, Extras};
use crate::policy::GuardConfig;
use crate::protocol::{decode_reports, FrameError, Report};
use crate::supervisor::{self, Launch, Outcome, OutputMode, Status, Stdin, SupervisorError};
use crate::sys;
use std::io;
use std::path::PathBuf;

/// The bootstrap that reads the code from descriptor 3 and runs it, as source (`-c`) when it
/// does not come compiled.
pub const BOOTSTRAP: &str = include_str!("bootstrap/run.py");
/// The rest of the bootstrap (guard, repl, tracebacks), on descriptor 5, compiled only if needed.
pub const SUPPORT: &str = include_str!("bootstrap/support.py");
/// Both with their hashes, for their cached compilation ([`crate::interp::compiled_bootstrap`]).
const BOOTSTRAP_SOURCE: crate::interp::StaticSource = crate::interp::StaticSource::new(BOOTSTRAP);
const SUPPORT_SOURCE: crate::interp::StaticSource = crate::interp::StaticSource::new(SUPPORT);
/// What `-c` runs when descriptor 5 holds the compiled bootstrap: the pair of the bootstrap's
/// code and the support's compiled bytes; `bootstrap/run.py` takes the latter from its globals.
pub const COMPILED_STUB: &str = "import marshal\n\
     _pysandbox_support = open(5, 'rb', buffering=0, closefd=False)\n\
     exec(marshal.loads(_pysandbox_support.read(\
     int.from_bytes(_pysandbox_support.read(12)[8:], 'little'))))\n";
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
    /// after each the bootstrap writes a `Repl` frame (ready, more, done, exit) on the report
    /// pipe; run it with [`OutputMode::Relay`] to follow it as it happens.
    Repl,
}

pub struct RunRequest {
    pub source: Source,
    pub args: Vec<String>,
    pub stdin: Stdin,
    pub output: OutputMode,
    /// The guard's configuration ([`crate::policy::Resolved::guard`]); `None`: no guard.
    pub guard: Option<GuardConfig>,
    /// API mode (`pysandbox serve`, the Python package): the request's data (JSON, see
    /// `bootstrap/support.py`); the result comes back as a `Result` frame of the report, at
    /// most this many bytes.
    pub api: Option<(String, u64)>,
    /// Warm mode: the worker's configuration (JSON, descriptor 6); the code is not used.
    pub warm: Option<String>,
    /// See [`Launch::direct_stdout`].
    pub direct_stdout: Option<std::os::fd::OwnedFd>,
    /// Files placed in the working directory before the code, files sent back after it, cell
    /// mode (descriptor 8: a [`crate::protocol::Request`] frame of these alone).
    pub extras: RunExtras,
}

/// What [`RunRequest::extras`] holds.
#[derive(Debug, Clone, Default)]
pub struct RunExtras {
    pub files: Vec<(String, Vec<u8>)>,
    pub collect: Vec<String>,
    pub cell: bool,
}

impl RunExtras {
    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.collect.is_empty() && !self.cell
    }
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
        Source::Repl => ("<stdin>".to_string(), Vec::new()),
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
    // A cold run's interpreter gets the bootstrap compiled once on the host (a warm worker
    // compiles it once at its start: the source).
    let (bootstrap, support) = if req.warm.is_some() {
        (BOOTSTRAP, format!("{SUPPORT}{WARM}").into_bytes())
    } else {
        match crate::interp::compiled_bootstrap(
            &spec.interpreter.executable,
            &BOOTSTRAP_SOURCE,
            &SUPPORT_SOURCE,
        ) {
            Some(blob) => (COMPILED_STUB, blob),
            None => (BOOTSTRAP, SUPPORT.as_bytes().to_vec()),
        }
    };
    let support_fd = sys::sealed_memfd(c"support", &support).map_err(RunError::Code)?;
    let mut extra_fds = vec![code_fd, report_w, support_fd];
    let mut modes = Vec::new();
    if let Some(cfg) = &req.warm {
        extra_fds.push(sys::sealed_memfd(c"warm", cfg.as_bytes()).map_err(RunError::Code)?);
        modes.push("warm");
    }
    if let Some(cfg) = &req.guard {
        let data = cfg.encoded();
        extra_fds.push(sys::sealed_memfd(c"guard", &data).map_err(RunError::Code)?);
        modes.push("guard");
    }
    // Relayed as it arrives (the repl), the report is not kept: no bound on its length.
    let mut report_max = if req.output == OutputMode::Relay {
        u64::MAX
    } else {
        REPORT_MAX
    };
    // Keep the numbering: 6 the guard's or zygote's configuration, 7 the API input, 8 the
    // extras; an empty memfd holds a place that is not used.
    let placeholder = || sys::sealed_memfd(c"unused", b"").map_err(RunError::Code);
    if let Some((input, max)) = &req.api {
        if extra_fds.len() < 4 {
            extra_fds.push(placeholder()?);
        }
        extra_fds.push(sys::sealed_memfd(c"api", input.as_bytes()).map_err(RunError::Code)?);
        modes.push("api");
        report_max = REPORT_MAX + max;
    }
    if !req.extras.is_empty() {
        while extra_fds.len() < 5 {
            extra_fds.push(placeholder()?);
        }
        let frame = crate::protocol::Request {
            files: req.extras.files.clone(),
            collect: req.extras.collect.clone(),
            cell: req.extras.cell,
            ..Default::default()
        }
        .encode();
        extra_fds.push(sys::sealed_memfd(c"extras", &frame).map_err(RunError::Code)?);
        modes.push("extras");
        if !req.extras.collect.is_empty() || req.extras.cell {
            report_max = report_max.saturating_add(crate::limits::MAX_FILES_OUT_BYTES as u64 * 2);
        }
    }
    if matches!(req.source, Source::Repl) {
        modes.push("repl");
    }
    let mode = if modes.is_empty() {
        "-".to_string()
    } else {
        modes.join(",")
    };
    let mut spec = spec.clone();
    spec.args
        .extend(["-c".to_string(), bootstrap.to_string(), mode, name]);
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
        if let Some(l) = reported(&outcome.report, usize::MAX).limit {
            outcome.limit = Some(l);
        }
    }
    Ok(outcome)
}

/// What the bootstrap reported on descriptor 4, decoded from its frames ([`Report`]). The
/// sandboxed code can write this pipe too: it can only misreport its own run, never the host's
/// state.
#[derive(Debug, Default)]
pub struct Reported {
    /// The first limit the bootstrap saw trip.
    pub limit: Option<Limit>,
    /// The API result (tagged JSON, untrusted).
    pub result: Option<Vec<u8>>,
    /// The result was longer than allowed and left out.
    pub result_truncated: bool,
    /// The report stopped decoding here (bytes the code wrote on its own).
    pub error: Option<FrameError>,
    /// The exception the code raised, as the bootstrap described it.
    pub exception: Option<ErrorInfo>,
    /// Files and rich outputs it sent back.
    pub extras: Extras,
}

/// Decode a whole report, keeping a result of at most `result_max` bytes.
pub fn reported(report: &[u8], result_max: usize) -> Reported {
    let (frames, reader) = decode_reports(report, result_max);
    let mut r = Reported {
        result_truncated: reader.result_truncated,
        error: reader.error.clone(),
        ..Reported::default()
    };
    for f in frames {
        if r.extras.take(&f) {
            continue;
        }
        match f {
            Report::Limit(l) => {
                r.limit.get_or_insert(l);
            }
            Report::Result(data) => r.result = Some(data),
            Report::Error {
                kind,
                message,
                traceback,
            } => {
                r.exception = Some(ErrorInfo {
                    kind,
                    message,
                    traceback,
                })
            }
            Report::Done { .. }
            | Report::SetupFailed { .. }
            | Report::Repl(_)
            | Report::File { .. }
            | Report::FilesTruncated
            | Report::Display(_)
            // Only warm children are traced.
            | Report::Trace(_) => {}
        }
    }
    r.extras.files_truncated |= reader.other_truncated;
    if reader.pending() > 0 && r.error.is_none() {
        // Cut off by the host's bound on the report: a result that did not fit.
        r.result_truncated = true;
    }
    r
}

/// The outcome of a cold run, as every front end shows it ([`crate::outcome::Outcome`]).
pub fn outcome(o: &Outcome) -> crate::outcome::Outcome {
    let (exit_code, signal) = match o.status {
        Status::Exited(c) => (Some(c), None),
        Status::Signaled(s) => (None, Some(s)),
        Status::Killed => (None, Some(libc::SIGKILL)),
    };
    let reported = reported(&o.report, crate::limits::MAX_FILES_OUT_BYTES);
    let mut out = crate::outcome::Outcome {
        status: crate::outcome::Outcome::status_of(o.limit, exit_code, signal),
        limit: o.limit,
        exit_code,
        signal,
        stdout: String::from_utf8_lossy(&o.stdout.data).into_owned(),
        stdout_truncated: o.stdout.truncated,
        stderr: String::from_utf8_lossy(&o.stderr.data).into_owned(),
        stderr_truncated: o.stderr.truncated,
        // The code's own account, believed only when its end agrees: it raised, or exited 1.
        error: reported
            .exception
            .filter(|_| exit_code.is_some_and(|c| c != 0)),
        results: Vec::new(),
        files: Default::default(),
        files_truncated: false,
        wall_time: o.wall_time.as_secs_f64(),
        cpu_time: o.cpu_time.as_secs_f64(),
        peak_memory: o.peak_memory,
    };
    reported.extras.fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_limits_and_results() {
        let mut bytes = Report::Limit(Limit::Memory).encode();
        bytes.extend(Report::Limit(Limit::Processes).encode());
        bytes.extend(Report::Result(b"{}".to_vec()).encode());
        let r = reported(&bytes, 100);
        assert_eq!(r.limit, Some(Limit::Memory));
        assert_eq!(r.result.as_deref(), Some(&b"{}"[..]));
        // Old-style text lines are not frames: nothing is believed.
        let r = reported(b"limit memory\n", 100);
        assert_eq!(r.limit, None);
        assert!(r.error.is_some());
        // A result cut off by the host's bound on the report.
        let cut = Report::Result(vec![b'x'; 50]).encode();
        let r = reported(&cut[..20], 100);
        assert!(r.result_truncated && r.result.is_none());
        assert!(reported(b"", 10).limit.is_none());
    }

    /// The host splits the support code at one line (what a guarded run needs above it); the
    /// warm zygote's code, appended after it, is below.
    #[test]
    fn the_support_code_is_split_at_one_line() {
        let split = crate::interp::SUPPORT_SPLIT;
        assert_eq!(SUPPORT.matches(split).count(), 1);
        assert!(SUPPORT.lines().any(|l| l == split));
        assert!(!WARM.contains(split));
        let (core, _) = SUPPORT.split_once(split).unwrap();
        for needed in [
            "def run(",
            "def failed(",
            "def _pysandbox_guard(",
            "def _pysandbox_more(",
        ] {
            assert!(core.contains(needed), "{needed} is above the split");
        }
    }
}
