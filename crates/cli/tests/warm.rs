//! Warm mode through the real binary: isolation between requests, limits per request, the pool's
//! behaviour under crashes and load, sessions, and a clean shutdown.

mod common;

use common::*;
use pysandbox_core::limits::Limit;
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::{Pool, PoolOptions, Session, WarmError};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn policy(preset: &str) -> Policy {
    let mut p = Policy::from_toml_str(&format!("preset = \"{preset}\"")).unwrap();
    p.limits.wall = Duration::from_secs(2);
    p
}

fn options(workers: usize) -> PoolOptions {
    let mut o = PoolOptions::new(bin());
    o.workers = workers;
    o
}

fn pool(workers: usize, max_queue: usize) -> Pool {
    let mut o = options(workers);
    o.max_queue = max_queue;
    Pool::new(policy("stdlib"), o).expect("start the pool")
}

/// Python that prints every PID the code can signal (`pids [...]`), to be appended to a request.
const PIDS: &str = r#"
import os
visible = []
for pid in range(1, 4096):
    try:
        os.kill(pid, 0)
        visible.append(pid)
    except OSError:
        pass
print("pids", visible)
"#;

fn session(idle: Duration) -> Session {
    Session::open(std::path::Path::new(bin()), &policy("stdlib"), idle).expect("open a session")
}

#[test]
fn nothing_of_one_request_is_visible_to_the_next() {
    let p = pool(1, 8);
    // A thread left running (a daemon: the end of a run waits for the others, as the
    // interpreter's exit does) and a process left behind.
    let first = r#"
import builtins, json, os, threading, time
open("/tmp/left-behind", "w").write("x")
LEFT = 1
json.LEFT = 1
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
pid = os.fork()
if pid == 0:
    time.sleep(30)
    os._exit(0)
print("child", pid, "me", os.getpid())
builtins.len = lambda x: -1
"#;
    let r = p.run(first, None).unwrap();
    assert_eq!(r.run.exit_code, Some(0), "{r:?}");
    // PID 1 of a namespace of its own.
    assert!(r.run.stdout.contains("me 1"), "{}", r.run.stdout);
    let second = r#"
import builtins, json, os, threading
print("tmp", os.path.exists("/tmp/left-behind"))
print("global", "LEFT" in globals())
print("module", hasattr(json, "LEFT"))
print("builtin", len([1, 2]))
print("threads", threading.active_count())
"#;
    let r = p.run(&format!("{second}{PIDS}"), None).unwrap();
    assert_eq!(
        r.run.stdout,
        // Only itself: its PID namespace is fresh (the first request's child, PID 2 there, is gone).
        "tmp False\nglobal False\nmodule False\nbuiltin 2\nthreads 1\npids [1]\n",
        "{r:?}"
    );
}

/// The zygote's mounts at `/tmp` and below (what `/proc/PID/mountinfo` of the `pysandbox
/// worker`'s python descendant lists), from the host.
fn zygote_tmp_mounts(worker: u32) -> usize {
    let children = |pid: u32| -> Vec<u32> {
        let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
        list.unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let mut todo = vec![worker];
    while let Some(pid) = todo.pop() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.starts_with("python") {
            let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
            return info
                .lines()
                .filter(|l| {
                    let point = l.split(' ').nth(4).unwrap_or("");
                    point == "/tmp" || point.starts_with("/tmp/")
                })
                .count();
        }
        todo.extend(children(pid));
    }
    panic!("no zygote under worker {worker}");
}

#[test]
fn every_request_has_a_tmp_of_its_own_and_ended_ones_are_out_of_reach() {
    // Each request looks at its /tmp (empty, mode 1777), then leaves something behind in it: a
    // file, traces of one (made and removed: the directory's times change), or a mode of its
    // own (chmod; nothing is left in the filesystem). The zygote keeps the /tmps of ended
    // requests that hold nothing under its holder, out of every path, and detaches up to 32 of
    // them together; one that holds a file at once.
    let p = pool(1, 8);
    let mut most = 0;
    for i in 0..100 {
        // First 40 requests that leave no file (the holder fills up to its bound), then a mix.
        let r = p
            .run(&format!("{TMP_LOOK}{}\n", tmp_leave(i)), None)
            .unwrap();
        assert_eq!(r.run.exit_code, Some(0), "{r:?}");
        // Empty, and not the mode an earlier request gave its own /tmp.
        assert_eq!(
            r.run.stdout, "[] 0o41777\n",
            "request {i} found another request's /tmp"
        );
        let mounts = zygote_tmp_mounts(p.worker_pids()[0]);
        most = most.max(mounts);
        if i > 40 && i % 9 == 0 {
            // The /tmp of the request before held a file: it was not kept. Mounted now: the
            // holder, this request's /tmp, and the next one's if this one has ended already.
            assert!(mounts <= 3, "{mounts} mounts at /tmp after request {i}");
        }
    }
    // Bounded: the holder, at most 32 kept, this request's /tmp and perhaps the next one's;
    // and the bound was reached.
    assert!((30..=35).contains(&most), "at most {most} mounts at /tmp");
}

