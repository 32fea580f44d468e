//! `pysandbox server`: an HTTP service over the warm pool. The core knows nothing of HTTP: this
//! crate translates JSON bodies into the core's policy and requests, and its outcomes (one
//! schema, `pysandbox_core::outcome`) and error kinds (one table: HTTP statuses included) back.
//!
//! Routes: the native API under `/v1` ([`native`]), the playground at `/` ([`playground`]),
//! the SandboxFusion ([`fusion`]) and Piston ([`piston`]) compatible APIs, `/healthz`,
//! `/readyz`, `/metrics`.
//! Authentication: with tokens, every route but `/healthz` and the playground's files needs
//! `Authorization: Bearer`; without, the server listens on loopback only.

pub mod e2b;
pub mod fusion;
pub mod metrics;
pub mod native;
pub mod openapi;
pub mod piston;
pub mod playground;
pub mod state;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use pysandbox_core::outcome::{ErrorKind, Outcome, RunStatus};
use pysandbox_core::warm::{PoolOptions, WarmError, WarmOutcome};
use state::{App, Pools, Sessions};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use state::ServerOptions;

/// An error answer: the outcome schema's `sandbox_error` (its `error.type` the error kind), with
/// the HTTP status the request's fault calls for.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::Policy, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, ErrorKind::Policy, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Setup, message)
    }

    /// The status of the error-kind table for a warm pool's error.
    pub fn from_warm(e: &WarmError) -> ApiError {
        let kind = e.kind();
        ApiError::new(status_of(kind), kind, e.to_string())
    }

    /// The same error, located in a larger body (`[3]` of a batch).
    pub fn at(mut self, place: &str) -> ApiError {
        self.message = format!("{place}: {}", self.message);
        self
    }
}

fn status_of(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.row().http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let o = Outcome::sandbox_error(self.kind, self.message);
        let mut r = (self.status, axum::Json(o)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        r
    }
}

/// Run blocking work (the core's pools and sessions) off the async threads, counting it as in
/// flight.
pub(crate) async fn blocking<R: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&App) -> R + Send + 'static,
) -> R {
    let app = Arc::clone(app);
    app.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let a2 = Arc::clone(&app);
    let r = tokio::task::spawn_blocking(move || f(&a2)).await;
    app.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    match r {
        Ok(v) => v,
        // Only a panic ends a blocking task early, and a panic aborts this process (release
        // profile): there is nothing to answer.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Count a limit the run tripped.
pub(crate) fn count_limit(app: &App, o: &Outcome) {
    if let Some(l) = o.limit {
        app.metrics.limit(l.name());
    }
}

/// A run's outcome as a response: 200 for any run (its status says how it went), the error
/// table's status for a sandbox error.
pub(crate) fn outcome_response(app: &App, result: Result<WarmOutcome, WarmError>) -> Response {
    match result {
        Ok(o) => {
            count_limit(app, &o.run);
            let status = if o.run.status == RunStatus::SandboxError {
                o.run
                    .error
                    .as_ref()
                    .and_then(|e| kind_named(&e.kind))
                    .map_or(StatusCode::INTERNAL_SERVER_ERROR, status_of)
            } else {
                StatusCode::OK
            };
            (status, axum::Json(o.run)).into_response()
        }
        Err(e) => ApiError::from_warm(&e).into_response(),
    }
}

fn kind_named(name: &str) -> Option<ErrorKind> {
    pysandbox_core::outcome::ERROR_TABLE
        .iter()
        .map(|r| r.kind)
        .find(|k| k.name() == name)
}

/// Constant-time comparison of a presented token with the configured ones.
pub(crate) fn token_ok(app: &App, presented: &str) -> bool {
    let mut ok = false;
    for t in &app.opts.tokens {
        let (a, b) = (t.as_bytes(), presented.as_bytes());
        let mut diff = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
        }
        ok |= diff == 0;
    }
    ok
}

/// The tokens a request presents: `Authorization: Bearer T`; `Authorization: Basic` with T as
/// the password (what HTTP clients send for a URL `http://user:T@host`: SandboxFusion's client
/// has no other way); or, for E2B's SDK, which sends its own headers, `X-API-Key: T` (control
/// plane), `X-Access-Token: T` (envd) or `E2B-Traffic-Access-Token: T` (the code interpreter's
/// contexts). envd's `Basic user:` names a user with no password: not a token.
pub(crate) fn presented(headers: &HeaderMap) -> Vec<String> {
    let mut all = Vec::new();
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            all.push(t.trim().to_string());
        } else if let Some(b) = v.strip_prefix("Basic ") {
            let pair = pysandbox_core::outcome::base64_decode(b.trim())
                .and_then(|d| String::from_utf8(d).ok());
            if let Some((_, password)) = pair.as_deref().and_then(|p| p.split_once(':')) {
                if !password.is_empty() {
                    all.push(password.to_string());
                }
            }
        }
    }
    for h in ["x-api-key", "x-access-token", "e2b-traffic-access-token"] {
        if let Some(t) = headers.get(h).and_then(|v| v.to_str().ok()) {
            all.push(t.to_string());
        }
    }
    all
}

