//! E2B's code interpreter, as the unmodified PyPI SDK `e2b-code-interpreter` (and the `e2b`
//! package under it) speaks it, pointed at this server by `E2B_API_URL` (control plane) and
//! `E2B_SANDBOX_URL` (every port of every sandbox: requests name theirs in `E2b-Sandbox-Id`).
//!
//! - Control plane: `POST /v2/sandboxes` (201 with the sandbox's id and tokens) and
//!   `DELETE /sandboxes/{id}`, what `Sandbox.create()` and `kill()` call.
//! - envd (port 49983): `GET /health` (what `is_running()` asks: 502 for a sandbox that is gone),
//!   `GET /files?path=` and `POST /files?path=` (multipart, or `application/octet-stream`), what
//!   `files.read` and `files.write` call. envd's Connect RPC services (`files.list`, `commands`,
//!   `pty`, watching) are not served.
//! - The code interpreter (port 49999): `POST /execute` answering JSON lines as the run goes
//!   (`number_of_executions`, `stdout`/`stderr`, `result` with flat MIME keys, `error`,
//!   `end_of_execution`), `POST`/`GET /contexts`, `POST /contexts/{id}/restart`,
//!   `DELETE /contexts/{id}`.
//!
//! An E2B sandbox is a group of pysandbox sessions, one per context (a context is a session of
//! its own: separate state, separate working directory). The default context is opened with the
//! sandbox; its working directory is the sandbox's filesystem as the file routes see it.
//! Field names follow e2b-dev/E2B's OpenAPI spec and e2b-dev/code-interpreter's template server.

use crate::native::{collected, fetch_request, place_request, run_in_session};
use crate::state::{lock, App};
use crate::{blocking, ApiError};
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use pysandbox_core::outcome::{check_file_name, ErrorInfo, ErrorKind, Outcome, RunStatus};
use pysandbox_core::warm::{OutputStream, Request as RunRequest, WarmError, WarmOutcome};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The envd version the sandboxes report. The SDK refuses anything below 0.1.0 and chooses
/// its file transfer by version: from 0.4.0 it sends no `username`, from 0.5.7 it may upload
/// `application/octet-stream` (both served here). Nothing above it is assumed.
const ENVD_VERSION: &str = "0.5.7";

/// The sandbox id the SDK uses with `E2B_DEBUG=true`, where it skips the control plane: opened
/// on first use.
const DEBUG_SANDBOX: &str = "debug_sandbox_id";

/// The working directory of a sandbox session, as the code sees it.
const WORKDIR: &str = "/tmp";
/// E2B's home directory, where its users put files: taken as the working directory.
const E2B_HOME: &str = "/home/user";

/// One context: a session of its own.
struct Context {
    id: String,
    session: String,
    executions: u64,
}

/// One E2B sandbox.
struct Sandbox {
    /// The session idle timeout (E2B's `timeout`, at most the server's).
    idle: Duration,
    /// The last call; past `last + idle` the sandbox has timed out.
    last: Mutex<Instant>,
    /// By id; the first is the default context.
    contexts: Mutex<Vec<Context>>,
}

impl Sandbox {
    fn expired(&self) -> bool {
        lock(&self.last).elapsed() > self.idle
    }

    fn touch(&self) {
        *lock(&self.last) = Instant::now();
    }

    fn session_of(&self, ctx: Option<&str>) -> Option<String> {
        let all = lock(&self.contexts);
        match ctx {
            None => all.first().map(|c| c.session.clone()),
            Some(id) => all.iter().find(|c| c.id == id).map(|c| c.session.clone()),
        }
    }

    fn sessions(&self) -> Vec<String> {
        lock(&self.contexts)
            .iter()
            .map(|c| c.session.clone())
            .collect()
    }
}

/// The E2B routes' state: the server's, and the live sandboxes.
pub struct E2b {
    app: Arc<App>,
    sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
}

type St = State<Arc<E2b>>;

