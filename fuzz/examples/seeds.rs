//! Writes the seed corpus (`fuzz/corpus/<target>/`) from the real encoders: frames from
//! `protocol`, policies shown by `Policy::to_toml_string` and serialized as JSON, and the
//! request bodies the server's own tests send. Run from the repository's root:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (docs/fuzzing.md).
use pysandbox_core::limits::Limit;
use pysandbox_core::policy::Policy;
use pysandbox_core::protocol::{End, FromZygote, Relay, ReplState, Report, Request, ToZygote};
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed written");
}

/// `pick` then `body`: the HTTP targets' input (byte 0 picks the route and the ceiling).
fn body(target: &str, name: &str, pick: u8, body: &str) {
    let mut b = vec![pick];
    b.extend_from_slice(body.as_bytes());
    write(target, name, &b);
}

fn reports() -> Vec<Report> {
    vec![
        Report::Limit(Limit::Memory),
        Report::Result(br#"{"d": [["value", {"i": "2a"}]]}"#.to_vec()),
        Report::Display(br#"{"data": {"text/plain": "3"}, "is_main_result": true}"#.to_vec()),
        Report::File {
            name: "out/plot.png".into(),
            data: vec![0x89, b'P', b'N', b'G'],
        },
        Report::FilesTruncated,
        Report::Error {
            kind: "ZeroDivisionError".into(),
            message: "division by zero".into(),
            traceback: "Traceback (most recent call last):\n  File \"<string>\", line 1\n".into(),
        },
        Report::Repl(ReplState::More),
        Report::SetupFailed {
            step: "landlock".into(),
            message: "not supported".into(),
        },
        Report::Done {
            exit: 1,
            cpu_micros: 1234,
            maxrss_kib: 9000,
        },
    ]
}

fn main() {
    // Host ↔ zygote.
    for (i, m) in [
        ToZygote::Session { cpu_seconds: 30 },
        ToZygote::Status { seq: 7 },
        ToZygote::Status { seq: u64::MAX },
    ]
    .iter()
    .enumerate()
    {
        write("to_zygote", &format!("frame{i}"), &m.encode());
    }
    write("to_zygote", "short", &[9, 0, 0, 0, 2, 1]);
    for (i, m) in [
        FromZygote::Ready,
        FromZygote::Child {
            seq: 3,
            session: true,
        },
        FromZygote::Exit {
            seq: 3,
            end: End::Exited(0),
            cpu_micros: 10,
            maxrss_kib: 2048,
        },
        FromZygote::Exit {
            seq: 4,
            end: End::Signaled(9),
            cpu_micros: 0,
            maxrss_kib: 0,
        },
        FromZygote::Failed {
            policy: true,
            message: "preload 'numpy': not allowed".into(),
        },
    ]
    .iter()
    .enumerate()
    {
        write("from_zygote", &format!("frame{i}"), &m.encode());
    }
    // Host → child.
    write("request_frame", "default", &Request::default().encode());
    let full = Request {
        code: b"import sys\nprint(sys.argv, input())".to_vec(),
        name: "main.py".into(),
        stdin: Some(b"1 2\n".to_vec()),
        api: Some(br#"{"op": "exec", "input": {}}"#.to_vec()),
        files: vec![("in/data.csv".into(), b"a,b\n1,2\n".to_vec())],
        collect: vec!["*.png".into(), "out/*.csv".into()],
        cell: true,
        live: true,
        args: vec!["--n".into(), "3".into()],
    };
    write("request_frame", "full", &full.encode());
    // Child → host: each report alone, all in a row (whole, then in pieces of 1 and 7; a small
    // result bound), and junk before a closing frame.
    let all: Vec<u8> = reports().iter().flat_map(Report::encode).collect();
    for (i, r) in reports().iter().enumerate() {
        let mut b = vec![0x7f];
        b.extend(r.encode());
        write("report_stream", &format!("report{i}"), &b);
    }
    for (name, split) in [("all", 0x7f), ("all_bytewise", 0), ("all_small", 0x86)] {
        let mut b = vec![split];
        b.extend(&all);
        write("report_stream", name, &b);
    }
    let mut junk = b"\x7flimit memory\n".to_vec();
    junk.extend(Report::Limit(Limit::Wall).encode());
    write("report_stream", "junk", &junk);
    // Worker → repl front.
    let mut relay = Relay::Stdout(b">>> ".to_vec()).encode();
    relay.extend(Relay::Stderr(b"Traceback\n".to_vec()).encode());
    relay.extend(Relay::Report(Report::Repl(ReplState::Done).encode()).encode());
    write("relay_frames", "stream", &relay);
    // Policies: the example file, presets, every field.
    let example = std::fs::read_to_string("examples/policy.toml").expect("examples/policy.toml");
    write("policy_toml", "example", example.as_bytes());
    let texts = [
        "",
        "preset = \"stdlib\"\n",
        "preset = \"full\"\nfeatures = [\"threads\", \"network\"]\n",
        "preset = \"default\"\nfeatures = [\"math\", \"random\"]\npreload = [\"math\"]\n\
         warmup = \"import math\"\nrecursion_limit = 200\nnetwork = \"none\"\n\
         allow_read = [\"/usr/share/dict\"]\nallow_write = [\"/tmp/out\"]\n\
         [modules]\njson = []\ncollections = [\"Counter\", \"deque\"]\n\
         [env]\nLANG = \"C.UTF-8\"\n\
         [limits]\nwall = \"2.5s\"\ncpu = \"1s\"\nmemory = \"256M\"\nprocesses = 1\n\
         open_files = 64\nfile_size = \"1M\"\ntmp_size = \"16M\"\noutput = \"64K\"\n",
    ];
    for (i, t) in texts.iter().enumerate() {
        write("policy_toml", &format!("policy{i}"), t.as_bytes());
        let p = Policy::from_toml_str(t).expect("a seed policy parses");
        write(
            "policy_toml",
            &format!("shown{i}"),
            p.to_toml_string().as_bytes(),
        );
        let json = serde_json::to_string_pretty(&p).expect("a policy serializes");
        write("policy_json", &format!("policy{i}"), json.as_bytes());
    }
    write(
        "policy_json",
        "limits",
        br#"{"limits": {"wall": "1s", "memory": null}}"#,
    );
    // Results crossing the boundary (pysandbox._native.encode's output).
    for (i, r) in [
        r#"null"#,
        r#"{"d": [["value", {"i": "-2a"}], ["globals", {"d": [["x", {"f": "1.5"}]]}]]}"#,
        r#"[true, false, null, "text", {"b": "00ff"}, {"su": "eda080"}]"#,
        r#"{"t": [{"s": [{"i": "1"}, {"i": "2"}]}, {"fs": [{"f": "nan"}, {"f": "-inf"}]}]}"#,
        r#"{"d": [[{"t": [{"i": "1"}, "a"]}, [[[]]]]]}"#,
        r#"{"i": "1fffffffffffffffffffffffffffffffffffffffffffff"}"#,
        r#"{"s": [{"i": "1fffffffffffffff"}, {"i": "3ffffffffffffffe"}]}"#,
        r#"{"x": 1}"#,
    ]
    .iter()
    .enumerate()
    {
        write("result_codec", &format!("value{i}"), r.as_bytes());
    }
    // HTTP bodies. Native: byte 0 % 5 picks the route, byte 0 >> 4 the ceiling.
    let execute = r#"{"code": "print(input())", "stdin": "hi", "args": ["-v"], "files": {"in/a.txt": "aGk="}, "collect": ["*.txt"], "mode": "cell", "limits": {"wall": "1s", "memory": "64M"}, "features": ["math"]}"#;
    for ceiling in 0..3u8 {
        body(
            "http_native",
            &format!("execute{ceiling}"),
            ceiling << 4,
            execute,
        );
        body(
            "http_fusion",
            &format!("run_code{ceiling}"),
            ceiling << 4,
            r#"{"code": "print(1)", "language": "python", "stdin": "", "run_timeout": 2.5, "memory_limit_MB": 128, "files": {"./a.txt": "aGk=", "x": null}, "fetch_files": ["a.txt", "../etc/passwd"]}"#,
        );
        body(
            "http_piston",
            &format!("execute{ceiling}"),
            ceiling,
            r#"{"language": "python", "version": "3.11.x", "files": [{"name": "main.py", "content": "print(input())"}, {"name": "d.bin", "content": "AAE=", "encoding": "base64"}], "stdin": "x", "args": ["a"], "run_timeout": 3000, "run_cpu_time": 2000, "run_memory_limit": 100000000}"#,
        );
    }
    body("http_native", "execute_minimal", 0, r#"{"code": "pass"}"#);
    body(
        "http_native",
        "batch_array",
        1,
        &format!("[{execute}, {{\"code\": \"1\"}}]"),
    );
    body(
        "http_native",
        "batch_lines",
        1,
        "{\"code\": \"1\"}\n\n{\"code\": \"2\", \"mode\": \"script\"}\n",
    );
    body(
        "http_native",
        "judge",
        2,
        r#"{"code": "print(sum(map(int, input().split())))", "cases": [{"stdin": "1 2\n", "expected": "3\n"}, {"stdin": "2 2\n"}], "compare": "tokens", "limits": {"cpu": "1s"}}"#,
    );
    body(
        "http_native",
        "session",
        3,
        r#"{"limits": {"memory": "128M"}, "features": ["math"], "idle_timeout": 30.5}"#,
    );
    body("http_native", "session_empty", 3, "  ");
    body(
        "http_native",
        "session_execute",
        4,
        r#"{"code": "x = 1", "limits": {"wall": "500ms"}}"#,
    );
    body(
        "http_native",
        "unknown_field",
        0,
        r#"{"code": "1", "nope": 2}"#,
    );
    body(
        "http_fusion",
        "run_jupyter",
        1,
        r#"{"cells": ["x = 1", "x + 1"], "cell_timeout": 1.0, "total_timeout": 5, "kernel": "python3", "files": {"a": "aGk="}, "fetch_files": ["a"]}"#,
    );
    body(
        "http_fusion",
        "language",
        0,
        r#"{"code": "1", "language": "cpp"}"#,
    );
    body(
        "http_e2b",
        "new_sandbox",
        0,
        r#"{"templateID": "code-interpreter-v1", "timeout": 300, "envVars": {}}"#,
    );
    body("http_e2b", "new_sandbox_empty", 0, "");
    body(
        "http_e2b",
        "execute",
        1,
        r#"{"code": "1 + 1", "context_id": "abc", "language": "python", "env_vars": {"A": "b"}}"#,
    );
    body(
        "http_e2b",
        "context",
        2,
        r#"{"language": "python", "cwd": "/home/user/"}"#,
    );
    body("http_e2b", "path", 3, "/home/user/./out/a.txt");
    body("http_e2b", "path_outside", 3, "/home/user/../../etc/passwd");
    // The judge: cases (JSON lines, a JSON array; byte 0 picks, bit 7 gives stdin) and a
    // compile check's result.
    body("judge_inputs", "jsonl", 0x80,
        "{\"stdin\": \"1 2\\n\", \"expected\": \"3\\n\"}\n\n{\"stdin\": \"\", \"expected\": null}\n");
    body(
        "judge_inputs",
        "json",
        0x81,
        r#"[{"stdin": "5\n", "expected": "25\n"}, {"stdin": "x"}]"#,
    );
    body("judge_inputs", "no_stdin", 1, r#"[{"expected": "hi\n"}]"#);
    body(
        "judge_inputs",
        "compile_error",
        2,
        r#"{"d": [["error", {"d": [["type", "SyntaxError"], ["message", "invalid syntax"], ["traceback", "  File \"main.py\", line 1\n"]]}]]}"#,
    );
    body(
        "judge_inputs",
        "compile_ok",
        2,
        r#"{"d": [["globals", {"d": []}]]}"#,
    );
}