async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    // The playground's page and script hold nothing (its calls carry the token): a browser
    // navigating to it cannot send one.
    let path = req.uri().path();
    let open = path == "/healthz" || playground::OPEN_PATHS.contains(&path);
    if app.opts.tokens.is_empty() || open {
        return next.run(req).await;
    }
    let ok = presented(req.headers()).iter().any(|t| token_ok(&app, t));
    match ok {
        true => next.run(req).await,
        _ if e2b::owns(req.uri().path()) => e2b::unauthorized(),
        _ => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorKind::Policy,
                "missing or wrong token: send Authorization: Bearer <token> (docs/server.md lists the \
                 other ways clients present one)",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

/// Access log and metrics for every request.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().clone();
    let r = next.run(req).await;
    let took = start.elapsed();
    app.metrics.record(&route, r.status().as_u16(), took);
    tracing::info!(
        method = %method,
        route = %route,
        status = r.status().as_u16(),
        ms = took.as_secs_f64() * 1e3,
        "request"
    );
    r
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.pools.ceiling().workers() > 0 {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no warm worker\n").into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app
        .metrics
        .render(app.pools.ceiling().workers(), app.sessions.live());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Read a request's whole body before its handler runs, within `--body-timeout` and
/// `--max-body`: a slow client cannot hold a request (and so a worker) by trickling its body,
/// and both faults are answered in the outcome schema (408, 413) like every other error.
async fn read_body(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let max = app.opts.max_body;
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Policy,
            format!("body: larger than the server's bound of {max} bytes (--max-body)"),
        )
        .into_response()
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_big();
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(app.opts.body_timeout, axum::body::to_bytes(body, max)).await;
    match read {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, bytes.into())).await,
        Ok(Err(e)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return too_big();
                }
                source = s.source();
            }
            ApiError::bad_request(format!("body: {e}")).into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Policy,
            format!(
                "body: not received within {:?} (--body-timeout)",
                app.opts.body_timeout
            ),
        )
        .into_response(),
    }
}

/// The native API's routes and the service's own, as (method, path, handler): the router serves
/// exactly these and `/openapi.json` must describe each (a test holds the two together).
pub(crate) fn api_routes() -> Vec<(
    &'static str,
    &'static str,
    axum::routing::MethodRouter<Arc<App>>,
)> {
    use axum::routing::{delete, put};
    use native as n;
    vec![
        ("get", "/healthz", get(healthz)),
        ("get", "/readyz", get(readyz)),
        ("get", "/metrics", get(metrics)),
        ("get", "/v1/info", get(n::info)),
        ("post", "/v1/execute", post(n::execute)),
        ("post", "/v1/batch", post(n::batch)),
        ("post", "/v1/judge", post(n::judge)),
        ("post", "/v1/sessions", post(n::create_session)),
        ("delete", "/v1/sessions/{id}", delete(n::delete_session)),
        (
            "post",
            "/v1/sessions/{id}/execute",
            post(n::session_execute),
        ),
        ("get", "/v1/sessions/{id}/files/{*path}", get(n::get_file)),
        ("put", "/v1/sessions/{id}/files/{*path}", put(n::put_file)),
    ]
}

