//! `pysandbox worker` (one warm jail, for the pool) and `pysandbox batch` (JSON lines through a
//! pool of warm workers, or through named warm sessions: `sessions.rs`).

use crate::sessions::{Line, Sessions};
use crate::PolicyArgs;
use anyhow::{Context, Result};
use clap::Args;
use pysandbox_core::isolate::Injection;
use pysandbox_core::limits::parse_duration;
use pysandbox_core::outcome::{ErrorKind, Outcome};
use pysandbox_core::policy::{Policy, PolicyError};
use pysandbox_core::protocol::FromZygote;
use pysandbox_core::run::{self, RunRequest, Source};
use pysandbox_core::warm::{self, Pool, PoolOptions, WarmError};
use pysandbox_core::{OutputMode, Stdin};
use serde::Deserialize;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

/// Modules a worker imports once so that requests find them loaded (when the policy allows
/// them; an import that fails is skipped).
const PRELOAD: &[&str] = &[
    "json",
    "re",
    "math",
    "random",
    "collections",
    "itertools",
    "functools",
    "datetime",
    "decimal",
    "fractions",
    "statistics",
    "string",
    "textwrap",
    "heapq",
    "bisect",
    "traceback",
    "linecache",
    "codeop",
];

/// `pysandbox worker`: supervise one warm jail whose zygote talks to the client on our stdin
/// (a unix socket, which is also our stdout).
pub fn worker(sessions: bool, api: bool, inject: Option<&str>) -> Result<ExitCode> {
    let text = std::env::var(warm::POLICY_ENV).context("pysandbox worker is started by a pool")?;
    // Errors are answers too: the client reads the zygote's first frame on our stdout.
    let fail = |kind: &str, message: String| {
        let frame = FromZygote::Failed {
            policy: kind == "policy",
            message,
        };
        let _ = std::io::stdout().write_all(&frame.encode());
        let _ = std::io::stdout().flush();
        Ok(ExitCode::from(125))
    };
    let inject = match inject.map(Injection::parse).transpose() {
        Ok(i) => i,
        Err(e) => return fail("setup", format!("--inject-failure: {e}")),
    };
    let policy = match Policy::from_json_str(&text).and_then(|p| p.validate().map(|_| p)) {
        Ok(p) => p,
        Err(e) => return fail("policy", e.to_string()),
    };
    let mut resolved = match policy.resolve() {
        Ok(r) => r,
        Err(e) => return fail("setup", e.to_string()),
    };
    let preload: Vec<String> = PRELOAD.iter().map(|s| s.to_string()).collect();
    let mode = if sessions {
        warm::ZygoteMode::Sessions
    } else {
        warm::ZygoteMode::Pool
    };
    let warm_up = if api {
        warm::WarmUp::Api
    } else {
        warm::WarmUp::Code
    };
    let library = match std::env::current_exe()
        .map_err(|e| WarmError::Worker(format!("finding the pysandbox binary: {e}")))
        .and_then(|exe| warm::find_library(&exe))
    {
        Ok(l) => l,
        Err(e) => return fail("setup", e.to_string()),
    };
    let cfg = match warm::zygote_config(&resolved, &preload, mode, warm_up, inject)
        .and_then(|c| serde_json::to_string(&c).map_err(|e| WarmError::Worker(e.to_string())))
    {
        Ok(c) => c,
        Err(e) => return fail("setup", e.to_string()),
    };
    // The jail lives as long as the worker; the zygote enforces each request's limits.
    let l = &mut resolved.spec.limits;
    l.wall = Duration::from_secs(365 * 24 * 3600);
    l.cpu = None;
    l.memory = None;
    l.processes = 4096;
    l.open_files = 4096;
    l.output = u64::MAX / 4;
    resolved.spec.warm = true;
    resolved.spec.zygote_library = Some(library);
    // The client talks to the zygote directly: our stdin and stdout are handed to it.
    let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned();
    let stdin_fd = dup(std::os::fd::AsFd::as_fd(&std::io::stdin())).context("duplicating stdin")?;
    let stdout_fd =
        dup(std::os::fd::AsFd::as_fd(&std::io::stdout())).context("duplicating stdout")?;
    let outcome = run::run(
        &resolved.spec,
        RunRequest {
            source: Source::Code(String::new()),
            args: Vec::new(),
            stdin: Stdin::Direct(stdin_fd),
            output: OutputMode::Stream,
            guard: None,
            api: None,
            warm: Some(cfg),
            direct_stdout: Some(stdout_fd),
            extras: Default::default(),
        },
    );
    match outcome {
        Ok(o) => Ok(ExitCode::from(crate::exit_code(&o))),
        Err(e) => fail("setup", e.to_string()),
    }
}

