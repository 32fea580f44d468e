//! The native API (`/v1`): execute (JSON, or a stream of JSON lines), batch, judge, sessions and
//! their files, info. Bodies are checked strictly (unknown fields, wrong types: 400 naming the
//! field); a request narrows the operator's policy and never widens it (403 naming the field).

use crate::state::{lock, App};
use crate::{blocking, outcome_response, ApiError};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pysandbox_core::judge::{self, Case, Compare};
use pysandbox_core::limits::Limits;
use pysandbox_core::outcome::{base64_decode, ErrorKind, Outcome};
use pysandbox_core::policy::{Feature, Policy, Preset};
use pysandbox_core::warm::{OutputStream, Request, Tap, WarmError, WarmOutcome};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `POST /v1/execute`: code to run in a fresh sandbox (or a session's, under
/// `/v1/sessions/{id}/execute`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    pub code: String,
    /// What the code reads on its standard input.
    #[serde(default)]
    pub stdin: Option<String>,
    /// `sys.argv[1:]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Files placed in the working directory before the code runs: name → base64.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Globs of files to send back (the outcome's `files`).
    #[serde(default)]
    pub collect: Vec<String>,
    /// `"script"` (the default) or `"cell"` (notebook semantics: rich `results`).
    #[serde(default)]
    pub mode: Option<String>,
    /// Limits below the server's, in the policy's names and units (`{"wall": "2s", "memory":
    /// "256M"}`); one above the server's is refused (403).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub limits: Option<serde_json::Map<String, serde_json::Value>>,
    /// Features (the policy's names): only those the server's policy grants; the code gets
    /// these and no others.
    #[serde(default)]
    pub features: Option<Vec<String>>,
}

/// A policy and a wall limit for one request: the ceiling narrowed by its `limits` and
/// `features`. The wall limit alone does not need a pool of its own.
pub(crate) struct Narrowed {
    pub policy: Policy,
    pub wall: Option<Duration>,
}

/// Features that give more than modules to import: granted only by the operator.
const CAPABILITIES: &[Feature] = &[Feature::Network, Feature::Subprocess, Feature::Threads];

/// Narrow `ceiling` by a request's `limits` and `features` (never widen: 403 naming the field).
pub(crate) fn narrow(
    ceiling: &Policy,
    limits: Option<&serde_json::Map<String, serde_json::Value>>,
    features: Option<&[String]>,
) -> Result<Narrowed, ApiError> {
    let mut policy = ceiling.clone();
    let mut wall = None;
    if let Some(asked) = limits {
        let have = ceiling.effective_limits();
        let mut merged =
            serde_json::to_value(&have).map_err(|e| ApiError::internal(e.to_string()))?;
        for (k, v) in asked {
            merged[k] = v.clone();
        }
        let want: Limits = serde_path_to_error::deserialize(merged)
            .map_err(|e| ApiError::bad_request(format!("limits.{}: {}", e.path(), e.inner())))?;
        let above = |name: &str| {
            ApiError::forbidden(format!(
                "limits.{name}: above the server's limit ({}); a request may only lower it",
                serde_json::to_value(&have)
                    .ok()
                    .and_then(|v| v.get(name).cloned())
                    .unwrap_or_default()
            ))
        };
        let opt_above = |w: Option<u64>, h: Option<u64>| match (w, h) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(w), Some(h)) => w > h,
        };
        if want.wall > have.wall {
            return Err(above("wall"));
        }
        if opt_above(
            want.cpu.map(|d| d.as_millis() as u64),
            have.cpu.map(|d| d.as_millis() as u64),
        ) {
            return Err(above("cpu"));
        }
        if opt_above(want.memory, have.memory) {
            return Err(above("memory"));
        }
        for (name, w, h) in [
            (
                "processes",
                u64::from(want.processes),
                u64::from(have.processes),
            ),
            (
                "open_files",
                u64::from(want.open_files),
                u64::from(have.open_files),
            ),
            ("file_size", want.file_size, have.file_size),
            ("tmp_size", want.tmp_size, have.tmp_size),
            ("output", want.output, have.output),
        ] {
            if w > h {
                return Err(above(name));
            }
        }
        // The wall clock is the host's, per request; any other limit is the pool's.
        if want.wall < have.wall {
            wall = Some(want.wall);
        }
        let others = Limits {
            wall: have.wall,
            ..want.clone()
        };
        if others != have {
            policy.limits = others;
            policy.processes_pinned = true;
            policy.memory_pinned = true;
        }
    }
    if let Some(asked) = features {
        let granted = ceiling.effective_features();
        let mut features = std::collections::BTreeSet::new();
        for (i, name) in asked.iter().enumerate() {
            let f: Feature = name
                .parse()
                .map_err(|e| ApiError::bad_request(format!("features[{i}]: {e}")))?;
            let ok = granted.contains(&f)
                || (ceiling.preset != Preset::Default && !CAPABILITIES.contains(&f));
            if !ok {
                return Err(ApiError::forbidden(format!(
                    "features[{i}]: '{name}' is not granted by the server's policy"
                )));
            }
            features.insert(f);
        }
        // A request's input is the caller's data: the code may always read it.
        features.insert(Feature::Stdin);
        policy.preset = Preset::Default;
        policy.features = features;
        policy
            .preload
            .retain(|m| ceiling.preset == Preset::Default && policy.modules.contains_key(m));
    }
    // Validated with the request's own wall clock in place: it is kept out of the policy (the
    // pool's), but a session's policy takes it, and `"wall": "0s"` is as wrong for a request as
    // for a policy (found fuzzing `http_native`, docs/fuzzing.md).
    let pool_wall = policy.limits.wall;
    if let Some(w) = wall {
        policy.limits.wall = w;
    }
    let valid = policy.validate();
    policy.limits.wall = pool_wall;
    valid.map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Narrowed { policy, wall })
}

