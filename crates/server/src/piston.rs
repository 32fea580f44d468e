//! The Piston-compatible routes (engineer-man/piston `api/src/api/v2.js`, `job.js`):
//! `POST /api/v2/execute` and `GET /api/v2/runtimes`, for Python, under `/api/v2` (a
//! self-hosted Piston) and `/api/v2/piston` (the public instance's prefix, the default base
//! URL of clients such as `aiopyston`), with and without a trailing slash (Express, which
//! Piston runs on, matches both; `aiopyston` asks for `execute/`).
//!
//! As Piston does: the first UTF-8 file is the program, every file is placed in the working
//! directory (encodings `utf8`, `base64`, `hex`), standard input gets a trailing newline, and a
//! limit above the server's is refused with 400 `"{name} cannot exceed the configured limit of
//! {n}"` (the operator's policy is Piston's configured limit). A limit of 0 or below counts as
//! not given (`aiopyston` sends `run_memory_limit: -1` by default).
//!
//! Outcome → `run.status`: exit 0 → null; an exception or non-zero exit → `RE`; a signal →
//! `SG`; the wall-clock or CPU limit → `TO` (signal `SIGKILL`); the output limit → `OL` / `EL`
//! (the output is cut at the limit; the run is not stopped); the memory, process or file limits
//! → `RE` or `SG`, by how the code ended, with `message` naming the limit. A fault of the
//! sandbox is an HTTP error (500, or 429 when the queue is full) with `{"message"}`, as Piston
//! answers its own.

use crate::state::App;
use crate::{blocking, count_limit, ApiError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pysandbox_core::limits::{format_size, Limit};
use pysandbox_core::outcome::{base64_decode, Outcome, RunStatus};
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::Request;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The routes of this module.
pub fn routes() -> Router<Arc<App>> {
    let mut r = Router::new();
    for prefix in ["/api/v2", "/api/v2/piston"] {
        for slash in ["", "/"] {
            r = r
                .route(&format!("{prefix}/execute{slash}"), post(execute))
                .route(&format!("{prefix}/runtimes{slash}"), get(runtimes));
        }
    }
    r
}

/// The runtime's language and the other names it answers to (Piston's python package's).
const LANGUAGE: &str = "python";
const ALIASES: &[&str] = &["py", "py3", "python3"];

#[derive(Debug, Serialize)]
struct Runtime {
    language: &'static str,
    version: String,
    aliases: &'static [&'static str],
}

async fn runtimes(State(app): State<Arc<App>>) -> Json<Vec<Runtime>> {
    Json(vec![Runtime {
        language: LANGUAGE,
        version: app.python_version.clone(),
        aliases: ALIASES,
    }])
}

/// `POST /api/v2/execute`. Types are checked as Piston checks them (its messages), unknown
/// fields ignored.
#[derive(Debug, Deserialize)]
struct ExecuteRequest {
    #[serde(default)]
    language: Option<serde_json::Value>,
    #[serde(default)]
    version: Option<serde_json::Value>,
    #[serde(default)]
    files: Option<serde_json::Value>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    args: Option<Vec<String>>,
    /// Milliseconds of wall clock.
    #[serde(default)]
    run_timeout: Option<serde_json::Value>,
    /// Milliseconds of CPU time.
    #[serde(default)]
    run_cpu_time: Option<serde_json::Value>,
    /// Bytes.
    #[serde(default)]
    run_memory_limit: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct FileIn {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    content: Option<serde_json::Value>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Debug, Serialize)]
struct Stage {
    stdout: String,
    stderr: String,
    /// stdout and stderr together. Interleaved as written when only one has output; else stdout
    /// then stderr (the sandbox keeps the two apart).
    output: String,
    code: Option<i32>,
    signal: Option<&'static str>,
    message: Option<String>,
    status: Option<&'static str>,
    /// Milliseconds.
    cpu_time: f64,
    wall_time: f64,
    /// Bytes (peak resident memory).
    memory: u64,
}

#[derive(Debug, Serialize)]
struct ExecuteResponse {
    language: &'static str,
    version: String,
    run: Stage,
}

/// Piston's error answer: `{"message": ...}`.
fn message(status: StatusCode, m: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "message": m.into() }))).into_response()
}

