//! `pysandbox repl`: an interactive console whose every input runs in the sandbox, as the old
//! pysandbox's `interpreter` feature did.
//!
//! Two processes: this one (line editing, history, the per-input wall clock) and a worker, the
//! same binary started with `--worker`, that supervises one jail for the whole session. The worker
//! is a separate process because a jail is started with `clone`, which the supervisor refuses in
//! a multi-threaded process, and this side needs a thread to read the session's output.
//!
//! Protocol: each input line goes to the jail's stdin; after it the bootstrap writes a `Repl`
//! frame (ready, more: the statement is incomplete, done, exit) on its report pipe. The worker
//! relays the jail's stdout, stderr and report to this side as typed frames on one ordered
//! channel (`OutputMode::Relay`, `protocol::Relay`), so nothing the code prints can pass for an
//! answer; the code can write its own frames on its report pipe, which only confuses its own
//! session (a report that does not decode ends it).

use crate::PolicyArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use pysandbox_core::limits;
use pysandbox_core::policy::Policy;
use pysandbox_core::protocol::{Relay, ReplState, Report, ReportReader};
use pysandbox_core::run::{self, RunRequest, Source};
use pysandbox_core::{OutputMode, Stdin};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

/// The environment variable that hands the validated policy (JSON) to the worker.
const POLICY_ENV: &str = "PYSANDBOX_REPL_POLICY";
/// Wall-clock limit of a whole session (time spent typing included); each input has its own
/// limit, the policy's `limits.wall`.
const SESSION_WALL: Duration = Duration::from_secs(24 * 3600);
/// How long the worker may take to set up the jail and start the interpreter.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace on top of the per-input limit for the answer to arrive.
const ANSWER_GRACE: Duration = Duration::from_millis(500);

#[derive(Args)]
pub struct ReplArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// History file (default: ~/.pysandbox_history when the input is a terminal).
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Internal: run the session's jail.
    #[arg(long, hide = true)]
    worker: bool,
}

pub fn run(a: &ReplArgs) -> Result<ExitCode> {
    if a.worker {
        return worker();
    }
    let mut policy = a.policy.policy()?;
    policy.enable("interpreter")?;
    let per_input = policy.limits.wall;
    // The effective limits, stated: the worker must not re-derive them.
    policy.limits = policy.effective_limits();
    let policy_json = serde_json::to_string(&policy)?;
    let mut input = Input::new(a.history.clone())?;
    eprintln!(
        "pysandbox repl: each input runs in the sandbox (limit {} per input; preset {}). Ctrl-D quits.",
        limits::format_duration(per_input),
        policy.preset.name()
    );
    let mut session = Session::start(&policy_json)?;
    let mut more = false;
    loop {
        let prompt = if more { "... " } else { "sandbox>>> " };
        let Some(line) = input.read(prompt)? else {
            break;
        };
        if line.contains('\0') {
            eprintln!("pysandbox: input with a NUL byte ignored");
            continue;
        }
        match session.send(&line, per_input + ANSWER_GRACE)? {
            Answer::More => more = true,
            Answer::Done => more = false,
            Answer::Exit => break,
            Answer::Ended(why) => {
                more = false;
                eprintln!("pysandbox: {why}; a new session starts, its state is lost");
                session = Session::start(&policy_json)?;
            }
        }
    }
    input.save();
    session.close();
    Ok(ExitCode::SUCCESS)
}

/// The worker: one jail for the session, stdin passed through, its streams relayed as frames.
fn worker() -> Result<ExitCode> {
    let text =
        std::env::var(POLICY_ENV).context("the repl worker is started by `pysandbox repl`")?;
    let policy = Policy::from_json_str(&text)?;
    let mut resolved = policy.resolve()?;
    resolved.spec.limits.wall = SESSION_WALL;
    let stdin = std::io::stdin().lock();
    let fd = std::os::fd::AsFd::as_fd(&stdin)
        .try_clone_to_owned()
        .context("duplicating standard input")?;
    let outcome = run::run(
        &resolved.spec,
        RunRequest {
            source: Source::Repl,
            args: Vec::new(),
            stdin: Stdin::Forward(fd),
            output: OutputMode::Relay,
            guard: resolved.guard.clone(),
            api: None,
            warm: None,
            direct_stdout: None,
            extras: Default::default(),
        },
    )?;
    if let Some(limit) = outcome.limit {
        eprintln!(
            "pysandbox: {} limit reached; raise it with {}",
            limit.name(),
            limit.flag()
        );
    }
    std::io::stdout().flush()?;
    Ok(ExitCode::from(crate::exit_code(&outcome)))
}

enum Answer {
    More,
    Done,
    Exit,
    /// The session is over: why.
    Ended(String),
}

struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: Receiver<String>,
}