/// A request of the core's from an execute body (files decoded, mode checked).
pub(crate) fn to_request(r: &ExecuteRequest, wall: Option<Duration>) -> Result<Request, ApiError> {
    let mut req = Request::new(None, &r.code, r.stdin.as_deref());
    req.args = r.args.clone();
    for (name, data) in &r.files {
        let bytes = base64_decode(data)
            .ok_or_else(|| ApiError::bad_request(format!("files.{name}: not base64")))?;
        req.files.push((name.clone(), bytes));
    }
    req.collect = r.collect.clone();
    req.cell = match r.mode.as_deref() {
        None => false,
        Some(m) => pysandbox_core::warm::cell_mode(m)
            .map_err(|e| ApiError::bad_request(format!("mode: {e}")))?,
    };
    req.wall = wall;
    Ok(req)
}

/// Parse a JSON body strictly: an error names the field.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::bad_request(format!("body: {}", e.inner()))
        } else {
            ApiError::bad_request(format!("{path}: {}", e.inner()))
        }
    })
}

fn wants_lines(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"))
}

/// Run `req` on the pool for `policy` (blocking).
fn run_fresh(app: &App, policy: &Policy, req: &Request) -> Result<WarmOutcome, WarmError> {
    let pool = app.pools.get(policy)?;
    pool.run_request(req)
}

/// An execute body, checked and narrowed from `ceiling`: the policy and the request it runs
/// (nothing runs here; the fuzz target `http_native` calls it too).
pub fn parse_execute(ceiling: &Policy, body: &[u8]) -> Result<(Policy, Request), ApiError> {
    let r: ExecuteRequest = parse(body)?;
    let n = narrow(ceiling, r.limits.as_ref(), r.features.as_deref())?;
    let req = to_request(&r, n.wall)?;
    Ok((n.policy, req))
}

pub async fn execute(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let (policy, req) = match parse_execute(&app.ceiling, &body) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    if wants_lines(&headers) {
        return stream(app, req, move |app, req| run_fresh(app, &policy, req));
    }
    let result = blocking(&app, move |app| run_fresh(app, &policy, &req)).await;
    outcome_response(&app, result)
}

/// One line of a streamed execute (`Accept: application/x-ndjson`), told by its `type`.
#[derive(Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent<'a> {
    /// Output as it arrives (UTF-8; a character split between chunks waits for its end).
    Stdout {
        text: &'a str,
    },
    Stderr {
        text: &'a str,
    },
    /// A rich output (cell mode), as the outcome's `results` holds it.
    Result(&'a pysandbox_core::outcome::RichResult),
    /// The exception the code raised.
    Error {
        error: &'a pysandbox_core::outcome::ErrorInfo,
    },
    /// Last: the whole outcome.
    End {
        outcome: &'a Outcome,
    },
}