#[derive(Args)]
pub struct BatchArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// Warm workers (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Replace a worker after this many requests.
    #[arg(long, value_name = "K", default_value_t = 10_000)]
    recycle_after: u64,
    /// A session ends after this long without a line of its own (lines naming a "session").
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "300s")]
    session_idle: Duration,
}

#[derive(Deserialize)]
struct BatchRequest {
    #[serde(default)]
    id: serde_json::Value,
    /// Lines naming the same session run in input order in one warm session (state kept).
    #[serde(default)]
    session: Option<String>,
    /// `code`, `stdin`, `files` (name → base64), `collect` (globs).
    #[serde(flatten)]
    req: warm::Request,
}

/// What a thread does with the line it read.
enum Next {
    Pool(Box<BatchRequest>),
    /// Run the queued lines of this session: no other thread is.
    Drive(String),
    /// Queued for a session another thread is running, or answered already.
    Nothing,
}

/// `pysandbox batch < requests.jsonl > results.jsonl`: each line `{"id": ..., "code": "...",
/// "stdin": "..."}` runs in a fresh child of a warm worker, or, with `"session": "NAME"`, in the
/// warm session of that name (lines of one session in input order, state kept); each result
/// line carries the id and the outcome fields of `run --json` (in completion order).
pub fn batch(a: &BatchArgs) -> Result<ExitCode> {
    let policy = a.policy.policy()?;
    let tmp_size = policy.effective_limits().tmp_size;
    let exe = std::env::current_exe().context("finding the pysandbox binary")?;
    let mut opts = PoolOptions::new(exe.clone());
    if let Some(n) = a.workers {
        opts.workers = n.max(1);
    }
    opts.recycle_after = a.recycle_after;
    opts.inject = a.policy.injection()?;
    let threads = opts.workers;
    let pool = Pool::new(policy.clone(), opts)?;
    let sessions = Sessions::new(&exe, &policy, a.session_idle);
    let input = Mutex::new(std::io::BufReader::new(std::io::stdin()).lines());
    let output = Mutex::new(std::io::stdout());
    let failed = Mutex::new(0u64);
    let write = |answer: &serde_json::Value, failure: bool| {
        if failure {
            if let Ok(mut f) = failed.lock() {
                *f += 1;
            }
        }
        if let Ok(mut out) = output.lock() {
            let _ = writeln!(out, "{answer}");
        }
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let next = {
                    // Lines of a session are queued while the input is held: in input order.
                    let Ok(mut lines) = input.lock() else { return };
                    let line = match lines.next() {
                        Some(Ok(l)) => l,
                        _ => return,
                    };
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<BatchRequest>(&line) {
                        Err(e) => {
                            let e = format!("bad request: {e}");
                            // The line's id, when it has one, so the answer can be matched.
                            let id = serde_json::from_str::<serde_json::Value>(&line)
                                .ok()
                                .and_then(|v| v.get("id").cloned())
                                .unwrap_or_default();
                            let line = error_line(id, ErrorKind::Policy, e);
                            write(&line, false);
                            Next::Nothing
                        }
                        Ok(BatchRequest {
                            id,
                            session: Some(name),
                            req,
                        }) => {
                            if sessions.enqueue(&name, Line { id, req }) {
                                Next::Drive(name)
                            } else {
                                Next::Nothing
                            }
                        }
                        Ok(req) => Next::Pool(Box::new(req)),
                    }
                };
                let req = match next {
                    Next::Pool(req) => *req,
                    Next::Drive(name) => {
                        sessions.drive(&name, &mut |a| write(&a.line, a.failed));
                        continue;
                    }
                    Next::Nothing => continue,
                };
                let run = match req.req.check(tmp_size) {
                    Ok(()) => pool.run_request(&req.req),
                    Err(e) => Err(WarmError::Policy(PolicyError::Parse(e))),
                };
                let (answer, failure) = match run {
                    Ok(mut o) => {
                        o.id = req.id;
                        (serde_json::to_value(&o).unwrap_or_default(), false)
                    }
                    Err(e) => (error_line(req.id, e.kind(), e.to_string()), true),
                };
                write(&answer, failure);
            });
        }
    });
    let _ = std::io::stdout().flush();
    sessions.close_all();
    pool.shutdown();
    let failed = failed.into_inner().unwrap_or(0);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `pysandbox run --warm FILE...`: each file in a fresh isolated child of a warm pool, outputs