impl Session {
    fn start(policy_json: &str) -> Result<Session> {
        let exe = std::env::current_exe().context("finding the pysandbox binary")?;
        let mut child = Command::new(exe)
            .args(["repl", "--worker"])
            .env(POLICY_ENV, policy_json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the repl worker")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the worker's stdout")?;
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || relay(stdout, tx));
        let s = Session {
            child,
            stdin,
            answers,
        };
        match s.answers.recv_timeout(START_TIMEOUT) {
            Ok(state) if state == "ready" => Ok(s),
            _ => {
                s.close();
                bail!("the sandboxed interpreter did not start")
            }
        }
    }

    fn send(&mut self, line: &str, limit: Duration) -> Result<Answer> {
        let Some(stdin) = &mut self.stdin else {
            bail!("the session is closed")
        };
        if stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.write_all(b"\n"))
            .and_then(|_| stdin.flush())
            .is_err()
        {
            return Ok(Answer::Ended(self.ended()));
        }
        match self.answers.recv_timeout(limit) {
            Ok(s) if s == "more" => Ok(Answer::More),
            Ok(s) if s == "exit" => Ok(Answer::Exit),
            Ok(s) if s == "malformed" => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Ok(Answer::Ended(
                    "the session's report did not decode (the code wrote on its descriptor 4)"
                        .into(),
                ))
            }
            Ok(_) => Ok(Answer::Done),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Ok(Answer::Ended(format!(
                    "wall-clock limit of {} per input reached; raise it with --timeout",
                    limits::format_duration(limit.saturating_sub(ANSWER_GRACE))
                )))
            }
            Err(RecvTimeoutError::Disconnected) => Ok(Answer::Ended(self.ended())),
        }
    }

    /// Why the worker ended (it has printed the details on stderr).
    fn ended(&mut self) -> String {
        self.stdin = None;
        match self.child.wait() {
            Ok(s) => format!("the sandboxed interpreter ended ({s})"),
            Err(e) => format!("the sandboxed interpreter ended ({e})"),
        }
    }

    fn close(mut self) {
        // End of input makes the bootstrap return; the jail ends with it.
        self.stdin = None;
        if self.answers.recv_timeout(Duration::from_secs(2)).is_err() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Copy the session's output to ours and turn its `Repl` frames into messages, from the
/// worker's relay frames. Ends with the worker, or with a report that does not decode.
fn relay(mut from: impl Read, to: mpsc::Sender<String>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut report = ReportReader::without_results();
    let mut frames = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut at = 0;
        loop {
            let (frame, len) = match Relay::decode_prefix(&pending[at..]) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                // The worker's own frames: a bad one is a bug; nothing after it is believed.
                Err(_) => return,
            };
            at += len;
            match frame {
                Relay::Stdout(d) => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(&d);
                    let _ = out.flush();
                }
                Relay::Stderr(d) => {
                    let _ = std::io::stderr().write_all(&d);
                }
                Relay::Report(d) => {
                    report.feed(&d, &mut frames);
                    if report.error.is_some() {
                        let _ = to.send("malformed".into());
                        return;
                    }
                    for f in frames.drain(..) {
                        let state = match f {
                            Report::Repl(ReplState::Ready) => "ready",
                            Report::Repl(ReplState::More) => "more",
                            Report::Repl(ReplState::Done) => "done",
                            Report::Repl(ReplState::Exit) => "exit",
                            _ => continue,
                        };
                        if to.send(state.to_string()).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        pending.drain(..at);
    }
}

/// Lines from the terminal (with editing and history) or from a pipe.
enum Input {
    Terminal {
        editor: Box<rustyline::DefaultEditor>,
        history: Option<PathBuf>,
    },
    Pipe(std::io::StdinLock<'static>),
}

impl Input {
    fn new(history: Option<PathBuf>) -> Result<Input> {
        if !std::io::stdin().is_terminal() {
            return Ok(Input::Pipe(std::io::stdin().lock()));
        }
        let mut editor = rustyline::DefaultEditor::new().context("starting the line editor")?;
        let history = history.or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pysandbox_history"))
        });
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        Ok(Input::Terminal {
            editor: Box::new(editor),
            history,
        })
    }

    /// The next line, or `None` at end of input.
    fn read(&mut self, prompt: &str) -> Result<Option<String>> {
        match self {
            Input::Terminal { editor, .. } => loop {
                match editor.readline(prompt) {
                    Ok(line) => {
                        if !line.trim().is_empty() {
                            let _ = editor.add_history_entry(line.as_str());
                        }
                        return Ok(Some(line));
                    }
                    Err(rustyline::error::ReadlineError::Interrupted) => {
                        eprintln!("KeyboardInterrupt");
                        continue;
                    }
                    Err(rustyline::error::ReadlineError::Eof) => return Ok(None),
                    Err(e) => return Err(e).context("reading input"),
                }
            },
            Input::Pipe(stdin) => {
                let mut out = std::io::stdout();
                let _ = out.write_all(prompt.as_bytes());
                let _ = out.flush();
                let mut line = String::new();
                if stdin.read_line(&mut line)? == 0 {
                    println!();
                    return Ok(None);
                }
                Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
            }
        }
    }

    fn save(&mut self) {
        if let Input::Terminal {
            editor,
            history: Some(h),
        } = self
        {
            let _ = editor.save_history(h);
        }
    }
}