fn line(e: &StreamEvent<'_>) -> Bytes {
    let mut v = serde_json::to_vec(e).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// UTF-8 text from chunks that may split a character: what decodes now, the rest kept.
#[derive(Default)]
struct Utf8Carry(Vec<u8>);

impl Utf8Carry {
    fn push(&mut self, chunk: &[u8]) -> String {
        self.0.extend_from_slice(chunk);
        let upto = match std::str::from_utf8(&self.0) {
            Ok(_) => self.0.len(),
            // An incomplete character at the end waits for the next chunk.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.0.len(),
        };
        let text = String::from_utf8_lossy(&self.0[..upto]).into_owned();
        self.0.drain(..upto);
        text
    }
}

/// Answer with JSON lines as the run goes: output chunks, then results, the error and the end.
pub(crate) fn stream(
    app: Arc<App>,
    mut req: Request,
    run: impl FnOnce(&App, &Request) -> Result<WarmOutcome, WarmError> + Send + 'static,
) -> Response {
    let (tx, response) = ndjson();
    let tap_tx = tx.clone();
    req.tap = Some(text_tap(move |which, text| {
        let e = match which {
            OutputStream::Stdout => StreamEvent::Stdout { text },
            OutputStream::Stderr => StreamEvent::Stderr { text },
        };
        let _ = tap_tx.send(Ok(line(&e)));
    }));
    let app2 = Arc::clone(&app);
    tokio::spawn(async move {
        let result = blocking(&app2, move |app| run(app, &req)).await;
        let outcome = match result {
            Ok(o) => {
                crate::count_limit(&app2, &o.run);
                o.run
            }
            Err(e) => Outcome::sandbox_error(e.kind(), e.to_string()),
        };
        for r in &outcome.results {
            let _ = tx.send(Ok(line(&StreamEvent::Result(r))));
        }
        if let Some(err) = &outcome.error {
            let _ = tx.send(Ok(line(&StreamEvent::Error { error: err })));
        }
        let _ = tx.send(Ok(line(&StreamEvent::End { outcome: &outcome })));
    });
    response
}

/// Where a streamed answer's lines go.
pub(crate) type Lines = tokio::sync::mpsc::UnboundedSender<Result<Bytes, std::convert::Infallible>>;

/// An `application/x-ndjson` response whose body is what is sent on the sender, as it comes.
pub(crate) fn ndjson() -> (Lines, Response) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let body = Body::from_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
    let response = ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
    (tx, response)
}

/// A tap that hands `emit` a run's output as text, each stream's own: a character split between
/// chunks waits for its end; nothing is emitted for a chunk that completes no character.
pub(crate) fn text_tap(emit: impl Fn(OutputStream, &str) + Send + Sync + 'static) -> Tap {
    let carry = std::sync::Mutex::new((Utf8Carry::default(), Utf8Carry::default()));
    Tap(Arc::new(move |which, chunk| {
        let text = {
            let mut c = lock(&carry);
            match which {
                OutputStream::Stdout => c.0.push(chunk),
                OutputStream::Stderr => c.1.push(chunk),
            }
        };
        if !text.is_empty() {
            emit(which, &text);
        }
    }))
}

/// `POST /v1/batch`: a JSON array (or JSON lines) of execute requests; the outcomes in order.
/// A batch body (a JSON array or JSON lines of execute requests), each checked and narrowed
/// from `ceiling` (nothing runs here; the fuzz target `http_native` calls it too).
pub fn parse_batch(ceiling: &Policy, body: &[u8]) -> Result<Vec<(Policy, Request)>, ApiError> {
    let items: Vec<ExecuteRequest> =
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            parse(body)?
        } else {
            let mut v = Vec::new();
            for (i, l) in body.split(|b| *b == b'\n').enumerate() {
                if l.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match parse(l) {
                    Ok(r) => v.push(r),
                    Err(e) => {
                        return Err(ApiError::bad_request(format!(
                            "line {}: {}",
                            i + 1,
                            e.message
                        )))
                    }
                }
            }
            v
        };
    let mut prepared = Vec::with_capacity(items.len());
    for (i, r) in items.iter().enumerate() {
        let n = narrow(ceiling, r.limits.as_ref(), r.features.as_deref())
            .map_err(|e| e.at(&format!("[{i}]")))?;
        let req = to_request(r, n.wall).map_err(|e| e.at(&format!("[{i}]")))?;
        prepared.push((n.policy, req));
    }
    Ok(prepared)
}