/// The E2B routes, to merge into the server's router.
pub fn router<S: Clone + Send + Sync + 'static>(app: Arc<App>) -> Router<S> {
    let e2b = Arc::new(E2b {
        app,
        sandboxes: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/v2/sandboxes", post(create_sandbox))
        .route("/sandboxes/{id}", delete(kill_sandbox))
        .route("/health", get(health))
        .route("/files", get(read_file).post(write_file))
        .route("/execute", post(execute))
        .route("/contexts", post(create_context).get(list_contexts))
        .route("/contexts/{id}", delete(remove_context))
        .route("/contexts/{id}/restart", post(restart_context))
        .with_state(e2b)
}

/// Whether `path` is one of the E2B routes, whose errors take E2B's shape (the SDK parses them).
pub fn owns(path: &str) -> bool {
    matches!(
        path,
        "/v2/sandboxes" | "/health" | "/files" | "/execute" | "/contexts"
    ) || path.starts_with("/sandboxes/")
        || path.starts_with("/contexts/")
}

/// The answer to a request on an E2B route without a valid token.
pub fn unauthorized() -> Response {
    fail(
        StatusCode::UNAUTHORIZED,
        "missing or wrong token: set E2B_API_KEY to one of the server's tokens",
    )
}

/// An error as E2B's API and envd send it: `{"code", "message"}` (the SDK shows `message`).
fn fail(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    let mut r = (
        status,
        axum::Json(json!({"code": status.as_u16(), "message": message})),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

fn from_api(e: ApiError) -> Response {
    fail(e.status, e.message)
}

/// A random id: 128 bits, hex.
fn new_id() -> String {
    let mut buf = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Open a session of the server's policy (429 past `--max-sessions`).
async fn open(e2b: &Arc<E2b>, idle: Duration) -> Result<String, Response> {
    let policy = e2b.app.ceiling.clone();
    crate::native::open_session(&e2b.app, policy, idle)
        .await
        .map(|(id, _)| id)
        .map_err(from_api)
}

async fn close_sessions(e2b: &Arc<E2b>, ids: Vec<String>) {
    blocking(&e2b.app, move |app| {
        for id in ids {
            app.sessions.close(&id);
        }
    })
    .await;
}

/// `POST /v2/sandboxes` (E2B's `NewSandboxV2`; unknown fields are ignored, as E2B's clients
/// expect).
#[derive(Debug, Default, Deserialize)]
pub struct NewSandbox {
    #[serde(rename = "templateID", default)]
    template_id: Option<String>,
    /// Seconds: here the idle timeout of the sandbox's sessions (at most the server's).
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(rename = "envVars", default)]
    env_vars: Option<BTreeMap<String, String>>,
}

/// A `POST /v2/sandboxes` body: the template's name and the idle timeout of the sandbox's
/// sessions (at most `server_idle`); a refusal is the response to send. Nothing runs here; the
/// fuzz target `http_e2b` calls it too.
pub fn parse_new_sandbox(
    server_idle: Duration,
    body: &[u8],
) -> Result<(String, Duration), Response> {
    let r: NewSandbox = if body.iter().all(u8::is_ascii_whitespace) {
        NewSandbox::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("body: {e}")))?
    };
    if r.env_vars.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "envVars: environment variables are not supported by pysandbox's E2B sandboxes",
        ));
    }
    let idle = match r.timeout {
        None => server_idle,
        // Clamped before it becomes a Duration: `from_secs_f64(1e300)` panics, and a panic
        // aborts the server (panic = "abort"; found fuzzing, docs/fuzzing.md).
        Some(s) if s.is_finite() && s > 0.0 => {
            Duration::from_secs_f64(s.min(server_idle.as_secs_f64()))
        }
        Some(_) => return Err(fail(StatusCode::BAD_REQUEST, "timeout: a positive number")),
    };
    let template = r
        .template_id
        .unwrap_or_else(|| "code-interpreter-v1".into());
    Ok((template, idle))
}

async fn create_sandbox(State(e2b): St, headers: HeaderMap, body: Bytes) -> Response {
    let (template, idle) = match parse_new_sandbox(e2b.app.sessions.idle, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    sweep(&e2b).await;
    let id = new_id();
    match add_sandbox(&e2b, &id, idle).await {
        Ok(()) => {}
        Err(r) => return r,
    }
    // The tokens the SDK then sends to the sandbox (envd's `X-Access-Token`, the code
    // interpreter's `E2B-Traffic-Access-Token`): the caller's own, which the server accepts;
    // none when the server has no tokens.
    let token = match e2b.app.opts.tokens.is_empty() {
        true => None,
        false => crate::presented(&headers)
            .into_iter()
            .find(|t| crate::token_ok(&e2b.app, t)),
    };
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "sandboxID": id,
            "templateID": template,
            "clientID": "pysandbox",
            "envdVersion": ENVD_VERSION,
            "envdAccessToken": token,
            "trafficAccessToken": token,
            "domain": null,
        })),
    )
        .into_response()
}

