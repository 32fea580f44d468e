//! The SandboxFusion-compatible routes: `POST /run_code`, `POST /run_jupyter`, `GET /v1/ping`,
//! with the field names of bytedance/SandboxFusion (`sandbox/server/sandbox_api.py`,
//! `sandbox/runners/types.py`) so that its PyPI client (`sandbox-fusion`) and veRL's
//! `call_sandbox_api` work unchanged. Python only.
//!
//! How our outcome maps onto theirs:
//! - a run that ended by itself (exit status, exception, a non-time limit, a signal):
//!   `run_result.status = "Finished"` with its `return_code` (a signal N is `-N`, as Python's
//!   `subprocess` reports it); `Success` for 0, else `Failed`;
//! - the wall-clock or CPU limit: `"TimeLimitExceeded"`, `return_code` null, `Failed`;
//! - a fault of the sandbox itself: `run_result.status = "Error"`, `SandboxError` (the client
//!   retries on it, so nothing the code or the request did is reported this way).
//!
//! Limits are clamped to the operator's ceiling, never refused: the client sends
//! `run_timeout = 10` by default and retries any non-200 answer, so a 403 would turn every
//! default request against a server with a lower ceiling into five failed attempts. The
//! `message` says when a limit was clamped. A request the server cannot read (bad base64, a
//! file name outside the working directory) is a 400 with a SandboxFusion-shaped body.

