//! End-to-end tests of the policy through the real `pysandbox` binary: every feature refused when
//! off and granted when on, the old pysandbox's behaviours that still apply, policy files and bad
//! input. The guard these exercise only shapes what code sees; `guard_bypass_*` show the OS layer
//! holds when the guard is walked around.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn pysandbox(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pysandbox"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pysandbox");
    if let Some(data) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(data.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().expect("wait for pysandbox");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `pysandbox run [flags] -c code`.
fn run(flags: &[&str], code: &str) -> Run {
    let mut args = vec!["run"];
    args.extend_from_slice(flags);
    args.extend(["-c", code]);
    pysandbox(&args, None)
}

fn assert_ok(r: &Run, want_stdout: &str) {
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, want_stdout),
        "stderr: {}",
        r.stderr
    );
}

fn assert_refused(r: &Run, needle: &str) {
    assert_ne!(r.code, 0, "should have been refused; stdout: {}", r.stdout);
    assert!(
        r.stderr.contains(needle),
        "stderr lacks {needle:?}: {}",
        r.stderr
    );
    assert!(!r.stdout.contains("GRANTED"), "stdout: {}", r.stdout);
}

/// One feature: the probe fails without it (with a message naming the feature) and prints
/// GRANTED with it.
fn feature_toggles(feature: &str, probe: &str, refusal: &str) {
    let off = run(&[], probe);
    assert_refused(&off, refusal);
    let on = run(&["--feature", feature], probe);
    assert_ok(&on, "GRANTED\n");
}

macro_rules! import_feature {
    ($name:ident, $feature:literal, $module:literal) => {
        #[test]
        fn $name() {
            feature_toggles(
                $feature,
                concat!("import ", $module, "\nprint('GRANTED')"),
                concat!(
                    "import of '",
                    $module,
                    "' is not allowed: enable the '",
                    $feature,
                    "' feature"
                ),
            );
        }
    };
}

import_feature!(feature_codecs, "codecs", "codecs");
import_feature!(feature_datetime, "datetime", "datetime");
import_feature!(feature_encodings, "encodings", "encodings");
import_feature!(feature_hashlib, "hashlib", "hashlib");
import_feature!(feature_itertools, "itertools", "itertools");
import_feature!(feature_math, "math", "math");
import_feature!(feature_random, "random", "random");
import_feature!(feature_regex, "regex", "re");
import_feature!(feature_site, "site", "site");
import_feature!(feature_unicodedata, "unicodedata", "unicodedata");
import_feature!(feature_threads, "threads", "threading");
import_feature!(feature_subprocess, "subprocess", "subprocess");
import_feature!(feature_network, "network", "socket");

#[test]
fn feature_future() {
    feature_toggles(
        "future",
        "from __future__ import annotations\nprint('GRANTED')",
        "enable the 'future' feature",
    );
}

#[test]
fn feature_stdout_and_stderr_grant_the_streams_of_sys() {
    feature_toggles(
        "stdout",
        "from sys import stdout\nstdout.write('GRANTED\\n')",
        "import of 'sys' is not allowed",
    );
    feature_toggles(
        "stderr",
        "import sys\nsys.stderr.write('to stderr\\n')\nprint('GRANTED')",
        "import of 'sys' is not allowed",
    );
    // Only the granted names: the rest of sys stays out of sight.
    let r = run(&["--feature", "stdout"], "import sys\nprint(sys.modules)");
    assert_refused(&r, "has no attribute 'modules'");
    // print() always works: captured output cannot harm the host.
    assert_ok(&run(&[], "print('out')"), "out\n");
}

#[test]
fn feature_exit() {
    let off = run(&[], "exit(3)");
    assert_refused(
        &off,
        "exit() blocked by the sandbox: enable the 'exit' feature",
    );
    let on = run(&["--feature", "exit"], "print('GRANTED')\nexit(3)");
    assert_eq!(
        (on.code, on.stdout.as_str()),
        (3, "GRANTED\n"),
        "{}",
        on.stderr
    );
    let on = run(
        &["--feature", "exit"],
        "import sys\nprint('GRANTED')\nsys.exit(4)",
    );
    assert_eq!(on.code, 4, "{}", on.stderr);
}

