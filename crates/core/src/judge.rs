//! Many inputs, one program: `pysandbox judge` and the Python package's `Sandbox.judge` run a
//! program once per case, each case in a fresh child of a warm [`Pool`], and give each a verdict.
//! The one place where cases are read, outputs compared and outcomes classified: the command line
//! and the package only print or convert what [`judge`] returns.
//!
//! - **Compiled once.** Only data crosses into the sandbox, and every case is a fresh fork of a
//!   zygote that never sees the program, so no code object can be shared between cases. The
//!   program is *checked* once instead: one child of the pool compiles it and runs nothing (the
//!   package API's `compile` operation, `bootstrap/support.py`: no code of the program runs, so
//!   the answer is the bootstrap's, not the program's). The check is the first request to start;
//!   the first cases start beside it on the other workers, not after it (where a CPU is free,
//!   the check adds no latency), and no case starts once it has failed. If it fails (a `SyntaxError`, a limit),
//!   every case gets the check's verdict and run (`RE` for a `SyntaxError`, with the traceback
//!   as its stderr and exit status 1, as running the program gives), the results of cases that
//!   started beside it are dropped (a program that does not compile runs nothing: they failed
//!   the same way), and [`JudgeResult::compile_error`] says why. Each case compiles the program
//!   again in its own child: a fraction of its fork's cost for a program of ordinary size.
//! - **Standard input.** A case's `stdin` always reaches the program: each request carries it
//!   (descriptor 0 of the case's child is a file holding it; the empty string gives an empty
//!   file), and the pool must run a policy with the `stdin` feature, which lets the code read it
//!   through `input()` and `sys.stdin` ([`policy`] adds it; [`judge`] refuses a pool without it).
//! - **The kernel's account.** A case's run ends when its process is gone, and how it ended
//!   (exit status or signal, CPU time, peak memory) is the kernel's (the zygote's `wait4`,
//!   [`Request::until_exit`]), not the child's closing `Done` frame: the program can write that
//!   frame itself, and a program that printed the right answer and then said "done, exit 0"
//!   before hanging or failing would otherwise pass.
//! - **Verdicts** ([`verdict`]): a limit first (wall or CPU time `TLE`, memory `MLE`, output
//!   `OLE`, any other `RE`), then a signal or a non-zero exit (`RE`), then the comparison (`AC`
//!   or `WA`). A case without `expected` is `AC` when its run is clean (exit status 0, no limit).

use crate::limits::{format_size, Limit};
use crate::outcome::{ErrorInfo, Outcome as JsonOutcome, RunStatus};
use crate::policy::{Feature, Policy};
use crate::warm::{Pool, Request, WarmError, WarmOutcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// An example case, for messages.
const EXAMPLE: &str = r#"{"stdin": "1 2\n", "expected": "3\n"}"#;

/// Whitespace for `strip` and `tokens`: Python's `string.whitespace` (ASCII only).
const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r', '\x0b', '\x0c'];

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// A case is not what a case must be; nothing ran.
    #[error("{at}: {problem}")]
    Case { at: At, problem: String },
    #[error("no cases: give at least one, e.g. {EXAMPLE}")]
    NoCases,
    #[error("unknown compare mode '{0}': expected exact (byte for byte), strip (trailing whitespace of each line and of the output ignored) or tokens (whitespace-separated tokens compared)")]
    Compare(String),
    #[error("the pool's policy does not give the program its input: judge with a policy that enables the 'stdin' feature (judge::policy adds it)")]
    NoStdin,
    /// Checking that the program compiles failed in the sandbox itself.
    #[error("checking the program: {0}")]
    Check(Box<WarmError>),
    /// The sandbox failed while running a case (not the program: its failures are verdicts).
    #[error("case {}: {source}", .case + 1)]
    Sandbox { case: usize, source: Box<WarmError> },
}

impl JudgeError {
    /// Bad input from the caller (cases, compare mode), refused before anything ran.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            JudgeError::Case { .. } | JudgeError::NoCases | JudgeError::Compare(_)
        )
    }
}