/// Forget the sandboxes that have timed out (their sessions have idled out, or are closed now):
/// a client that never kills its sandboxes does not grow the table.
async fn sweep(e2b: &Arc<E2b>) {
    let gone: Vec<Arc<Sandbox>> = {
        let mut all = lock(&e2b.sandboxes);
        let ids: Vec<String> = all
            .iter()
            .filter(|(_, s)| s.expired())
            .map(|(k, _)| k.clone())
            .collect();
        ids.iter().filter_map(|k| all.remove(k)).collect()
    };
    let sessions: Vec<String> = gone.iter().flat_map(|s| s.sessions()).collect();
    if !sessions.is_empty() {
        close_sessions(e2b, sessions).await;
    }
}

/// Open a sandbox's default context and register it as `id`.
async fn add_sandbox(e2b: &Arc<E2b>, id: &str, idle: Duration) -> Result<(), Response> {
    let session = open(e2b, idle).await?;
    let sbx = Arc::new(Sandbox {
        idle,
        last: Mutex::new(Instant::now()),
        contexts: Mutex::new(vec![Context {
            id: new_id(),
            session,
            executions: 0,
        }]),
    });
    let old = lock(&e2b.sandboxes).insert(id.to_string(), sbx);
    if let Some(old) = old {
        close_sessions(e2b, old.sessions()).await;
    }
    Ok(())
}

async fn kill_sandbox(State(e2b): St, Path(id): Path<String>) -> Response {
    let gone = lock(&e2b.sandboxes).remove(&id);
    match gone {
        Some(sbx) => {
            close_sessions(&e2b, sbx.sessions()).await;
            StatusCode::NO_CONTENT.into_response()
        }
        None => fail(StatusCode::NOT_FOUND, format!("sandbox '{id}' not found")),
    }
}

/// The sandbox a sandbox route is for (`E2b-Sandbox-Id`): 502 when it is not running, as E2B's
/// proxy answers (the SDK's `is_running()` reads 502 as "not running").
async fn sandbox_of(e2b: &Arc<E2b>, headers: &HeaderMap) -> Result<Arc<Sandbox>, Response> {
    let Some(id) = headers.get("e2b-sandbox-id").and_then(|v| v.to_str().ok()) else {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "no E2b-Sandbox-Id header: point the SDK at this server with E2B_SANDBOX_URL",
        ));
    };
    let found = lock(&e2b.sandboxes).get(id).cloned();
    match found {
        Some(s) if s.expired() => {
            lock(&e2b.sandboxes).remove(id);
            close_sessions(e2b, s.sessions()).await;
            Err(fail(
                StatusCode::BAD_GATEWAY,
                format!("sandbox '{id}' has timed out"),
            ))
        }
        Some(s) => {
            s.touch();
            Ok(s)
        }
        None if id == DEBUG_SANDBOX => {
            let idle = e2b.app.sessions.idle;
            add_sandbox(e2b, id, idle).await?;
            lock(&e2b.sandboxes)
                .get(id)
                .cloned()
                .ok_or_else(|| fail(StatusCode::BAD_GATEWAY, "sandbox not found"))
        }
        None => Err(fail(
            StatusCode::BAD_GATEWAY,
            format!("sandbox '{id}' not found: it was never created, was killed or timed out"),
        )),
    }
}

async fn health(State(e2b): St, headers: HeaderMap) -> Response {
    if headers.get("e2b-sandbox-id").is_none() {
        return StatusCode::NO_CONTENT.into_response();
    }
    match sandbox_of(&e2b, &headers).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

/// Run `req` in a context's session (blocking). A session that has ended (a limit or a crash
/// stopped it, or it idled out while the sandbox lived on) is replaced by a fresh one, as a
/// notebook restarts a dead kernel: the context's state starts afresh.
fn run_ctx(
    app: &App,
    sbx: &Sandbox,
    ctx: Option<&str>,
    req: &RunRequest,
) -> Result<WarmOutcome, ApiError> {
    let Some(session) = sbx.session_of(ctx) else {
        return Err(gone_context());
    };
    match run_in_session(app, &session, req) {
        Err(WarmError::SessionEnded(_)) => {
            app.sessions.close(&session);
            let opened = app
                .sessions
                .open(&app.opts.binary, &app.ceiling, sbx.idle)
                .map_err(|e| ApiError::from_warm(&e))?;
            let Some((fresh, _)) = opened else {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorKind::Busy,
                    format!(
                        "the server has {} live sessions, as many as it allows (--max-sessions)",
                        app.sessions.max
                    ),
                ));
            };
            {
                let mut all = lock(&sbx.contexts);
                let c = match ctx {
                    None => all.first_mut(),
                    Some(id) => all.iter_mut().find(|c| c.id == id),
                };
                match c {
                    Some(c) => c.session = fresh.clone(),
                    None => {
                        drop(all);
                        app.sessions.close(&fresh);
                        return Err(gone_context());
                    }
                }
            }
            run_in_session(app, &fresh, req).map_err(|e| ApiError::from_warm(&e))
        }
        other => other.map_err(|e| ApiError::from_warm(&e)),
    }
}

