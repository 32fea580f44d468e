//! `pysandbox`: run untrusted Python in a Linux sandbox.
#![cfg_attr(not(test), no_main)]
#![deny(unsafe_code)]

mod batch;
mod doctor;
mod judge;
mod policy_args;
mod repl;
mod serve;
mod sessions;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
pub(crate) use policy_args::PolicyArgs;
use pysandbox_core::layers::{self, Layer, Layers};
use pysandbox_core::limits::{self, Limit};
use pysandbox_core::outcome::{ErrorKind, Outcome as RunOutcome};
use pysandbox_core::policy::{Feature, PolicyError};
use pysandbox_core::run::{self, RunRequest, Source};
use pysandbox_core::warm;
use pysandbox_core::{Limits, Outcome, OutputMode, Status, Stdin};
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

/// `run`'s help, shared by the whole parser ([`Cli`]) and the one a cold run builds ([`RunCli`]).
const RUN_ABOUT: &str = "Run a Python file or string in a fresh sandbox";
const RUN_LONG_ABOUT: &str = "Run a Python file or string in a fresh sandbox.

Exit status: the script's own; 128+N if killed by signal N; 124 if a limit stopped it; 125 if \
the sandbox could not be set up; 2 for bad usage.";

/// The parser of `pysandbox run` alone: a cold run is the latency-sensitive command, and clap
/// builds every argument of every subcommand before parsing (about 0.5 M instructions, a twentieth
/// of a cold run, measured with callgrind). Same name, version and `run` definition as [`Cli`]:
/// the same help, errors and result.
#[derive(Parser)]
#[command(name = "pysandbox", version)]
struct RunCli {
    #[command(subcommand)]
    command: RunOnly,
}

#[derive(Subcommand)]
enum RunOnly {
    #[command(about = RUN_ABOUT, long_about = RUN_LONG_ABOUT)]
    Run(Box<RunArgs>),
}

/// The command line, parsed by [`RunCli`] when it starts with `run`. The parsers are leaked, not
/// dropped: the process is short-lived or lives for good, and freeing clap's tree costs as much
/// as half of building it.
fn parse_command_line() -> Result<Command, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parse = |cmd: clap::Command| {
        let cmd = Box::leak(Box::new(cmd));
        let matches = Box::leak(Box::new(cmd.try_get_matches_from_mut(&args)?));
        Ok::<_, clap::Error>((cmd, &*matches))
    };
    if args.get(1).is_some_and(|a| a == "run") {
        let (cmd, matches) = parse(RunCli::command())?;
        let RunOnly::Run(a) = RunCli::from_arg_matches(matches)
            .map_err(|e| e.format(cmd))?
            .command;
        return Ok(Command::Run(a));
    }
    let (cmd, matches) = parse(Cli::command())?;
    Ok(Cli::from_arg_matches(matches)
        .map_err(|e| e.format(cmd))?
        .command)
}