#[test]
fn feature_traceback_gates_compile_exec_eval() {
    for probe in [
        "print('GRANTED' if eval('1+1') == 2 else 'no')",
        "exec('print(\"GRANTED\")')",
        "exec(compile('print(\"GRANTED\")', 'x', 'exec'))",
    ] {
        feature_toggles(
            "traceback",
            probe,
            "blocked by the sandbox: enable the 'traceback' feature",
        );
    }
    // debug_sandbox turns traceback on, as in pysandbox.
    assert_ok(
        &run(
            &["--feature", "debug_sandbox"],
            "print(eval('\"GRANTED\"'))",
        ),
        "GRANTED\n",
    );
    // Nested exec gets the same builtins: no way back to the real import.
    let r = run(&["--feature", "traceback"], "exec('import json')");
    assert_refused(&r, "import of 'json' is not allowed");
}

#[test]
fn feature_time_hides_sleep() {
    feature_toggles(
        "time",
        "import time\nassert time.time() > 0\nprint('GRANTED')",
        "enable the 'time' feature",
    );
    let r = run(&["--feature", "time"], "import time\ntime.sleep(0.01)");
    assert_refused(&r, "has no attribute 'sleep'");
}

#[test]
fn feature_help() {
    let off = run(&[], "help(len)");
    assert_refused(
        &off,
        "help() blocked by the sandbox: enable the 'help' feature",
    );
    let on = run(&["--feature", "help"], "help(len)");
    assert_eq!(on.code, 0, "{}", on.stderr);
    assert!(on.stdout.contains("len(obj"), "{}", on.stdout);
}

#[test]
fn feature_stdin_decides_whether_input_reaches_the_code() {
    let probe = "print('GRANTED', input())";
    let off = pysandbox(&["run", "-c", probe], Some("typed\n"));
    assert_refused(
        &off,
        "input() blocked by the sandbox: enable the 'stdin' feature",
    );
    // Even where input() exists (stdlib preset), nothing of the caller's input arrives.
    let off = pysandbox(
        &[
            "run",
            "--preset",
            "stdlib",
            "-c",
            "import sys; print(repr(sys.stdin.read()))",
        ],
        Some("typed\n"),
    );
    assert_ok(&off, "''\n");
    let on = pysandbox(&["run", "--feature", "stdin", "-c", probe], Some("typed\n"));
    assert_ok(&on, "GRANTED typed\n");
    let on = pysandbox(&["run", "--stdin", "-c", probe], Some("typed\n"));
    assert_ok(&on, "GRANTED typed\n");
}

#[test]
fn feature_interpreter_turns_on_what_a_console_needs() {
    let probe = "import site, encodings, traceback, sys\nsys.stdout.write('GRANTED\\n')";
    assert_refused(&run(&[], probe), "is not allowed");
    assert_ok(&run(&["--feature", "interpreter"], probe), "GRANTED\n");
}

