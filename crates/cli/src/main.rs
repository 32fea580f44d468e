//! `pysandbox`: run untrusted Python in a Linux sandbox.
#![forbid(unsafe_code)]

mod doctor;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use pysandbox_core::limits::{self, parse_duration, parse_size, Limit};
use pysandbox_core::run::{self, JsonOutcome, RunRequest, Source};
use pysandbox_core::{interp, JailSpec, Limits, Network, Outcome, OutputMode, Status, Stdin};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status when a limit stopped the run (like timeout(1)).
const EXIT_LIMIT: u8 = 124;
/// Exit status when the sandbox could not be set up (nothing ran).
const EXIT_SETUP: u8 = 125;
/// Exit status for bad usage (clap's own).
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "pysandbox",
    version,
    about = "Run untrusted Python code in a Linux sandbox"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Python file or string in a fresh sandbox.
    ///
    /// Exit status: the script's own; 128+N if killed by signal N; 124 if a limit stopped it;
    /// 125 if the sandbox could not be set up; 2 for bad usage.
    Run(Box<RunArgs>),
    /// Show which kernel features this machine has and what pysandbox would use.
    Doctor {
        #[arg(long)]
        python: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Program passed in as a string (like `python -c`).
    #[arg(short = 'c', value_name = "CODE", conflicts_with = "script")]
    code: Option<String>,
    /// Print one JSON object with the outcome instead of streaming output.
    #[arg(long)]
    json: bool,
    /// Wall-clock limit (e.g. 2s, 250ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,
    /// CPU-time limit, rounded up to whole seconds.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    cpu_time: Option<std::time::Duration>,
    /// Address-space limit (e.g. 256M), or `none`.
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Bytes kept of each of stdout and stderr (e.g. 64K).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_output: Option<u64>,
    /// Processes and threads, the interpreter included (1: no fork, no threads).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    processes: Option<u32>,
    /// Open file descriptors.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(8..))]
    open_files: Option<u32>,
    /// Largest file the code may write.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    file_size: Option<u64>,
    /// Size of the private /tmp.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    tmp_size: Option<u64>,
    /// Make a host path readable (read-only) at the same place inside; repeatable.
    #[arg(long, value_name = "PATH")]
    allow_read: Vec<PathBuf>,
    /// Make a host path writable at the same place inside; repeatable.
    #[arg(long, value_name = "PATH")]
    allow_write: Vec<PathBuf>,
    /// Network: `none` (default) or `host`.
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = ["none", "host"])]
    net: String,
    /// Allow the code to start programs (execve).
    #[arg(long)]
    allow_subprocess: bool,
    /// Forward this terminal's standard input to the code (default: /dev/null).
    #[arg(long)]
    stdin: bool,
    /// Python interpreter to run (default: $PYSANDBOX_PYTHON, python3.11 or python3 on PATH).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// The script, then its arguments.
    #[arg(
        value_name = "SCRIPT",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    script: Vec<String>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Run(args) => cmd_run(*args),
        Command::Doctor { python } => doctor::run(python.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pysandbox: {e:#}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

fn usage(msg: String) -> Result<ExitCode> {
    eprintln!("pysandbox: {msg}");
    Ok(ExitCode::from(EXIT_USAGE))
}

fn cmd_run(a: RunArgs) -> Result<ExitCode> {
    let (source, args) = match (a.code, a.script.split_first()) {
        (Some(code), _) => (Source::Code(code), a.script.clone()),
        (None, Some((script, rest))) => (Source::File(PathBuf::from(script)), rest.to_vec()),
        (None, None) => return usage("nothing to run: give a SCRIPT or -c CODE".into()),
    };
    let mut limits = Limits::default();
    if let Some(t) = a.timeout {
        limits.wall = t;
    }
    limits.cpu = a.cpu_time.or(limits.cpu);
    if let Some(m) = &a.memory {
        limits.memory = match m.as_str() {
            "none" | "unlimited" => None,
            m => Some(parse_size(m).map_err(anyhow::Error::from)?),
        };
    }
    limits.output = a.max_output.unwrap_or(limits.output);
    limits.processes = a.processes.unwrap_or(limits.processes);
    limits.open_files = a.open_files.unwrap_or(limits.open_files);
    limits.file_size = a.file_size.unwrap_or(limits.file_size);
    limits.tmp_size = a.tmp_size.unwrap_or(limits.tmp_size);
    for p in a.allow_read.iter().chain(&a.allow_write) {
        if !p.is_absolute() {
            return usage(format!(
                "--allow-read/--allow-write need an absolute path, got '{}'",
                p.display()
            ));
        }
        if !p.exists() {
            return usage(format!("allowed path '{}' does not exist", p.display()));
        }
    }
    let interpreter =
        interp::resolve(a.python.as_deref()).context("finding the Python interpreter")?;
    let spec = JailSpec {
        interpreter,
        args: vec!["-I".into(), "-S".into(), "-B".into()],
        env: Vec::new(),
        limits,
        read_paths: a.allow_read,
        write_paths: a.allow_write,
        network: if a.net == "host" {
            Network::Host
        } else {
            Network::None
        },
        allow_exec: a.allow_subprocess,
    };
    let stdin = if a.stdin {
        let fd: OwnedFd = std::io::stdin()
            .lock()
            .as_fd_owned()
            .context("duplicating standard input")?;
        Stdin::Forward(fd)
    } else {
        Stdin::Null
    };
    let output = if a.json {
        OutputMode::Capture
    } else {
        OutputMode::Stream
    };
    let outcome = run::run(
        &spec,
        RunRequest {
            source,
            args,
            stdin,
            output,
        },
    )?;
    if a.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &JsonOutcome::from(&outcome))?;
        writeln!(out)?;
    } else if let Some(limit) = outcome.limit {
        eprintln!(
            "pysandbox: {}",
            limit_message(limit, &outcome, &spec.limits)
        );
    }
    // Exit without waiting for the jail's teardown (see `Reaper`): the system reaps it.
    std::io::stdout().flush()?;
    std::process::exit(i32::from(exit_code(&outcome)))
}

