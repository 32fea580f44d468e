//! `pysandbox server` end to end: the real binary started on a free loopback port (as root and
//! as nobody), spoken to over real TCP by a small HTTP/1.1 client. Each test judges by what the
//! host sees: statuses and bodies on the wire, the server's processes in /proc, the time a
//! request took.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `pysandbox server`; SIGTERM and wait on drop.
struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
    caller: Caller,
}

impl Server {
    /// `pysandbox server --listen 127.0.0.1:0 FLAGS` as `caller` (the stdlib preset, as every
    /// end-to-end test), once it says where it listens.
    fn start(caller: Caller, flags: &[&str]) -> Server {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend(flags);
        let mut child = caller
            .command(&["server"], &all, &RunOpts::default())
            .spawn()
            .unwrap_or_else(|e| panic!("as {caller}: starting pysandbox server: {e}"));
        // Its log is drained all along: a full pipe would stop the server.
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let Some(addr) = first
            .trim()
            .strip_prefix("pysandbox server listening on http://")
        else {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "as {caller}: the server did not start: {first:?}; log: {}",
                log.lock().unwrap()
            );
        };
        Server {
            addr: addr.to_string(),
            child,
            log,
            caller,
        }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(&self.addr, "GET", path, headers, b"")
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        request(
            &self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// SIGTERM, then its exit status (killed after `within`).
    fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate(Duration::from_secs(20));
        }
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// An answer: status, headers (names lowercased), body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send one request on a new connection and read its headers.
fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (status, headers, r)
}

/// The next chunk of a chunked body (`None` at its end).
fn next_chunk(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
    let mut chunk = vec![0u8; size + 2];
    r.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}

fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let (status, headers, mut r) = send(addr, method, path, headers, body);
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(c) = next_chunk(&mut r) {
            body.extend(c);
        }
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn execute(s: &Server, body: Value) -> Value {
    let r = s.post("/v1/execute", &body);
    assert_eq!(r.status, 200, "as {}: {body}: {}", s.caller, r.text());
    r.json()
}

fn b64(bytes: &[u8]) -> String {
    pysandbox_core::outcome::base64_encode(bytes)
}

/// Every process of the server (itself, its workers and their sandboxes).
fn tree(s: &Server) -> Vec<u32> {
    descendants(s.child.id())
}