use crate::native::{exact_globs, fetch_request, narrow, place_request, run_in_session};
use crate::state::App;
use crate::{blocking, count_limit, ApiError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pysandbox_core::limits::{format_duration, format_size, Limit};
use pysandbox_core::outcome::{base64_decode, Outcome, RunStatus};
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::{Request, WarmError, WarmOutcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The routes of this module.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/run_code", post(run_code))
        .route("/run_jupyter", post(run_jupyter))
        .route("/v1/ping", get(ping))
}

/// SandboxFusion's default `run_timeout` (seconds).
const DEFAULT_RUN_TIMEOUT: f64 = 10.0;
/// SandboxFusion's default `total_timeout` of `/run_jupyter` (seconds).
const DEFAULT_TOTAL_TIMEOUT: f64 = 45.0;
/// A file SandboxFusion's `restore_files` skips (its datasets use the name as a placeholder).
const IGNORED_FILE_MARK: &str = "IGNORE_THIS_FILE";

/// `POST /run_code`. Every field may be null; unknown fields are ignored, as FastAPI does.
#[derive(Debug, Deserialize)]
pub struct RunCodeRequest {
    code: String,
    /// `python` when absent (veRL's tutorial leaves it out); `python3` is taken too.
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    stdin: Option<String>,
    /// Seconds of wall clock (float).
    #[serde(default)]
    run_timeout: Option<f64>,
    /// Megabytes of address space; -1 (or absent): the server's limit.
    #[serde(default, rename = "memory_limit_MB")]
    memory_limit_mb: Option<i64>,
    /// Path → base64 (null values are skipped, as SandboxFusion does).
    #[serde(default)]
    files: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    fetch_files: Option<Vec<String>>,
}

/// SandboxFusion's `CommandRunResult`.
#[derive(Debug, Serialize)]
struct CommandRunResult {
    /// `Finished`, `Error` or `TimeLimitExceeded`.
    status: &'static str,
    execution_time: Option<f64>,
    /// In the client's model (`sandbox_fusion.models.CommandRunResult`), not sent by the
    /// reference server.
    cpu_time: Option<f64>,
    return_code: Option<i32>,
    stdout: Option<String>,
    stderr: Option<String>,
}

/// SandboxFusion's `RunCodeResponse`.
#[derive(Debug, Serialize)]
struct RunCodeResponse {
    /// `Success`, `Failed` or `SandboxError`.
    status: &'static str,
    message: String,
    compile_result: Option<CommandRunResult>,
    run_result: Option<CommandRunResult>,
    executor_pod_name: Option<String>,
    files: BTreeMap<String, String>,
}

impl RunCodeResponse {
    fn sandbox_error(message: String) -> RunCodeResponse {
        RunCodeResponse {
            status: "SandboxError",
            message,
            compile_result: None,
            run_result: None,
            executor_pod_name: None,
            files: BTreeMap::new(),
        }
    }
}

/// A request the server cannot carry out as sent (400), or a fault (the error table's status),
/// in SandboxFusion's shape.
fn error_response(e: ApiError) -> Response {
    (e.status, Json(RunCodeResponse::sandbox_error(e.message))).into_response()
}

/// `run_result` and the overall status of a finished run.
fn run_result(o: &Outcome) -> (CommandRunResult, &'static str) {
    let time_limit = matches!(o.limit, Some(Limit::Wall | Limit::Cpu));
    let (status, code, overall) = match o.status {
        RunStatus::SandboxError => ("Error", None, "SandboxError"),
        RunStatus::Limit if time_limit => ("TimeLimitExceeded", None, "Failed"),
        _ => {
            let code = return_code(o);
            (
                "Finished",
                Some(code),
                if code == 0 { "Success" } else { "Failed" },
            )
        }
    };
    let stderr = match (&o.error, o.status) {
        // The sandbox's own failure: what failed, where the code's stderr would be.
        (Some(e), RunStatus::SandboxError) => e.message.clone(),
        _ => o.stderr.clone(),
    };
    (
        CommandRunResult {
            status,
            execution_time: Some(o.wall_time),
            cpu_time: Some(o.cpu_time),
            return_code: code,
            stdout: Some(o.stdout.clone()),
            stderr: Some(stderr),
        },
        overall,
    )
}

/// The return code of a run that ended by itself: its exit status, `-N` for signal N (as
/// `subprocess` reports it). A run a limit stopped is never 0.
fn return_code(o: &Outcome) -> i32 {
    let code = match (o.exit_code, o.signal) {
        (Some(c), _) => c,
        (None, Some(s)) => -s,
        // Stopped without an exit status or a signal of its own: a kill.
        (None, None) => -9,
    };
    if code == 0 && !matches!(o.status, RunStatus::Ok) {
        1
    } else {
        code
    }
}

/// The language a request names, when it is one this server runs.
fn check_language(language: Option<&str>) -> Result<(), String> {
    match language {
        None | Some("python" | "python3") => Ok(()),
        Some(other) => Err(format!(
            "language '{other}' is not supported by this server (pysandbox runs Python only: \
             use \"python\")"
        )),
    }
}

/// The ceiling narrowed by a request's `memory_limit_MB` and `run_timeout` (clamped to the
/// ceiling), and a note for `message` when one was clamped.
pub struct Limits {
    pub policy: Policy,
    pub wall: Duration,
    pub notes: Vec<String>,
}

fn limits(
    ceiling: &Policy,
    timeout_field: &str,
    timeout: f64,
    memory_mb: Option<i64>,
) -> Result<Limits, ApiError> {
    if !timeout.is_finite() || timeout < 0.0 {
        return Err(ApiError::bad_request(format!(
            "{timeout_field}: a number of seconds, 0 or more (got {timeout})"
        )));
    }
    let have = ceiling.effective_limits();
    let mut notes = Vec::new();
    let asked = Duration::from_secs_f64(timeout.min(1e9));
    let wall = if timeout == 0.0 && timeout_field == "cell_timeout" {
        // `cell_timeout = 0`: no limit of its own, the ceiling's.
        have.wall
    } else if asked > have.wall {
        notes.push(format!(
            "{timeout_field} {timeout}s clamped to the server's limit of {}",
            format_duration(have.wall)
        ));
        have.wall
    } else {
        // A zero limit would leave nothing to start the interpreter: SandboxFusion's
        // `wait_for(timeout=0)` times out at once, and so does a millisecond here.
        asked.max(Duration::from_millis(1))
    };
    let mut policy = ceiling.clone();
    if let Some(mb) = memory_mb.filter(|mb| *mb > 0) {
        let bytes = u64::try_from(mb)
            .unwrap_or(u64::MAX)
            .saturating_mul(1 << 20);
        match have.memory {
            Some(max) if bytes >= max => {
                if bytes > max {
                    notes.push(format!(
                        "memory_limit_MB {mb} clamped to the server's limit of {}",
                        format_size(max)
                    ));
                }
            }
            _ => {
                let mut m = serde_json::Map::new();
                m.insert("memory".into(), format_size(bytes).into());
                policy = narrow(ceiling, Some(&m), None)?.policy;
            }
        }
    }
    Ok(Limits {
        policy,
        wall,
        notes,
    })
}

/// Decode `files` (null values and SandboxFusion's placeholder names skipped).
fn decode_files(
    files: Option<BTreeMap<String, Option<String>>>,
) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let mut out = Vec::new();
    for (name, data) in files.unwrap_or_default() {
        let Some(data) = data else { continue };
        if name.contains(IGNORED_FILE_MARK) {
            continue;
        }
        let bytes = base64_decode(&data)
            .ok_or_else(|| ApiError::bad_request(format!("files.{name}: not base64")))?;
        out.push((relative(&name).to_string(), bytes));
    }
    Ok(out)
}