trait DupFd {
    fn as_fd_owned(&self) -> std::io::Result<OwnedFd>;
}

impl DupFd for std::io::StdinLock<'_> {
    fn as_fd_owned(&self) -> std::io::Result<OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned()
    }
}

fn exit_code(o: &Outcome) -> u8 {
    if o.limit.is_some() && o.limit != Some(Limit::Output) {
        return EXIT_LIMIT;
    }
    match o.status {
        Status::Exited(c) => (c & 0xff) as u8,
        Status::Signaled(s) => 128u8.wrapping_add(s as u8),
        Status::Killed => EXIT_LIMIT,
    }
}

/// "wall-clock limit of 5s reached; raise it with --timeout".
fn limit_message(limit: Limit, o: &Outcome, l: &Limits) -> String {
    let what = match limit {
        Limit::Wall => format!(
            "wall-clock limit of {} reached",
            limits::format_duration(l.wall)
        ),
        Limit::Cpu => format!(
            "cpu-time limit of {} reached",
            l.cpu.map(limits::format_duration).unwrap_or_default()
        ),
        Limit::Memory => format!(
            "memory limit of {} reached",
            l.memory
                .map(limits::format_size)
                .unwrap_or_else(|| "none".into())
        ),
        Limit::Processes => format!("process limit of {} reached", l.processes),
        Limit::OpenFiles => format!("open-files limit of {} reached", l.open_files),
        Limit::FileSize => format!(
            "file-size limit of {} reached",
            limits::format_size(l.file_size)
        ),
        Limit::TmpSize => format!(
            "/tmp size limit of {} reached",
            limits::format_size(l.tmp_size)
        ),
        Limit::Output => format!(
            "output limit of {} per stream reached ({} bytes of stdout, {} of stderr discarded)",
            limits::format_size(l.output),
            o.stdout
                .total
                .saturating_sub(o.stdout.data.len() as u64)
                .max(if o.stdout.truncated { 1 } else { 0 }),
            o.stderr
                .total
                .saturating_sub(o.stderr.data.len() as u64)
                .max(if o.stderr.truncated { 1 } else { 0 }),
        ),
    };
    format!("{what}; raise it with {}", limit.flag())
}