#[test]
fn execute_answers_the_outcome_schema_as_root_and_as_nobody() {
    for caller in callers() {
        let s = Server::start(caller, &["--workers", "1", "--timeout", "10s"]);
        let ok = execute(
            &s,
            json!({"code": "import sys\nprint(input(), sys.argv[1:], open('in.txt').read())",
                   "stdin": "from stdin\n", "args": ["-n", "3"],
                   "files": {"in.txt": b64(b"a file")}}),
        );
        assert_eq!(ok["status"], "ok", "as {caller}: {ok}");
        assert_eq!(
            ok["stdout"], "from stdin ['-n', '3'] a file\n",
            "as {caller}"
        );

        let out = execute(
            &s,
            json!({"code": "import os\nos.mkdir('out')\nopen('out/r.txt', 'w').write('made inside')",
                   "collect": ["out/*.txt"]}),
        );
        assert_eq!(
            out["files"]["out/r.txt"],
            b64(b"made inside"),
            "as {caller}: {out}"
        );

        let err = execute(
            &s,
            json!({"code": "x = 1\n\ndef f():\n    return x / 0\n\nf()\n"}),
        );
        assert_eq!(err["status"], "error", "as {caller}: {err}");
        assert_eq!(err["exit_code"], 1);
        assert_eq!(err["error"]["type"], "ZeroDivisionError");
        let tb = err["error"]["traceback"].as_str().unwrap();
        assert!(tb.contains("return x / 0"), "the user's line: {tb}");

        // A run that outlives its (narrowed) wall clock is answered with the limit, in time.
        let t = Instant::now();
        let spin = execute(
            &s,
            json!({"code": "while True: pass", "limits": {"wall": "1s"}}),
        );
        assert_eq!(
            (spin["status"].as_str(), spin["limit"].as_str()),
            (Some("limit"), Some("wall")),
            "as {caller}: {spin}"
        );
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());

        // A request narrows the operator's policy, never widens it, and says which field.
        let wide = s.post(
            "/v1/execute",
            &json!({"code": "print(1)", "limits": {"wall": "1h"}}),
        );
        assert_eq!(wide.status, 403, "as {caller}: {}", wide.text());
        assert_eq!(wide.json()["status"], "sandbox_error");
        assert!(wide.text().contains("limits.wall"), "{}", wide.text());
        let net = s.post(
            "/v1/execute",
            &json!({"code": "print(1)", "features": ["network"]}),
        );
        assert_eq!(net.status, 403, "as {caller}: {}", net.text());
        assert!(net.text().contains("features[0]"), "{}", net.text());
        let narrowed = execute(&s, json!({"code": "import socket", "features": ["math"]}));
        assert_eq!(narrowed["error"]["type"], "ImportError", "{narrowed}");

        // Malformed bodies: 400 naming the field.
        for (body, field) in [
            (json!({"code": "1", "colour": "red"}), "colour"),
            (json!({"code": 5}), "code"),
            (
                json!({"code": "1", "limits": {"memory": "lots"}}),
                "limits.memory",
            ),
            (json!({"code": "1", "mode": "notebook"}), "mode"),
            (json!({"code": "1", "files": {"../up": "eA=="}}), "files"),
        ] {
            let r = s.post("/v1/execute", &body);
            assert_eq!(r.status, 400, "as {caller}: {body}: {}", r.text());
            assert!(r.text().contains(field), "{body}: {}", r.text());
        }
        // The host's files are out of reach: a secret beside the server is not read, and a
        // file the code writes does not appear on the host.
        let host = TempDir::new("server-host").writable_by_all();
        let secret = random_hex(16);
        write_file(&host.join("secret"), &secret);
        let planted = host.join("planted");
        let attack = format!(
            "import os\nfor p in ({:?}, {:?}):\n    try:\n        print(open(p).read())\n    except OSError as e:\n        print(type(e).__name__)\ntry:\n    open({:?}, 'w').write('x')\nexcept OSError as e:\n    print(type(e).__name__)\n",
            host.join("secret").to_string_lossy(),
            "/proc/1/root".to_string() + &host.join("secret").to_string_lossy(),
            planted.to_string_lossy()
        );
        let r = execute(&s, json!({ "code": attack }));
        assert!(!r.to_string().contains(&secret), "as {caller}: {r}");
        assert!(!planted.exists(), "as {caller}: the code wrote on the host");
        assert!(r["stdout"].as_str().unwrap().contains("Error"), "{r}");
        let broken = request(&s.addr, "POST", "/v1/execute", &[], b"{\"code\": ");
        assert_eq!(broken.status, 400, "{}", broken.text());
        assert!(s.get("/healthz", &[]).status == 200);
    }
}