/// A path as the working directory sees it: `./a/b` is `a/b`.
fn relative(path: &str) -> &str {
    let mut p = path;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p
}

/// What `fetch_files` asks for: each path as a name in the working directory → the name the
/// caller gave. A path outside the working directory (absolute, or through `..`) cannot exist in
/// the sandbox: like a missing file, it is left out of `files`.
fn fetch_plan(fetch: &[String]) -> Vec<(String, String)> {
    fetch
        .iter()
        .map(|f| (relative(f), f))
        .filter(|(rel, _)| pysandbox_core::outcome::check_file_name(rel).is_ok())
        .map(|(rel, f)| (rel.to_string(), f.clone()))
        .collect()
}

/// The collected files, under the names the caller gave.
fn fetched(o: &Outcome, names: &[(String, String)]) -> BTreeMap<String, String> {
    names
        .iter()
        .filter_map(|(rel, given)| Some((given.clone(), o.files.get(rel)?.clone())))
        .collect()
}

/// A fault of the warm pool or session: SandboxError (with 200 when the client should retry,
/// the error table's status for what it should not: a request refused as invalid).
fn warm_error(e: &WarmError) -> Response {
    let api = ApiError::from_warm(e);
    if api.status == StatusCode::BAD_REQUEST {
        return error_response(api);
    }
    Json(RunCodeResponse::sandbox_error(e.to_string())).into_response()
}

/// What a `/run_code` body asks for: the limits (the policy among them), the request, and the
/// files to fetch (name in the working directory, name the caller gave).
pub type RunCode = (Limits, Request, Vec<(String, String)>);

/// A `/run_code` body, checked and narrowed from `ceiling`; a refusal is the response to send.
/// Nothing runs here; the fuzz target `http_fusion` calls it too.
pub fn parse_run_code(ceiling: &Policy, body: &[u8]) -> Result<RunCode, Response> {
    let r: RunCodeRequest = crate::native::parse(body).map_err(error_response)?;
    if let Err(m) = check_language(r.language.as_deref()) {
        return Err(Json(RunCodeResponse::sandbox_error(m)).into_response());
    }
    let l = limits(
        ceiling,
        "run_timeout",
        r.run_timeout.unwrap_or(DEFAULT_RUN_TIMEOUT),
        r.memory_limit_mb,
    )
    .map_err(error_response)?;
    let mut req = Request::new(None, &r.code, r.stdin.as_deref());
    req.files = decode_files(r.files).map_err(error_response)?;
    let names = fetch_plan(&r.fetch_files.unwrap_or_default());
    req.collect = exact_globs(names.iter().map(|(rel, _)| rel.as_str()));
    req.wall = Some(l.wall);
    Ok((l, req, names))
}

async fn run_code(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let (l, req, names) = match parse_run_code(&app.ceiling, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let policy = l.policy;
    let result = blocking(&app, move |app| {
        app.pools.get(&policy).and_then(|p| p.run_request(&req))
    })
    .await;
    let o = match result {
        Ok(WarmOutcome { run, .. }) => run,
        Err(e) => return warm_error(&e),
    };
    count_limit(&app, &o);
    let (rr, status) = run_result(&o);
    let message = if status == "SandboxError" {
        rr.stderr.clone().unwrap_or_default()
    } else {
        l.notes.join("; ")
    };
    let files = fetched(&o, &names);
    Json(RunCodeResponse {
        status,
        message,
        compile_result: None,
        run_result: Some(rr),
        executor_pod_name: None,
        files,
    })
    .into_response()
}

/// `GET /v1/ping`: what SandboxFusion answers (the JSON string `"pong"`).
async fn ping() -> Json<&'static str> {
    Json("pong")
}

