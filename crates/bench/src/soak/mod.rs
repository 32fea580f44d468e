//! `pysandbox-bench soak [N]` (`make soak`): N mixed requests (default 20,000) at concurrency 8
//! through the four paths — the cold path (`pysandbox run --json`, the real binary), the warm
//! pool (the core's `Pool`), sessions (the core's `Session`) and `pysandbox server` (started on
//! loopback; `/v1/execute` and the session routes) — benign, failing, limit-tripping and hostile
//! ([`cases`]). Then, from the host: every answer right; no process, zombie, descriptor, mount,
//! SysV object, temp entry or cgroup left; the server's and the pool's memory flat (the mean
//! RSS over each path's first thousand requests against its last thousand). Prints the figures
//! (docs/soak.md) and exits 1 if a check failed.

mod cases;
mod host;
mod report;

use crate::server::{Conn, Server};
use cases::{Case, Job};
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::{Pool, PoolOptions, Request, Session};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONCURRENCY: usize = 8;
/// Warm workers of the pool and of the server each.
const WORKERS: usize = 2;
/// Every path's policy (the cold path and the server read it from a file).
const POLICY: &str = r#"preset = "stdlib"
[limits]
wall = "10s"
cpu = "1s"
memory = "256M"
output = "64K"
processes = 8
file_size = "1M"
"#;
/// An RSS sample every this many requests of a path.
const SAMPLE_EVERY: usize = 10;
/// The server's `--header-timeout` (its default), after which it closes an idle connection.
const IDLE_CLOSE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PathKind {
    Cold,
    Pool,
    Session,
    Server,
}

const PATHS: [PathKind; 4] = [
    PathKind::Cold,
    PathKind::Pool,
    PathKind::Session,
    PathKind::Server,
];

fn path_of(i: usize) -> PathKind {
    PATHS[i % 4]
}

/// What every thread shares.
struct Shared {
    binary: PathBuf,
    dir: PathBuf,
    policy_file: PathBuf,
    policy: Policy,
    pool: Pool,
    addr: String,
    server_pid: u32,
    next: AtomicUsize,
    total: usize,
    log: Mutex<Log>,
}

#[derive(Default)]
pub(crate) struct Log {
    /// Per path: latencies.
    latencies: std::collections::BTreeMap<PathKind, Vec<Duration>>,
    /// Per path: how many requests of it have been answered (the RSS samples' abscissa).
    answered: std::collections::BTreeMap<PathKind, usize>,
    /// (path's request number, server RSS, server workers' RSS) and (number, pool RSS).
    server_rss: Vec<(usize, u64, u64)>,
    pool_rss: Vec<(usize, u64)>,
    wrong: Vec<String>,
    by_kind: std::collections::BTreeMap<&'static str, usize>,
    sessions_opened: usize,
    /// Requests sent again on a new connection (the server closed an idle one).
    reconnects: usize,
}

/// One thread's own connections and sessions.
#[derive(Default)]
struct Mine {
    conn: Option<Conn>,
    /// When the connection last answered.
    conn_used: Option<Instant>,
    session: Option<Session>,
    session_calls: u64,
    http_session: Option<String>,
    http_calls: u64,
}

/// After these cases the soak closes a session: what they leave in it (symlinks in the working
/// directory, sleeping processes that hold the process limit) would change the next call's
/// answer, which is the session owner's own doing. (Forged frames must end the session by
/// themselves, which [`cases::check`] checks; closing an ended session does nothing.)
fn closes_session(c: Case) -> bool {
    matches!(c, Case::ForgedFrames | Case::LeaveBehind | Case::Symlinks)
}

fn sum_rss(pids: impl IntoIterator<Item = u32>) -> u64 {
    pids.into_iter().map(host::rss_kib).sum()
}

