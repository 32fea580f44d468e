//! `pysandbox-server`: the HTTP service (`pysandbox server` becomes this binary, next to
//! `pysandbox`). A binary of its own so that `pysandbox` does not carry the HTTP stack: half its
//! size, and with it relocations and page faults at every cold run's start.
#![forbid(unsafe_code)]

#[path = "policy_args.rs"]
mod policy_args;
#[path = "server.rs"]
mod server;

use clap::Parser;
pub(crate) use policy_args::PolicyArgs;
use std::process::ExitCode;

/// An HTTP service over the warm pool: the native API (/v1), health, readiness, metrics.
///
/// `pysandbox server --listen 127.0.0.1:8080 --policy ceiling.toml --token-file tokens`. The
/// policy is the ceiling: a request may narrow its limits and features, never widen them (403).
/// Without --token-file it listens on loopback only.
#[derive(Parser)]
#[command(name = "pysandbox server", bin_name = "pysandbox server", version)]
struct ServerCli {
    #[command(flatten)]
    args: server::ServerArgs,
}

fn main() -> ExitCode {
    let cli = match ServerCli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match server::run(&cli.args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pysandbox: {e:#}");
            // As the other commands: a policy the operator got wrong is bad usage, the rest is
            // the sandbox's setup.
            let usage = e
                .downcast_ref::<pysandbox_core::policy::PolicyError>()
                .is_some_and(|p| !matches!(p, pysandbox_core::policy::PolicyError::Interpreter(_)));
            ExitCode::from(if usage { 2 } else { 125 })
        }
    }
}