#[test]
fn streaming_sends_output_as_it_happens_and_ends_with_the_outcome() {
    let s = Server::start(Caller::Root, &["--workers", "1"]);
    let session = s.post("/v1/sessions", &json!({})).json();
    let in_session = format!("/v1/sessions/{}/execute", session["id"].as_str().unwrap());
    // No flush: a streaming caller's stdout is line-buffered, fresh run and session alike.
    let code = "import time, sys\nprint('first')\ntime.sleep(1.5)\n\
                print('late', file=sys.stderr)\nraise ValueError('at the end')\n";
    for path in ["/v1/execute", in_session.as_str()] {
        let body = json!({ "code": code }).to_string();
        let start = Instant::now();
        let (status, headers, mut r) = send(
            &s.addr,
            "POST",
            path,
            &[("Accept", "application/x-ndjson")],
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{path}");
        assert!(headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/x-ndjson")));
        let mut events: Vec<(Duration, Value)> = Vec::new();
        let mut pending = Vec::new();
        while let Some(c) = next_chunk(&mut r) {
            pending.extend(c);
            while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                events.push((start.elapsed(), serde_json::from_slice(&line).unwrap()));
            }
        }
        let kinds: Vec<&str> = events
            .iter()
            .map(|(_, e)| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds.last(), Some(&"end"), "{path}: {kinds:?}");
        assert_eq!(kinds.iter().filter(|k| **k == "end").count(), 1);
        let first = events
            .iter()
            .find(|(_, e)| e["type"] == "stdout")
            .expect("a stdout event");
        assert_eq!(first.1["text"], "first\n");
        let end = events.last().unwrap();
        // The first line came while the code still slept, not with the outcome.
        assert!(
            end.0 - first.0 > Duration::from_millis(1000),
            "{path}: stdout at {:?}, end at {:?}",
            first.0,
            end.0
        );
        let stderr_at = kinds.iter().position(|k| *k == "stderr").unwrap();
        let error_at = kinds.iter().position(|k| *k == "error").unwrap();
        assert!(stderr_at < kinds.len() - 1 && error_at < kinds.len() - 1);
        let outcome = &end.1["outcome"];
        assert_eq!(outcome["status"], "error");
        assert_eq!(outcome["stdout"], "first\n");
        assert_eq!(outcome["error"]["type"], "ValueError");
        assert_eq!(
            events.iter().find(|(_, e)| e["type"] == "error").unwrap().1["error"]["message"],
            "at the end"
        );
    }
}

#[test]
fn sessions_keep_state_and_files_and_are_capped() {
    for caller in callers() {
        let s = Server::start(caller, &["--workers", "1", "--max-sessions", "1"]);
        let created = s.post("/v1/sessions", &json!({"limits": {"wall": "5s"}}));
        assert_eq!(created.status, 201, "as {caller}: {}", created.text());
        let c = created.json();
        let id = c["id"].as_str().unwrap().to_string();
        assert!(c["expires_at"].as_str().unwrap().ends_with('Z'), "{c}");
        let at = |p: &str| format!("/v1/sessions/{id}{p}");

        let r = s.post(&at("/execute"), &json!({"code": "x = 41"}));
        assert_eq!(r.status, 200, "{}", r.text());
        let r = s
            .post(&at("/execute"), &json!({"code": "print(x + 1)"}))
            .json();
        assert_eq!(r["stdout"], "42\n", "as {caller}: {r}");

        let put = request(
            &s.addr,
            "PUT",
            &at("/files/data/in.csv"),
            &[],
            b"a,b\n1,2\n",
        );
        assert_eq!(put.status, 204, "as {caller}: {}", put.text());
        let r = s
            .post(
                &at("/execute"),
                &json!({"code": "rows = open('data/in.csv').read().split()\n\
                                 open('report.txt', 'w').write(str(len(rows)))"}),
            )
            .json();
        assert_eq!(r["status"], "ok", "{r}");
        let got = s.get(&at("/files/report.txt"), &[]);
        assert_eq!((got.status, got.text()), (200, "2".to_string()));
        assert_eq!(s.get(&at("/files/missing.txt"), &[]).status, 404);
        // Names the code cannot reach outside its directory, whatever the URL says.
        for bad in ["/files/..%2F..%2Fetc%2Fpasswd", "/files/%2Fetc%2Fpasswd"] {
            let r = s.get(&at(bad), &[]);
            assert!(r.status == 400 || r.status == 404, "{bad}: {}", r.text());
            assert!(!r.text().contains("root:x:0:0"));
        }

        let planted = format!("pysandbox-escape-{}", random_hex(6));
        for bad in [
            format!("..%2F..%2F..%2Ftmp%2F{planted}"),
            format!("%2Ftmp%2F{planted}"),
            "a%00b".to_string(),
        ] {
            let r = request(&s.addr, "PUT", &at(&format!("/files/{bad}")), &[], b"x");
            assert_eq!(r.status, 400, "as {caller}: PUT {bad}: {}", r.text());
        }
        assert!(!std::path::Path::new("/tmp").join(&planted).exists());

        // The cap: a second session is refused while the first lives.
        let second = s.post("/v1/sessions", &json!({}));
        assert_eq!(second.status, 429, "as {caller}: {}", second.text());
        assert_eq!(second.header("retry-after"), Some("1"));
        let metrics = s.get("/metrics", &[]).text();
        assert!(metrics.contains("pysandbox_sessions 1"), "{metrics}");

        let del = request(&s.addr, "DELETE", &format!("/v1/sessions/{id}"), &[], b"");
        assert_eq!(del.status, 204);
        let gone = s.post(&at("/execute"), &json!({"code": "print(x)"}));
        assert_eq!(gone.status, 404, "{}", gone.text());
        assert_eq!(s.post("/v1/sessions", &json!({})).status, 201);
    }
}

/// A zero wall clock is refused on every route that narrows the server's limits (found by the
/// fuzz target `http_native`: a session took it and its policy no longer validated), and the
/// server goes on serving.
#[test]
fn a_zero_wall_clock_is_refused_on_every_route() {
    let s = Server::start(Caller::Root, &["--workers", "1"]);
    let zero = json!({"wall": "0s"});
    for (path, body) in [
        ("/v1/sessions", json!({"limits": zero})),
        ("/v1/execute", json!({"code": "print(1)", "limits": zero})),
        ("/v1/batch", json!([{"code": "print(1)", "limits": zero}])),
        (
            "/v1/judge",
            json!({"code": "print(1)", "cases": [{"stdin": "", "expected": "1\n"}], "limits": zero}),
        ),
    ] {
        let r = s.post(path, &body);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.text().contains("limits.wall"), "{path}: {}", r.text());
    }
    let ok = s.post(
        "/v1/execute",
        &json!({"code": "print(1)", "limits": {"wall": "2s"}}),
    );
    assert_eq!(ok.json()["stdout"], "1\n", "{}", ok.text());
}