pub async fn batch(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let prepared = match parse_batch(&app.ceiling, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // As many at once as the ceiling's pool has workers: the rest wait here, not in its queue.
    let limit = Arc::new(tokio::sync::Semaphore::new(app.opts.workers.max(1)));
    let mut tasks = Vec::with_capacity(prepared.len());
    for (policy, req) in prepared {
        let app = Arc::clone(&app);
        let limit = Arc::clone(&limit);
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            let result = blocking(&app, move |app| run_fresh(app, &policy, &req)).await;
            match result {
                Ok(o) => {
                    crate::count_limit(&app, &o.run);
                    o.run
                }
                Err(e) => Outcome::sandbox_error(e.kind(), e.to_string()),
            }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| {
            Outcome::sandbox_error(ErrorKind::Worker, format!("the request's task failed: {e}"))
        }));
    }
    axum::Json(out).into_response()
}

/// `POST /v1/judge`: one program, many cases.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JudgeRequest {
    pub code: String,
    /// `{"stdin": "1 2\n", "expected": "3\n"}` each (`expected` may be left out).
    pub cases: Vec<CaseIn>,
    /// `"exact"` (the default), `"strip"` or `"tokens"`.
    #[serde(default)]
    pub compare: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub limits: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseIn {
    pub stdin: String,
    #[serde(default)]
    pub expected: Option<String>,
}

/// What a judge body asks for: the policy, the program, its cases, how outputs compare.
pub type JudgePlan = (Policy, String, Vec<Case>, Compare);

/// A judge body, checked and narrowed from `ceiling` (nothing runs here; the fuzz target
/// `http_native` calls it too).
pub fn parse_judge(ceiling: &Policy, body: &[u8]) -> Result<JudgePlan, ApiError> {
    let r: JudgeRequest = parse(body)?;
    let compare: Compare = r
        .compare
        .as_deref()
        .unwrap_or("exact")
        .parse()
        .map_err(|e| ApiError::bad_request(format!("compare: {e}")))?;
    let n = narrow(ceiling, r.limits.as_ref(), None)?;
    let mut policy = n.policy;
    if let Some(w) = n.wall {
        policy.limits.wall = w;
    }
    let cases: Vec<Case> = r
        .cases
        .into_iter()
        .map(|c| Case {
            stdin: c.stdin,
            expected: c.expected,
        })
        .collect();
    Ok((policy, r.code, cases, compare))
}

pub async fn judge(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let (policy, code, cases, compare) = match parse_judge(&app.ceiling, &body) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let result = blocking(&app, move |app| {
        let pool = app
            .pools
            .get(&policy)
            .map_err(|e| judge::JudgeError::Check(Box::new(e)))?;
        judge::judge(&pool, None, &code, &cases, compare)
    })
    .await;
    match result {
        Ok(j) => axum::Json(j).into_response(),
        Err(e) if e.is_input() => ApiError::bad_request(e.to_string()).into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Worker,
            e.to_string(),
        )
        .into_response(),
    }
}

/// `POST /v1/sessions`: a session narrowed like an execute request.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub limits: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Seconds without a call after which it ends (at most the server's).
    #[serde(default)]
    pub idle_timeout: Option<f64>,
}

#[derive(Serialize, JsonSchema)]
pub struct SessionCreated {
    pub id: String,
    /// When its idle timeout ends it, unless a call comes first (RFC 3339, UTC).
    pub expires_at: String,
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A session body, checked and narrowed from `ceiling`: the session's policy and idle timeout
/// (at most `max_idle`). Nothing runs here; the fuzz target `http_native` calls it too.
pub fn parse_session(
    ceiling: &Policy,
    max_idle: Duration,
    body: &[u8],
) -> Result<(Policy, Duration), ApiError> {
    let r: SessionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SessionRequest::default()
    } else {
        parse(body)?
    };
    let n = narrow(ceiling, r.limits.as_ref(), r.features.as_deref())?;
    let mut policy = n.policy;
    if let Some(w) = n.wall {
        policy.limits.wall = w;
    }
    let idle = match r.idle_timeout {
        None => max_idle,
        // Clamped before it becomes a Duration: `from_secs_f64(1e300)` panics, and a panic
        // aborts the server (panic = "abort"; found fuzzing, docs/fuzzing.md).
        Some(s) if s.is_finite() && s > 0.0 => {
            Duration::from_secs_f64(s.min(max_idle.as_secs_f64()))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "idle_timeout: a positive number of seconds",
            ))
        }
    };
    Ok((policy, idle))
}

