//! Nothing of one warm request reaches another through the kernel: SysV shared memory,
//! semaphores and message queues and POSIX message queues, made by one request and looked for
//! by the next (sequential, same worker), by a request running at the same time, and by another
//! session. The control runs the same two programs as plain processes on the host, where the
//! second does find the first one's secret.

mod common;

use common::*;
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::{Pool, PoolOptions, Session};
use std::path::Path;
use std::time::Duration;

/// Makes every kind of IPC object under a fixed key and puts `SECRET` in it; prints what worked.
const MAKE: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
KEY, CREAT, SECRET = 0x5EED5, 0o1000, sys.argv[-1].encode() if len(sys.argv) > 1 else b"SECRET"
made = []
shm = libc.shmget(KEY, 4096, CREAT | 0o666)
if shm >= 0:
    libc.shmat.restype = ctypes.c_void_p
    addr = libc.shmat(shm, None, 0)
    if addr not in (None, ctypes.c_void_p(-1).value):
        ctypes.memmove(addr, SECRET, len(SECRET))
        made.append("shm")
if libc.semget(KEY, 1, CREAT | 0o666) >= 0:
    made.append("sem")
q = libc.msgget(KEY, CREAT | 0o666)
if q >= 0:
    msg = ctypes.create_string_buffer(8 + len(SECRET))
    ctypes.memmove(ctypes.addressof(msg), (1).to_bytes(8, "little"), 8)
    ctypes.memmove(ctypes.addressof(msg) + 8, SECRET, len(SECRET))
    if libc.msgsnd(q, msg, len(SECRET), 0) == 0:
        made.append("msg")
mq = libc.mq_open(b"/pysandbox-crossing", os.O_CREAT | os.O_RDWR, 0o666, None)
if mq >= 0 and libc.mq_send(mq, SECRET, len(SECRET), 0) == 0:
    made.append("mq")
print("made", made, flush=True)
"#;

/// Looks for what [`MAKE`] made and prints every byte it finds.
const FIND: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
KEY = 0x5EED5
found = []
shm = libc.shmget(KEY, 0, 0)
if shm >= 0:
    libc.shmat.restype = ctypes.c_void_p
    addr = libc.shmat(shm, None, 0)
    if addr not in (None, ctypes.c_void_p(-1).value):
        found.append(("shm", ctypes.string_at(addr, 64).rstrip(b"\0")))
    libc.shmctl(shm, 0, None)
sem = libc.semget(KEY, 0, 0)
if sem >= 0:
    found.append(("sem", sem))
    libc.semctl(sem, 0, 0)
q = libc.msgget(KEY, 0)
if q >= 0:
    buf = ctypes.create_string_buffer(8 + 256)
    n = libc.msgrcv(q, buf, 256, 0, 0o4000)
    found.append(("msg", buf.raw[8 : 8 + max(n, 0)]))
    libc.msgctl(q, 0, None)
mq = libc.mq_open(b"/pysandbox-crossing", os.O_RDWR | os.O_NONBLOCK)
if mq >= 0:
    buf = ctypes.create_string_buffer(8192)
    n = libc.mq_receive(mq, buf, 8192, None)
    found.append(("mq", buf.raw[: max(n, 0)]))
    libc.mq_unlink(b"/pysandbox-crossing")
print("found", found)
"#;

fn policy() -> Policy {
    let mut p = Policy::from_toml_str("preset = \"stdlib\"").unwrap();
    p.limits.wall = Duration::from_secs(5);
    p
}

fn pool(workers: usize) -> Pool {
    let mut o = PoolOptions::new(bin());
    o.workers = workers;
    Pool::new(policy(), o).expect("start the pool")
}

fn with_secret(code: &str, secret: &str) -> String {
    format!("import sys\nsys.argv = ['x', {secret:?}]\n{code}")
}

#[test]
fn control_the_method_works_between_two_host_processes() {
    let secret = random_hex(8);
    let (code, out) = on_host(&with_secret(MAKE, &secret), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("'shm', 'sem', 'msg', 'mq'"), "{out}");
    let (_, found) = on_host(FIND, &[]);
    assert!(
        found.contains(&secret),
        "the control found nothing: {found}"
    );
}

#[test]
fn ipc_objects_do_not_cross_sequential_requests() {
    let p = pool(1);
    let secret = random_hex(8);
    let made = p.run(&with_secret(MAKE, &secret), None).unwrap();
    assert!(made.run.stdout.starts_with("made"), "{made:?}");
    let found = p.run(FIND, None).unwrap();
    assert_eq!(found.run.stdout, "found []\n", "{found:?}");
    assert!(!found.run.stderr.contains(&secret));
}

#[test]
fn ipc_objects_do_not_cross_concurrent_requests() {
    let p = pool(2);
    let secret = random_hex(8);
    // A makes its objects and holds them while B, in the other worker, looks for them.
    let holder = format!(
        "{}\nimport time\ntime.sleep(1.5)\n",
        with_secret(MAKE, &secret)
    );
    let finder = format!("import time\ntime.sleep(0.5)\n{FIND}");
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| p.run(&holder, None).unwrap());
        let b = s.spawn(|| p.run(&finder, None).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.run.stdout.starts_with("made"), "{a:?}");
    assert_eq!(b.run.stdout, "found []\n", "{b:?}");
}

#[test]
fn ipc_objects_do_not_cross_sessions() {
    let secret = random_hex(8);
    let bin = Path::new(bin());
    let mut a = Session::open(bin, &policy(), Duration::from_secs(30)).unwrap();
    let mut b = Session::open(bin, &policy(), Duration::from_secs(30)).unwrap();
    let made = a.execute(&with_secret(MAKE, &secret)).unwrap();
    assert!(made.run.stdout.starts_with("made"), "{made:?}");
    let found = b.execute(FIND).unwrap();
    assert_eq!(found.run.stdout, "found []\n", "{found:?}");
    // A later call of the same session is the same program: whatever it made is its own.
    let own = a.execute(FIND).unwrap();
    assert!(!own.run.stdout.contains("Traceback"), "{own:?}");
}

#[test]
fn one_process_means_no_thread_on_every_warm_path() {
    // `--processes 1`: the interpreter alone, as in a cold run.
    let code = "import threading\ntry:\n    threading.Thread(target=print).start()\n    print('started')\nexcept RuntimeError as e:\n    print('refused')";
    let processes = |n: u32| {
        let mut p = policy();
        p.limits.processes = n;
        p.processes_pinned = true;
        p
    };
    let mut o = PoolOptions::new(bin());
    o.workers = 1;
    let p = Pool::new(processes(1), o.clone()).unwrap();
    assert_eq!(p.run(code, None).unwrap().run.stdout, "refused\n");
    let mut s = Session::open(Path::new(bin()), &processes(1), Duration::from_secs(30)).unwrap();
    assert_eq!(s.execute(code).unwrap().run.stdout, "refused\n");
    let cold = std::process::Command::new(bin())
        .args(["run", "--preset", "stdlib", "--processes", "1", "-c", code])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cold.stdout), "refused\n");
    // Control: two processes allow one thread (and not two at once).
    let p = Pool::new(processes(2), o).unwrap();
    let r = p.run(code, None).unwrap();
    assert!(r.run.stdout.ends_with("started\n"), "{r:?}");
}