/// printed in the order given; the exit status is the highest of the files'.
pub fn run_files(policy: &PolicyArgs, files: &[String], json: bool) -> Result<ExitCode> {
    if files.is_empty() {
        eprintln!("pysandbox: nothing to run: give one or more SCRIPTs");
        return Ok(ExitCode::from(2));
    }
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .map(|code| (f.clone(), code))
                .with_context(|| format!("reading {f}"))
        })
        .collect::<Result<_>>()?;
    let exe = std::env::current_exe().context("finding the pysandbox binary")?;
    let mut opts = PoolOptions::new(exe);
    opts.workers = opts.workers.min(sources.len());
    opts.inject = policy.injection()?;
    let threads = opts.workers;
    let pool = Pool::new(policy.policy()?, opts)?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<warm::WarmOutcome, WarmError>>>> =
        sources.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((name, code)) = sources.get(i) else {
                    return;
                };
                let r = pool.run_named(Some(name), code, None);
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    pool.shutdown();
    let mut worst = 0u8;
    let mut out = std::io::stdout().lock();
    for ((name, _), slot) in sources.iter().zip(results) {
        let r = slot.into_inner().ok().flatten();
        let code = match r {
            Some(Ok(o)) => {
                if json {
                    let mut v = serde_json::to_value(&o.run)?;
                    v["file"] = serde_json::json!(name);
                    writeln!(out, "{v}")?;
                } else {
                    if sources.len() > 1 {
                        writeln!(out, "==> {name} <==")?;
                    }
                    out.write_all(o.run.stdout.as_bytes())?;
                    out.flush()?;
                    eprint!("{}", o.run.stderr);
                    if let Some(l) = o.run.limit {
                        eprintln!(
                            "pysandbox: {name}: {} limit reached; raise it with {}",
                            l.name(),
                            l.flag()
                        );
                    }
                }
                if o.run
                    .limit
                    .is_some_and(|l| l != pysandbox_core::limits::Limit::Output)
                {
                    124
                } else {
                    match (o.run.exit_code, o.run.signal) {
                        (Some(c), _) => (c & 0xff) as u8,
                        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
                        _ => 1,
                    }
                }
            }
            Some(Err(e)) => {
                eprintln!("pysandbox: {name}: {e}");
                125
            }
            None => 125,
        };
        worst = worst.max(code);
    }
    Ok(ExitCode::from(worst))
}

/// An answer line for a request the sandbox could not carry out: the outcome schema with
/// `status = sandbox_error` and `error` naming the kind (docs/outcome.md), and the request's id.
pub(crate) fn error_line(
    id: serde_json::Value,
    kind: ErrorKind,
    message: String,
) -> serde_json::Value {
    let mut v = serde_json::to_value(Outcome::sandbox_error(kind, message)).unwrap_or_default();
    v["id"] = id;
    v
}
