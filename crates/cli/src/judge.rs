//! `pysandbox judge FILE --cases cases.jsonl`: one program against many inputs, each case in a
//! fresh child of a warm pool, a verdict per case (`pysandbox_core::judge` decides them all; this
//! only reads the files and prints).

use crate::{PolicyArgs, EXIT_SETUP, EXIT_USAGE};
use anyhow::{Context, Result};
use clap::Args;
use pysandbox_core::judge::{self, CaseResult, Compare, JudgeError, Verdict};
use pysandbox_core::limits::{format_duration, format_size, Limit};
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::{Pool, PoolOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct JudgeArgs {
    /// The program: a Python file, run once per case.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The cases: one JSON object per line, `{"stdin": "1 2\n", "expected": "3\n"}` ("expected"
    /// may be left out: the case passes when the run is clean).
    #[arg(long, value_name = "CASES")]
    cases: PathBuf,
    /// How stdout is compared with "expected": exact (byte for byte), strip (trailing
    /// whitespace of each line and of the output ignored), tokens (whitespace-separated tokens).
    #[arg(long, value_name = "MODE", default_value = "exact", value_parser = parse_compare)]
    compare: Compare,
    /// Print one JSON object: `cases` (verdict, output and usage of each, in order), `passed`,
    /// `total`, `compile_error`.
    #[arg(long)]
    json: bool,
    /// Warm workers running cases at the same time (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    workers: Option<u32>,
    #[command(flatten)]
    policy: PolicyArgs,
}

fn parse_compare(s: &str) -> Result<Compare, String> {
    s.parse().map_err(|e: JudgeError| e.to_string())
}

/// Exit status: 0 when every case passed, 1 when some did not, 2 for bad usage (nothing runs),
/// 125 when the sandbox failed.
pub fn run(a: &JudgeArgs) -> Result<ExitCode> {
    let policy: Policy = judge::policy(&a.policy.policy()?);
    let usage = |msg: String| {
        eprintln!("pysandbox: {msg}");
        Ok(ExitCode::from(EXIT_USAGE))
    };
    let code = match std::fs::read_to_string(&a.file) {
        Ok(c) => c,
        Err(e) => return usage(format!("cannot read the program {}: {e}", a.file.display())),
    };
    let text = match std::fs::read_to_string(&a.cases) {
        Ok(t) => t,
        Err(e) => return usage(format!("cannot read the cases {}: {e}", a.cases.display())),
    };
    // Every case is checked before anything starts.
    let cases = match judge::cases_from_jsonl(&text, &policy) {
        Ok(c) => c,
        Err(e) => return usage(format!("{}: {e}", a.cases.display())),
    };
    let exe = std::env::current_exe().context("finding the pysandbox binary")?;
    let mut opts = PoolOptions::new(exe);
    if let Some(n) = a.workers {
        opts.workers = n as usize;
    }
    opts.workers = opts.workers.min(cases.len());
    opts.inject = a.policy.injection()?;
    let limits = policy.effective_limits();
    let pool = Pool::new(policy, opts)?;
    let name = a.file.to_string_lossy();
    let result = judge::judge(&pool, Some(&name), &code, &cases, a.compare);
    pool.shutdown();
    let result = match result {
        Ok(r) => r,
        Err(e) if e.is_input() => return usage(e.to_string()),
        Err(e) => {
            eprintln!("pysandbox: {e}");
            return Ok(ExitCode::from(EXIT_SETUP));
        }
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &result)?;
        writeln!(out)?;
    } else {
        if let Some(e) = &result.compile_error {
            eprintln!(
                "pysandbox: {} does not compile; no case ran:\n{}",
                a.file.display(),
                e.traceback.trim_end()
            );
        }
        writeln!(
            out,
            "{:>5}  {:<7}  {:>10}  detail",
            "case", "verdict", "time"
        )?;
        for (i, c) in result.cases.iter().enumerate() {
            let line = format!(
                "{:>5}  {:<7}  {:>7.1} ms  {}",
                i + 1,
                c.verdict.code(),
                c.outcome.wall_time * 1000.0,
                detail(c, &limits)
            );
            writeln!(out, "{}", line.trim_end())?;
        }
        writeln!(out, "passed {}/{}", result.passed, result.total)?;
    }
    out.flush()?;
    Ok(if result.passed == result.total {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A few words on why a case did not pass (the program's own text made printable and short).
fn detail(c: &CaseResult, limits: &pysandbox_core::Limits) -> String {
    let o = &c.outcome;
    match c.verdict {
        Verdict::Accepted => String::new(),
        Verdict::WrongAnswer => "output differs".into(),
        Verdict::TimeLimit if o.limit == Some(Limit::Cpu) => format!(
            "cpu-time limit of {}",
            limits.cpu.map(format_duration).unwrap_or_default()
        ),
        Verdict::TimeLimit => format!("wall-clock limit of {}", format_duration(limits.wall)),
        Verdict::MemoryLimit => format!(
            "memory limit of {}",
            limits
                .memory
                .map(format_size)
                .unwrap_or_else(|| "none".into())
        ),
        Verdict::OutputLimit => {
            format!("output limit of {} per stream", format_size(limits.output))
        }
        Verdict::RuntimeError => match (o.limit, o.signal, o.exit_code) {
            (Some(l), _, _) => format!("{} limit", l.name()),
            (None, Some(sig), _) => format!("killed by signal {sig}"),
            (None, None, code) => {
                let last = o.stderr.lines().rev().find(|l| !l.trim().is_empty());
                match (last, code) {
                    (Some(line), _) => printable(line, 60),
                    (None, Some(c)) => format!("exit status {c}"),
                    (None, None) => "no exit status".into(),
                }
            }
        },
    }
}

/// `s` without control characters (the terminal's escapes), cut to `max` characters.
fn printable(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}