impl Shared {
    fn cold(&self, i: usize, job: &Job, case: Case) -> Result<Value, String> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["run", "--json", "--policy"])
            .arg(&self.policy_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(w) = job.wall {
            cmd.args(["--timeout", &format!("{}ms", w.as_millis())]);
        }
        let mut inputs = Vec::new();
        for (name, data) in &job.files {
            let p = self.dir.join(format!("in-{i}-{name}"));
            std::fs::write(&p, data).map_err(|e| format!("writing {}: {e}", p.display()))?;
            cmd.arg("--file").arg(format!("{name}={}", p.display()));
            inputs.push(p);
        }
        for g in &job.collect {
            cmd.args(["--collect", g]);
        }
        let collect_dir = self.dir.join(format!("collect-{i}"));
        if case == Case::Symlinks {
            std::fs::create_dir_all(&collect_dir).map_err(|e| e.to_string())?;
            cmd.arg("--collect-dir").arg(&collect_dir);
        }
        if job.stdin.is_some() {
            cmd.arg("--stdin").stdin(Stdio::piped());
        } else {
            cmd.stdin(Stdio::null());
        }
        cmd.args(["-c", &job.code]);
        let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        if let (Some(data), Some(mut w)) = (&job.stdin, child.stdin.take()) {
            use std::io::Write;
            let _ = w.write_all(data.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
        for p in inputs {
            let _ = std::fs::remove_file(p);
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "not an outcome ({e}): {:?} {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        if case == Case::Symlinks {
            // What --collect-dir wrote on the host: the regular file only, never a link.
            let mut found = Vec::new();
            for e in std::fs::read_dir(&collect_dir)
                .into_iter()
                .flatten()
                .flatten()
            {
                let t = e.file_type().map_err(|e| e.to_string())?;
                found.push(format!(
                    "{}{}",
                    e.file_name().to_string_lossy(),
                    if t.is_file() { "" } else { " (not a file)" }
                ));
            }
            let _ = std::fs::remove_dir_all(&collect_dir);
            if found != ["real.txt"] {
                return Err(format!("--collect-dir holds {found:?}"));
            }
        }
        Ok(v)
    }

    fn request(job: &Job, code: &str) -> Request {
        let mut r = Request::code(code);
        r.stdin = job.stdin.clone();
        r.files = job.files.clone();
        r.collect = job.collect.clone();
        r.wall = job.wall;
        r
    }

    fn body(job: &Job, code: &str) -> Value {
        let mut b = json!({"code": code, "files": cases::files_json(job), "collect": job.collect});
        if let Some(s) = &job.stdin {
            b["stdin"] = s.clone().into();
        }
        if let Some(w) = job.wall {
            b["limits"] = json!({"wall": format!("{}ms", w.as_millis())});
        }
        b
    }

    /// One HTTP request on the thread's keep-alive connection. The server closes a connection
    /// idle for its `--header-timeout` (10 s): a request on one idle that long that finds it
    /// closed before any answer is sent again on a new one (counted, and printed).
    fn http(
        &self,
        mine: &mut Mine,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), String> {
        let text = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let idle = mine.conn_used.map(|t| t.elapsed());
        let mut answer = None;
        for attempt in 0..2 {
            let conn = mine.conn.get_or_insert_with(|| Conn::open(&self.addr));
            match conn.request(method, path, &text) {
                Ok(a) => {
                    answer = Some(a);
                    break;
                }
                Err(e) => {
                    mine.conn = None;
                    let stale = e.kind() == std::io::ErrorKind::InvalidData
                        && e.to_string().contains("not a status line: \"\"");
                    if attempt == 0 && stale && idle.is_some_and(|d| d >= IDLE_CLOSE) {
                        self.log.lock().unwrap().reconnects += 1;
                        continue;
                    }
                    return Err(format!("{method} {path}: {e} (connection idle {idle:?})"));
                }
            }
        }
        mine.conn_used = Some(Instant::now());
        let (status, b) = answer.expect("answered or returned");
        let v = if b.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&b)
                .map_err(|e| format!("{method} {path}: {status} not JSON: {e}"))?
        };
        Ok((status, v))
    }

    /// Request `i` on its path; its outcome, checked.
    fn one(&self, i: usize, mine: &mut Mine) -> Result<(), String> {
        let case = cases::pick(i);
        let job = cases::job(case, i);
        let benign = cases::kind(case) == "benign";
        let session_code = || {
            if benign {
                format!("{}{}", job.code, cases::SESSION_COUNTER)
            } else {
                job.code.clone()
            }
        };
        let stray = format!("{}{i:x}", cases::STRAY);
        match path_of(i) {
            PathKind::Cold => {
                let o = self.cold(i, &job, case)?;
                cases::check(case, i, &o, None)?;
            }
            PathKind::Pool => {
                let o = self
                    .pool
                    .run_request(&Self::request(&job, &job.code))
                    .map_err(|e| format!("pool: {e}"))?;
                let o = serde_json::to_value(&o).map_err(|e| e.to_string())?;
                cases::check(case, i, &o, None)?;
            }
            PathKind::Session => {
                if mine.session.as_ref().is_none_or(|s| !s.is_open()) {
                    let s = Session::open(&self.binary, &self.policy, Duration::from_secs(300))
                        .map_err(|e| format!("opening a session: {e}"))?;
                    mine.session = Some(s);
                    mine.session_calls = 0;
                    self.log.lock().unwrap().sessions_opened += 1;
                }
                let s = mine.session.as_mut().expect("opened above");
                let r = s.execute_request(&Self::request(&job, &session_code()));
                let o = match r {
                    Ok(o) => serde_json::to_value(&o).map_err(|e| e.to_string())?,
                    Err(e) => {
                        mine.session = None;
                        return Err(format!("session: {e}"));
                    }
                };
                let counter = Some(mine.session_calls + 1);
                if cases::ends_session(&o) || closes_session(case) {
                    if let Some(mut s) = mine.session.take() {
                        s.close();
                    }
                } else if benign && o["status"] == "ok" {
                    mine.session_calls += 1;
                }
                cases::check(case, i, &o, counter)?;
            }
            PathKind::Server if (i / 4).is_multiple_of(2) => {
                let (status, o) =
                    self.http(mine, "POST", "/v1/execute", &Self::body(&job, &job.code))?;
                if status != 200 {
                    return Err(format!("POST /v1/execute: {status} {o}"));
                }
                cases::check(case, i, &o, None)?;
            }
            PathKind::Server => {
                if mine.http_session.is_none() {
                    let (status, o) = self.http(mine, "POST", "/v1/sessions", &json!({}))?;
                    let id = o["id"].as_str().filter(|_| status == 201);
                    let id = id.ok_or_else(|| format!("POST /v1/sessions: {status} {o}"))?;
                    mine.http_session = Some(id.to_string());
                    mine.http_calls = 0;
                    self.log.lock().unwrap().sessions_opened += 1;
                }
                let id = mine.http_session.clone().expect("opened above");
                let route = format!("/v1/sessions/{id}/execute");
                let (status, o) =
                    self.http(mine, "POST", &route, &Self::body(&job, &session_code()))?;
                if status != 200 {
                    mine.http_session = None;
                    return Err(format!("POST {route}: {status} {o}"));
                }
                let counter = Some(mine.http_calls + 1);
                if cases::ends_session(&o) || closes_session(case) {
                    mine.http_session = None;
                    let (status, o) =
                        self.http(mine, "DELETE", &format!("/v1/sessions/{id}"), &Value::Null)?;
                    // An ended session may already be gone.
                    if status != 204 && status != 404 {
                        return Err(format!("DELETE /v1/sessions/{id}: {status} {o}"));
                    }
                } else if benign && o["status"] == "ok" {
                    mine.http_calls += 1;
                }
                cases::check(case, i, &o, counter)?;
            }
        }
        if case == Case::LeaveBehind {
            // What the code left must be gone with its run (a session's: with the session,
            // which the soak closed after it). The kernel tears a jail down after the answer.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let left: Vec<String> = host::processes()
                    .iter()
                    .filter(|p| p.comm == stray)
                    .map(host::describe)
                    .collect();
                if left.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("left behind after the run: {left:?}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn worker(&self) {
        let mut mine = Mine::default();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.total {
                break;
            }
            let path = path_of(i);
            let case = cases::pick(i);
            let t = Instant::now();
            let result = self.one(i, &mut mine);
            let took = t.elapsed();
            let mut log = self.log.lock().unwrap();
            log.latencies.entry(path).or_default().push(took);
            let n = *log
                .answered
                .entry(path)
                .and_modify(|n| *n += 1)
                .or_insert(1);
            *log.by_kind.entry(cases::kind(case)).or_insert(0) += 1;
            if let Err(why) = result {
                log.wrong.push(format!("#{i} {path:?} {case:?}: {why}"));
            }
            if n.is_multiple_of(SAMPLE_EVERY) {
                match path {
                    PathKind::Server => {
                        // The server's warm workers and what runs below them; not its
                        // sessions' workers (`worker --sessions`), which come and go.
                        let all = host::processes();
                        let mut pids = Vec::new();
                        for w in all.iter().filter(|p| {
                            p.ppid == self.server_pid && !p.cmdline.contains("--sessions")
                        }) {
                            pids.push(w.pid);
                            pids.extend(host::descendants(&all, w.pid).iter().map(|p| p.pid));
                        }
                        let w = sum_rss(pids);
                        log.server_rss.push((n, host::rss_kib(self.server_pid), w));
                    }
                    PathKind::Pool => {
                        let all = host::processes();
                        let mut pids = self.pool.worker_pids();
                        for w in self.pool.worker_pids() {
                            pids.extend(host::descendants(&all, w).iter().map(|p| p.pid));
                        }
                        log.pool_rss.push((n, sum_rss(pids)));
                    }
                    _ => {}
                }
            }
        }
        // Leave nothing open: the sessions and the connection.
        if let Some(mut s) = mine.session.take() {
            s.close();
        }
        if let Some(id) = mine.http_session.take() {
            let _ = self.http(
                &mut mine,
                "DELETE",
                &format!("/v1/sessions/{id}"),
                &Value::Null,
            );
        }
    }
}

