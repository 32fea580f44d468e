//! `pysandbox judge` through the real binary: a verdict per case (AC, WA, TLE, MLE, RE, OLE), a
//! program that does not compile, the compare modes, cases spread over the workers with results
//! in order, and bad input refused with exit status 2 before anything runs.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A program whose input picks how it ends (shared with tests/python/test_judge.py).
const PROGRAM: &str = include_str!("../../../tests/fixtures/judge_program.py");

/// `(stdin, expected)` of each case, and the verdict it must get.
const CASES: &[(&str, Option<&str>, &str)] = &[
    ("1 2\n", Some("3\n"), "AC"),
    ("2 2\n", Some("5\n"), "WA"),
    ("tle\n", Some("3\n"), "TLE"),
    ("mle\n", None, "MLE"),
    ("raise\n", Some(""), "RE"),
    ("exit\n", None, "RE"),
    ("ole\n", None, "OLE"),
    ("40 2", None, "AC"),
];

/// The policy flags the cases need to trip their limits quickly.
const LIMITS: &[&str] = &["--timeout", "1s", "--memory", "64M", "--max-output", "1K"];

fn jsonl(cases: &[(&str, Option<&str>, &str)]) -> String {
    cases
        .iter()
        .map(|(stdin, expected, _)| match expected {
            Some(e) => format!("{}\n", serde_json::json!({"stdin": stdin, "expected": e})),
            None => format!("{}\n", serde_json::json!({"stdin": stdin})),
        })
        .collect()
}

/// A directory holding `prog.py` and `cases.jsonl`.
fn files(tag: &str, program: &str, cases: &str) -> TempDir {
    let dir = TempDir::new(tag);
    write_file(&dir.join("prog.py"), program);
    write_file(&dir.join("cases.jsonl"), cases);
    dir
}