/// Where a bad case is, in the caller's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// The cases as a whole.
    All,
    /// Item `i` of a list (the Python package): `cases[2]`.
    Index(usize),
    /// A line of a JSON-lines file: `line 4 (case 3)`, both counted from 1 (blank lines are
    /// skipped, so the two may differ).
    Line { line: usize, case: usize },
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::All => write!(f, "cases"),
            At::Index(i) => write!(f, "cases[{i}]"),
            At::Line { line, case } => write!(f, "line {line} (case {case})"),
        }
    }
}

/// How a case's output is compared with its `expected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// Byte for byte.
    #[default]
    Exact,
    /// Trailing whitespace of each line and of the whole output ignored (`\r\n` and `\n` alike).
    Strip,
    /// The whitespace-separated tokens equal, in order.
    Tokens,
}

impl FromStr for Compare {
    type Err = JudgeError;
    fn from_str(s: &str) -> Result<Compare, JudgeError> {
        match s {
            "exact" => Ok(Compare::Exact),
            "strip" => Ok(Compare::Strip),
            "tokens" => Ok(Compare::Tokens),
            _ => Err(JudgeError::Compare(s.to_string())),
        }
    }
}

impl Compare {
    pub fn name(self) -> &'static str {
        match self {
            Compare::Exact => "exact",
            Compare::Strip => "strip",
            Compare::Tokens => "tokens",
        }
    }

    /// Whether `output` counts as `expected`.
    pub fn matches(self, output: &str, expected: &str) -> bool {
        match self {
            Compare::Exact => output == expected,
            Compare::Strip => stripped_lines(output).eq(stripped_lines(expected)),
            Compare::Tokens => tokens(output).eq(tokens(expected)),
        }
    }
}

/// The lines of `s` without their trailing whitespace, trailing empty lines left out.
fn stripped_lines(s: &str) -> impl Iterator<Item = &str> {
    let body = s.trim_end_matches(WHITESPACE);
    // An output of only whitespace has no lines at all (not one empty line).
    let lines = (!body.is_empty()).then(|| body.split('\n'));
    lines
        .into_iter()
        .flatten()
        .map(|l| l.trim_end_matches(WHITESPACE))
}

fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(WHITESPACE).filter(|t| !t.is_empty())
}

/// What became of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Verdict {
    /// The run was clean and its output matched (or there was nothing to compare with).
    #[serde(rename = "AC")]
    Accepted,
    /// The run was clean and its output did not match.
    #[serde(rename = "WA")]
    WrongAnswer,
    /// The wall-clock or CPU-time limit stopped it.
    #[serde(rename = "TLE")]
    TimeLimit,
    /// The memory limit stopped it.
    #[serde(rename = "MLE")]
    MemoryLimit,
    /// An uncaught exception, a non-zero exit status, a signal, or another limit (processes,
    /// open files, file size, `/tmp` size: the outcome's `limit` says which).
    #[serde(rename = "RE")]
    RuntimeError,
    /// It wrote more than the output limit on stdout or stderr.
    #[serde(rename = "OLE")]
    OutputLimit,
}

impl Verdict {
    pub fn code(self) -> &'static str {
        match self {
            Verdict::Accepted => "AC",
            Verdict::WrongAnswer => "WA",
            Verdict::TimeLimit => "TLE",
            Verdict::MemoryLimit => "MLE",
            Verdict::RuntimeError => "RE",
            Verdict::OutputLimit => "OLE",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Classify one run: its limit, then how it ended, then its output against `expected`.
pub fn verdict(o: &JsonOutcome, expected: Option<&str>, compare: Compare) -> Verdict {
    match o.limit {
        Some(Limit::Wall | Limit::Cpu) => return Verdict::TimeLimit,
        Some(Limit::Memory) => return Verdict::MemoryLimit,
        Some(Limit::Output) => return Verdict::OutputLimit,
        Some(_) => return Verdict::RuntimeError,
        None => {}
    }
    if o.stdout_truncated || o.stderr_truncated {
        return Verdict::OutputLimit;
    }
    if o.signal.is_some() || o.exit_code != Some(0) {
        return Verdict::RuntimeError;
    }
    match expected {
        Some(e) if !compare.matches(&o.stdout, e) => Verdict::WrongAnswer,
        _ => Verdict::Accepted,
    }
}

/// One input of the program, and what it should print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// The program's standard input (required; may be empty).
    pub stdin: String,
    /// Its expected stdout; `None`: the case passes when the run is clean.
    #[serde(default)]
    pub expected: Option<String>,
}

/// One case's verdict and its run's outcome (output, usage, how it ended).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CaseResult {
    pub verdict: Verdict,
    #[serde(flatten)]
    pub outcome: JsonOutcome,
}