fn bad(m: impl Into<String>) -> Response {
    message(StatusCode::BAD_REQUEST, m)
}

/// Whether a Piston version pattern (`*`, `3`, `3.11`, `3.11.x`, `3.11.7`) matches `have`.
fn version_matches(pattern: &str, have: &str) -> bool {
    let p = pattern.trim();
    if p.is_empty() || p == "*" || p == "x" || p == "latest" {
        return true;
    }
    let have: Vec<&str> = have.split('.').collect();
    p.split('.').enumerate().all(|(i, want)| {
        want == "*" || want == "x" || want == "X" || have.get(i).is_some_and(|h| *h == want)
    })
}

/// A limit of the request (`name`, in `unit`s of the ceiling's) within the ceiling: `None`
/// when not given (absent, 0 or below).
fn limit_of(
    v: Option<&serde_json::Value>,
    name: &str,
    ceiling: Option<u64>,
) -> Result<Option<u64>, Response> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(n) = v.as_f64() else {
        return Err(bad(format!("If specified, {name} must be a number")));
    };
    if n <= 0.0 || !n.is_finite() {
        return Ok(None);
    }
    let n = n.ceil() as u64;
    match ceiling {
        Some(max) if n > max => Err(bad(format!(
            "{name} cannot exceed the configured limit of {max}"
        ))),
        _ => Ok(Some(n)),
    }
}

/// The files as Piston places them (default names `file{i}.code`), and the program: the first
/// UTF-8 one.
/// Files to place (name, bytes), and the index of the program among them.
type Files = (Vec<(String, Vec<u8>)>, usize);

fn files_of(v: Option<&serde_json::Value>) -> Result<Files, Response> {
    let Some(list) = v.and_then(|v| v.as_array()) else {
        return Err(bad("files is required as an array"));
    };
    let mut out = Vec::with_capacity(list.len());
    let mut program = None;
    for (i, f) in list.iter().enumerate() {
        let f: FileIn =
            serde_json::from_value(f.clone()).map_err(|e| bad(format!("files[{i}]: {e}")))?;
        let Some(content) = f.content.as_ref().and_then(|c| c.as_str()) else {
            return Err(bad(format!("files[{i}].content is required as a string")));
        };
        let name = f
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("file{i}.code"));
        if let Err(e) = pysandbox_core::outcome::check_file_name(&name) {
            return Err(bad(format!("files[{i}].name: {e}")));
        }
        let bytes = match f.encoding.as_deref() {
            Some("base64") => base64_decode(content)
                .ok_or_else(|| bad(format!("files[{i}].content: not base64")))?,
            Some("hex") => {
                hex_decode(content).ok_or_else(|| bad(format!("files[{i}].content: not hex")))?
            }
            // Piston takes any other encoding as utf8.
            _ => {
                program.get_or_insert(i);
                content.as_bytes().to_vec()
            }
        };
        out.push((name, bytes));
    }
    let Some(program) = program else {
        return Err(bad("files must include at least one utf8 encoded file"));
    };
    Ok((out, program))
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let t = text.trim().as_bytes();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    t.chunks(2)
        .map(|c| {
            let s = std::str::from_utf8(c).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return None,
    })
}

/// The run stage of an outcome (not a sandbox error: those are HTTP errors).
fn stage(o: &Outcome) -> Stage {
    let (status, msg, signal): (Option<&'static str>, Option<String>, Option<&'static str>) =
        match (o.status, o.limit) {
            (RunStatus::Limit, Some(Limit::Wall)) => (
                Some("TO"),
                Some("Time limit exceeded (wall clock)".into()),
                Some("SIGKILL"),
            ),
            (RunStatus::Limit, Some(Limit::Cpu)) => (
                Some("TO"),
                Some("Time limit exceeded".into()),
                Some("SIGKILL"),
            ),
            (_, Some(Limit::Output)) => {
                let (st, m) = if o.stdout_truncated {
                    ("OL", "stdout length exceeded")
                } else {
                    ("EL", "stderr length exceeded")
                };
                (Some(st), Some(m.into()), o.signal.and_then(signal_name))
            }
            (RunStatus::Limit, Some(l)) => (
                Some(if o.signal.is_some() { "SG" } else { "RE" }),
                Some(format!("{} limit exceeded", l.name())),
                o.signal.and_then(signal_name),
            ),
            (RunStatus::Crashed, _) => (
                Some("SG"),
                o.signal.map(|s| format!("Caught fatal signal {s}")),
                o.signal.and_then(signal_name),
            ),
            (RunStatus::Error, _) => (
                Some("RE"),
                o.exit_code.map(|c| format!("Exited with error status {c}")),
                None,
            ),
            _ => (None, None, None),
        };
    let output = if o.stderr.is_empty() {
        o.stdout.clone()
    } else if o.stdout.is_empty() {
        o.stderr.clone()
    } else {
        format!("{}{}", o.stdout, o.stderr)
    };
    Stage {
        stdout: o.stdout.clone(),
        stderr: o.stderr.clone(),
        output,
        code: if status == Some("TO") {
            None
        } else {
            o.exit_code
        },
        signal,
        message: msg,
        status,
        cpu_time: millis(o.cpu_time),
        wall_time: millis(o.wall_time),
        memory: o.peak_memory,
    }
}