/// `pysandbox judge DIR/prog.py --cases DIR/cases.jsonl FLAGS` as root.
fn judge(dir: &TempDir, flags: &[&str]) -> Output {
    let (prog, cases) = (dir.join("prog.py"), dir.join("cases.jsonl"));
    Command::new(bin())
        .arg("judge")
        .arg(&prog)
        .arg("--cases")
        .arg(&cases)
        .args(flags)
        .output()
        .expect("run pysandbox judge")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `--json` answer.
fn answer_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON answer ({e}): stdout {}; stderr {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

fn verdicts(v: &Value) -> Vec<String> {
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| c["verdict"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn judge_gives_each_case_its_verdict() {
    let dir = files("verdicts", PROGRAM, &jsonl(CASES));
    let want: Vec<&str> = CASES.iter().map(|c| c.2).collect();
    for caller in callers() {
        let (prog, cases) = (dir.join("prog.py"), dir.join("cases.jsonl"));
        let args = [
            "judge",
            prog.to_str().unwrap(),
            "--cases",
            cases.to_str().unwrap(),
            "--json",
        ];
        let out = caller
            .command(&args, LIMITS, &RunOpts::default())
            .output()
            .unwrap();
        let v = answer_of(&out);
        assert_eq!(verdicts(&v), want, "as {caller}: {v}");
        assert_eq!(out.status.code(), Some(1), "as {caller}: some cases failed");
        assert_eq!(
            (v["passed"].as_u64(), v["total"].as_u64()),
            (Some(2), Some(8))
        );
        let c = &v["cases"];
        // Output and usage of each case, from its own run.
        assert_eq!(c[0]["stdout"], "3\n");
        assert_eq!(c[1]["stdout"], "4\n");
        assert!(c[0]["wall_time"].as_f64().unwrap() > 0.0);
        assert!(c[0]["peak_memory"].as_u64().unwrap() > 0);
        assert_eq!(c[2]["limit"], "wall");
        assert!(c[2]["wall_time"].as_f64().unwrap() >= 1.0);
        assert_eq!(c[3]["limit"], "memory");
        assert!(c[4]["stderr"]
            .as_str()
            .unwrap()
            .contains("ZeroDivisionError: division by zero"));
        assert_eq!(c[4]["exit_code"], 1);
        assert_eq!(c[5]["exit_code"], 3);
        assert_eq!(c[6]["stdout_truncated"], true);
        assert_eq!(c[6]["stdout"].as_str().unwrap().len(), 1024);
        assert!(v["compile_error"].is_null());
    }
    // The table: a line per case, then the totals.
    let out = judge(&dir, &[&["--preset", "stdlib"], LIMITS].concat());
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with(" case  verdict"), "{table}");
    for (i, want) in want.iter().enumerate() {
        let cols: Vec<&str> = lines[i + 1].split_whitespace().collect();
        assert_eq!(
            (cols[0], cols[1]),
            (&*(i + 1).to_string(), *want),
            "{table}"
        );
    }
    assert!(
        lines[5].contains("ZeroDivisionError: division by zero"),
        "{table}"
    );
    assert!(lines[6].ends_with("exit status 3"), "{table}");
    assert_eq!(lines.last(), Some(&"passed 2/8"), "{table}");
}

#[test]
fn judge_cpu_time_limit_is_tle() {
    let dir = files("cpu", PROGRAM, &jsonl(&[("tle\n", None, "TLE")]));
    let v = answer_of(&judge(
        &dir,
        &[
            "--preset",
            "stdlib",
            "--cpu-time",
            "1s",
            "--timeout",
            "10s",
            "--json",
        ],
    ));
    assert_eq!(verdicts(&v), ["TLE"], "{v}");
    assert_eq!(v["cases"][0]["limit"], "cpu");
}

#[test]
fn judge_reads_input_under_the_default_policy_and_passes_all() {
    // The default preset withholds input() and sys.stdin: the judge turns on the stdin feature.
    let program = "a, b = map(int, input().split())\nprint(a + b)\nprint('  ')\n";
    let cases = jsonl(&[("1 2\n", Some("3\n  \n"), ""), ("3 4", Some("7\n  \n"), "")]);
    let dir = files("stdin", program, &cases);
    let out = judge(&dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().last(), Some("passed 2/2"));
    // sys.stdin too, and an empty input is an empty file.
    let program =
        "import sys\ndata = sys.stdin.read()\nprint(len(data), sum(map(int, data.split())))\n";
    let dir = files(
        "stdin-sys",
        program,
        &jsonl(&[("1 2 3\n", Some("6 6\n"), ""), ("", Some("0 0\n"), "")]),
    );
    let v = answer_of(&judge(&dir, &["--json"]));
    assert_eq!(verdicts(&v), ["AC", "AC"], "{v}");
}

#[test]
fn judge_compare_modes() {
    let program = "print('1  2 ')\nprint()\n";
    let dir = files(
        "compare",
        program,
        &jsonl(&[
            ("", Some("1  2 \n\n"), ""),
            ("", Some("1  2"), ""),
            ("", Some("1 2"), ""),
        ]),
    );
    for (mode, want) in [
        ("exact", ["AC", "WA", "WA"]),
        ("strip", ["AC", "AC", "WA"]),
        ("tokens", ["AC", "AC", "AC"]),
    ] {
        let v = answer_of(&judge(&dir, &["--compare", mode, "--json"]));
        assert_eq!(verdicts(&v), want, "--compare {mode}: {v}");
    }
}

#[test]
fn judge_a_program_that_does_not_compile_is_re_in_every_case() {
    let dir = files(
        "syntax",
        "print('start')\nx = (\n",
        &jsonl(&[("1\n", Some("start\n"), ""), ("2\n", None, "")]),
    );
    let out = judge(&dir, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = answer_of(&out);
    assert_eq!(verdicts(&v), ["RE", "RE"], "{v}");
    assert_eq!(v["compile_error"]["type"], "SyntaxError");
    for c in v["cases"].as_array().unwrap() {
        // Nothing of it ran: not even its first line.
        assert_eq!(c["stdout"], "");
        assert_eq!(c["exit_code"], 1);
        let stderr = c["stderr"].as_str().unwrap();
        assert!(
            stderr.contains("prog.py\", line 2") && stderr.contains("SyntaxError"),
            "{stderr}"
        );
    }
    let out = judge(&dir, &[]);
    assert!(text(&out.stderr).contains("does not compile; no case ran"));
    assert_eq!(text(&out.stdout).lines().last(), Some("passed 0/2"));
}

#[test]
fn judge_spreads_cases_over_the_workers_and_keeps_their_order() {
    // The hash seed is a worker's: it tells which worker ran a case.
    let program = "import time\nn = input()\ntime.sleep(0.3)\nprint(n, hash('judge'))\n";
    let cases: Vec<(String, Option<&str>, &str)> =
        (0..8).map(|i| (format!("{i}\n"), None, "AC")).collect();
    let cases: Vec<(&str, Option<&str>, &str)> =
        cases.iter().map(|(s, e, v)| (s.as_str(), *e, *v)).collect();
    let dir = files("spread", program, &jsonl(&cases));
    let start = Instant::now();
    let v = answer_of(&judge(
        &dir,
        &["--preset", "stdlib", "--workers", "2", "--json"],
    ));
    let took = start.elapsed();
    let mut seeds = std::collections::BTreeSet::new();
    let mut one_by_one = 0.0;
    for (i, c) in v["cases"].as_array().unwrap().iter().enumerate() {
        one_by_one += c["wall_time"].as_f64().unwrap();
        let out = c["stdout"].as_str().unwrap();
        let (n, seed) = out.trim().split_once(' ').expect("two words");
        assert_eq!(n, i.to_string(), "results in case order: {v}");
        seeds.insert(seed.to_string());
    }
    assert_eq!(seeds.len(), 2, "both workers ran cases: {seeds:?}");
    // Two at a time: the whole judge, pool start included, takes less than its cases one after
    // the other (8 × 0.3 s).
    assert!(
        took.as_secs_f64() < one_by_one,
        "took {took:?}, the cases {one_by_one} s"
    );
}

#[test]
fn judge_refuses_bad_input_with_status_2_before_running_anything() {
    // The program leaves a file behind for each case it runs.
    let out_dir = TempDir::new("judge-ran").writable_by_all();
    let program = format!(
        "open({:?} + '/ran-' + input(), 'w').write('x')\n",
        out_dir.str()
    );
    let write = ["--allow-write", &out_dir.str()].map(str::to_string);
    let ok = "{\"stdin\": \"a\"}\n";
    for (cases, flags, needle) in [
        (
            format!("{ok}{{\"expected\": \"3\\n\"}}\n"),
            &[][..],
            "cases.jsonl: line 2 (case 2): \"stdin\" is missing",
        ),
        (
            format!("{ok}\n[\"1 2\"]\n"),
            &[],
            "line 3 (case 2): expected a case object",
        ),
        (
            format!("{ok}{{\"stdin\": 5}}\n"),
            &[],
            "line 2 (case 2): \"stdin\" must be a string",
        ),
        (
            format!("{ok}{{\"stdin\": \"b\", \"output\": \"3\"}}\n"),
            &[],
            "unknown field \"output\"",
        ),
        (
            format!("{ok}{{\"stdin\": \"b\", \"expected\": 3}}\n"),
            &[],
            "\"expected\" must be a string",
        ),
        (
            format!("{ok}{{stdin: b}}\n"),
            &[],
            "line 2 (case 2): not JSON",
        ),
        (String::new(), &[], "no cases"),
        (
            ok.to_string(),
            &["--compare", "loose"][..],
            "unknown compare mode 'loose'",
        ),
        (
            format!("{ok}{{\"stdin\": \"{}\"}}\n", "x".repeat(5000)),
            &["--tmp-size", "4K"][..],
            "more than the sandbox's /tmp holds",
        ),
    ] {
        let dir = files("bad", &program, &cases);
        let mut all: Vec<&str> = write.iter().map(String::as_str).collect();
        all.extend(flags);
        let out = judge(&dir, &all);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{needle}: {stderr}");
        assert!(stderr.contains(needle), "want {needle:?} in: {stderr}");
        let ran: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
        assert!(ran.is_empty(), "{needle}: something ran: {ran:?}");
    }
    // The control: good cases do run, so the check above can fail.
    let dir = files("good", &program, &format!("{ok}{{\"stdin\": \"b\"}}\n"));
    let write: Vec<&str> = write.iter().map(String::as_str).collect();
    let out = judge(&dir, &write);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out_dir.join("ran-a").exists() && out_dir.join("ran-b").exists());
}

/// Python that writes a forged `Done` frame (docs/protocol.md) saying "exit 0, no CPU, no
/// memory" on the report pipe, as the bootstrap writes it at the end of a request.
const FORGE_DONE: &str = r#"
import os
os.write(4, (21).to_bytes(4, "little") + b"\x03" + (0).to_bytes(4, "little") + bytes(16))
"#;

#[test]
fn judge_a_forged_done_frame_does_not_decide_the_verdict() {
    // The program prints the right answer, says "done, exit 0" on its report pipe, then hangs or
    // fails: its verdict comes from how its process really ended (the kernel's account).
    let answer = "a, b = map(int, input().split())\nprint(a + b, flush=True)\n";
    for (tail, want, limit, exit) in [
        (
            "while True:\n    pass\n",
            "TLE",
            Value::from("wall"),
            Value::Null,
        ),
        ("raise SystemExit(3)\n", "RE", Value::Null, Value::from(3)),
        ("1 / 0\n", "RE", Value::Null, Value::from(1)),
    ] {
        let program = format!("{answer}{FORGE_DONE}{tail}");
        let dir = files("forge", &program, &jsonl(&[("1 2\n", Some("3\n"), "")]));
        let v = answer_of(&judge(
            &dir,
            &["--preset", "stdlib", "--timeout", "1s", "--json"],
        ));
        let c = &v["cases"][0];
        assert_eq!(verdicts(&v), [want], "{tail}: {v}");
        assert_eq!((&c["limit"], &c["exit_code"]), (&limit, &exit), "{v}");
        assert_eq!(c["stdout"], "3\n");
        // Usage from the kernel too: the forged frame said no CPU and no memory.
        assert!(c["peak_memory"].as_u64().unwrap() > 1 << 20, "{v}");
    }
}

#[test]
fn until_exit_takes_the_end_from_the_kernel_not_from_a_forged_done() {
    use pysandbox_core::policy::Policy;
    use pysandbox_core::warm::{Pool, PoolOptions, Request};
    let mut policy = Policy::from_toml_str("preset = \"stdlib\"").unwrap();
    policy.limits.wall = Duration::from_secs(1);
    let mut o = PoolOptions::new(bin());
    o.workers = 1;
    let pool = Pool::new(policy, o).unwrap();
    let code = format!("{FORGE_DONE}\nprint('after')\nraise SystemExit(3)\n");
    let mut req = Request::new(None, &code, None);
    // The control: without it, the host believes the frame (and what follows it in the pipes
    // may or may not be read before the exchange ends).
    let r = pool.run_request(&req).unwrap();
    assert_eq!(r.run.exit_code, Some(0), "{r:?}");
    req.until_exit = true;
    let r = pool.run_request(&req).unwrap();
    assert_eq!(
        (r.run.exit_code, r.run.stdout.as_str()),
        (Some(3), "after\n"),
        "{r:?}"
    );
    assert!(r.run.cpu_time > 0.0 && r.run.peak_memory > 0, "{r:?}");
    // A liar that runs on is stopped at its wall clock, and it is the wall limit.
    let mut req = Request::new(
        None,
        &format!("{FORGE_DONE}\nwhile True:\n    pass\n"),
        None,
    );
    req.until_exit = true;
    let r = pool.run_request(&req).unwrap();
    assert_eq!(
        r.run.limit,
        Some(pysandbox_core::limits::Limit::Wall),
        "{r:?}"
    );
    assert!(!r.anomaly, "{r:?}");
    pool.shutdown();
}