/// Why the program did not compile: the exception (`SyntaxError`, `ValueError` for a NUL
/// byte, ...) as an outcome's `error` shows one.
pub type CompileError = ErrorInfo;

/// Every case's result, in case order, and the totals.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JudgeResult {
    pub cases: Vec<CaseResult>,
    /// Cases with the verdict `AC`.
    pub passed: usize,
    pub total: usize,
    /// Set when the program did not compile (then no case ran: each carries the check's run).
    pub compile_error: Option<CompileError>,
}

impl JudgeResult {
    fn new(cases: Vec<CaseResult>, compile_error: Option<CompileError>) -> JudgeResult {
        let passed = cases
            .iter()
            .filter(|c| c.verdict == Verdict::Accepted)
            .count();
        JudgeResult {
            total: cases.len(),
            passed,
            cases,
            compile_error,
        }
    }
}

/// `policy` as a judge runs it: with the `stdin` feature, so that the program can read its
/// cases' input (`input()`, `sys.stdin`).
pub fn policy(policy: &Policy) -> Policy {
    let mut p = policy.clone();
    p.features.insert(Feature::Stdin);
    p
}

/// Whether code run under `policy` can read its standard input.
pub fn gives_stdin(policy: &Policy) -> bool {
    policy.effective_features().contains(&Feature::Stdin)
}

/// The cases of a JSON-lines file: one object per line, blank lines skipped.
pub fn cases_from_jsonl(text: &str, policy: &Policy) -> Result<Vec<Case>, JudgeError> {
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = At::Line {
            line: i + 1,
            case: cases.len() + 1,
        };
        let value: Value = serde_json::from_str(line).map_err(|e| JudgeError::Case {
            at,
            problem: format!("not JSON ({e}): write one case per line, e.g. {EXAMPLE}"),
        })?;
        cases.push(case_from_value(&value, at, policy)?);
    }
    if cases.is_empty() {
        return Err(JudgeError::NoCases);
    }
    Ok(cases)
}

/// The cases of a JSON array (the Python package's list, as JSON text).
pub fn cases_from_json(text: &str, policy: &Policy) -> Result<Vec<Case>, JudgeError> {
    let value: Value = serde_json::from_str(text).map_err(|e| JudgeError::Case {
        at: At::All,
        problem: format!("not JSON: {e}"),
    })?;
    let Value::Array(items) = value else {
        return Err(JudgeError::Case {
            at: At::All,
            problem: format!(
                "expected a list of case objects such as {EXAMPLE}, got {}",
                kind(&value)
            ),
        });
    };
    if items.is_empty() {
        return Err(JudgeError::NoCases);
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| case_from_value(v, At::Index(i), policy))
        .collect()
}

/// One case, checked field by field.
fn case_from_value(v: &Value, at: At, policy: &Policy) -> Result<Case, JudgeError> {
    let bad = |problem: String| JudgeError::Case { at, problem };
    let Value::Object(fields) = v else {
        return Err(bad(format!(
            "expected a case object such as {EXAMPLE}, got {}",
            kind(v)
        )));
    };
    if let Some(k) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "stdin" | "expected"))
    {
        return Err(bad(format!(
            "unknown field \"{k}\": a case has \"stdin\" and, optionally, \"expected\""
        )));
    }
    let stdin = match fields.get("stdin") {
        Some(Value::String(s)) => s.clone(),
        None => {
            return Err(bad(
                "\"stdin\" is missing: every case needs its input (\"stdin\": \"\" for none)"
                    .into(),
            ))
        }
        Some(other) => {
            return Err(bad(format!(
                "\"stdin\" must be a string (the program's input), got {}",
                kind(other)
            )))
        }
    };
    let expected = match fields.get("expected") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(other) => {
            return Err(bad(format!(
                "\"expected\" must be a string (the output to compare with) or null, got {}",
                kind(other)
            )))
        }
    };
    let case = Case { stdin, expected };
    check_case(&case, at, policy)?;
    Ok(case)
}