fn gone_context() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorKind::Closed,
        "the context was removed",
    )
}

/// An E2B path as a name in the working directory: relative paths and paths under `/tmp` or
/// `/home/user` (E2B's home, where its users put files).
pub fn local_name(path: &str) -> Result<String, String> {
    let rel = if let Some(rest) = strip_dir(path, WORKDIR) {
        rest
    } else if let Some(rest) = strip_dir(path, E2B_HOME) {
        rest
    } else if path.starts_with('/') {
        return Err(format!(
            "'{path}': only files in the working directory ({WORKDIR}, also named {E2B_HOME}) \
             are reachable"
        ));
    } else {
        path
    };
    let rel = rel.strip_prefix("./").unwrap_or(rel);
    check_file_name(rel)?;
    Ok(rel.to_string())
}

fn strip_dir<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    path.strip_prefix(dir).and_then(|r| r.strip_prefix('/'))
}

#[derive(Debug, Deserialize)]
struct FileQuery {
    #[serde(default)]
    path: Option<String>,
}

async fn read_file(State(e2b): St, headers: HeaderMap, Query(q): Query<FileQuery>) -> Response {
    let sbx = match sandbox_of(&e2b, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(path) = q.path else {
        return fail(StatusCode::BAD_REQUEST, "path: missing");
    };
    let name = match local_name(&path) {
        Ok(n) => n,
        Err(e) => return fail(StatusCode::BAD_REQUEST, format!("path: {e}")),
    };
    let req = fetch_request([name.as_str()]);
    let wanted = name.clone();
    let result = blocking(&e2b.app, move |app| run_ctx(app, &sbx, None, &req)).await;
    match result {
        Ok(o) => match collected(&o.run, &wanted) {
            Some(bytes) => {
                ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
            }
            None => fail(
                StatusCode::NOT_FOUND,
                format!("file '{path}' not found (or not a regular file)"),
            ),
        },
        Err(e) => from_api(e),
    }
}

async fn write_file(State(e2b): St, Query(q): Query<FileQuery>, request: Request) -> Response {
    let headers = request.headers().clone();
    let sbx = match sandbox_of(&e2b, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity")
    {
        return fail(
            StatusCode::BAD_REQUEST,
            "Content-Encoding: compressed uploads are not supported; write without gzip",
        );
    }
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    // (E2B path, content)
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    if multipart {
        let mut form = match Multipart::from_request(request, &()).await {
            Ok(m) => m,
            Err(e) => return fail(StatusCode::BAD_REQUEST, format!("body: {e}")),
        };
        loop {
            match form.next_field().await {
                Ok(Some(field)) => {
                    // One file with `?path=` names it; several are named by their parts.
                    let named = field.file_name().map(str::to_string);
                    let data = match field.bytes().await {
                        Ok(d) => d,
                        Err(e) => return fail(StatusCode::BAD_REQUEST, format!("body: {e}")),
                    };
                    files.push((named.unwrap_or_default(), data.to_vec()));
                }
                Ok(None) => break,
                Err(e) => return fail(StatusCode::BAD_REQUEST, format!("body: {e}")),
            }
        }
        if files.len() == 1 {
            if let Some(p) = &q.path {
                files[0].0 = p.clone();
            }
        }
    } else {
        let Some(path) = q.path.clone() else {
            return fail(StatusCode::BAD_REQUEST, "path: missing");
        };
        let body = match Bytes::from_request(request, &()).await {
            Ok(b) => b,
            Err(e) => return fail(StatusCode::BAD_REQUEST, format!("body: {e}")),
        };
        files.push((path, body.to_vec()));
    }
    if files.is_empty() {
        return fail(StatusCode::BAD_REQUEST, "body: no file");
    }
    let mut placed = Vec::with_capacity(files.len());
    let mut written = Vec::with_capacity(files.len());
    for (path, data) in files {
        let name = match local_name(&path) {
            Ok(n) => n,
            Err(e) => return fail(StatusCode::BAD_REQUEST, format!("path: {e}")),
        };
        let base = name.rsplit('/').next().unwrap_or(&name).to_string();
        written.push(json!({"name": base, "type": "file", "path": format!("{WORKDIR}/{name}")}));
        placed.push((name, data));
    }
    let req = place_request(placed);
    let result = blocking(&e2b.app, move |app| run_ctx(app, &sbx, None, &req)).await;
    match result {
        Ok(o) if o.run.status == RunStatus::Ok => axum::Json(Value::Array(written)).into_response(),
        Ok(o) => fail(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "writing the file failed: {}",
                o.run
                    .error
                    .map_or(o.run.stderr, |e| format!("{}: {}", e.kind, e.message))
            ),
        ),
        Err(e) => from_api(e),
    }
}

/// `POST /execute` (the code interpreter's `ExecutionRequest`).
#[derive(Debug, Deserialize)]
pub struct ExecuteBody {
    code: String,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    env_vars: Option<BTreeMap<String, String>>,
}

fn python_only(language: Option<&str>) -> Result<(), Response> {
    match language {
        None | Some("python") | Some("python3") => Ok(()),
        Some(other) => Err(fail(
            StatusCode::BAD_REQUEST,
            format!("language: '{other}' is not available: pysandbox runs Python only"),
        )),
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A rich result as the code interpreter sends it: the MIME bundle's known types as flat keys
/// (`text`, `html`, `png`...), the others under `extra`.
fn result_line(data: &BTreeMap<String, String>, main: bool) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), "result".into());
    let mut extra = Map::new();
    for (mime, v) in data {
        let key = match mime.as_str() {
            "text/plain" => "text",
            "text/html" => "html",
            "text/markdown" => "markdown",
            "image/svg+xml" => "svg",
            "image/png" => "png",
            "image/jpeg" => "jpeg",
            "application/pdf" => "pdf",
            "text/latex" => "latex",
            "application/json" => "json",
            "application/javascript" => "javascript",
            _ => {
                extra.insert(mime.clone(), Value::String(v.clone()));
                continue;
            }
        };
        let value = if key == "json" {
            // A JSON document (the SDK's `json` is a dict).
            serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()))
        } else if key == "text" && v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
            // A string's repr, unquoted as the E2B template server does.
            Value::String(v[1..v.len() - 1].to_string())
        } else {
            Value::String(v.clone())
        };
        out.insert(key.into(), value);
    }
    if !extra.is_empty() {
        out.insert("extra".into(), Value::Object(extra));
    }
    out.insert("is_main_result".into(), main.into());
    Value::Object(out)
}