/// Seconds as milliseconds, to the microsecond.
fn millis(secs: f64) -> f64 {
    (secs * 1e6).round() / 1e3
}

/// A `/api/v2/execute` body, checked and narrowed from `ceiling` (the server runs Python
/// `python_version`): the policy and the request; a refusal is the response to send. Nothing
/// runs here; the fuzz target `http_piston` calls it too.
pub fn parse_execute(
    ceiling: &Policy,
    python_version: &str,
    body: &[u8],
) -> Result<(Policy, Request), Response> {
    let r: ExecuteRequest = crate::native::parse(body).map_err(|e| bad(e.message))?;
    let Some(language) = r.language.as_ref().and_then(|v| v.as_str()) else {
        return Err(bad("language is required as a string"));
    };
    let Some(version) = r.version.as_ref().and_then(|v| v.as_str()) else {
        return Err(bad("version is required as a string"));
    };
    let (files, program) = files_of(r.files.as_ref())?;
    if !(language == LANGUAGE || ALIASES.contains(&language))
        || !version_matches(version, python_version)
    {
        return Err(bad(format!("{language}-{version} runtime is unknown")));
    }
    let have = ceiling.effective_limits();
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let wall = limit_of(r.run_timeout.as_ref(), "run_timeout", Some(ms(have.wall)))?;
    let cpu = limit_of(r.run_cpu_time.as_ref(), "run_cpu_time", have.cpu.map(ms))?;
    let memory = limit_of(r.run_memory_limit.as_ref(), "run_memory_limit", have.memory)?;
    // CPU and memory below the ceiling's need a pool of their own (the native API's
    // narrowing); the wall clock is per request.
    let mut narrowed = serde_json::Map::new();
    if let Some(c) = cpu.filter(|c| have.cpu.map(ms) != Some(*c)) {
        narrowed.insert("cpu".into(), format!("{c}ms").into());
    }
    if let Some(m) = memory.filter(|m| have.memory != Some(*m)) {
        narrowed.insert("memory".into(), format_size(m).into());
    }
    let policy = if narrowed.is_empty() {
        ceiling.clone()
    } else {
        match crate::native::narrow(ceiling, Some(&narrowed), None) {
            Ok(n) => n.policy,
            Err(e) => return Err(bad(e.message)),
        }
    };
    // Piston adds a trailing newline to the input if it has none.
    let mut stdin = r.stdin.unwrap_or_default();
    if !stdin.ends_with('\n') {
        stdin.push('\n');
    }
    let (name, code) = match files.get(program) {
        Some((n, c)) => (n.clone(), String::from_utf8_lossy(c).into_owned()),
        None => return Err(bad("files must include at least one utf8 encoded file")),
    };
    let mut req = Request::new(Some(&name), &code, Some(&stdin));
    req.files = files;
    req.args = r.args.unwrap_or_default();
    req.wall = wall.map(Duration::from_millis);
    Ok((policy, req))
}