/// What a case needs of the policy: its input is a file in the request's `/tmp`, which must hold
/// it.
fn check_case(case: &Case, at: At, policy: &Policy) -> Result<(), JudgeError> {
    let tmp = policy.effective_limits().tmp_size;
    let size = case.stdin.len() as u64;
    if size >= tmp {
        return Err(JudgeError::Case {
            at,
            problem: format!(
                "\"stdin\" is {size} bytes, more than the sandbox's /tmp holds ({}), where a \
                 case's input is kept: raise the tmp_size limit (--tmp-size, \
                 SandboxConfig(tmp_size=...))",
                format_size(tmp)
            ),
        });
    }
    Ok(())
}

/// "a number", "an array", ...: a JSON value's kind, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Run `code` once per case on `pool` (its workers share the cases; results in case order).
/// `name` is the program's file name in tracebacks. A case's failure is its verdict; an error
/// means bad input (nothing ran) or a failure of the sandbox itself.
pub fn judge(
    pool: &Pool,
    name: Option<&str>,
    code: &str,
    cases: &[Case],
    compare: Compare,
) -> Result<JudgeResult, JudgeError> {
    if cases.is_empty() {
        return Err(JudgeError::NoCases);
    }
    for (i, case) in cases.iter().enumerate() {
        check_case(case, At::Index(i), pool.policy())?;
    }
    if !gives_stdin(pool.policy()) {
        return Err(JudgeError::NoStdin);
    }
    let (check, runs) = run_all(pool, name, code, cases);
    let check = match check {
        Some(Ok(c)) => c,
        Some(Err(e)) => return Err(JudgeError::Check(Box::new(e))),
        None => {
            return Err(JudgeError::Check(Box::new(WarmError::Worker(
                "not run".into(),
            ))))
        }
    };
    if let Some((failed, error)) = compile_failure(&check) {
        // Cases that started beside the check failed to compile too: the check's run stands
        // for all of them.
        let cases = cases.iter().map(|_| failed.clone()).collect();
        return Ok(JudgeResult::new(cases, error));
    }
    let outcomes = outcomes(runs)?;
    let results = outcomes
        .into_iter()
        .zip(cases)
        .map(|(outcome, case)| CaseResult {
            verdict: verdict(&outcome, case.expected.as_deref(), compare),
            outcome,
        })
        .collect();
    Ok(JudgeResult::new(results, None))
}

/// A request that compiles `code` and runs nothing of it.
fn compile_request(name: Option<&str>, code: &str) -> Request {
    let mut req = Request::new(name, code, None);
    req.api = Some(serde_json::json!({"op": "compile"}));
    req
}

/// If the compile check failed: what each case gets, and the compile error (if the check said).
fn compile_failure(check: &WarmOutcome) -> Option<(CaseResult, Option<CompileError>)> {
    let error = check.result.as_deref().and_then(compile_error);
    let v = verdict(&check.run, None, Compare::Exact);
    if v != Verdict::Accepted {
        return Some((
            CaseResult {
                verdict: v,
                outcome: check.run.clone(),
            },
            error,
        ));
    }
    // Without a result that says so, the cases run (and each reports its own failure).
    let error = error?;
    let mut outcome = check.run.clone();
    // What running the program gives: the traceback on stderr, exit status 1.
    outcome.exit_code = Some(1);
    outcome.status = RunStatus::Error;
    outcome.stderr = error.traceback.clone();
    outcome.error = Some(error.clone());
    Some((
        CaseResult {
            verdict: Verdict::RuntimeError,
            outcome,
        },
        Some(error),
    ))
}