/// The error line of a run: the exception it raised, or what stopped it.
fn error_of(o: &Outcome) -> Option<Value> {
    let e = match (&o.error, o.status) {
        (
            Some(ErrorInfo {
                kind,
                message,
                traceback,
            }),
            _,
        ) => (kind.clone(), message.clone(), traceback.clone()),
        (None, RunStatus::Limit) => {
            let name = o.limit.map_or("limit", |l| l.name());
            (
                "LimitExceeded".into(),
                format!("the {name} limit stopped the run; the context starts afresh"),
                String::new(),
            )
        }
        (None, RunStatus::Crashed) => (
            "Crashed".into(),
            format!(
                "the interpreter was killed by signal {}; the context starts afresh",
                o.signal.unwrap_or(0)
            ),
            String::new(),
        ),
        (None, RunStatus::Error) => (
            "SystemExit".into(),
            format!("{}", o.exit_code.unwrap_or(1)),
            String::new(),
        ),
        (None, _) => return None,
    };
    Some(json!({"type": "error", "name": e.0, "value": e.1, "traceback": e.2}))
}

/// A `POST /execute` body (the code interpreter's), checked; a refusal is the response to
/// send. Nothing runs here; the fuzz target `http_e2b` calls it too.
pub fn parse_execute(body: &[u8]) -> Result<ExecuteBody, Response> {
    let r: ExecuteBody = serde_json::from_slice(body)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    python_only(r.language.as_deref())?;
    Ok(r)
}

