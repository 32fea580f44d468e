//! `pysandbox repl`: an interactive console whose every input runs in the sandbox, as the old
//! pysandbox's `interpreter` feature did.
//!
//! Two processes: this one (line editing, history, the per-input wall clock) and a worker, the
//! same binary started with `--worker`, that supervises one jail for the whole session. The worker
//! is a separate process because a jail is started with `clone`, which the supervisor refuses in
//! a multi-threaded process, and this side needs a thread to read the session's output.
//!
//! Protocol: each input line goes to the jail's stdin; the bootstrap answers on stdout with a line
//! `\0TOKEN STATE`, STATE being `ready`, `more` (the statement is incomplete), `done` or `exit`.
//! The token is random per session so ordinary output cannot look like an answer by accident.
//! Untrusted code can print it on purpose: that only confuses its own session.

use crate::PolicyArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use pysandbox_core::limits;
use pysandbox_core::policy::Policy;
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
    /// Internal: run the session's jail with this token.
    #[arg(long, hide = true, value_name = "TOKEN")]
    worker: Option<String>,
}

pub fn run(a: &ReplArgs) -> Result<ExitCode> {
    if let Some(token) = &a.worker {
        return worker(token);
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

/// The worker: one jail for the session, stdin and stdout passed through.
fn worker(token: &str) -> Result<ExitCode> {
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
            source: Source::Repl {
                token: token.to_string(),
            },
            args: Vec::new(),
            stdin: Stdin::Forward(fd),
            output: OutputMode::Stream,
            guard: resolved.guard.clone(),
            api: None,
            warm: None,
            direct_stdout: None,
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
        let token = random_token()?;
        let exe = std::env::current_exe().context("finding the pysandbox binary")?;
        let mut child = Command::new(exe)
            .args(["repl", "--worker", &token])
            .env(POLICY_ENV, policy_json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the repl worker")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the worker's stdout")?;
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || relay(stdout, &token, tx));
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

/// Copy the session's stdout to ours, turning answer lines into messages.
fn relay(mut from: impl Read, token: &str, to: mpsc::Sender<String>) {
    let marker = format!("\0{token} ");
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut out = std::io::stdout();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        loop {
            let Some(at) = find(&pending, marker.as_bytes()) else {
                // Keep a tail that could be the start of a marker; print the rest.
                let keep = pending
                    .iter()
                    .rposition(|&b| b == 0)
                    .filter(|&z| pending.len() - z < marker.len())
                    .unwrap_or(pending.len());
                let _ = out.write_all(&pending[..keep]);
                let _ = out.flush();
                pending.drain(..keep);
                break;
            };
            let Some(nl) = pending[at..].iter().position(|&b| b == b'\n') else {
                break;
            };
            let _ = out.write_all(&pending[..at]);
            let _ = out.flush();
            let state = String::from_utf8_lossy(&pending[at + marker.len()..at + nl]).into_owned();
            pending.drain(..at + nl + 1);
            if to.send(state).is_err() {
                return;
            }
        }
    }
    let _ = out.write_all(&pending);
    let _ = out.flush();
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