/// What [`every_request_has_a_tmp_of_its_own_and_ended_ones_are_out_of_reach`]'s request `i`
/// leaves in its /tmp: nothing for 40 requests but a mode of its own, then files, traces of
/// files and modes.
fn tmp_leave(i: usize) -> &'static str {
    match i % 9 {
        _ if i < 40 => "os.chmod('/tmp', 0o1700)",
        8 => "open('/tmp/kept', 'w').write('x' * 100000)",
        0 | 3 => "open('/tmp/gone', 'w').write('x'); os.unlink('/tmp/gone')",
        _ => "os.chmod('/tmp', 0o1700)",
    }
}

const TMP_LOOK: &str =
    "import os\nprint(sorted(os.listdir('/tmp')), oct(os.stat('/tmp').st_mode))\n";

#[test]
fn every_caller_s_requests_each_find_a_tmp_of_their_own() {
    // The same requests through `pysandbox batch`, as every caller this machine offers (root,
    // and nobody: a zygote in a user namespace the caller owns).
    for caller in callers() {
        let lines: Vec<_> = (0..100)
            .map(|i| serde_json::json!({"id": i, "code": format!("{TMP_LOOK}{}\n", tmp_leave(i))}))
            .collect();
        let b = caller.batch(&["--workers", "1"], &lines, &RunOpts::default());
        assert_eq!(b.status, 0, "as {caller}: {}", b.cli_stderr);
        for i in 0..100 {
            let a = b
                .answer(i)
                .unwrap_or_else(|| panic!("as {caller}: no answer {i}"));
            assert_eq!(
                a["stdout"], "[] 0o41777\n",
                "as {caller}: request {i} found another request's /tmp: {a}"
            );
        }
    }
}

#[test]
fn randomness_is_fresh_per_request() {
    let p = pool(1, 8);
    let code = "import random, os\nprint(random.random(), os.urandom(8).hex())";
    let a = p.run(code, None).unwrap().run.stdout;
    let b = p.run(code, None).unwrap().run.stdout;
    assert_ne!(a, b);
}

#[test]
fn a_request_cannot_harm_the_worker_or_the_host() {
    let p = pool(1, 8);
    let dir = TempDir::new("warm-secret");
    let secret_path = dir.join("secret");
    write_file(&secret_path, "WARM-SECRET");
    let code = format!(
        r#"
import os, ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
print("IMPORTED", flush=True)
try:
    os.kill(-1, 9)
except OSError as e:
    print("kill", e)
try:
    print(open({:?}).read())
except OSError as e:
    print("open", e.errno)
print("unshare", libc.unshare(0x20000), ctypes.get_errno())
"#,
        secret_path.to_string_lossy()
    );
    let r = p.run(&code, None).unwrap();
    assert!(r.run.stdout.contains("IMPORTED"), "{r:?}");
    assert!(!r.run.stdout.contains("WARM-SECRET") && !r.run.stderr.contains("WARM-SECRET"));
    // unshare is killed by the request's strict seccomp filter.
    assert_eq!(r.run.signal, Some(31), "{r:?}");
    // No capabilities at all, though uid 0 of the namespace: capget's effective and permitted
    // sets are empty, and securebits keep them from coming back.
    let caps = r#"
import ctypes, os
class H(ctypes.Structure):
    _fields_ = [("v", ctypes.c_uint32), ("pid", ctypes.c_int)]
class D(ctypes.Structure):
    _fields_ = [("e", ctypes.c_uint32), ("p", ctypes.c_uint32), ("i", ctypes.c_uint32)]
h, d = H(0x20080522, 0), (D * 2)()
print(ctypes.CDLL(None).syscall(125, ctypes.byref(h), ctypes.byref(d)), os.getuid(), [(x.e, x.p, x.i) for x in d])
print("no_new_privs", ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))
"#;
    let r = p.run(caps, None).unwrap();
    // no_new_privs is inherited from the jail's init (the child does not set it again).
    assert_eq!(
        r.run.stdout, "0 0 [(0, 0, 0), (0, 0, 0)]\nno_new_privs 1\n",
        "{r:?}"
    );
    // The worker is still there for the next request.
    let r = p.run("print('still here')", None).unwrap();
    assert_eq!(r.run.stdout, "still here\n");
    // ptrace of anything is fatal too.
    let r = p
        .run(
            "import ctypes\nctypes.CDLL(None).syscall(101, 16, 1, 0, 0)",
            None,
        )
        .unwrap();
    assert_eq!(r.run.signal, Some(31), "{r:?}");
}