async fn execute(State(e2b): St, headers: HeaderMap, body: Bytes) -> Response {
    let r = match parse_execute(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let sbx = match sandbox_of(&e2b, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ctx = r.context_id;
    // The context's execution count, and whether it exists.
    let count = {
        let mut all = lock(&sbx.contexts);
        let c = match &ctx {
            None => all.first_mut(),
            Some(id) => all.iter_mut().find(|c| c.id == *id),
        };
        match c {
            Some(c) => {
                c.executions += 1;
                c.executions
            }
            None => {
                return fail(
                    StatusCode::NOT_FOUND,
                    format!("context '{}' not found", ctx.unwrap_or_default()),
                )
            }
        }
    };
    let mut req = RunRequest::new(None, &r.code, None);
    req.cell = true;
    let (tx, response) = crate::native::ndjson();
    let _ = tx.send(Ok(line(
        &json!({"type": "number_of_executions", "execution_count": count}),
    )));
    let tap_tx = tx.clone();
    req.tap = Some(crate::native::text_tap(move |which, text| {
        let kind = match which {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        };
        let _ = tap_tx.send(Ok(line(
            &json!({"type": kind, "text": text, "timestamp": now_ns()}),
        )));
    }));
    let app = Arc::clone(&e2b.app);
    tokio::spawn(async move {
        let env = r.env_vars.filter(|v| !v.is_empty());
        let result = blocking(&app, move |app| {
            let ctx = ctx.as_deref();
            let Some(env) = env else {
                return run_ctx(app, &sbx, ctx, &req);
            };
            let set = run_ctx(app, &sbx, ctx, &RunRequest::code(&env_set(&env)))?;
            if set.run.status != RunStatus::Ok {
                return Err(ApiError::bad_request(format!(
                    "env_vars: setting them failed: {}",
                    set.run.error.map_or(set.run.stderr, |e| e.message)
                )));
            }
            let run = run_ctx(app, &sbx, ctx, &req);
            // Put back what was there (a run that ended the session took its state along).
            let _ = run_ctx(app, &sbx, ctx, &RunRequest::code(ENV_RESTORE));
            run
        })
        .await;
        let outcome = match result {
            Ok(o) => {
                crate::count_limit(&app, &o.run);
                o.run
            }
            Err(e) => Outcome::sandbox_error(e.kind, e.message),
        };
        for r in &outcome.results {
            let _ = tx.send(Ok(line(&result_line(&r.data, r.is_main_result))));
        }
        if let Some(e) = error_of(&outcome) {
            let _ = tx.send(Ok(line(&e)));
        }
        let _ = tx.send(Ok(line(&json!({"type": "end_of_execution"}))));
    });
    response
}

/// Python that sets a run's `env_vars` in `os.environ`, keeping what they replace on a stack in
/// the `os` module (no name of the code's namespace is touched). The variables are JSON, which
/// is also a Python literal for a map of strings.
fn env_set(env: &BTreeMap<String, String>) -> String {
    let vars = serde_json::to_string(env).unwrap_or_else(|_| "{}".into());
    format!(
        "(lambda o, v: (o.__dict__.setdefault('_e2b_env_saved', []).append(\
         {{k: o.environ.get(k) for k in v}}), o.environ.update(v)))(__import__('os'), {vars})"
    )
}

/// Python that puts back what the last [`env_set`] replaced.
const ENV_RESTORE: &str = "(lambda o: [o.environ.pop(k, None) if v is None else \
     o.environ.__setitem__(k, v) for k, v in o.__dict__['_e2b_env_saved'].pop().items()])\
     (__import__('os'))";

#[derive(Debug, Default, Deserialize)]
pub struct NewContext {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    cwd: Option<String>,
}

fn context_json(id: &str) -> Value {
    json!({"id": id, "language": "python", "cwd": WORKDIR})
}

/// A `POST /contexts` body, checked; a refusal is the response to send. Nothing runs here;
/// the fuzz target `http_e2b` calls it too.
pub fn parse_new_context(body: &[u8]) -> Result<NewContext, Response> {
    let r: NewContext = if body.iter().all(u8::is_ascii_whitespace) {
        NewContext::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("body: {e}")))?
    };
    python_only(r.language.as_deref())?;
    if let Some(cwd) = &r.cwd {
        let cwd = cwd.trim_end_matches('/');
        if cwd != WORKDIR && cwd != E2B_HOME {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!("cwd: a context's working directory is {WORKDIR} (also named {E2B_HOME})"),
            ));
        }
    }
    Ok(r)
}