async fn execute(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let (policy, req) = match parse_execute(&app.ceiling, &app.python_version, &body) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let result = blocking(&app, move |app| {
        app.pools.get(&policy).and_then(|p| p.run_request(&req))
    })
    .await;
    let o = match result {
        Ok(o) => o.run,
        Err(e) => {
            let e = ApiError::from_warm(&e);
            return message(e.status, e.message);
        }
    };
    count_limit(&app, &o);
    if o.status == RunStatus::SandboxError {
        let m = o
            .error
            .as_ref()
            .map_or_else(|| "the sandbox failed".into(), |e| e.message.clone());
        return message(StatusCode::INTERNAL_SERVER_ERROR, m);
    }
    Json(ExecuteResponse {
        language: LANGUAGE,
        version: app.python_version.clone(),
        run: stage(&o),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_match_as_piston_patterns() {
        for p in ["*", "x", "3", "3.11", "3.11.x", "3.11.7", "3.x"] {
            assert!(version_matches(p, "3.11.7"), "{p}");
        }
        for p in ["2", "3.12", "3.11.8", "3.11.7.1"] {
            assert!(!version_matches(p, "3.11.7"), "{p}");
        }
    }

    #[test]
    fn limits_are_refused_above_the_ceiling_and_ignored_at_zero_or_below() {
        assert_eq!(limit_of(None, "run_timeout", Some(5000)).unwrap(), None);
        let v = serde_json::json!(-1);
        assert_eq!(
            limit_of(Some(&v), "run_memory_limit", Some(10)).unwrap(),
            None
        );
        let v = serde_json::json!(3000);
        assert_eq!(
            limit_of(Some(&v), "run_timeout", Some(5000)).unwrap(),
            Some(3000)
        );
        let v = serde_json::json!(6000);
        let r = limit_of(Some(&v), "run_timeout", Some(5000)).unwrap_err();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v = serde_json::json!("3s");
        assert!(limit_of(Some(&v), "run_timeout", None).is_err());
        let v = serde_json::json!(1u64 << 40);
        assert_eq!(
            limit_of(Some(&v), "run_memory_limit", None).unwrap(),
            Some(1 << 40)
        );
    }

    #[test]
    fn files_decode_and_the_first_utf8_one_is_the_program() {
        let v = serde_json::json!([
            {"name": "data.bin", "content": "aGk=", "encoding": "base64"},
            {"content": "print(1)"},
            {"name": "h.txt", "content": "6869", "encoding": "hex"},
        ]);
        let (files, program) = files_of(Some(&v)).unwrap();
        assert_eq!(program, 1);
        assert_eq!(files[0], ("data.bin".into(), b"hi".to_vec()));
        assert_eq!(files[1], ("file1.code".into(), b"print(1)".to_vec()));
        assert_eq!(files[2], ("h.txt".into(), b"hi".to_vec()));
        let only_binary = serde_json::json!([{"content": "aGk=", "encoding": "base64"}]);
        assert!(files_of(Some(&only_binary)).is_err());
        let escape = serde_json::json!([{"name": "../x.py", "content": "1"}]);
        assert!(files_of(Some(&escape)).is_err());
        assert!(files_of(None).is_err());
    }

    use crate::test_outcome as outcome;

    #[test]
    fn statuses_are_pistons() {
        let ok = stage(&outcome(RunStatus::Ok, None, Some(0), None));
        assert_eq!((ok.status, ok.code, ok.signal), (None, Some(0), None));
        let re = stage(&outcome(RunStatus::Error, None, Some(1), None));
        assert_eq!((re.status, re.code), (Some("RE"), Some(1)));
        let to = stage(&outcome(RunStatus::Limit, Some(Limit::Wall), None, Some(9)));
        assert_eq!(
            (to.status, to.code, to.signal),
            (Some("TO"), None, Some("SIGKILL"))
        );
        let sg = stage(&outcome(RunStatus::Crashed, None, None, Some(11)));
        assert_eq!((sg.status, sg.signal), (Some("SG"), Some("SIGSEGV")));
        let mut cut = outcome(RunStatus::Ok, Some(Limit::Output), Some(0), None);
        cut.stdout_truncated = true;
        assert_eq!(stage(&cut).status, Some("OL"));
        let mem = stage(&outcome(
            RunStatus::Limit,
            Some(Limit::Memory),
            Some(1),
            None,
        ));
        assert_eq!(mem.status, Some("RE"));
        assert!(mem.message.unwrap().contains("memory"));
    }
}