#[derive(Subcommand)]
enum Command {
    #[command(about = RUN_ABOUT, long_about = RUN_LONG_ABOUT)]
    Run(Box<RunArgs>),
    /// Show the effective policy, or list the features.
    #[command(subcommand)]
    Policy(Box<PolicyCommand>),
    /// The machine interface of the Python package: JSON requests on stdin, responses on stdout.
    #[command(hide = true)]
    Serve,
    /// One warm jail for a pool (started by `batch` and the pool API).
    #[command(hide = true)]
    Worker {
        /// Fork children only when asked, for sessions (no request child kept ready).
        #[arg(long)]
        sessions: bool,
        /// Children also warm up the Python package's exec/eval/call path.
        #[arg(long)]
        api: bool,
        /// Test-only: make isolation step STEP fail in the Nth child (`STEP[:N]`).
        #[arg(long, value_name = "STEP[:N]")]
        inject_failure: Option<String>,
    },
    /// Run JSON-lines requests (`{"id":…, "code":…}`) through a pool of warm workers.
    Batch(Box<batch::BatchArgs>),
    /// Run one program against many inputs, each case in a fresh sandbox, with a verdict per case.
    ///
    /// `pysandbox judge prog.py --cases cases.jsonl`, one case per line: `{"stdin": "1 2\n",
    /// "expected": "3\n"}`. Verdicts: AC, WA, TLE, MLE, RE, OLE. Exit status: 0 when every case
    /// passed, 1 when some did not, 2 for bad usage (nothing runs), 125 if the sandbox failed.
    Judge(Box<judge::JudgeArgs>),
    /// An interactive console whose every input runs in the sandbox (prompt `sandbox>>> `).
    Repl(Box<repl::ReplArgs>),
    /// An HTTP service over the warm pool: the native API (/v1), health, readiness, metrics.
    ///
    /// `pysandbox server --listen 127.0.0.1:8080 --policy ceiling.toml --token-file tokens`.
    /// The policy is the ceiling: a request may narrow its limits and features, never widen
    /// them (403). Without --token-file it listens on loopback only. `pysandbox server --help`
    /// lists the options (the service is the `pysandbox-server` binary next to this one).
    #[command(disable_help_flag = true)]
    Server {
        /// The server's options.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "OPTIONS"
        )]
        args: Vec<std::ffi::OsString>,
    },
    /// Show which kernel features this machine has and what pysandbox would use.
    Doctor {
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// Print the JSON Schema of a run's outcome (`run --json`, `batch` lines; docs/outcome.md).
    Schema {
        /// Print the error-kind table instead (Markdown).
        #[arg(long)]
        errors: bool,
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
    /// Run every SCRIPT given (no arguments) through warm workers, each in a fresh isolated
    /// child, and print their outputs in order (`--json`: one line per script).
    #[arg(long, conflicts_with = "code")]
    warm: bool,
    /// Place a host file in the working directory before the code runs: PATH (under its base
    /// name) or NAME=PATH; repeatable. Counted in the /tmp size.
    #[arg(long = "file", value_name = "[NAME=]PATH")]
    files: Vec<String>,
    /// Send back the files whose path (relative to the working directory) matches GLOB after
    /// the run (`*` also crosses `/`); repeatable. In --json as `files` (base64).
    #[arg(long = "collect", value_name = "GLOB")]
    collect: Vec<String>,
    /// Also write the collected files under DIR (never outside it, whatever their names).
    #[arg(long, value_name = "DIR", requires = "collect")]
    collect_dir: Option<PathBuf>,
    /// Cell mode (notebook semantics): the value of the last expression is the main result
    /// (its text printed after the run; in --json every rich result, plots as PNG, under
    /// `results`), `display(obj)` adds results.
    #[arg(long)]
    cell: bool,
    /// Test-only (the layer matrix): turn this isolation layer off; repeatable. Refused unless
    /// the caller also sets PYSANDBOX_TESTING_DISABLE_LAYERS=1 (see crates/core/src/layers.rs).
    #[arg(long = "disable-layer", value_name = "LAYER", hide = true)]
    disable_layers: Vec<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// The script, then its arguments.
    #[arg(
        value_name = "SCRIPT",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    script: Vec<String>,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print the effective policy (defaults, file and flags combined) as TOML.
    Show {
        #[command(flatten)]
        policy: Box<PolicyArgs>,
    },
    /// List the features, what each grants and what it turns on.
    Features,
}

/// The process's entry point, in place of std's runtime start. That start also finds the main
/// thread's stack to guard it (glibc reads and parses /proc/self/maps for it: 0.1 M instructions
/// and a dozen system calls of every run, measured with callgrind and strace) and installs a
/// stack-overflow handler: the command needs neither (an overflow is still a SIGSEGV).
/// What else it does is done here ([`pysandbox_core::start_process`]); the arguments reach
/// `std::env::args` as ever (glibc hands them to std before `main`), and stdout is flushed as
/// returning from std's `main` does.
// SAFETY: the binary's only `main` symbol, with the signature glibc's start calls it with; it
// touches no raw pointer.
#[cfg(not(test))]
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    pysandbox_core::start_process();
    let code = run_command();
    let _ = std::io::stdout().flush();
    // `ExitCode` has no stable conversion to a number (`exit_process` is unstable); every one
    // this command returns is made from a u8.
    (0..=u8::MAX)
        .find(|n| ExitCode::from(*n) == code)
        .map_or(1, std::ffi::c_int::from)
}

