//! `pysandbox server`: the HTTP service (crate `pysandbox-server`) with the operator's policy
//! from `--policy FILE` and the usual flags.

use crate::PolicyArgs;
use anyhow::{Context, Result};
use clap::Args;
use pysandbox_core::limits::parse_duration;
use pysandbox_server::ServerOptions;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ServerArgs {
    /// Address to listen on (without --token-file: loopback only).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Warm workers (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Bearer tokens, one per line: routes but /healthz and the playground (/) then need one.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Requests that may wait for a worker; beyond, 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_queue: usize,
    /// Live sessions at most; beyond, 429.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_sessions: usize,
    /// A session ends after this long without a call.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    session_idle: std::time::Duration,
    /// Largest request body (bytes).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    max_body: usize,
    /// A client that has not sent its request's headers after this long is dropped.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    header_timeout: std::time::Duration,
    /// A client that has not sent its request's body after this long gets 408.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    body_timeout: std::time::Duration,
    /// The operator's policy: the ceiling of every request (a request may narrow it).
    #[command(flatten)]
    policy: PolicyArgs,
}

pub fn run(a: &ServerArgs) -> Result<ExitCode> {
    let policy = a.policy.policy()?;
    let tokens = match &a.token_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the tokens in {}", f.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    };
    // Configuration faults are the operator's: said, with exit status 2 (as a bad policy).
    let refuse = |message: String| {
        eprintln!("pysandbox: {message}");
        Ok(ExitCode::from(2))
    };
    if let Some(f) = &a.token_file {
        if tokens.is_empty() {
            return refuse(format!(
                "--token-file {}: no token in the file (one per line)",
                f.display()
            ));
        }
    }
    let opts = ServerOptions {
        listen: a.listen,
        workers: a
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        policy,
        tokens,
        max_queue: a.max_queue,
        max_sessions: a.max_sessions,
        session_idle: a.session_idle,
        // The workers are `pysandbox worker`: the command next to this binary.
        binary: std::env::current_exe()
            .context("finding the pysandbox-server binary")?
            .with_file_name("pysandbox"),
        max_body: a.max_body,
        header_timeout: a.header_timeout,
        body_timeout: a.body_timeout,
    };
    if let Some(why) = pysandbox_server::refusal(&opts) {
        return refuse(why);
    }
    pysandbox_server::serve(opts)?;
    Ok(ExitCode::SUCCESS)
}