async fn create_context(State(e2b): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = parse_new_context(&body) {
        return resp;
    }
    let sbx = match sandbox_of(&e2b, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let session = match open(&e2b, sbx.idle).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let id = new_id();
    lock(&sbx.contexts).push(Context {
        id: id.clone(),
        session,
        executions: 0,
    });
    axum::Json(context_json(&id)).into_response()
}

async fn list_contexts(State(e2b): St, headers: HeaderMap) -> Response {
    let sbx = match sandbox_of(&e2b, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let all: Vec<Value> = lock(&sbx.contexts)
        .iter()
        .map(|c| context_json(&c.id))
        .collect();
    axum::Json(Value::Array(all)).into_response()
}

async fn restart_context(State(e2b): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let sbx = match sandbox_of(&e2b, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(old) = sbx.session_of(Some(&id)) else {
        return fail(StatusCode::NOT_FOUND, format!("context '{id}' not found"));
    };
    let fresh = match open(&e2b, sbx.idle).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let replaced = {
        let mut all = lock(&sbx.contexts);
        match all.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.session = fresh.clone();
                c.executions = 0;
                true
            }
            None => false,
        }
    };
    if replaced {
        close_sessions(&e2b, vec![old]).await;
        StatusCode::NO_CONTENT.into_response()
    } else {
        close_sessions(&e2b, vec![fresh]).await;
        fail(StatusCode::NOT_FOUND, format!("context '{id}' not found"))
    }
}

async fn remove_context(State(e2b): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let sbx = match sandbox_of(&e2b, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let removed = {
        let mut all = lock(&sbx.contexts);
        match all.iter().position(|c| c.id == id) {
            Some(0) => Err(fail(
                StatusCode::BAD_REQUEST,
                "the default context holds the sandbox's files: it cannot be removed \
                 (restart it, or kill the sandbox)",
            )),
            Some(i) => Ok(all.remove(i).session),
            None => Err(fail(
                StatusCode::NOT_FOUND,
                format!("context '{id}' not found"),
            )),
        }
    };
    match removed {
        Ok(session) => {
            close_sessions(&e2b, vec![session]).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found reviewing the fuzz target `http_e2b` (docs/fuzzing.md): a huge timeout panicked in
    /// `Duration::from_secs_f64`, and a panic aborts the server.
    #[test]
    fn fuzz_sandbox_timeout_beyond_a_duration_is_clamped() {
        let server = Duration::from_secs(300);
        for body in [
            &b"{\"timeout\": 1e300}"[..],
            b"{\"timeout\": 1.7976931348623157e308}",
        ] {
            let (_, idle) = parse_new_sandbox(server, body)
                .map_err(|r| r.status())
                .unwrap();
            assert_eq!(idle, server);
        }
        let refused = parse_new_sandbox(server, b"{\"timeout\": -1e300}").unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn paths_map_to_the_working_directory() {
        assert_eq!(local_name("/home/user/a.txt").as_deref(), Ok("a.txt"));
        assert_eq!(local_name("/tmp/d/a.txt").as_deref(), Ok("d/a.txt"));
        assert_eq!(local_name("a.txt").as_deref(), Ok("a.txt"));
        assert_eq!(local_name("./a.txt").as_deref(), Ok("a.txt"));
        assert!(local_name("/etc/passwd").is_err());
        assert!(local_name("/home/user/../../etc/passwd").is_err());
        assert!(local_name("/home/username/x").is_err());
        assert!(local_name("/tmp").is_err());
    }

    #[test]
    fn results_have_flat_mime_keys() {
        let mut data = BTreeMap::new();
        data.insert("text/plain".to_string(), "'hi'".to_string());
        data.insert("image/png".to_string(), "iVBOR".to_string());
        data.insert("application/json".to_string(), "{\"a\": 1}".to_string());
        data.insert("application/x-other".to_string(), "x".to_string());
        let v = result_line(&data, true);
        assert_eq!(v["type"], "result");
        assert_eq!(v["text"], "hi");
        assert_eq!(v["png"], "iVBOR");
        assert_eq!(v["json"]["a"], 1);
        assert_eq!(v["extra"]["application/x-other"], "x");
        assert_eq!(v["is_main_result"], true);
    }
}
