//! `pysandbox serve`: the machine interface the Python package talks to. One JSON request per
//! line on stdin, one JSON response per line on stdout, one request at a time (a jail is started
//! with `clone`, which needs this process to stay single-threaded; the package runs several
//! `serve` processes for concurrency).
//!
//! Request: `{"id": 1, "policy": {...Policy...}, "op": "exec"|"eval"|"call", "code": "...",
//! "stdin": "..."|null, "input": {...tagged data...}, "result_max": 1048576}`.
//! Response: `{"id": 1, "ok": true, "outcome": {...as run --json...}, "result": "<tagged JSON
//! text from the sandbox>"|null, "result_truncated": false}` or `{"id": 1, "ok": false, "error":
//! {"kind": "policy"|"setup"|"request", "message": "..."}}`. The result is untrusted data,
//! passed through as text for the client's strict decoder; nothing here evaluates it.

use anyhow::Result;
use pysandbox_core::policy::{Policy, PolicyError};
use pysandbox_core::run::{self, RunError, RunRequest, Source};
use pysandbox_core::{OutputMode, Stdin};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::process::ExitCode;

/// Largest request line accepted (code and data passed in).
const REQUEST_MAX: usize = 64 << 20;
/// Default bound of the result coming out.
const RESULT_MAX: u64 = 16 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    id: Value,
    #[serde(default)]
    policy: Value,
    #[serde(default = "exec_op")]
    op: String,
    code: String,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    result_max: Option<u64>,
    /// Files placed in the working directory: name → base64.
    #[serde(default)]
    files: std::collections::BTreeMap<String, String>,
    /// Globs of files to send back.
    #[serde(default)]
    collect: Vec<String>,
    /// Cell mode (rich results).
    #[serde(default)]
    cell: bool,
}

fn exec_op() -> String {
    "exec".into()
}

pub fn run() -> Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(ExitCode::SUCCESS);
        }
        if line.trim().is_empty() {
            continue;
        }
        let response = if line.len() > REQUEST_MAX {
            error(
                &Value::Null,
                "request",
                format!("request larger than {REQUEST_MAX} bytes"),
            )
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(req) => handle(req),
                Err(e) => error(&Value::Null, "request", format!("bad request: {e}")),
            }
        };
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &response)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
}

fn error(id: &Value, kind: &str, message: String) -> Value {
    json!({"id": id, "ok": false, "error": {"kind": kind, "message": message}})
}

fn handle(req: Request) -> Value {
    let policy_text = if req.policy.is_null() {
        "{}".to_string()
    } else {
        req.policy.to_string()
    };
    let resolved = Policy::from_json_str(&policy_text).and_then(|p| {
        p.validate()?;
        p.resolve()
    });
    let resolved = match resolved {
        Ok(r) => r,
        Err(PolicyError::Interpreter(e)) => return error(&req.id, "setup", e.to_string()),
        Err(e) => return error(&req.id, "policy", e.to_string()),
    };
    if !matches!(req.op.as_str(), "exec" | "eval" | "call") {
        return error(
            &req.id,
            "request",
            format!("unknown op '{}': expected exec, eval or call", req.op),
        );
    }
    let mut files = Vec::with_capacity(req.files.len());
    for (name, b64) in &req.files {
        match pysandbox_core::outcome::base64_decode(b64) {
            Some(data) => files.push((name.clone(), data)),
            None => return error(&req.id, "policy", format!("files: '{name}' is not base64")),
        }
    }
    if let Err(e) =
        pysandbox_core::warm::check_inputs(&files, &req.collect, resolved.spec.limits.tmp_size)
    {
        return error(&req.id, "policy", e);
    }
    let api_input = json!({"op": req.op, "input": req.input}).to_string();
    let stdin = match (&req.stdin, resolved.stdin) {
        (Some(data), true) => Stdin::Data(data.clone().into_bytes()),
        _ => Stdin::Null,
    };
    let max = req.result_max.unwrap_or(RESULT_MAX);
    let outcome = run::run(
        &resolved.spec,
        RunRequest {
            source: Source::Code(req.code),
            args: Vec::new(),
            stdin,
            output: OutputMode::Capture,
            guard: resolved.guard.clone(),
            api: Some((api_input, max)),
            warm: None,
            direct_stdout: None,
            extras: run::RunExtras {
                files,
                collect: req.collect,
                cell: req.cell,
            },
        },
    );
    let outcome = match outcome {
        Ok(o) => o,
        Err(RunError::Supervisor(e)) => return error(&req.id, "setup", e.to_string()),
        Err(e) => return error(&req.id, "setup", e.to_string()),
    };
    let max_bytes = usize::try_from(max).unwrap_or(usize::MAX);
    let reported = run::reported(&outcome.report, max_bytes);
    let too_big = outcome.report_truncated || reported.result_truncated;
    let result = reported
        .result
        .filter(|_| !too_big)
        .map(|r| String::from_utf8_lossy(&r).into_owned());
    json!({
        "id": req.id,
        "ok": true,
        "outcome": run::outcome(&outcome),
        "result": result,
        "result_truncated": too_big,
        "report_error": reported.error.map(|e| e.to_string()),
    })
}