/// The `error` of a compile check's result (tagged JSON, `crates/py/src/lib.rs`:
/// `{"d": [["error", {"d": [["type", ...], ["message", ...], ["traceback", ...]]}]]}`). The
/// result is the sandbox's (untrusted): anything else is `None` (fuzz target `judge_inputs`).
pub fn compile_error(result: &str) -> Option<CompileError> {
    let v: Value = serde_json::from_str(result).ok()?;
    let error = tagged_dict(&v)?
        .into_iter()
        .find_map(|(k, v)| (k == "error").then_some(v))?;
    let fields = tagged_dict(error)?;
    let text = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| match v {
                Value::String(s) => s.clone(),
                _ => format!("<{key} not shown>"),
            })
    };
    Some(CompileError {
        kind: text("type")?,
        message: text("message")?,
        traceback: text("traceback")?,
    })
}

/// The string-keyed pairs of a tagged dict (`{"d": [[key, value], ...]}`).
fn tagged_dict(v: &Value) -> Option<Vec<(&str, &Value)>> {
    v.get("d")?
        .as_array()?
        .iter()
        .map(|pair| match pair.as_array()?.as_slice() {
            [Value::String(k), v] => Some((k.as_str(), v)),
            _ => None,
        })
        .collect()
}

/// What one request gave; `None`: not started (after a failure).
type Run = Option<Result<WarmOutcome, WarmError>>;

/// The compile check, then each case in a fresh child, as many at once as the pool has workers:
/// the check is the first request to start, and cases start beside it rather than after it (a
/// case that starts before the check has failed fails to compile the same way, and its result is
/// dropped). A failed check, or a failure of the sandbox, stops the requests not yet started.
fn run_all(pool: &Pool, name: Option<&str>, code: &str, cases: &[Case]) -> (Run, Vec<Run>) {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // Slot 0: the check; slot i + 1: case i.
    let slots: Vec<Mutex<Run>> = (0..=cases.len()).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..pool.workers().min(cases.len() + 1) {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let r = match i.checked_sub(1).map(|c| cases.get(c)) {
                        None => {
                            let r = pool.run_request(&compile_request(name, code));
                            if r.as_ref().map_or(true, |c| compile_failure(c).is_some()) {
                                stop.store(true, Ordering::SeqCst);
                            }
                            r
                        }
                        // Always the case's input, the empty string included (an empty file),
                        // and how the case ended from the kernel, not from the program.
                        Some(Some(case)) => {
                            let mut req = Request::new(name, code, Some(&case.stdin));
                            req.until_exit = true;
                            let r = pool.run_request(&req);
                            if r.is_err() {
                                stop.store(true, Ordering::SeqCst);
                            }
                            r
                        }
                        Some(None) => return,
                    };
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    let mut runs = slots
        .into_iter()
        .map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner()));
    let check = runs.next().flatten();
    (check, runs.collect())
}