#[test]
fn limits_apply_per_request() {
    let p = pool(1, 8);
    let t = Instant::now();
    let r = p.run("while True: pass", None).unwrap();
    assert_eq!(r.run.limit, Some(Limit::Wall), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(4));
    let r = p.run("x = bytearray(1 << 30)", None).unwrap();
    assert_eq!(r.run.limit, Some(Limit::Memory), "{r:?}");
    let r = p.run("import ctypes; ctypes.string_at(0)", None).unwrap();
    assert_eq!(r.run.signal, Some(11), "{r:?}");
    let r = p.run("print('x' * (2 << 20))", None).unwrap();
    assert!(
        r.run.stdout_truncated && r.run.limit == Some(Limit::Output),
        "{r:?}"
    );
    let r = p.run("print(input())", Some("typed\n")).unwrap();
    assert_eq!(r.run.stdout, "typed\n");
    assert_eq!(p.run("print(1 + 1)", None).unwrap().run.stdout, "2\n");
}

#[test]
fn a_dead_worker_is_replaced_without_failing_requests() {
    let p = pool(2, 8);
    for pid in p.worker_pids() {
        // SIGKILL the `pysandbox worker` process: its jail dies with it (die-with-parent).
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..4 {
        let r = p
            .run("print('ok')", None)
            .expect("a fresh worker serves it");
        assert_eq!(r.run.stdout, "ok\n");
    }
}

#[test]
fn a_full_queue_is_refused() {
    let p = std::sync::Arc::new(pool(1, 0));
    let slow = {
        let p = p.clone();
        std::thread::spawn(move || {
            p.run(
                "import time\nt = time.time()\nwhile time.time() - t < 1: pass",
                None,
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    match p.run("print(1)", None) {
        Err(WarmError::Busy(_)) => {}
        other => panic!("expected back-pressure, got {other:?}"),
    }
    assert!(slow.join().unwrap().is_ok());
    assert!(p.run("print(1)", None).is_ok());
}

#[test]
fn sessions_keep_state_until_a_limit_or_close() {
    let mut s = session(Duration::from_secs(60));
    assert_eq!(s.execute("x = 20").unwrap().run.exit_code, Some(0));
    assert_eq!(
        s.execute("x += 1\nprint(x * 2)").unwrap().run.stdout,
        "42\n"
    );
    let r = s.execute("def f(): return x\nprint(f())").unwrap();
    assert_eq!(r.run.stdout, "21\n");
    // An error is not the end; a tripped limit is.
    assert_eq!(s.execute("1/0").unwrap().run.exit_code, Some(1));
    let r = s.execute("while True: pass").unwrap();
    assert_eq!(r.run.limit, Some(Limit::Wall));
    assert!(r.ended && !s.is_open());
    assert!(matches!(
        s.execute("print(x)"),
        Err(WarmError::SessionEnded(_))
    ));
}

#[test]
fn shutdown_leaves_no_process_behind() {
    let p = pool(2, 8);
    let marker = format!("warm-{}", random_hex(6));
    let r = p.run(&format!("print('{marker}')"), None).unwrap();
    assert!(r.run.stdout.contains(&marker));
    let workers = p.worker_pids();
    assert_eq!(workers.len(), 2);
    // Every process of the two workers: their jails' init, zygote and children. (Only these:
    // other tests run warm jails at the same time.)
    let mut pids: Vec<u32> = workers.clone();
    let mut i = 0;
    while i < pids.len() {
        for t in std::fs::read_dir(format!("/proc/{}/task", pids[i]))
            .into_iter()
            .flatten()
            .flatten()
        {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            pids.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    // Each worker: its process, the jail's init, the zygote (and a child, unless between two).
    assert!(pids.len() >= 6, "{pids:?}");
    p.shutdown();
    drop(p);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<_> = pids
            .iter()
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                !stat.is_empty() && !stat.contains(") Z ")
            })
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {alive:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cpu_limit_per_request() {
    let mut pol = policy("stdlib");
    pol.limits.wall = Duration::from_secs(6);
    pol.limits.cpu = Some(Duration::from_secs(1));
    let p = Pool::new(pol, options(1)).unwrap();
    let t = Instant::now();
    let r = p.run("while True: pass", None).unwrap();
    assert_eq!(r.run.limit, Some(Limit::Cpu), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(p.run("print(3)", None).unwrap().run.stdout, "3\n");
}

#[test]
fn run_warm_runs_each_file_in_a_fresh_child() {
    let dir = TempDir::new("warm-files");
    let a = dir.join("a.py");
    let b = dir.join("b.py");
    write_file(&a, "import os\nLEFT = 1\nprint('a', os.getpid())\n");
    write_file(
        &b,
        "print('b', 'LEFT' in globals())\ndef f():\n    return 1 / 0\nf()\n",
    );
    let out = std::process::Command::new(bin())
        .args(["run", "--warm", "--preset", "stdlib"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("a 1\n") && stdout.contains("b False\n"),
        "{stdout}"
    );
    assert!(stdout.find("a 1").unwrap() < stdout.find("b False").unwrap());
    // Tracebacks name the file and show its lines.
    assert!(
        stderr.contains("b.py\", line 3, in f") && stderr.contains("return 1 / 0"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_request_child_holds_only_its_own_descriptors() {
    // Nothing of the zygote's reaches a request: not the control socket to the host, not the
    // Landlock rules' directories, not other children's pipes. The ctl socket would let a
    // request ask the zygote for children of its own.
    let p = pool(1, 8);
    let code = r#"
import os, stat
kinds = []
for fd in range(1024):
    try:
        m = os.fstat(fd).st_mode
    except OSError:
        continue
    kinds.append((fd, "sock" if stat.S_ISSOCK(m) else "fifo" if stat.S_ISFIFO(m) else "chr" if stat.S_ISCHR(m) else "other"))
print(kinds)
"#;
    let r = p.run(code, None).unwrap();
    assert_eq!(
        r.run.stdout, "[(0, 'chr'), (1, 'fifo'), (2, 'fifo'), (3, 'fifo'), (4, 'fifo')]\n",
        "{r:?}"
    );
}

/// Python that writes a forged Done frame (docs/protocol.md) saying "exit 7" on the report pipe.
const FORGE_DONE: &str = r#"
import os
os.write(4, (21).to_bytes(4, "little") + b"\x03" + (7).to_bytes(4, "little") + bytes(16))
"#;

#[test]
fn a_forged_answer_does_not_outlive_the_wall_clock() {
    // The report pipe is the child's own: it can lie about its run, and then run on. The host
    // believes the lie for that request only; its wall clock keeps running until the process is
    // gone, and the watchdog kills it at its deadline (2 s) with no other request needed.
    let p = pool(1, 8);
    let forged = format!("{FORGE_DONE}\nwhile True:\n    pass\n");
    let t = Instant::now();
    let r = p.run(&forged, None).unwrap();
    assert_eq!(r.run.exit_code, Some(7), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // The worker's next child comes once the liar is gone: the next request waits for the
    // liar's deadline, and no longer (it would never end by itself).
    let r = p.run("print('next')", None).unwrap();
    assert_eq!(r.run.stdout, "next\n", "{r:?}");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
        "the liar was not stopped at its wall clock: {waited:?}"
    );
}

#[test]
fn a_liar_left_alone_is_killed_at_its_deadline() {
    // No later request comes to the worker: the watchdog still kills the liar at its deadline.
    // Host-side evidence: the pool's worker process tree stops burning CPU.
    let p = pool(1, 8);
    let forged = format!("{FORGE_DONE}\nwhile True:\n    pass\n");
    let r = p.run(&forged, None).unwrap();
    assert_eq!(r.run.exit_code, Some(7), "{r:?}");
    let worker = p.worker_pids()[0];
    std::thread::sleep(Duration::from_millis(2500));
    let before = tree_cpu_ticks(worker);
    std::thread::sleep(Duration::from_millis(1000));
    let after = tree_cpu_ticks(worker);
    // 100 ticks a second: a spinning child would add about 100.
    assert!(
        after - before < 20,
        "still burning CPU: {before} -> {after} ticks"
    );
}

#[test]
fn a_child_that_closes_its_pipes_is_stopped_at_its_wall_clock() {
    // Closing its own stdout, stderr and report ends nothing: the host watches the process.
    let p = pool(1, 8);
    let t = Instant::now();
    let r = p
        .run(
            "import os\nfor fd in (1, 2, 4):\n    os.close(fd)\nwhile True: pass",
            None,
        )
        .unwrap();
    assert_eq!(r.run.limit, Some(Limit::Wall), "{r:?}");
    assert!(!r.anomaly, "{r:?}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3000),
        "{took:?}"
    );
    assert_eq!(p.run("print(5)", None).unwrap().run.stdout, "5\n");
}

#[test]
fn warm_mode_refuses_allowed_paths_below_tmp() {
    // Every request gets a fresh /tmp: a path allowed below it would vanish after the first.
    let dir =
        TempDir(std::path::Path::new("/tmp").join(format!("pysandbox-test-{}", random_hex(6))));
    std::fs::create_dir_all(dir.path()).unwrap();
    let mut pol = policy("stdlib");
    pol.allow_read.push(dir.path().to_path_buf());
    match Pool::new(pol.clone(), options(1)) {
        Err(e) => assert!(e.to_string().contains("fresh /tmp"), "{e}"),
        Ok(_) => panic!("a warm pool started with an allowed path below /tmp"),
    }
    // Without it, the same pool starts.
    pol.allow_read.clear();
    assert!(Pool::new(pol, options(1)).is_ok());
}

#[test]
fn a_session_ends_after_its_idle_timeout() {
    let mut s = session(Duration::from_millis(300));
    assert_eq!(s.execute("x = 1").unwrap().run.exit_code, Some(0));
    std::thread::sleep(Duration::from_millis(800));
    match s.execute("print(x)") {
        Err(WarmError::SessionEnded(why)) => assert!(why.contains("idle"), "{why}"),
        other => panic!("expected the session to have ended, got {other:?}"),
    }
    assert!(!s.is_open());
}

#[test]
fn concurrent_requests_cannot_meet_or_signal_each_other() {
    let p = pool(2, 8);
    // A listens on an abstract unix socket, the way two processes of one machine meet without
    // any file; B, running at the same time in the other worker, tries to connect to it and to
    // signal every PID it can name.
    let a = r#"
import os, select, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0pysandbox-sibling")
s.listen(4)
# Control: a process of the same request reaches it, so the method works.
if os.fork() == 0:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect("\0pysandbox-sibling")
    os._exit(0)
conn, _ = s.accept()
print("own child connected")
os.wait()
ready, _, _ = select.select([s], [], [], 1.5)
print("someone else connected" if ready else "nobody else came")
"#;
    let b = r#"
import os, socket, time
time.sleep(0.3)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    c.connect("\0pysandbox-sibling")
    print("connected to the sibling")
except OSError as e:
    print("connect failed", e.errno)
"#;
    let b = &format!("{b}{PIDS}");
    let timed = |code: &str| {
        let start = Instant::now();
        let r = p.run(code, None).unwrap();
        (r, start, Instant::now())
    };
    let ((ra, a0, a1), (rb, b0, b1)) = std::thread::scope(|s| {
        let ta = s.spawn(|| timed(a));
        let tb = s.spawn(|| timed(b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert!(
        a0 < b1 && b0 < a1,
        "the two requests did not run at the same time"
    );
    assert_eq!(
        ra.run.stdout, "own child connected\nnobody else came\n",
        "{ra:?}"
    );
    // ECONNREFUSED: no such socket where B is; it sees no process but itself.
    assert_eq!(rb.run.stdout, "connect failed 111\npids [1]\n", "{rb:?}");
}

/// `pysandbox batch` with these JSON lines on its stdin: its exit status and its answers by id.
fn batch(flags: &[&str], lines: &[serde_json::Value]) -> (i32, BTreeMap<i64, serde_json::Value>) {
    let mut child = std::process::Command::new(bin())
        .arg("batch")
        .args(flags)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, input.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let answers = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_i64().unwrap(), v)
        })
        .collect();
    (out.status.code().unwrap_or(-1), answers)
}

#[test]
fn batch_lines_of_a_session_share_its_state_and_nothing_else() {
    let line = |id: i64, session: Option<&str>, code: &str| match session {
        Some(s) => serde_json::json!({"id": id, "code": code, "session": s}),
        None => serde_json::json!({"id": id, "code": code}),
    };
    let seen = "print(globals().get('x'))";
    let lines = [
        line(1, Some("a"), "x = 'a'"),
        line(2, Some("b"), "x = 'b'"),
        line(3, None, "x = 'pool'"),
        line(4, Some("a"), &format!("x += '1'\n{seen}")),
        line(5, Some("b"), seen),
        line(6, None, seen),
        line(7, Some("b"), "while True: pass"),
        line(8, Some("b"), seen),
        line(9, Some("a"), &format!("x += '2'\n{seen}")),
        line(10, None, seen),
        // One name, one session; a name's lines run in input order.
        line(11, Some("c"), "l = []"),
        line(12, Some("c"), "l.append(12)"),
        line(13, Some("c"), "l.append(13)"),
        line(14, Some("c"), "l.append(14)\nprint(l)"),
    ];
    // Two threads, so that lines of one session could be taken by either.
    let (status, answers) = batch(
        &["--preset", "stdlib", "--timeout", "1s", "--workers", "2"],
        &lines,
    );
    assert_eq!(answers.len(), lines.len(), "{answers:?}");
    let stdout = |id: i64| answers[&id]["stdout"].as_str().unwrap_or("?").to_string();
    // State kept between the lines of one session, not seen by another session or the pool.
    assert_eq!(stdout(4), "a1\n", "{answers:?}");
    assert_eq!(stdout(5), "b\n", "{answers:?}");
    assert_eq!(stdout(6), "None\n", "{answers:?}");
    assert_eq!(stdout(14), "[12, 13, 14]\n", "{answers:?}");
    // A limit ends its session: that answer says so, later lines of it get an error.
    assert_eq!(answers[&7]["limit"], "wall", "{answers:?}");
    assert_eq!(answers[&7]["ended"], true, "{answers:?}");
    assert_eq!(answers[&8]["status"], "sandbox_error", "{answers:?}");
    assert_eq!(answers[&8]["error"]["type"], "closed", "{answers:?}");
    let error = answers[&8]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        error.contains("session has ended") && error.contains("wall"),
        "{answers:?}"
    );
    // Only its session: a's state and the pool carry on.
    assert_eq!(stdout(9), "a12\n", "{answers:?}");
    assert_eq!(stdout(10), "None\n", "{answers:?}");
    for id in [1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14] {
        assert!(answers[&id].get("ended").is_none(), "{id}: {answers:?}");
        assert_eq!(answers[&id]["exit_code"], 0, "{id}: {answers:?}");
    }
    // A line got an error answer.
    assert_eq!(status, 1);
}

/// `--warmup`: run once where the preloads are (a warm worker's zygote: every request finds
/// what it did, and it did it once, however many requests; a cold run: before the code), in a
/// namespace of its own (its names are gone); a warmup that fails stops everything before any
/// code runs, naming the warmup and its error. On every path, as every caller.
#[test]
fn warmup_runs_once_where_the_preloads_are() {
    let warmup = "import json\nn = getattr(json, '_warmed', 0) + 1\njson._warmed = n";
    let code = "import json\nprint('warmed', json._warmed, 'n' in globals())";
    for_each_combo(|c| {
        for _ in 0..2 {
            let r = c.run(&["--warmup", warmup], code);
            assert_eq!(
                r.outcome.stdout,
                "warmed 1 False\n",
                "{c}: {}",
                r.all_output()
            );
        }
        let bad = ["--warmup", "import json\n1 / 0"];
        let (status, all) = if c.path == ExecPath::Cold {
            let r = c.run(&bad, "print('RAN')");
            (r.status, r.all_output())
        } else {
            // The worker refuses to start: the batch answers nothing and says why.
            let mut line = serde_json::json!({"id": 1, "code": "print('RAN')"});
            if c.path == ExecPath::Session {
                line["session"] = "s".into();
            }
            let mut flags = vec!["--workers", "1"];
            flags.extend(bad);
            let b = c.caller.batch(&flags, &[line], &RunOpts::default());
            (b.status, format!("{:?} {}", b.answers, b.cli_stderr))
        };
        assert_ne!(status, 0, "{c}: {all}");
        assert!(!all.contains("RAN"), "{c}: {all}");
        assert!(
            all.contains("warmup: the code raised ZeroDivisionError: division by zero"),
            "{c}: {all}"
        );
    });
}
