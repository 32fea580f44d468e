//! The outcome of a run: one type for every front end. `pysandbox run --json`, each line of
//! `pysandbox batch`, the Python package's `Result` and (later) HTTP responses are views of it;
//! `docs/outcome.schema.json` is its JSON Schema, generated from these types
//! (`pysandbox schema`).
//!
//! [`ErrorKind`] is the one table of what can go wrong, with what each front end makes of it:
//! the CLI's exit status, the Python exception, the HTTP status.

use crate::limits::Limit;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a run ended, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The code ran to its end with exit status 0.
    Ok,
    /// The code raised an uncaught exception or exited with a non-zero status.
    Error,
    /// A limit stopped the run (`limit` says which; the output limit cuts the output without
    /// stopping the run, so it shows in `limit` with the status of the run's own end).
    Limit,
    /// The interpreter was killed by a signal (`signal`) that was not a limit's.
    Crashed,
    /// The sandbox itself failed: nothing, or not all, of the code ran (`error` says why).
    SandboxError,
}

/// An exception the code raised (or, with `status = sandbox_error`, what failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorInfo {
    /// The exception's type name (`ZeroDivisionError`), or the error kind of a sandbox error.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    /// Formatted as Python prints it, with the code's own source lines.
    pub traceback: String,
}

/// A rich output of a cell (a MIME bundle, as Jupyter's): MIME type → text, binary types as
/// base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RichResult {
    pub data: BTreeMap<String, String>,
    /// The value of the cell's last expression (the others come from `display()`).
    #[serde(default)]
    pub is_main_result: bool,
}

/// The outcome of one run, the same for every path (cold, warm, session) and front end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    pub status: RunStatus,
    /// The limit that stopped the run (or cut its output), if any.
    pub limit: Option<Limit>,
    /// The code's exit status, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did (a wall-clock kill is SIGKILL).
    pub signal: Option<i32>,
    /// Up to the output limit; the rest was discarded (`stdout_truncated`).
    pub stdout: String,
    pub stdout_truncated: bool,
    pub stderr: String,
    pub stderr_truncated: bool,
    /// The exception the code raised, when it did; with `sandbox_error`, what failed.
    #[serde(default)]
    pub error: Option<ErrorInfo>,
    /// Rich outputs (cell mode).
    #[serde(default)]
    pub results: Vec<RichResult>,
    /// Files collected after the run: name → base64.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Some files were left out (count or size bounds).
    #[serde(default)]
    pub files_truncated: bool,
    /// Seconds of wall-clock time, from the host's clock.
    pub wall_time: f64,
    /// Seconds of CPU time of the code's processes.
    pub cpu_time: f64,
    /// Peak resident memory of the largest process, in bytes.
    pub peak_memory: u64,
}

impl Outcome {
    /// The status of a run from how it ended: a limit that stopped it, a signal, the exit code.
    pub fn status_of(
        limit: Option<Limit>,
        exit_code: Option<i32>,
        signal: Option<i32>,
    ) -> RunStatus {
        match (limit, exit_code, signal) {
            (Some(l), _, _) if l != Limit::Output => RunStatus::Limit,
            (_, _, Some(_)) => RunStatus::Crashed,
            (_, Some(0), None) => RunStatus::Ok,
            (_, Some(_), None) => RunStatus::Error,
            // No exit code and no signal: the end is unknown (a worker that failed).
            (_, None, None) => RunStatus::SandboxError,
        }
    }

    /// An outcome for a run the sandbox could not carry out.
    pub fn sandbox_error(kind: ErrorKind, message: String) -> Outcome {
        Outcome {
            status: RunStatus::SandboxError,
            limit: None,
            exit_code: None,
            signal: None,
            stdout: String::new(),
            stdout_truncated: false,
            stderr: String::new(),
            stderr_truncated: false,
            error: Some(ErrorInfo {
                kind: kind.name().to_string(),
                message,
                traceback: String::new(),
            }),
            results: Vec::new(),
            files: BTreeMap::new(),
            files_truncated: false,
            wall_time: 0.0,
            cpu_time: 0.0,
            peak_memory: 0,
        }
    }
}