/// The cases' outcomes in case order, or the first failure of the sandbox.
fn outcomes(runs: Vec<Run>) -> Result<Vec<JsonOutcome>, JudgeError> {
    let mut outcomes = Vec::with_capacity(runs.len());
    for (case, run) in runs.into_iter().enumerate() {
        // Requests start in order, so every case before a failed one has its outcome.
        let source = match run {
            Some(Ok(o))
                if o.run.exit_code.is_some() || o.run.signal.is_some() || o.run.limit.is_some() =>
            {
                outcomes.push(o.run);
                continue;
            }
            // The worker could not say how the child ended: not the program's doing.
            Some(Ok(_)) => WarmError::Worker("the end of the case's run was not reported".into()),
            Some(Err(e)) => e,
            None => WarmError::Worker("not run".into()),
        };
        return Err(JudgeError::Sandbox {
            case,
            source: Box::new(source),
        });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(exit: Option<i32>, signal: Option<i32>, limit: Option<Limit>) -> JsonOutcome {
        JsonOutcome {
            status: JsonOutcome::status_of(limit, exit, signal),
            error: None,
            results: Vec::new(),
            files: Default::default(),
            files_truncated: false,
            exit_code: exit,
            signal,
            limit,
            cpu_time: 0.01,
            wall_time: 0.02,
            peak_memory: 1 << 20,
            stdout: "3\n".into(),
            stdout_truncated: false,
            stderr: String::new(),
            stderr_truncated: false,
        }
    }

    #[test]
    fn exact_is_byte_for_byte() {
        let m = |a, b| Compare::Exact.matches(a, b);
        assert!(m("3\n", "3\n"));
        assert!(!m("3", "3\n"));
        assert!(!m("3 \n", "3\n"));
        assert!(!m("3\r\n", "3\n"));
        assert!(m("", ""));
    }

    #[test]
    fn strip_ignores_trailing_whitespace_of_lines_and_output() {
        let m = |a, b| Compare::Strip.matches(a, b);
        assert!(m("3\n", "3"));
        assert!(m("1 2  \n3\t\n\n\n", "1 2\n3"));
        assert!(m("1\r\n2\r\n", "1\n2\n"));
        assert!(m("", "\n \n"));
        assert!(m("", ""));
        // Leading whitespace and blank lines between lines still count.
        assert!(!m(" 3\n", "3\n"));
        assert!(!m("1\n\n2\n", "1\n2\n"));
        assert!(!m("1 2\n", "1  2\n"));
        assert!(!m("3\n", "4\n"));
        assert!(!m("", "0"));
    }

    #[test]
    fn tokens_compares_whitespace_separated_tokens() {
        let m = |a, b| Compare::Tokens.matches(a, b);
        assert!(m("1 2\n3\n", "1\n2   3"));
        assert!(m("\t1\x0b2\x0c\r\n", "1 2"));
        assert!(m("", " \n"));
        assert!(!m("1 2", "2 1"));
        assert!(!m("1.0", "1"));
        assert!(!m("1 2", "1 2 3"));
    }

    #[test]
    fn compare_modes_parse_and_refuse_with_the_accepted_ones() {
        for mode in ["exact", "strip", "tokens"] {
            assert_eq!(mode.parse::<Compare>().unwrap().name(), mode);
        }
        let e = "Tokens".parse::<Compare>().unwrap_err();
        assert!(e.is_input());
        let msg = e.to_string();
        assert!(msg.contains("'Tokens'") && msg.contains("exact") && msg.contains("strip"));
    }

    #[test]
    fn verdicts_limits_first_then_the_end_then_the_output() {
        let v = |o: &JsonOutcome, e: Option<&str>| verdict(o, e, Compare::Exact);
        let clean = outcome(Some(0), None, None);
        assert_eq!(v(&clean, Some("3\n")), Verdict::Accepted);
        assert_eq!(v(&clean, Some("4\n")), Verdict::WrongAnswer);
        assert_eq!(v(&clean, None), Verdict::Accepted);
        assert_eq!(
            v(&outcome(None, Some(9), Some(Limit::Wall)), Some("3\n")),
            Verdict::TimeLimit
        );
        assert_eq!(
            v(&outcome(None, Some(9), Some(Limit::Cpu)), None),
            Verdict::TimeLimit
        );
        // Memory: the interpreter's MemoryError ends it with status 1, the limit reported.
        assert_eq!(
            v(&outcome(Some(1), None, Some(Limit::Memory)), None),
            Verdict::MemoryLimit
        );
        for l in [
            Limit::Processes,
            Limit::OpenFiles,
            Limit::FileSize,
            Limit::TmpSize,
        ] {
            assert_eq!(
                v(&outcome(Some(1), None, Some(l)), Some("3\n")),
                Verdict::RuntimeError
            );
        }
        // The right output does not save an exception, an exit status or a signal.
        assert_eq!(
            v(&outcome(Some(1), None, None), Some("3\n")),
            Verdict::RuntimeError
        );
        assert_eq!(
            v(&outcome(Some(3), None, None), None),
            Verdict::RuntimeError
        );
        assert_eq!(
            v(&outcome(None, Some(11), None), Some("3\n")),
            Verdict::RuntimeError
        );
        assert_eq!(v(&outcome(None, None, None), None), Verdict::RuntimeError);
        // Output over the limit, on either stream, whatever else happened.
        let mut big = outcome(Some(1), None, Some(Limit::Output));
        assert_eq!(v(&big, Some("3\n")), Verdict::OutputLimit);
        big.limit = None;
        big.stderr_truncated = true;
        assert_eq!(v(&big, Some("3\n")), Verdict::OutputLimit);
        // Verdicts are written as their codes.
        assert_eq!(
            serde_json::to_string(&Verdict::TimeLimit).unwrap(),
            "\"TLE\""
        );
    }

    #[test]
    fn verdicts_use_the_compare_mode() {
        let mut o = outcome(Some(0), None, None);
        o.stdout = "1  2 \n".into();
        assert_eq!(
            verdict(&o, Some("1  2"), Compare::Exact),
            Verdict::WrongAnswer
        );
        assert_eq!(verdict(&o, Some("1  2"), Compare::Strip), Verdict::Accepted);
        assert_eq!(
            verdict(&o, Some("1 2"), Compare::Strip),
            Verdict::WrongAnswer
        );
        assert_eq!(verdict(&o, Some("1 2"), Compare::Tokens), Verdict::Accepted);
    }

    fn lines(text: &str) -> Result<Vec<Case>, JudgeError> {
        cases_from_jsonl(text, &Policy::default())
    }

    fn refusal(r: Result<Vec<Case>, JudgeError>) -> String {
        let e = r.unwrap_err();
        assert!(e.is_input(), "{e}");
        e.to_string()
    }

    #[test]
    fn cases_from_json_lines() {
        let cases = lines(
            "{\"stdin\": \"1 2\\n\", \"expected\": \"3\\n\"}\n\n{\"stdin\": \"\"}\n\
             {\"stdin\": \"x\", \"expected\": null}\n",
        )
        .unwrap();
        assert_eq!(
            cases,
            vec![
                Case {
                    stdin: "1 2\n".into(),
                    expected: Some("3\n".into())
                },
                Case {
                    stdin: String::new(),
                    expected: None
                },
                Case {
                    stdin: "x".into(),
                    expected: None
                },
            ]
        );
    }

    #[test]
    fn bad_cases_are_refused_naming_the_case_and_the_field() {
        let ok = "{\"stdin\": \"\"}\n";
        let m = refusal(lines(&format!("{ok}\n{{\"expected\": \"3\"}}\n")));
        assert!(
            m.starts_with("line 3 (case 2): \"stdin\" is missing"),
            "{m}"
        );
        assert!(m.contains("\"stdin\": \"\""), "{m}");
        let m = refusal(lines(&format!("{ok}{{\"stdin\": 12}}")));
        assert!(
            m.starts_with("line 2 (case 2): \"stdin\" must be a string") && m.contains("a number"),
            "{m}"
        );
        let m = refusal(lines("{\"stdin\": \"\", \"expected\": [\"3\"]}"));
        assert!(m.contains("\"expected\" must be a string") && m.contains("an array"));
        let m = refusal(lines("{\"stdin\": \"\", \"expect\": \"3\"}"));
        assert!(m.contains("unknown field \"expect\""), "{m}");
        let m = refusal(lines("[\"1 2\", \"3\"]"));
        assert!(
            m.starts_with("line 1 (case 1): expected a case object") && m.contains("an array"),
            "{m}"
        );
        let m = refusal(lines("{\"stdin\": \"\"}\n{stdin: 1}"));
        assert!(
            m.starts_with("line 2 (case 2): not JSON") && m.contains("one case per line"),
            "{m}"
        );
        assert!(refusal(lines("\n \n")).starts_with("no cases"));
        // The same checks for the package's list, located by index.
        let p = Policy::default();
        let m = refusal(cases_from_json("[{\"stdin\": \"\"}, \"x\"]", &p));
        assert!(m.starts_with("cases[1]: expected a case object"), "{m}");
        let m = refusal(cases_from_json("[{\"stdin\": \"\"}, {}]", &p));
        assert!(m.starts_with("cases[1]: \"stdin\" is missing"), "{m}");
        let m = refusal(cases_from_json("{\"stdin\": \"\"}", &p));
        assert!(m.starts_with("cases: expected a list"), "{m}");
        assert!(refusal(cases_from_json("[]", &p)).starts_with("no cases"));
    }

    #[test]
    fn an_input_larger_than_tmp_is_refused() {
        let mut p = Policy::default();
        p.limits.tmp_size = 1024;
        let big = format!("{{\"stdin\": \"{}\"}}", "x".repeat(2000));
        let m = refusal(cases_from_jsonl(&big, &p));
        assert!(m.contains("2000 bytes") && m.contains("1K") && m.contains("--tmp-size"));
        assert!(cases_from_jsonl("{\"stdin\": \"xx\"}", &p).is_ok());
    }

    #[test]
    fn the_judge_policy_gives_the_program_its_input() {
        let p = Policy::default();
        assert!(!gives_stdin(&p));
        let j = policy(&p);
        assert!(gives_stdin(&j));
        // Nothing else changes.
        assert_eq!(j.limits, p.limits);
        assert_eq!(j.preset, p.preset);
        assert_eq!(policy(&j), j);
    }

    #[test]
    fn compile_errors_are_read_from_the_checks_result() {
        let result = r#"{"d":[["error",{"d":[["type","SyntaxError"],["message","invalid syntax (p.py, line 1)"],["traceback","  File \"p.py\", line 1\nSyntaxError: invalid syntax\n"]]}]]}"#;
        let e = compile_error(result).unwrap();
        assert_eq!(e.kind, "SyntaxError");
        assert!(e.traceback.ends_with("SyntaxError: invalid syntax\n"));
        assert!(compile_error(r#"{"d":[["globals",{"d":[]}]]}"#).is_none());
        assert!(compile_error("not json").is_none());
        assert!(compile_error(r#"{"d":[["error",{"d":[["type","X"]]}]]}"#).is_none());

        let check = |run: JsonOutcome, result: Option<&str>| WarmOutcome {
            id: Value::Null,
            run,
            anomaly: false,
            result: result.map(str::to_string),
            result_truncated: false,
            report_error: None,
            ended: false,
            trace: Vec::new(),
        };
        // Compiled: the cases run.
        let ok = check(outcome(Some(0), None, None), Some(r#"{"d":[]}"#));
        assert!(compile_failure(&ok).is_none());
        // A SyntaxError: every case RE, with the traceback and the status running it gives.
        let (case, error) =
            compile_failure(&check(outcome(Some(0), None, None), Some(result))).unwrap();
        assert_eq!(case.verdict, Verdict::RuntimeError);
        assert_eq!(case.outcome.exit_code, Some(1));
        assert!(case.outcome.stderr.contains("SyntaxError"));
        assert_eq!(error.unwrap().kind, "SyntaxError");
        // Compiling ran out of time: every case TLE.
        let (case, _) =
            compile_failure(&check(outcome(None, Some(9), Some(Limit::Wall)), None)).unwrap();
        assert_eq!(case.verdict, Verdict::TimeLimit);
    }

    #[test]
    fn results_serialize_flat_with_totals() {
        let r = JudgeResult::new(
            vec![
                CaseResult {
                    verdict: Verdict::Accepted,
                    outcome: outcome(Some(0), None, None),
                },
                CaseResult {
                    verdict: Verdict::WrongAnswer,
                    outcome: outcome(Some(0), None, None),
                },
            ],
            None,
        );
        assert_eq!((r.passed, r.total), (1, 2));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["cases"][1]["verdict"], "WA");
        assert_eq!(v["cases"][0]["stdout"], "3\n");
        assert_eq!(v["cases"][0]["wall_time"], 0.02);
        assert_eq!(v["passed"], 1);
        assert!(v["compile_error"].is_null());
    }
}