#[test]
fn unknown_feature_is_refused_before_running() {
    let r = run(&["--feature", "sockets"], "print('ran')");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("unknown feature 'sockets'"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("unicodedata"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
}

#[test]
fn import_whitelist_with_allow_module() {
    let r = run(&[], "import json");
    assert_refused(
        &r,
        "import of 'json' is not allowed: allow it with allow_module('json')",
    );
    assert_ok(
        &run(
            &["--allow-module", "json"],
            "import json; print(json.dumps([1]))",
        ),
        "[1]\n",
    );
    // Only the listed names of a module.
    assert_ok(
        &run(
            &["--allow-module", "math:sqrt,pi"],
            "from math import sqrt, pi; print(sqrt(4), pi > 3)",
        ),
        "2.0 True\n",
    );
    let r = run(&["--allow-module", "math:sqrt"], "from math import cos");
    assert_refused(&r, "cannot import name 'cos'");
    // A package allows its submodules.
    assert_ok(
        &run(
            &["--allow-module", "xml"],
            "import xml.etree.ElementTree as E; print(E.fromstring('<a>1</a>').text)",
        ),
        "1\n",
    );
    // A module read-only, as in pysandbox.
    let r = run(&["--allow-module", "math:pi"], "import math\nmath.pi = 3");
    assert_refused(&r, "module 'math' is read-only in the sandbox");
    // Relative imports have no package to be relative to.
    assert_refused(
        &run(&[], "from . import x"),
        "relative imports are not allowed",
    );
    // The stdlib preset lets everything be imported.
    assert_ok(
        &run(
            &["--preset", "stdlib"],
            "import json, sqlite3, decimal; print('ok')",
        ),
        "ok\n",
    );
}

#[test]
fn open_whitelist() {
    let dir = tempdir();
    let allowed = format!("{dir}/allowed.txt");
    let other = format!("{dir}/other.txt");
    std::fs::write(&allowed, "ALLOWED-CONTENT").unwrap();
    std::fs::write(&other, "OTHER-SECRET").unwrap();
    // No allowed path: no open().
    let r = run(&[], &format!("print(open({allowed:?}).read())"));
    assert_refused(&r, "open() blocked by the sandbox");
    assert!(!r.stdout.contains("ALLOWED-CONTENT"));
    // An allowed path is readable, read-only; a path next to it does not exist inside.
    let flags = ["--allow-read", allowed.as_str()];
    assert_ok(
        &run(&flags, &format!("print(open({allowed:?}).read())")),
        "ALLOWED-CONTENT\n",
    );
    let r = run(&flags, &format!("print(open({other:?}).read())"));
    assert_ne!(r.code, 0);
    assert!(!r.stdout.contains("OTHER-SECRET") && !r.stderr.contains("OTHER-SECRET"));
    let r = run(&flags, &format!("open({allowed:?}, 'w').write('x')"));
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        std::fs::read_to_string(&allowed).unwrap(),
        "ALLOWED-CONTENT"
    );
    // The old escape: the file type's constructor on another path.
    let r = run(
        &flags,
        &format!("f = open({allowed:?})\nprint(type(f)({other:?}).read())"),
    );
    assert_ne!(r.code, 0);
    assert!(!r.stdout.contains("OTHER-SECRET") && !r.stderr.contains("OTHER-SECRET"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn recursion_limit() {
    let fact = "def f(n):\n    return 1 if n <= 1 else n * f(n - 1)\n";
    assert_ok(
        &run(
            &["--recursion-limit", "50"],
            &format!("{fact}f(40)\nprint('ok')"),
        ),
        "ok\n",
    );
    let r = run(&["--recursion-limit", "50"], &format!("{fact}f(51)"));
    assert_refused(&r, "RecursionError");
    // The default is the interpreter's own (1000).
    assert_ok(&run(&[], &format!("{fact}f(500)\nprint('ok')")), "ok\n");
    let r = run(&["--recursion-limit", "5"], "pass");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("recursion_limit"), "{}", r.stderr);
}

#[test]
fn timeout_stops_the_run() {
    let t = Instant::now();
    let r = run(&["--timeout", "1s"], "while True: pass");
    let took = t.elapsed();
    assert_eq!(r.code, 124, "{}", r.stderr);
    assert!(
        r.stderr.contains("wall-clock limit of 1s reached"),
        "{}",
        r.stderr
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "{took:?}"
    );
}

#[test]
fn policy_file_and_flags_override_it() {
    let dir = tempdir();
    let file = format!("{dir}/policy.toml");
    std::fs::write(
        &file,
        "features = [\"math\"]\n[modules]\njson = []\n[limits]\nwall = \"3s\"\n",
    )
    .unwrap();
    assert_ok(
        &run(
            &["--policy", &file],
            "import math, json; print(json.dumps(math.floor(2.5)))",
        ),
        "2\n",
    );
    let show = pysandbox(
        &[
            "policy",
            "show",
            "--policy",
            &file,
            "--timeout",
            "2s",
            "--feature",
            "random",
        ],
        None,
    );
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains("wall = \"2s\""), "{}", show.stdout);
    for f in ["\"math\"", "\"random\"", "\"hashlib\""] {
        assert!(show.stdout.contains(f), "{f} missing: {}", show.stdout);
    }
    // Defaults are visible.
    let show = pysandbox(&["policy", "show"], None);
    assert!(
        show.stdout.contains("memory = \"250M\"") && show.stdout.contains("wall = \"5s\""),
        "{}",
        show.stdout
    );
    // The annotated example of the repository is valid.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policy.toml");
    let show = pysandbox(&["policy", "show", "--policy", example], None);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_policies_are_refused_before_anything_runs() {
    let dir = tempdir();
    // Writable by the sandbox's user even when the tests run as root (the jail then runs as 65534).
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let marker = format!("{dir}/ran");
    let code = format!("open({marker:?}, 'w')");
    let cases: &[(&str, &[&str], &str)] = &[
        ("colour = \"blue\"\n", &[], "unknown field `colour`"),
        ("[limits]\nwall = \"5 parsecs\"\n", &[], "5 parsecs"),
        ("[limits]\nprocesses = -1\n", &[], "limits.processes"),
        ("allow_read = [\"etc\"]\n", &[], "absolute path"),
        ("allow_read = [\"/no/such/dir\"]\n", &[], "does not exist"),
        (
            "network = \"none\"\nfeatures = [\"network\"]\n",
            &[],
            "conflicting",
        ),
        ("", &["--memory", "12Q"], "12Q"),
        ("", &["--preset", "everything"], "everything"),
        ("", &["--env", "NOEQUALS"], "NAME=VALUE"),
        ("", &["--allow-module", "os;rm"], "os;rm"),
    ];
    for (i, (text, flags, needle)) in cases.iter().enumerate() {
        let file = format!("{dir}/p{i}.toml");
        std::fs::write(&file, text).unwrap();
        let mut args = vec!["--policy", file.as_str(), "--allow-write", dir.as_str()];
        args.extend_from_slice(flags);
        let r = run(&args, &code);
        assert_eq!(r.code, 2, "{text:?} {flags:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(needle),
            "{text:?} {flags:?}: {}",
            r.stderr
        );
        assert!(!std::path::Path::new(&marker).exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn env_passes_only_what_the_policy_names() {
    let probe = "import os; print(sorted(os.environ.items()))";
    let r = Command::new(env!("CARGO_BIN_EXE_pysandbox"))
        .args([
            "run",
            "--preset",
            "stdlib",
            "--env",
            "GREETING=hi",
            "-c",
            probe,
        ])
        .env("HOST_ONLY", "should-not-pass")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("('GREETING', 'hi')"), "{out}");
    assert!(!out.contains("HOST_ONLY"), "{out}");
}

/// The guard is not the boundary: reach the real `__import__` through another module's globals
/// and the OS layer still keeps host files and the network out of reach.
#[test]
fn guard_bypass_reaches_os_but_not_the_host() {
    let dir = tempdir();
    let secret = format!("{dir}/secret.txt");
    std::fs::write(&secret, "HOST-SECRET-7f3a").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        r#"
import random
real_import = random.__builtins__["__import__"]
os = real_import("os")
socket = real_import("socket")
print("BYPASSED", os.getpid() > 0)
try:
    print(open({secret:?}).read())
except Exception as e:
    print("open failed:", type(e).__name__)
try:
    fd = os.open({secret:?}, os.O_RDONLY)
    print(os.read(fd, 100))
except OSError as e:
    print("os.open failed:", e.errno)
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=1)
    print("CONNECTED")
except OSError as e:
    print("connect failed:", e.errno)
"#
    );
    // Control: the same code with plain Python on the host reads the secret and connects, so the
    // assertions below can fail.
    let host = Command::new(host_python())
        .args(["-c", &code])
        .output()
        .unwrap();
    let host_out = String::from_utf8_lossy(&host.stdout);
    assert!(
        host_out.contains("HOST-SECRET") && host_out.contains("CONNECTED"),
        "{host_out}"
    );
    while listener.accept().is_ok() {}
    let r = run(&["--feature", "random"], &code);
    assert!(
        r.stdout.contains("BYPASSED True"),
        "bypass did not work: {} {}",
        r.stdout,
        r.stderr
    );
    assert!(!r.stdout.contains("HOST-SECRET") && !r.stderr.contains("HOST-SECRET"));
    assert!(r.stdout.contains("os.open failed"), "{}", r.stdout);
    assert!(r.stdout.contains("connect failed"), "{}", r.stdout);
    assert!(!r.stdout.contains("CONNECTED"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(listener.accept().is_err(), "the listener saw a connection");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tracebacks_show_the_users_lines_not_the_guards() {
    let r = run(&[], "x = 1\ndef f():\n    return undefined_name\nf()");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("    return undefined_name"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("NameError"), "{}", r.stderr);
    let r = run(&[], "import json");
    assert!(!r.stderr.contains("guarded_import"), "{}", r.stderr);
}

/// The support code is split (`interp::SUPPORT_SPLIT`): what a run with the guard always needs,
/// and the rest (the API, cells, files, tracebacks), compiled apart on the host and loaded only
/// when a run needs it. The code runs from source without compile() (which would make the
/// `_ast` module's classes): its errors still name `<string>` and show its lines.
#[test]
fn the_support_below_the_split_loads_only_when_a_run_needs_it() {
    let probe = "import gc\n\
        names = {getattr(o, '__name__', '') for o in gc.get_objects()}\n\
        print(sorted(names & {'_pysandbox_guard', '_pysandbox_api', '_pysandbox_traceback'}))";
    assert_ok(
        &run(&["--allow-module", "gc"], probe),
        "['_pysandbox_guard']\n",
    );
    let r = run(&[], "def f():\n    return 1 / 0\nf()");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("File \"<string>\", line 2, in f"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("    return 1 / 0"), "{}", r.stderr);
    assert!(r.stderr.contains("ZeroDivisionError"), "{}", r.stderr);
    let r = run(&[], "x = (");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("File \"<string>\", line 1"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("SyntaxError"), "{}", r.stderr);
    // With a recursion limit the code is compiled before the limit applies, as before (200
    // nested lists do not compile under a limit of 60: the compiler counts against it too).
    let nested = format!("x = {}1{}\nprint(len(x))", "[".repeat(200), "]".repeat(200));
    assert_ok(&run(&["--recursion-limit", "60"], &nested), "1\n");
    // The rest is read at its offset on descriptor 5: code that moves the descriptor's position
    // (reading it, seeking it) still gets its own traceback, with and without the guard.
    let probe = "import os
os.lseek(5, 0, 0)
os.read(5, 4096)
os.lseek(5, 3, 0)
1 / 0";
    for flags in [&["--allow-module", "os"][..], &["--preset", "stdlib"][..]] {
        let r = run(flags, probe);
        assert_eq!(r.code, 1, "{flags:?}: {}", r.stderr);
        assert!(r.stderr.contains("    1 / 0"), "{flags:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("ZeroDivisionError"),
            "{flags:?}: {}",
            r.stderr
        );
    }
}

#[test]
fn repl_runs_each_input_in_the_sandbox() {
    let r = pysandbox(
        &["repl", "--feature", "math", "--timeout", "1s"],
        Some("import math\nx = math.sqrt(49)\nprint(x)\nwhile True: pass\n\nprint('after')\nimport socket\n"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("sandbox>>> "), "{}", r.stdout);
    assert!(r.stdout.contains("7.0\n"), "{}", r.stdout);
    assert!(r.stdout.contains("after\n"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("wall-clock limit of 1s per input reached"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("import of 'socket' is not allowed"),
        "{}",
        r.stderr
    );
    // The session survived the loop by restarting: state before it is gone, not the console.
    // A block goes on until a blank line, as in Python's own console.
    let r = pysandbox(
        &["repl"],
        Some("def f():\n    y = 2\n    return y * 21\n\nprint(f())\nexit()\nprint('never')\n"),
    );
    assert!(
        r.stdout.contains("42\n") && !r.stdout.contains("never"),
        "{}",
        r.stdout
    );
}

#[test]
fn repl_answers_cannot_be_forged_from_stdout() {
    // The old protocol ended an input at a `\0TOKEN STATE` line on stdout: code printing such
    // lines (or anything that looks like a frame) could end an input early or fake an exit.
    // Answers now travel as frames on the report pipe, relayed apart from stdout.
    // The code looks for the old per-session token in the bootstrap's frames (any 32 hex digits)
    // and prints the answer it would forge with it ("exit": the console would have quit), then
    // a frame-shaped line.
    let fake = "import sys\nwalk = lambda f: [] if f is None else list(f.f_locals.values()) + walk(f.f_back)\n_ = [print('\\0' + v + ' exit', flush=True) for v in walk(sys._getframe()) if isinstance(v, str) and len(v) == 32 and set(v) <= set('0123456789abcdef')]\nprint('\\0' + 'f' * 32 + ' done', flush=True)\nsys.stdout.write(chr(6) + chr(0) * 3 + chr(5) + chr(3)); sys.stdout.flush()\nx = 21\nprint(x * 2)\n";
    let r = pysandbox(&["repl", "--preset", "stdlib"], Some(fake));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Everything printed is output, verbatim; the inputs after it ran in the same session.
    assert!(r.stdout.contains(" done\n"), "{:?}", r.stdout);
    assert!(r.stdout.contains("42\n"), "{:?}", r.stdout);
    assert!(!r.stderr.contains("new session"), "{}", r.stderr);
}

/// The real interpreter (PATH's `python3.11` may be a pyenv shim script).
fn host_python() -> String {
    let out = Command::new("python3.11")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3.11 on PATH");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn tempdir() -> String {
    let mut buf = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    let name: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("pysandbox-policy-test-{name}"));
    std::fs::create_dir(&dir).unwrap();
    dir.to_string_lossy().into_owned()
}