pub async fn create_session(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let (policy, idle) = match parse_session(&app.ceiling, app.sessions.idle, &body) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    match open_session(&app, policy, idle).await {
        Ok((id, expires)) => (
            StatusCode::CREATED,
            axum::Json(SessionCreated {
                id,
                expires_at: rfc3339(expires),
            }),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Open a session (429 when the server has as many as it allows).
pub(crate) async fn open_session(
    app: &Arc<App>,
    policy: Policy,
    idle: Duration,
) -> Result<(String, SystemTime), ApiError> {
    let binary = app.opts.binary.clone();
    let opened = blocking(app, move |app| app.sessions.open(&binary, &policy, idle)).await;
    match opened {
        Ok(Some(x)) => Ok(x),
        Ok(None) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Busy,
            format!(
                "the server has {} live sessions, as many as it allows (--max-sessions): close one",
                app.sessions.max
            ),
        )),
        Err(e) => Err(ApiError::from_warm(&e)),
    }
}

fn no_session(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorKind::Closed,
        format!("no session '{id}': it was never opened, was closed, or has ended"),
    )
}

/// Run `req` in session `id` (blocking); its expiry moves on.
pub(crate) fn run_in_session(app: &App, id: &str, req: &Request) -> Result<WarmOutcome, WarmError> {
    let Some(slot) = app.sessions.get(id) else {
        return Err(WarmError::SessionEnded(format!("no session '{id}'")));
    };
    let result = lock(&slot.session).execute_request(req);
    *lock(&slot.expires_at) = SystemTime::now() + slot.idle;
    result
}

/// A session's execute body, checked against `ceiling` (no features: a session's are set when
/// it is created). Nothing runs here; the fuzz target `http_native` calls it too.
pub fn parse_session_execute(ceiling: &Policy, body: &[u8]) -> Result<Request, ApiError> {
    let r: ExecuteRequest = parse(body)?;
    if r.features.is_some() {
        return Err(ApiError::bad_request(
            "features: a session's features are set when it is created",
        ));
    }
    let n = narrow(ceiling, r.limits.as_ref(), None)?;
    to_request(&r, n.wall)
}

pub async fn session_execute(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match parse_session_execute(&app.ceiling, &body) {
        Ok(req) => req,
        Err(e) => return e.into_response(),
    };
    if app.sessions.get(&id).is_none() {
        return no_session(&id).into_response();
    }
    if wants_lines(&headers) {
        return stream(app, req, move |app, req| run_in_session(app, &id, req));
    }
    let result = blocking(&app, move |app| run_in_session(app, &id, &req)).await;
    session_outcome_response(&app, result)
}

/// A session call's answer: the outcome, with `ended: true` when the call ended the session (a
/// limit, a crash; docs/outcome.md), so that the caller knows without a failed next call.
fn session_outcome_response(app: &App, result: Result<WarmOutcome, WarmError>) -> Response {
    match result {
        Ok(o) if o.ended && o.run.status != pysandbox_core::outcome::RunStatus::SandboxError => {
            crate::count_limit(app, &o.run);
            let mut v = serde_json::to_value(&o.run).unwrap_or_default();
            v["ended"] = true.into();
            (StatusCode::OK, axum::Json(v)).into_response()
        }
        other => outcome_response(app, other),
    }
}