/// Files and rich outputs a run sends back (its `File`, `FilesTruncated` and `Display` report
/// frames), gathered within their bounds for its outcome. Everything here is the code's own
/// data; names are checked ([`check_file_name`]) before anything uses them.
#[derive(Debug, Default, Clone)]
pub struct Extras {
    pub files: BTreeMap<String, Vec<u8>>,
    pub files_truncated: bool,
    pub results: Vec<RichResult>,
    bytes: usize,
}

impl Extras {
    /// Take one frame's worth; false if it was not one of these.
    pub fn take(&mut self, r: &crate::protocol::Report) -> bool {
        use crate::limits::{MAX_FILES_OUT, MAX_FILES_OUT_BYTES};
        use crate::protocol::Report;
        match r {
            Report::File { name, data } => {
                let fits = self.files.len() < MAX_FILES_OUT
                    && self.bytes + data.len() <= MAX_FILES_OUT_BYTES;
                if check_file_name(name).is_err() || !fits || self.files.contains_key(name) {
                    self.files_truncated = true;
                } else {
                    self.bytes += data.len();
                    self.files.insert(name.clone(), data.clone());
                }
            }
            Report::FilesTruncated => self.files_truncated = true,
            Report::Display(json) => match serde_json::from_slice::<RichResult>(json) {
                Ok(r) if self.results.len() < 1000 => self.results.push(r),
                _ => {}
            },
            _ => return false,
        }
        true
    }

    /// Put them in `o` (files as base64).
    pub fn fill(self, o: &mut Outcome) {
        o.files = self
            .files
            .into_iter()
            .map(|(k, v)| (k, base64_encode(&v)))
            .collect();
        o.files_truncated = self.files_truncated;
        o.results = self.results;
    }
}

/// A file name a run may be given or send back: relative, `/`-separated components, none empty,
/// `.` or `..`, no NUL, at most 255 bytes a component and 4096 in all. The error says which.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty file name".into());
    }
    if name.len() > 4096 {
        return Err(format!(
            "a file name of {} bytes (at most 4096)",
            name.len()
        ));
    }
    if name.contains('\0') {
        return Err(format!("{name:?} contains a NUL byte"));
    }
    if name.starts_with('/') {
        return Err(format!(
            "'{name}' is absolute: give a name relative to the working directory"
        ));
    }
    for c in name.split('/') {
        match c {
            "" => return Err(format!("'{name}' has an empty component")),
            "." | ".." => return Err(format!("'{name}' has a '{c}' component")),
            c if c.len() > 255 => return Err(format!("'{name}' has a component over 255 bytes")),
            _ => {}
        }
    }
    Ok(())
}