#[cfg_attr(test, allow(dead_code))]
fn run_command() -> ExitCode {
    let command = match parse_command_line() {
        Ok(command) => command,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let result = match command {
        Command::Run(args) => cmd_run(*args),
        Command::Policy(p) => match *p {
            PolicyCommand::Show { policy } => cmd_policy_show(&policy),
            PolicyCommand::Features => cmd_features(),
        },
        Command::Repl(args) => repl::run(&args),
        Command::Serve => serve::run(),
        Command::Worker {
            sessions,
            api,
            inject_failure,
        } => batch::worker(sessions, api, inject_failure.as_deref()),
        Command::Batch(a) => batch::batch(&a),
        Command::Judge(a) => judge::run(&a),
        Command::Server { args } => cmd_server(&args),
        Command::Doctor { python } => doctor::run(python.as_deref()),
        Command::Schema { errors } => {
            if errors {
                print!("{}", pysandbox_core::outcome::error_table_markdown());
            } else {
                print!("{}", pysandbox_core::outcome::schema());
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        // The reader of stdout went away (`| head`): nothing more to say, as ripgrep does.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let bad_policy = e
                .downcast_ref::<PolicyError>()
                .is_some_and(|p| !matches!(p, PolicyError::Interpreter(_)));
            eprintln!("pysandbox: {e:#}");
            ExitCode::from(if bad_policy { EXIT_USAGE } else { EXIT_SETUP })
        }
    }
}

/// `pysandbox server`: the `pysandbox-server` binary next to this one, which the command
/// becomes. The service is a binary of its own so that the others do not load its code: the
/// HTTP stack doubled this binary's size, and with it the relocations and page faults of every
/// cold run's start.
fn cmd_server(args: &[std::ffi::OsString]) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding the pysandbox binary")?;
    let server = exe.with_file_name(SERVER_BINARY);
    let err = std::process::Command::new(&server)
        .arg0("pysandbox server")
        .args(args)
        .exec();
    eprintln!(
        "pysandbox: cannot start the server, {}: {err} (it ships next to {}: reinstall pysandbox)",
        server.display(),
        exe.display()
    );
    Ok(ExitCode::from(EXIT_SETUP))
}

/// The service's binary, next to `pysandbox`.
const SERVER_BINARY: &str = "pysandbox-server";

/// Whether `e` is a write to a stdout whose reader has gone.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

fn usage(msg: String) -> Result<ExitCode> {
    eprintln!("pysandbox: {msg}");
    Ok(ExitCode::from(EXIT_USAGE))
}

fn cmd_policy_show(a: &PolicyArgs) -> Result<ExitCode> {
    let p = a.policy()?;
    let mut effective = p.clone();
    effective.features = p.effective_features();
    effective.limits = p.effective_limits();
    effective.network = Some(p.effective_network());
    effective.env = p.effective_env();
    print!(
        "# effective policy: preset, file and flags combined; features include their dependencies\n{}",
        effective.to_toml_string()
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_features() -> Result<ExitCode> {
    for f in Feature::all() {
        let req: Vec<_> = f.requires().iter().map(|r| r.name()).collect();
        let req = if req.is_empty() {
            String::new()
        } else {
            format!(" (turns on: {})", req.join(", "))
        };
        println!("{:<14} {}{}", f.name(), f.doc(), req);
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_run(a: RunArgs) -> Result<ExitCode> {
    let json = a.json && !a.warm;
    match cmd_run_inner(a) {
        // With --json the answer is always an outcome: a sandbox error is one too.
        Err(e) if json && !broken_pipe(&e) => {
            let (kind, code) = match e.downcast_ref::<PolicyError>() {
                Some(p) if !matches!(p, PolicyError::Interpreter(_)) => {
                    (ErrorKind::Policy, EXIT_USAGE)
                }
                _ => (ErrorKind::Setup, EXIT_SETUP),
            };
            eprintln!("pysandbox: {e:#}");
            let o = RunOutcome::sandbox_error(kind, format!("{e:#}"));
            writeln!(std::io::stdout(), "{}", serde_json::to_string(&o)?)?;
            Ok(ExitCode::from(code))
        }
        r => r,
    }
}

fn cmd_run_inner(a: RunArgs) -> Result<ExitCode> {
    let mut disabled = Layers::NONE;
    for name in &a.disable_layers {
        match Layer::parse(name) {
            Ok(l) => disabled = disabled.with(l),
            Err(e) => return usage(format!("--disable-layer: {e}")),
        }
    }
    if let Err(e) = layers::check_guard(disabled) {
        return usage(e);
    }
    if !disabled.is_empty() {
        if a.warm {
            return usage("--disable-layer applies to cold runs only (not --warm)".into());
        }
        eprintln!(
            "pysandbox: WARNING: test switch: isolation layers off: {}",
            disabled.names()
        );
    }
    if a.warm {
        return batch::run_files(&a.policy, &a.script, a.json);
    }
    let (source, args) = match (a.code, a.script.split_first()) {
        (Some(code), _) => (Source::Code(code), a.script.clone()),
        (None, Some((script, rest))) => (Source::File(PathBuf::from(script)), rest.to_vec()),
        (None, None) => return usage("nothing to run: give a SCRIPT or -c CODE".into()),
    };
    let mut resolved = a.policy.policy()?.resolve()?;
    resolved.spec.inject = a.policy.injection()?.map(|i| i.step);
    resolved.spec.disabled = disabled;
    let files = read_files(&a.files)?;
    warm::check_inputs(&files, &a.collect, resolved.spec.limits.tmp_size)
        .map_err(PolicyError::Parse)?;
    if let Some(dir) = &a.collect_dir {
        if !dir.is_dir() {
            return usage(format!("--collect-dir {}: not a directory", dir.display()));
        }
    }
    let stdin = if resolved.stdin {
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
    let spec = &resolved.spec;
    let outcome = run::run(
        spec,
        RunRequest {
            source,
            args,
            stdin,
            output,
            guard: resolved.guard.clone(),
            api: None,
            warm: None,
            direct_stdout: None,
            extras: run::RunExtras {
                files,
                collect: a.collect.clone(),
                cell: a.cell,
            },
        },
    )?;
    let view = run::outcome(&outcome);
    if let Some(dir) = &a.collect_dir {
        for (name, data) in &view.files {
            let data = pysandbox_core::outcome::base64_decode(data).unwrap_or_default();
            // A name that would leave DIR, or a symlink already in DIR, is refused: that file
            // is not written (the others are).
            if let Err(e) = pysandbox_core::paths::write_beneath(dir, name, &data) {
                eprintln!("pysandbox: {name} not written under {}: {e}", dir.display());
            }
        }
        if !a.json {
            eprintln!(
                "pysandbox: {} file(s) collected into {}{}",
                view.files.len(),
                dir.display(),
                if view.files_truncated {
                    " (some left out: too many or too large)"
                } else {
                    ""
                }
            );
        }
    }
    if a.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &view)?;
        writeln!(out)?;
    } else {
        if let Some(main) = view.results.iter().find(|r| r.is_main_result) {
            // As a console shows a cell's value: its text.
            if let Some(text) = main.data.get("text/plain") {
                writeln!(std::io::stdout(), "{text}")?;
            }
        }
        if let Some(limit) = outcome.limit {
            eprintln!(
                "pysandbox: {}",
                limit_message(limit, &outcome, &spec.limits)
            );
        }
    }
    // Exit without waiting for the jail's teardown (see `Reaper`): the system reaps it.
    std::io::stdout().flush()?;
    std::process::exit(i32::from(exit_code(&outcome)))
}

/// The files of `--file`: `PATH` (named after its base name) or `NAME=PATH`, read with the
/// caller's rights.
fn read_files(specs: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
    specs
        .iter()
        .map(|spec| {
            let (name, path) = match spec.split_once('=') {
                Some((n, p)) => (n.to_string(), PathBuf::from(p)),
                None => {
                    let p = PathBuf::from(spec);
                    let base = p
                        .file_name()
                        .map(|b| b.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (base, p)
                }
            };
            let data = std::fs::read(&path)
                .with_context(|| format!("--file: reading {}", path.display()))?;
            Ok((name, data))
        })
        .collect()
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

pub(crate) fn exit_code(o: &Outcome) -> u8 {
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