pub fn run(total: usize, python: &str) -> i32 {
    let binary = crate::pysandbox_binary();
    let binary_s = binary.to_string_lossy().into_owned();
    let me = std::process::id();
    let dir = PathBuf::from(format!("/var/tmp/pysandbox-soak-{me}"));
    std::fs::create_dir_all(dir.join("tmp")).expect("the soak's directory");
    // Everything the soak starts puts its temporary files here, which must end up empty.
    std::env::set_var("TMPDIR", dir.join("tmp"));
    let policy_file = dir.join("policy.toml");
    std::fs::write(&policy_file, POLICY).expect("writing the policy");
    let mut policy = Policy::from_toml_str(POLICY).expect("the soak's policy");
    policy.python = Some(PathBuf::from(python));

    let before = host::Snapshot::now(&binary_s);
    let strays_before = host::named(cases::STRAY);
    println!(
        "# soak: {total} requests, concurrency {CONCURRENCY}, through cold / pool / session / \
         server ({WORKERS} warm workers in the pool and in the server); policy: {}",
        POLICY.lines().skip(2).collect::<Vec<_>>().join(", ")
    );
    let mut o = PoolOptions::new(&binary);
    o.workers = WORKERS;
    let pool = Pool::new(policy.clone(), o).expect("starting the pool");
    let server = Server::start(
        &binary,
        python,
        &[
            "--workers",
            &WORKERS.to_string(),
            "--policy",
            &policy_file.to_string_lossy(),
        ],
    );
    // Warm both, then the server's descriptors with no connection open.
    for _ in 0..4 {
        let _ = pool.run("print(1)", None);
        let mut c = Conn::open(&server.addr);
        let _ = c.request("POST", "/v1/execute", r#"{"code": "print(1)"}"#);
    }
    std::thread::sleep(Duration::from_millis(300));
    let server_pid = server.child.id();
    let server_fds_first = host::fd_count(server_pid);
    let shared = Arc::new(Shared {
        binary: binary.clone(),
        dir: dir.clone(),
        policy_file,
        policy,
        pool,
        addr: server.addr.clone(),
        server_pid,
        next: AtomicUsize::new(0),
        total,
        log: Mutex::new(Log::default()),
    });
    let start = Instant::now();
    let progress = {
        let s = Arc::clone(&shared);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(30));
            let n = s.next.load(Ordering::Relaxed).min(s.total);
            let wrong = s.log.lock().unwrap().wrong.len();
            eprintln!(
                "soak: {n}/{} started, {wrong} wrong, {:.0} s",
                s.total,
                start.elapsed().as_secs_f64()
            );
            if n >= s.total {
                break;
            }
        })
    };
    let threads: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let s = Arc::clone(&shared);
            std::thread::spawn(move || s.worker())
        })
        .collect();
    for t in threads {
        t.join().expect("a soak thread");
    }
    let wall = start.elapsed();
    // The server's descriptors once every connection and session of the soak is gone.
    std::thread::sleep(Duration::from_millis(500));
    let server_fds_last = host::fd_count(server_pid);
    let server_rss_last = server.rss_kib();
    shared.pool.shutdown();
    drop(server);
    let _ = progress.join();
    let log = std::mem::take(&mut *shared.log.lock().unwrap());
    drop(shared);

    report::report(report::End {
        total,
        wall,
        log,
        server_fds_first,
        server_fds_last,
        server_rss_last,
        me,
        before,
        strays_before,
        dir,
        binary: binary_s,
    })
}