/// Standard base64 with padding (files in outcomes, as JSON carries them).
pub fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode standard base64 (padding optional); `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let t = text.trim_end_matches('=').as_bytes();
    if t.len() % 4 == 1 || text.len() - t.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(t.len() * 3 / 4);
    for chunk in t.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Everything that can go wrong, and what each front end makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The code raised or exited non-zero (`status = error`).
    CodeError,
    /// A limit stopped the run (`status = limit`).
    Limit,
    /// Killed by a signal that was not a limit's (`status = crashed`).
    Crashed,
    /// The configuration or the request is invalid: nothing ran.
    Policy,
    /// The sandbox could not be set up: nothing ran.
    Setup,
    /// An isolation step failed in a warm child: nothing ran; the worker is replaced.
    Isolation,
    /// A warm worker failed or misbehaved; it is replaced.
    Worker,
    /// The pool's queue is full.
    Busy,
    /// The pool or session is closed, or the session has ended.
    Closed,
    /// What came back is not a result pysandbox sends (the code forged it).
    Malformed,
}

/// One row of the error-kind table.
pub struct ErrorRow {
    pub kind: ErrorKind,
    /// `pysandbox run`'s exit status.
    pub exit_code: &'static str,
    /// The Python package's exception (`None`: no exception, the result says it).
    pub python: Option<&'static str>,
    /// The HTTP status of the coming server.
    pub http: u16,
}

/// The table (docs/outcome.md shows it).
pub const ERROR_TABLE: &[ErrorRow] = &[
    row(
        ErrorKind::CodeError,
        "the code's own",
        Some("SandboxedException"),
        200,
    ),
    row(
        ErrorKind::Limit,
        "124",
        Some(
            "LimitExceeded (Timeout, MemoryLimitExceeded, ProcessLimitExceeded, \
             OutputLimitExceeded)",
        ),
        200,
    ),
    row(
        ErrorKind::Crashed,
        "128 + the signal",
        Some("SandboxCrashed"),
        200,
    ),
    row(ErrorKind::Policy, "2", Some("PolicyError"), 400),
    row(ErrorKind::Setup, "125", Some("SandboxError"), 500),
    row(ErrorKind::Isolation, "125", Some("SandboxError"), 500),
    row(ErrorKind::Worker, "125", Some("SandboxError"), 500),
    row(ErrorKind::Busy, "125", Some("SandboxError"), 429),
    row(ErrorKind::Closed, "125", Some("SandboxError"), 409),
    row(ErrorKind::Malformed, "125", Some("MalformedResult"), 502),
];

const fn row(
    kind: ErrorKind,
    exit_code: &'static str,
    python: Option<&'static str>,
    http: u16,
) -> ErrorRow {
    ErrorRow {
        kind,
        exit_code,
        python,
        http,
    }
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::CodeError => "code_error",
            ErrorKind::Limit => "limit",
            ErrorKind::Crashed => "crashed",
            ErrorKind::Policy => "policy",
            ErrorKind::Setup => "setup",
            ErrorKind::Isolation => "isolation",
            ErrorKind::Worker => "worker",
            ErrorKind::Busy => "busy",
            ErrorKind::Closed => "closed",
            ErrorKind::Malformed => "malformed",
        }
    }

    pub fn row(self) -> &'static ErrorRow {
        ERROR_TABLE
            .iter()
            .find(|r| r.kind == self)
            .expect("every kind has a row")
    }
}

/// The error-kind table as Markdown (as docs/outcome.md shows it).
pub fn error_table_markdown() -> String {
    let mut t = String::from(
        "| kind | `pysandbox run` exit status | Python exception | HTTP status |\n|---|---|---|---|\n",
    );
    for r in ERROR_TABLE {
        let python = r.python.unwrap_or("—");
        t.push_str(&format!(
            "| `{}` | {} | `{python}` | {} |\n",
            r.kind.name(),
            r.exit_code,
            r.http
        ));
    }
    t
}

/// The JSON Schema of [`Outcome`] (pretty-printed, as committed in docs/outcome.schema.json).
pub fn schema() -> String {
    let schema = schemars::schema_for!(Outcome);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let s = Outcome::status_of;
        assert_eq!(s(None, Some(0), None), RunStatus::Ok);
        assert_eq!(s(None, Some(1), None), RunStatus::Error);
        assert_eq!(s(Some(Limit::Output), Some(0), None), RunStatus::Ok);
        assert_eq!(s(Some(Limit::Wall), None, Some(9)), RunStatus::Limit);
        assert_eq!(s(None, None, Some(11)), RunStatus::Crashed);
        assert_eq!(s(None, None, None), RunStatus::SandboxError);
    }

    #[test]
    fn base64_round_trips() {
        for data in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"abcd",
            &[0u8, 255, 128, 7, 9],
        ] {
            let e = base64_encode(data);
            assert_eq!(base64_decode(&e).as_deref(), Some(data), "{e}");
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_decode("aGVsbG8"), Some(b"hello".to_vec()));
        assert!(base64_decode("a").is_none() && base64_decode("!!!!").is_none());
    }

    #[test]
    fn file_names() {
        for ok in ["a.csv", "out/b.png", "x y/.hidden"] {
            assert!(check_file_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\0b",
            "a/",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_kind_has_one_row() {
        for r in ERROR_TABLE {
            assert_eq!(
                ERROR_TABLE.iter().filter(|x| x.kind == r.kind).count(),
                1,
                "{}",
                r.kind.name()
            );
        }
    }

    /// docs/outcome.md shows the table the code has.
    #[test]
    fn the_published_error_table_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/outcome.md");
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            doc.contains(&error_table_markdown()),
            "docs/outcome.md's table is out of date: `pysandbox schema --errors` prints it"
        );
    }

    /// docs/outcome.schema.json is what the types say (regenerate: `pysandbox schema >
    /// docs/outcome.schema.json`).
    #[test]
    fn the_published_schema_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/outcome.schema.json"
        );
        let published = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            published == schema(),
            "docs/outcome.schema.json is out of date: run `pysandbox schema > docs/outcome.schema.json`"
        );
    }
}