pub async fn delete_session(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let closed = blocking(&app, move |app| app.sessions.close(&id)).await;
    match closed {
        true => StatusCode::NO_CONTENT.into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `PUT /v1/sessions/{id}/files/{path}`: the body becomes that file in the session's working
/// directory.
pub async fn put_file(
    State(app): State<Arc<App>>,
    Path((id, path)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if app.sessions.get(&id).is_none() {
        return no_session(&id).into_response();
    }
    let req = place_request(vec![(path, body.to_vec())]);
    match blocking(&app, move |app| run_in_session(app, &id, &req)).await {
        Ok(o) if o.run.status == pysandbox_core::outcome::RunStatus::Ok => {
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(o) => {
            ApiError::internal(format!("placing the file failed: {}", o.run.stderr)).into_response()
        }
        Err(e) => ApiError::from_warm(&e).into_response(),
    }
}

/// `GET /v1/sessions/{id}/files/{path}`: a file of the session's working directory (regular
/// files only, as collected).
pub async fn get_file(
    State(app): State<Arc<App>>,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    if app.sessions.get(&id).is_none() {
        return no_session(&id).into_response();
    }
    if let Err(e) = pysandbox_core::outcome::check_file_name(&path) {
        return ApiError::bad_request(format!("path: {e}")).into_response();
    }
    let req = fetch_request([path.as_str()]);
    let wanted = path.clone();
    match blocking(&app, move |app| run_in_session(app, &id, &req)).await {
        Ok(o) => match collected(&o.run, &wanted) {
            Some(bytes) => {
                ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
            }
            None => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorKind::Policy,
                format!("no regular file '{wanted}' in the session's working directory"),
            )
            .into_response(),
        },
        Err(e) => ApiError::from_warm(&e).into_response(),
    }
}

/// A request that runs nothing and places `files` in the working directory (a session's).
pub(crate) fn place_request(files: Vec<(String, Vec<u8>)>) -> Request {
    let mut req = Request::code("");
    req.files = files;
    req
}

/// A request that runs nothing and sends back the regular files of the working directory with
/// these exact names (a session's): [`collected`] then reads each.
pub(crate) fn fetch_request<'a>(names: impl IntoIterator<Item = &'a str>) -> Request {
    let mut req = Request::code("");
    req.collect = exact_globs(names);
    req
}

/// Globs that collect the files with these exact names (each an fnmatch pattern that matches
/// only itself).
pub(crate) fn exact_globs<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names.into_iter().map(glob_escape).collect()
}

/// The bytes of the file `name` an outcome collected.
pub(crate) fn collected(o: &Outcome, name: &str) -> Option<Vec<u8>> {
    o.files.get(name).and_then(|b| base64_decode(b))
}

/// `name` as an fnmatch pattern matching only itself.
fn glob_escape(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '*' | '?' | '[' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect()
}

/// `GET /v1/info`.
pub async fn info(State(app): State<Arc<App>>) -> Response {
    let p = &app.ceiling;
    let landlock = pysandbox_core::landlock::abi().ok();
    axum::Json(serde_json::json!({
        "pysandbox": env!("CARGO_PKG_VERSION"),
        "python": app.python_version,
        "policy": {
            "preset": p.preset,
            "features": p.effective_features(),
            "limits": p.effective_limits(),
            "network": p.effective_network(),
            "preload": p.preload,
        },
        "stdlib": true,
        "packages": app
            .packages
            .iter()
            .map(|(name, version)| serde_json::json!({"name": name, "version": version}))
            .collect::<Vec<_>>(),
        "workers": app.opts.workers,
        "max_queue": app.opts.max_queue,
        "max_sessions": app.opts.max_sessions,
        "kernel": {
            "namespaces": ["user", "mount", "pid", "ipc", "uts", "net"],
            "seccomp": true,
            "landlock_abi": landlock,
        },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found reviewing the fuzz target `http_native` (docs/fuzzing.md): a huge `idle_timeout`
    /// panicked in `Duration::from_secs_f64`, and a panic aborts the server.
    #[test]
    fn fuzz_session_idle_timeout_beyond_a_duration_is_clamped() {
        let max = Duration::from_secs(600);
        let ceiling = Policy::default();
        for body in [
            &b"{\"idle_timeout\": 1e300}"[..],
            b"{\"idle_timeout\": 1.7976931348623157e308}",
            b"{\"idle_timeout\": 18446744073709551616}",
        ] {
            let (_, idle) = parse_session(&ceiling, max, body)
                .map_err(|e| e.message)
                .unwrap();
            assert_eq!(idle, max);
        }
        let (_, idle) = parse_session(&ceiling, max, b"{\"idle_timeout\": 1.5}")
            .map_err(|e| e.message)
            .unwrap();
        assert_eq!(idle, Duration::from_millis(1500));
        let e = parse_session(&ceiling, max, b"{\"idle_timeout\": 0}").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    /// Found by the fuzz target `http_native` in CI (docs/fuzzing.md): a zero wall clock passed
    /// the narrowing (it is checked apart from the policy), and a session's policy that took it
    /// no longer validated. Refused on every route that narrows.
    #[test]
    fn fuzz_a_zero_wall_clock_is_refused() {
        let max = Duration::from_secs(600);
        let body = b"{\"features\": [], \"limits\": {\"wall\": \"0s\", \"output\": \"1M\"}}";
        let e = parse_session(&Policy::default(), max, body).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("limits.wall"), "{}", e.message);
        let exec = b"{\"code\": \"pass\", \"limits\": {\"wall\": \"0s\"}}";
        let e = parse_execute(&Policy::default(), exec).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        // A lower, positive wall clock is still the request's.
        let ok = b"{\"limits\": {\"wall\": \"250ms\"}}";
        let (policy, _) = parse_session(&Policy::default(), max, ok)
            .map_err(|e| e.message)
            .unwrap();
        assert_eq!(policy.limits.wall, Duration::from_millis(250));
        policy.validate().unwrap();
    }
}