/// `POST /run_jupyter`.
#[derive(Debug, Deserialize)]
pub struct RunJupyterRequest {
    cells: Vec<String>,
    /// Seconds a cell may run; 0 (the default): bounded by `total_timeout` only.
    #[serde(default)]
    cell_timeout: Option<f64>,
    /// Seconds all the cells may run together (default 45).
    #[serde(default)]
    total_timeout: Option<f64>,
    #[serde(default, rename = "memory_limit_MB")]
    memory_limit_mb: Option<i64>,
    /// Only `python3` exists.
    #[serde(default)]
    kernel: Option<String>,
    #[serde(default)]
    files: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    fetch_files: Option<Vec<String>>,
}

/// SandboxFusion's `CellRunResult` (`display`: MIME bundles; `error`: Jupyter's error
/// content, `{ename, evalue, traceback: [lines]}`).
#[derive(Debug, Serialize)]
struct CellRunResult {
    stdout: String,
    stderr: String,
    display: Vec<BTreeMap<String, String>>,
    error: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct RunJupyterResponse {
    status: &'static str,
    message: String,
    driver: Option<CommandRunResult>,
    cells: Vec<CellRunResult>,
    executor_pod_name: Option<String>,
    files: BTreeMap<String, String>,
}

fn cell_result(o: &Outcome) -> CellRunResult {
    let mut error = Vec::new();
    if let Some(e) = &o.error {
        error.push(serde_json::json!({
            "ename": e.kind,
            "evalue": e.message,
            "traceback": e.traceback.lines().collect::<Vec<_>>(),
        }));
    }
    // Jupyter reports an exception as an error message, not on stderr: the traceback the
    // sandbox also printed there is taken out.
    let stderr = o
        .error
        .as_ref()
        .and_then(|e| o.stderr.strip_suffix(e.traceback.as_str()))
        .unwrap_or(&o.stderr);
    CellRunResult {
        stdout: o.stdout.clone(),
        stderr: stderr.to_string(),
        display: o.results.iter().map(|r| r.data.clone()).collect(),
        error,
    }
}

/// How the cells went, before it becomes a response.
struct Notebook {
    cells: Vec<CellRunResult>,
    files: BTreeMap<String, String>,
    /// `None`: every cell ran. Else why it stopped, and whether that was a time limit.
    stopped: Option<(String, bool)>,
    /// A fault of the sandbox: SandboxError.
    fault: Option<String>,
}

/// Run the cells in one session (blocking): state is kept from cell to cell; an exception
/// ends its cell only; a limit or a crash ends the session, and so the notebook.
fn run_cells(
    app: &App,
    r: &RunJupyterRequest,
    policy: &Policy,
    files: Vec<(String, Vec<u8>)>,
    cell_wall: Duration,
) -> Notebook {
    let mut nb = Notebook {
        cells: Vec::new(),
        files: BTreeMap::new(),
        stopped: None,
        fault: None,
    };
    let start = Instant::now();
    let total = Duration::from_secs_f64(
        r.total_timeout
            .unwrap_or(DEFAULT_TOTAL_TIMEOUT)
            .clamp(0.0, 1e9),
    );
    let id = match app
        .sessions
        .open(&app.opts.binary, policy, app.sessions.idle)
    {
        Ok(Some((id, _))) => id,
        Ok(None) => {
            nb.fault = Some(format!(
                "the server has {} live sessions, as many as it allows: try again later",
                app.sessions.max
            ));
            return nb;
        }
        Err(e) => {
            nb.fault = Some(e.to_string());
            return nb;
        }
    };
    let run = |req: &Request| run_in_session(app, &id, req);
    if !files.is_empty() {
        match run(&place_request(files)) {
            Ok(o) if o.run.status == RunStatus::Ok => {}
            Ok(o) => nb.fault = Some(format!("placing the files failed: {}", o.run.stderr)),
            Err(e) => nb.fault = Some(e.to_string()),
        }
    }
    for (i, code) in r.cells.iter().enumerate() {
        if nb.fault.is_some() || nb.stopped.is_some() {
            break;
        }
        let left = total.saturating_sub(start.elapsed());
        if left.is_zero() {
            nb.stopped = Some((format!("total_timeout reached before cell {i}"), true));
            break;
        }
        // Whole milliseconds, for readable messages.
        let wall = Duration::from_millis(left.min(cell_wall).as_millis() as u64);
        let mut req = Request::code(code);
        req.cell = true;
        req.wall = Some(wall.max(Duration::from_millis(1)));
        let o = match run(&req) {
            Ok(o) => o.run,
            Err(e) => {
                nb.fault = Some(e.to_string());
                break;
            }
        };
        count_limit(app, &o);
        let mut cell = cell_result(&o);
        match o.status {
            RunStatus::Ok | RunStatus::Error => {}
            RunStatus::Limit if matches!(o.limit, Some(Limit::Wall | Limit::Cpu)) => {
                let why = format!(
                    "cell {i} exceeded its time limit of {}",
                    format_duration(wall)
                );
                cell.error.push(serde_json::json!({
                    "ename": "TimeoutError",
                    "evalue": why,
                    "traceback": [],
                }));
                nb.stopped = Some((why, true));
            }
            RunStatus::Limit => {
                let name = o.limit.map_or("a", Limit::name);
                nb.stopped = Some((
                    format!("cell {i} exceeded the {name} limit, which ends the kernel"),
                    false,
                ));
            }
            RunStatus::Crashed => {
                nb.stopped = Some((
                    format!(
                        "the kernel died in cell {i} (signal {})",
                        o.signal.unwrap_or_default()
                    ),
                    false,
                ));
            }
            RunStatus::SandboxError => {
                nb.fault = Some(
                    o.error
                        .as_ref()
                        .map_or_else(|| "the sandbox failed".into(), |e| e.message.clone()),
                );
            }
        }
        nb.cells.push(cell);
    }
    let fetch = r.fetch_files.clone().unwrap_or_default();
    if nb.fault.is_none() && nb.stopped.is_none() && !fetch.is_empty() {
        let names = fetch_plan(&fetch);
        match run(&fetch_request(names.iter().map(|(rel, _)| rel.as_str()))) {
            Ok(o) => nb.files = fetched(&o.run, &names),
            Err(e) => nb.fault = Some(e.to_string()),
        }
    }
    app.sessions.close(&id);
    nb
}

/// What a `/run_jupyter` body asks for: the body, the limits (the policy among them), the
/// files to place.
pub type RunJupyter = (RunJupyterRequest, Limits, Vec<(String, Vec<u8>)>);

/// A `/run_jupyter` body, checked and narrowed from `ceiling`; a refusal is the response to
/// send. Nothing runs here; the fuzz target `http_fusion` calls it too.
pub fn parse_run_jupyter(ceiling: &Policy, body: &[u8]) -> Result<RunJupyter, Response> {
    let r: RunJupyterRequest = crate::native::parse(body).map_err(error_response)?;
    if let Some(k) = r.kernel.as_deref().filter(|k| *k != "python3") {
        return Err(error_response(ApiError::bad_request(format!(
            "kernel: '{k}' is not a kernel of this server: only \"python3\""
        ))));
    }
    if let Some(t) = r.total_timeout.filter(|t| !t.is_finite() || *t < 0.0) {
        return Err(error_response(ApiError::bad_request(format!(
            "total_timeout: a number of seconds, 0 or more (got {t})"
        ))));
    }
    // The session's wall limit is the ceiling's, per cell: each cell narrows it by its
    // `cell_timeout` (clamped to the ceiling) and by what is left of `total_timeout`.
    let l = limits(
        ceiling,
        "cell_timeout",
        r.cell_timeout.unwrap_or(0.0),
        r.memory_limit_mb,
    )
    .map_err(error_response)?;
    let files = decode_files(r.files.clone()).map_err(error_response)?;
    Ok((r, l, files))
}

async fn run_jupyter(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let (r, l, files) = match parse_run_jupyter(&app.ceiling, &body) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let cell_wall = l.wall;
    let policy = l.policy;
    let started = Instant::now();
    let nb = blocking(&app, move |app| {
        run_cells(app, &r, &policy, files, cell_wall)
    })
    .await;
    let took = started.elapsed().as_secs_f64();
    if let Some(fault) = nb.fault {
        return Json(RunJupyterResponse {
            status: "SandboxError",
            message: fault.clone(),
            driver: Some(CommandRunResult {
                status: "Error",
                execution_time: Some(took),
                cpu_time: None,
                return_code: None,
                stdout: Some(String::new()),
                stderr: Some(fault),
            }),
            cells: nb.cells,
            executor_pod_name: None,
            files: BTreeMap::new(),
        })
        .into_response();
    }
    let (status, driver_status, mut message) = match nb.stopped {
        None => ("Success", "Finished", String::new()),
        Some((why, true)) => ("Failed", "TimeLimitExceeded", why),
        Some((why, false)) => ("Failed", "Finished", why),
    };
    if !l.notes.is_empty() {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&l.notes.join("; "));
    }
    Json(RunJupyterResponse {
        status,
        message,
        driver: Some(CommandRunResult {
            status: driver_status,
            execution_time: Some(took),
            cpu_time: None,
            return_code: (driver_status == "Finished").then_some(0),
            stdout: Some(String::new()),
            stderr: Some(String::new()),
        }),
        cells: nb.cells,
        executor_pod_name: None,
        files: nb.files,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pysandbox_core::outcome::ErrorKind;

    use crate::test_outcome as outcome;

    #[test]
    fn statuses_follow_sandbox_fusion_parse_run_status() {
        let ok = run_result(&outcome(RunStatus::Ok, None, Some(0), None));
        assert_eq!(
            (ok.0.status, ok.0.return_code, ok.1),
            ("Finished", Some(0), "Success")
        );
        let err = run_result(&outcome(RunStatus::Error, None, Some(1), None));
        assert_eq!(
            (err.0.status, err.0.return_code, err.1),
            ("Finished", Some(1), "Failed")
        );
        let tle = run_result(&outcome(RunStatus::Limit, Some(Limit::Wall), None, Some(9)));
        assert_eq!(
            (tle.0.status, tle.0.return_code, tle.1),
            ("TimeLimitExceeded", None, "Failed")
        );
        let cpu = run_result(&outcome(RunStatus::Limit, Some(Limit::Cpu), None, Some(9)));
        assert_eq!(cpu.0.status, "TimeLimitExceeded");
        let mem = run_result(&outcome(
            RunStatus::Limit,
            Some(Limit::Memory),
            Some(0),
            None,
        ));
        assert_eq!(
            (mem.0.status, mem.0.return_code, mem.1),
            ("Finished", Some(1), "Failed")
        );
        let seg = run_result(&outcome(RunStatus::Crashed, None, None, Some(11)));
        assert_eq!((seg.0.return_code, seg.1), (Some(-11), "Failed"));
        let cut = run_result(&outcome(RunStatus::Ok, Some(Limit::Output), Some(0), None));
        assert_eq!(cut.1, "Success");
        let mut fault = Outcome::sandbox_error(ErrorKind::Worker, "worker died".into());
        fault.stderr = String::new();
        let f = run_result(&fault);
        assert_eq!((f.0.status, f.1), ("Error", "SandboxError"));
        assert_eq!(f.0.stderr.as_deref(), Some("worker died"));
    }

    #[test]
    fn only_python_is_a_language() {
        assert!(check_language(None).is_ok());
        assert!(check_language(Some("python")).is_ok());
        assert!(check_language(Some("python3")).is_ok());
        let e = check_language(Some("cpp")).unwrap_err();
        assert!(e.contains("'cpp'") && e.contains("Python only"), "{e}");
    }

    #[test]
    fn fetch_plan_keeps_the_callers_names_and_skips_what_cannot_exist() {
        let names = fetch_plan(&[
            "./out.txt".into(),
            "d/x[1].csv".into(),
            "/etc/passwd".into(),
            "../up".into(),
        ]);
        assert_eq!(
            exact_globs(names.iter().map(|(rel, _)| rel.as_str())),
            vec!["out.txt".to_string(), "d/x[[]1].csv".to_string()]
        );
        assert_eq!(names[0], ("out.txt".to_string(), "./out.txt".to_string()));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn files_skip_nulls_and_placeholders_and_refuse_bad_base64() {
        let mut f = BTreeMap::new();
        f.insert("a.txt".to_string(), Some("aGk=".to_string()));
        f.insert("b.txt".to_string(), None);
        f.insert("IGNORE_THIS_FILE_x".to_string(), Some("aGk=".to_string()));
        let got = decode_files(Some(f)).unwrap();
        assert_eq!(got, vec![("a.txt".to_string(), b"hi".to_vec())]);
        let mut bad = BTreeMap::new();
        bad.insert("c".to_string(), Some("***".to_string()));
        let e = decode_files(Some(bad)).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("files.c"), "{}", e.message);
    }
}