/// Every route.
pub fn router(app: Arc<App>) -> Router {
    let mut r = Router::new()
        .route("/", get(playground::page))
        .route("/playground.js", get(playground::script))
        .route("/openapi.json", get(openapi::serve));
    for (_, path, handler) in api_routes() {
        r = r.route(path, handler);
    }
    r.merge(fusion::routes())
        .merge(piston::routes())
        .merge(e2b::router(Arc::clone(&app)))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            read_body,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            observe,
        ))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), auth))
        .layer(DefaultBodyLimit::max(app.opts.max_body))
        .with_state(app)
}

/// How long requests in flight may take to finish after SIGTERM.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Why `opts` is not a configuration to serve with (the operator's fault), if it is not:
/// without tokens, loopback only.
pub fn refusal(opts: &ServerOptions) -> Option<String> {
    (opts.tokens.is_empty() && !opts.listen.ip().is_loopback()).then(|| {
        format!(
            "refusing to listen on {} without tokens: give --token-file, or listen on loopback \
             (127.0.0.1)",
            opts.listen
        )
    })
}

/// Start the warm pool, then serve until SIGTERM or SIGINT; then drain (requests in flight
/// finish) and stop every worker and session.
pub fn serve(opts: ServerOptions) -> anyhow::Result<()> {
    if let Some(why) = refusal(&opts) {
        anyhow::bail!(why);
    }
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PYSANDBOX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let ceiling = pysandbox_core::judge::policy(&opts.policy);
    ceiling.validate()?;
    let interp = pysandbox_core::interp::resolve(ceiling.python.as_deref()).ok();
    let python_version = interp
        .as_ref()
        .map(|i| i.version.clone())
        .unwrap_or_default();
    let packages = match (&interp, ceiling.preset) {
        (Some(i), pysandbox_core::policy::Preset::Full) => state::installed(&i.site_packages),
        _ => Vec::new(),
    };
    let mut pool_opts = PoolOptions::new(&opts.binary);
    pool_opts.workers = opts.workers.max(1);
    pool_opts.max_queue = opts.max_queue;
    let pools = Pools::start(&ceiling, pool_opts)?;
    let app = Arc::new(App {
        sessions: Sessions::new(opts.max_sessions, opts.session_idle),
        opts,
        ceiling,
        pools,
        metrics: metrics::Metrics::default(),
        started: Instant::now(),
        python_version,
        packages,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(run(Arc::clone(&app)));
    app.sessions.close_all();
    app.pools.shutdown();
    result
}

async fn run(app: Arc<App>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(app.opts.listen).await?;
    let local = listener.local_addr()?;
    if app.opts.tokens.is_empty() {
        tracing::warn!(%local, "listening without tokens: loopback only");
    } else {
        tracing::info!(%local, tokens = app.opts.tokens.len(), "listening");
    }
    // Tests and scripts read the address (port 0 picks one) from this line on stdout.
    println!("pysandbox server listening on http://{local}");
    let reaper = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                let a = Arc::clone(&app);
                let _ = tokio::task::spawn_blocking(move || a.sessions.reap()).await;
            }
        })
    };
    accept(listener, router(Arc::clone(&app)), app.opts.header_timeout).await;
    reaper.abort();
    tracing::info!("drained: stopping workers and sessions");
    Ok(())
}

/// Serve connections until SIGTERM or SIGINT, then stop accepting and wait for the requests in
/// flight (at most [`DRAIN_TIMEOUT`]). HTTP/1 with a header read timeout: a client that never
/// finishes its headers is dropped.
async fn accept(listener: tokio::net::TcpListener, app: Router, header_timeout: Duration) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let stream = match conn {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of descriptors, say: wait a little rather than spin.
                        tracing::warn!(error = %e, "accept");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let svc = TowerToHyperService::new(app.clone());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut signal => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the drain timeout");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("signal: draining");
}

/// An outcome with these fields (the compatible APIs' unit tests map them).
#[cfg(test)]
pub(crate) fn test_outcome(
    status: RunStatus,
    limit: Option<pysandbox_core::limits::Limit>,
    exit: Option<i32>,
    sig: Option<i32>,
) -> Outcome {
    let mut o = Outcome::sandbox_error(ErrorKind::Worker, String::new());
    o.status = status;
    o.limit = limit;
    o.exit_code = exit;
    o.signal = sig;
    o.error = None;
    o
}