#[test]
fn a_session_call_that_ends_the_session_says_so() {
    // Before, the answer of a call that tripped a limit was the bare outcome: the caller learnt
    // that its session was gone only from its next call's 409 or 404 (found by the soak).
    let s = Server::start(Caller::Root, &["--workers", "1", "--memory", "256M"]);
    let id = s.post("/v1/sessions", &json!({})).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let at = format!("/v1/sessions/{id}/execute");
    // The control: a call that does not end it carries no `ended`.
    let r = s.post(&at, &json!({"code": "x = 1"})).json();
    assert_eq!((&r["status"], r.get("ended")), (&json!("ok"), None), "{r}");
    let r = s
        .post(&at, &json!({"code": "b = bytearray(1 << 30)"}))
        .json();
    assert_eq!(r["limit"], "memory", "{r}");
    assert_eq!(r["ended"], true, "{r}");
    let next = s.post(&at, &json!({"code": "print(x)"}));
    assert!(next.status == 404 || next.status == 409, "{}", next.text());
}

#[test]
fn a_session_idle_past_its_timeout_is_gone_with_its_processes() {
    let s = Server::start(Caller::Root, &["--workers", "1"]);
    // The workers warm first (a worker forks its next child ahead, after an answer): the
    // processes a session adds are then told apart by pid.
    execute(&s, json!({"code": "pass"}));
    let mut before = tree(&s);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = tree(&s);
        if now == before {
            break;
        }
        before = now;
    }
    let c = s.post("/v1/sessions", &json!({"idle_timeout": 1})).json();
    let id = c["id"].as_str().unwrap();
    let r = s.post(
        &format!("/v1/sessions/{id}/execute"),
        &json!({"code": "x = 1"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let session: Vec<u32> = tree(&s)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(!session.is_empty(), "the session's processes");
    let alive = |pids: &[u32]| -> Vec<u32> {
        pids.iter()
            .copied()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect()
    };
    // The reaper runs every 5 s.
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end && !alive(&session).is_empty() {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        alive(&session).is_empty(),
        "the session's processes are gone: {:?} of {session:?}: {:?}",
        alive(&session),
        alive(&session)
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
            .collect::<Vec<_>>()
    );
    let r = s.post(
        &format!("/v1/sessions/{id}/execute"),
        &json!({"code": "print(x)"}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
}

#[test]
fn batch_and_judge_answer_in_order() {
    let s = Server::start(Caller::Root, &["--workers", "2"]);
    let items: Vec<Value> = (0..6)
        .map(|i| json!({"code": format!("print({i} * {i})")}))
        .collect();
    let r = s.post("/v1/batch", &Value::Array(items));
    assert_eq!(r.status, 200, "{}", r.text());
    let outs = r.json();
    let stdouts: Vec<&str> = outs
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["stdout"].as_str().unwrap())
        .collect();
    assert_eq!(stdouts, ["0\n", "1\n", "4\n", "9\n", "16\n", "25\n"]);
    // JSON lines, and a bad line named by its number.
    let lines = "{\"code\": \"print('a')\"}\n{\"code\": \"1/0\"}\n";
    let r = request(&s.addr, "POST", "/v1/batch", &[], lines.as_bytes()).json();
    assert_eq!(
        (r[0]["stdout"].as_str(), r[1]["status"].as_str()),
        (Some("a\n"), Some("error"))
    );
    let bad = "{\"code\": \"1\"}\n{\"cod\": \"1\"}\n";
    let r = request(&s.addr, "POST", "/v1/batch", &[], bad.as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.text().contains("line 2"), "{}", r.text());

    let judged = s.post(
        "/v1/judge",
        &json!({"code": "a, b = map(int, input().split())\nprint(a + b)",
                "cases": [{"stdin": "1 2\n", "expected": "3\n"},
                          {"stdin": "2 2\n", "expected": "5\n"},
                          {"stdin": "x\n", "expected": "1\n"}]}),
    );
    assert_eq!(judged.status, 200, "{}", judged.text());
    let j = judged.json();
    assert_eq!(
        (j["passed"].as_u64(), j["total"].as_u64()),
        (Some(1), Some(3)),
        "{j}"
    );
}

#[test]
fn tokens_guard_every_route_but_healthz() {
    let dir = TempDir::new("tokens");
    let file = dir.join("tokens");
    write_file(&file, "# the operator's tokens\ns3cret-one\n\ns3cret-two\n");
    let s = Server::start(
        Caller::Root,
        &["--workers", "1", "--token-file", file.to_str().unwrap()],
    );
    assert_eq!(s.get("/healthz", &[]).status, 200);
    let body = json!({"code": "print(7)"});
    let post = |headers: &[(&str, &str)]| {
        request(
            &s.addr,
            "POST",
            "/v1/execute",
            headers,
            body.to_string().as_bytes(),
        )
    };
    for wrong in [
        vec![],
        vec![("Authorization", "Bearer s3cret")],
        vec![("Authorization", "Bearer s3cret-one-and-more")],
        vec![("Authorization", "Basic s3cret-one")],
    ] {
        let r = post(&wrong);
        assert_eq!(r.status, 401, "{wrong:?}: {}", r.text());
        assert!(!r.text().contains("s3cret"), "{}", r.text());
    }
    for path in ["/v1/info", "/metrics", "/readyz"] {
        assert_eq!(s.get(path, &[]).status, 401, "{path}");
    }
    for good in [
        ("Authorization", "Bearer s3cret-one"),
        ("Authorization", "Bearer s3cret-two"),
        ("X-API-Key", "s3cret-one"),
        ("X-Access-Token", "s3cret-two"),
    ] {
        let r = post(&[good]);
        assert_eq!(r.status, 200, "{good:?}: {}", r.text());
        assert_eq!(r.json()["stdout"], "7\n");
    }
    let info = s.get("/v1/info", &[("Authorization", "Bearer s3cret-one")]);
    assert_eq!(info.status, 200);
    assert!(info.json()["python"].as_str().unwrap().starts_with("3."));
}

#[test]
fn without_tokens_only_loopback() {
    let out = Caller::Root
        .command(
            &["server"],
            &["--listen", "0.0.0.0:0", "--workers", "1"],
            &RunOpts::default(),
        )
        .output()
        .unwrap();
    // A configuration fault: exit status 2, as a bad policy.
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("without tokens") && stderr.contains("--token-file"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "it never listened");
    let empty = TempDir::new("no-tokens");
    write_file(&empty.join("t"), "# none yet\n");
    let out = Caller::Root
        .command(
            &["server"],
            &["--token-file", &empty.join("t").to_string_lossy()],
            &RunOpts::default(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token"));
}

#[test]
fn a_full_queue_answers_429_with_retry_after_and_nothing_else_fails() {
    let s = Server::start(Caller::Root, &["--workers", "1", "--max-queue", "1"]);
    let addr = s.addr.clone();
    let body = json!({"code": "import time\ntime.sleep(0.8)\nprint('done')"}).to_string();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (addr, body) = (addr.clone(), body.clone());
            std::thread::spawn(move || request(&addr, "POST", "/v1/execute", &[], body.as_bytes()))
        })
        .collect();
    let replies: Vec<Reply> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(ok + busy.len(), 8, "only 200 and 429: {replies:?}");
    assert!(
        ok >= 1 && !busy.is_empty(),
        "{ok} answered, {} busy",
        busy.len()
    );
    for r in replies.iter().filter(|r| r.status == 200) {
        assert_eq!(r.json()["stdout"], "done\n");
    }
    for r in &busy {
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.json()["error"]["type"], "busy", "{}", r.text());
    }
    let metrics = s.get("/metrics", &[]).text();
    assert!(
        metrics.contains("pysandbox_requests_total{route=\"/v1/execute\",status=\"429\"}"),
        "{metrics}"
    );
}

#[test]
fn sigterm_drains_requests_in_flight_and_leaves_no_process() {
    for caller in callers() {
        let mut s = Server::start(caller, &["--workers", "2"]);
        let (addr, body) = (
            s.addr.clone(),
            json!({"code": "import time\ntime.sleep(1.5)\nprint('finished')"}).to_string(),
        );
        let in_flight =
            std::thread::spawn(move || request(&addr, "POST", "/v1/execute", &[], body.as_bytes()));
        std::thread::sleep(Duration::from_millis(500));
        let procs = tree(&s);
        assert!(
            procs.len() > 2,
            "as {caller}: the server and its workers: {procs:?}"
        );
        let status = s.terminate(Duration::from_secs(20));
        let r = in_flight.join().unwrap();
        assert_eq!(r.status, 200, "as {caller}: {}", r.text());
        assert_eq!(r.json()["stdout"], "finished\n", "as {caller}");
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "as {caller}: log: {}",
            s.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
        let left: Vec<&u32> = procs
            .iter()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect();
        assert!(left.is_empty(), "as {caller}: processes left: {left:?}");
        assert!(
            TcpStream::connect(&s.addr).is_err(),
            "as {caller}: still listening"
        );
    }
}

#[test]
fn slow_clients_cannot_hold_the_server() {
    let s = Server::start(
        Caller::Root,
        &[
            "--workers",
            "1",
            "--header-timeout",
            "1s",
            "--body-timeout",
            "1s",
            "--max-body",
            "4096",
        ],
    );
    // Headers that never end: the connection is closed.
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"POST /v1/execute HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "dropped after {:?}",
        t.elapsed()
    );
    // A body that never comes: 408.
    let mut trickle = TcpStream::connect(&s.addr).unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    trickle
        .write_all(b"POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"code\"")
        .unwrap();
    let t = Instant::now();
    let mut answer = String::new();
    let _ = trickle.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("--body-timeout"), "{answer:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // Too big a body: 413, read no further.
    let big = json!({"code": format!("# {}", "x".repeat(10_000))});
    let r = s.post("/v1/execute", &big);
    assert_eq!(r.status, 413);
    assert!(r.text().contains("--max-body"), "{}", r.text());
    // And the server still answers.
    assert_eq!(execute(&s, json!({"code": "print(2)"}))["stdout"], "2\n");
}

#[test]
fn metrics_and_info_describe_the_server() {
    let s = Server::start(Caller::Root, &["--workers", "2", "--memory", "512M"]);
    assert_eq!(s.get("/readyz", &[]).status, 200);
    execute(&s, json!({"code": "print(1)"}));
    execute(
        &s,
        json!({"code": "while True: pass", "limits": {"wall": "500ms"}}),
    );
    execute(
        &s,
        json!({"code": "print('x' * 100)", "limits": {"output": 10}}),
    );
    let m = s.get("/metrics", &[]);
    assert_eq!(m.status, 200);
    let m = m.text();
    for needle in [
        "pysandbox_requests_total{route=\"/v1/execute\",status=\"200\"} 3",
        "pysandbox_request_seconds_count{route=\"/v1/execute\"} 3",
        "pysandbox_limits_total{limit=\"wall\"} 1",
        "pysandbox_limits_total{limit=\"output\"} 1",
        "pysandbox_workers{state=\"idle\"}",
        "pysandbox_queue_depth 0",
        "pysandbox_sessions 0",
    ] {
        assert!(m.contains(needle), "{needle} in:\n{m}");
    }
    let info = s.get("/v1/info", &[]).json();
    assert_eq!(info["policy"]["limits"]["memory"], "512M", "{info}");
    assert_eq!(info["workers"], 2);
    // The standard library only: no distribution is importable.
    assert_eq!(info["packages"], json!([]), "{info}");
    assert!(info["kernel"]["seccomp"].as_bool().unwrap());
    // The access log is JSON lines, one per request, with route and status.
    let log = s.log.lock().unwrap().clone();
    assert!(
        log.lines()
            .any(|l| l.contains("\"route\":\"/v1/execute\"") && l.contains("\"status\":200")),
        "{log}"
    );
}
