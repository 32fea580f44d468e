//! Real attacks against the real binary, each first shown to work with plain Python on the host
//! (so the test can fail), then run in the sandbox with assertions on host-side evidence.
//! Every attack script prints IMPORTED once its imports worked, so it cannot pass vacuously.

mod common;

use common::*;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

fn assert_imported(r: &Run) {
    assert!(
        r.outcome.stdout.contains("IMPORTED"),
        "the attack did not get going: {} {} {}",
        r.outcome.stdout,
        r.outcome.stderr,
        r.cli_stderr
    );
}

fn secret_file(dir: &TempDir) -> (String, String) {
    let secret = format!("SECRET-{}", random_hex(12));
    let path = dir.join("secret.txt");
    write_file(&path, &secret);
    (path.to_string_lossy().into_owned(), secret)
}

pub fn read_secret_code(path: &str) -> String {
    format!(
        r#"
import os
print("IMPORTED")
for attempt in (lambda: open({path:?}).read(), lambda: os.read(os.open({path:?}, os.O_RDONLY), 100).decode()):
    try:
        print(attempt())
    except Exception as e:
        print("denied:", type(e).__name__, e.errno if hasattr(e, "errno") else "")
"#
    )
}

#[test]
fn host_secret_file_is_unreadable() {
    let dir = TempDir::new("secret");
    let (path, secret) = secret_file(&dir);
    let code = read_secret_code(&path);
    let (_, host) = on_host(&code, &[]);
    assert!(host.contains(&secret), "control failed: {host}");
    let r = sandbox(&[], &code);
    assert_imported(&r);
    assert!(!r.all_output().contains(&secret), "{}", r.all_output());
    // Also when the directory next to it is allowed: only what is allowed is visible.
    let other = TempDir::new("allowed");
    let r = sandbox(&["--allow-read", &other.str()], &code);
    assert_imported(&r);
    assert!(!r.all_output().contains(&secret));
}

#[test]
fn host_environment_is_invisible() {
    let secret = format!("ENVSECRET-{}", random_hex(12));
    let code = r#"
import os
print("IMPORTED")
print(dict(os.environ))
for p in ("/proc/self/environ", "/proc/1/environ", "/proc/self/cmdline"):
    try:
        print(open(p, "rb").read())
    except OSError as e:
        print("denied", p, e.errno)
"#;
    let (_, host) = on_host(code, &[("PYSANDBOX_TEST_SECRET", &secret)]);
    assert!(host.contains(&secret), "control failed");
    let out = Command::new(bin())
        .args(["run", "--json"])
        .args(BASE_ARGS)
        .args(["-c", code])
        .env("PYSANDBOX_TEST_SECRET", &secret)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("IMPORTED"), "{text}");
    assert!(!text.contains(&secret), "{text}");
}

#[test]
fn writes_outside_tmp_do_not_reach_the_host() {
    let dir = TempDir::new("write");
    let target = dir.join("planted.txt");
    let code = format!(
        r#"
import os
print("IMPORTED")
for p in ({t:?}, "/etc/pysandbox-planted", "/planted", "/usr/planted"):
    try:
        with open(p, "w") as f:
            f.write("x")
        print("WROTE", p)
    except OSError as e:
        print("denied", p, e.errno)
open("/tmp/inside.txt", "w").write("inside")
print("TMP", open("/tmp/inside.txt").read())
"#,
        t = target.to_string_lossy()
    );
    let (_, host) = on_host(&code, &[]);
    assert!(host.contains("WROTE"), "control failed: {host}");
    std::fs::remove_file(&target).unwrap();
    for p in [
        "/etc/pysandbox-planted",
        "/planted",
        "/usr/planted",
        "/tmp/inside.txt",
    ] {
        let _ = std::fs::remove_file(p);
    }
    let r = sandbox(&[], &code);
    assert_imported(&r);
    assert!(
        r.outcome.stdout.contains("TMP inside"),
        "{}",
        r.outcome.stdout
    );
    assert!(!target.exists(), "the file was created on the host");
    assert!(!std::path::Path::new("/etc/pysandbox-planted").exists());
    assert!(!std::path::Path::new("/planted").exists());
    // The jail's /tmp is private: nothing of it persists on the host.
    assert!(!std::path::Path::new("/tmp/inside.txt").exists());
}

#[test]
fn tcp_to_a_host_listener_is_refused_without_network() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        r#"
import socket
print("IMPORTED")
for host in ("127.0.0.1", "localhost", "::1"):
    try:
        socket.create_connection((host, {port}), timeout=1)
        print("CONNECTED", host)
    except OSError as e:
        print("refused", host, e)
"#
    );
    let (_, host) = on_host(&code, &[]);
    assert!(
        host.contains("CONNECTED 127.0.0.1"),
        "control failed: {host}"
    );
    while listener.accept().is_ok() {}
    let r = sandbox(&[], &code);
    assert_imported(&r);
    assert!(
        !r.outcome.stdout.contains("CONNECTED"),
        "{}",
        r.outcome.stdout
    );
    std::thread::sleep(Duration::from_millis(50));
    assert!(listener.accept().is_err(), "the listener saw a connection");
    // Positive control: with the host's network the same code connects.
    let r = sandbox(&["--net", "host"], &code);
    assert!(
        r.outcome.stdout.contains("CONNECTED 127.0.0.1"),
        "{}",
        r.all_output()
    );
}

#[test]
fn programs_cannot_be_started() {
    let dir = TempDir::new("exec");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let marker = dir.join("marker");
    let m = marker.to_string_lossy();
    let code = format!(
        r#"
import os, subprocess, sys
M = {m:?}
print("IMPORTED")
print("system", os.system("echo pwned > " + M))
write = "open(" + repr(M) + ", 'w').write('pwned')"
for argv in (["/bin/sh", "-c", "echo pwned > " + M], [sys.executable, "-c", write]):
    try:
        subprocess.run(argv)
        print("RAN", argv[0])
    except OSError as e:
        print("refused", e)
try:
    os.execv(sys.executable, [sys.executable, "-c", write])
except OSError as e:
    print("execv refused", e)
"#
    );
    let (_, host) = on_host(&code, &[]);
    assert!(marker.exists(), "control failed: {host}");
    std::fs::remove_file(&marker).unwrap();
    let r = sandbox(&["--allow-write", &dir.str(), "--processes", "8"], &code);
    assert_imported(&r);
    assert!(!marker.exists(), "a program ran: {}", r.all_output());
    assert!(!r.outcome.stdout.contains("RAN"), "{}", r.outcome.stdout);
}

#[test]
fn host_processes_cannot_be_seen_or_signalled() {
    let mut sentinel = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = sentinel.id();
    let code = format!(
        r#"
import os, signal
print("IMPORTED")
print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()) if os.path.exists("/proc") else "no /proc")
for target in ({pid}, -1, 1):
    try:
        os.kill(target, signal.SIGKILL)
        print("signalled", target)
    except OSError as e:
        print("refused", target, e.errno)
"#
    );
    let r = sandbox(&["--processes", "4"], &code);
    assert_imported(&r);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        sentinel.try_wait().unwrap().is_none(),
        "the host sentinel was killed: {}",
        r.outcome.stdout
    );
    assert!(!r.outcome.stdout.contains(&format!("{pid}]")));
    // Control: the same code on the host kills it (os.kill(-1) is left out of the host run).
    let (_, _) = on_host(&format!("import os; os.kill({pid}, 9)"), &[]);
    let status = sentinel.wait().unwrap();
    assert!(
        !status.success(),
        "control: the sentinel should have been killed"
    );
}

#[test]
fn ptrace_kills_the_sandboxed_process() {
    let code = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("IMPORTED", flush=True)
PTRACE_TRACEME = 0
r = libc.syscall(101, PTRACE_TRACEME, 0, 0, 0)
print("ptrace returned", r, ctypes.get_errno())
"#;
    let (_, host) = on_host(code, &[]);
    assert!(host.contains("ptrace returned 0"), "control failed: {host}");
    let r = sandbox(&[], code);
    assert_imported(&r);
    assert_eq!(r.outcome.signal, Some(31), "{}", r.all_output());
    assert!(!r.outcome.stdout.contains("ptrace returned"));
}

#[test]
fn namespaces_and_mounts_cannot_be_changed() {
    for (name, call) in [
        ("unshare", "libc.unshare(0x10000000)"), // CLONE_NEWUSER
        ("mount", "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)"),
        ("setns", "libc.setns(0, 0)"),
    ] {
        let code = format!(
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint('IMPORTED', flush=True)\nprint('{name} returned', {call}, ctypes.get_errno())\n"
        );
        let r = sandbox(&[], &code);
        assert_imported(&r);
        let out = &r.outcome.stdout;
        assert!(
            r.outcome.signal == Some(31) || out.contains(&format!("{name} returned -1")),
            "{name}: {}",
            r.all_output()
        );
    }
    // Control: an unprivileged user namespace works on the host (so the kill above is seccomp's).
    let (_, host) = on_host(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\npid = os.fork()\nif pid == 0:\n    os._exit(0 if libc.unshare(0x10000000) == 0 else 1)\nprint('child', os.waitpid(pid, 0)[1])",
        &[],
    );
    assert!(host.contains("child 0"), "control failed: {host}");
}

#[test]
fn old_pysandbox_compile_leak_reveals_nothing() {
    let dir = TempDir::new("compile");
    let (path, secret) = secret_file(&dir);
    let code = format!(
        "import traceback\nprint('IMPORTED')\ntry:\n    compile('1=2', {path:?}, 'exec')\nexcept SyntaxError:\n    traceback.print_exc()\n"
    );
    let (_, host) = on_host(&code, &[]);
    // The host shows the named file's line in the SyntaxError when the file exists there.
    assert!(host.contains("SyntaxError"), "{host}");
    let r = sandbox(&[], &code);
    assert_imported(&r);
    assert!(
        r.outcome.stderr.contains("SyntaxError"),
        "{}",
        r.outcome.stderr
    );
    assert!(!r.all_output().contains(&secret));
}

#[test]
fn old_pysandbox_frame_walk_reaches_no_host_data() {
    let secret = format!("FRAMESECRET-{}", random_hex(8));
    let code = r#"
import sys
print("IMPORTED")
seen = []
try:
    raise ValueError("x")
except ValueError as e:
    f = e.__traceback__.tb_frame
    while f is not None:
        seen.append(repr(f.f_globals)[:2000])
        seen.append(repr(f.f_locals)[:2000])
        f = f.f_back
print("\n".join(seen))
print(sys.argv, sys.path, sys.executable)
"#;
    let out = Command::new(bin())
        .args(["run", "--json"])
        .args(BASE_ARGS)
        .args(["-c", code])
        .env("PYSANDBOX_FRAME_SECRET", &secret)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("IMPORTED"), "{text}");
    assert!(!text.contains(&secret), "{text}");
    let cwd = std::env::current_dir().unwrap();
    assert!(
        !text.contains(&*cwd.to_string_lossy()),
        "host cwd leaked: {text}"
    );
}

#[test]
fn tracebacks_show_the_users_own_lines() {
    let r = sandbox(
        &[],
        "print('IMPORTED')\ndef f(x):\n    return x / 0\nf(1)\n",
    );
    assert_imported(&r);
    assert_eq!(r.outcome.exit_code, Some(1));
    let err = &r.outcome.stderr;
    assert!(
        err.contains("line 3, in f") && err.contains("return x / 0"),
        "{err}"
    );
    assert!(err.contains("ZeroDivisionError"), "{err}");
    assert!(!err.contains("_pysandbox"), "bootstrap frames shown: {err}");
}

#[test]
fn segfault_is_reported_as_sigsegv() {
    let code = "import ctypes\nprint('IMPORTED', flush=True)\nctypes.string_at(0)\n";
    let (status, _) = on_host(code, &[]);
    assert_eq!(
        status, -1,
        "control: the host interpreter should die of a signal"
    );
    let r = sandbox(&[], code);
    assert_imported(&r);
    assert_eq!(r.outcome.signal, Some(11), "{}", r.all_output());
    assert_eq!(r.status, 128 + 11);
}

/// The attacks above again, with pysandbox started by an unprivileged user.
#[test]
fn unprivileged_user_gets_the_same_protection() {
    if unsafe_free_geteuid() != 0 {
        // Already unprivileged: the other tests cover it.
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err()
        && skip("setpriv (util-linux) is needed to run as nobody")
    {
        return;
    }
    let python = "/usr/bin/python3.11";
    if !std::path::Path::new(python).exists()
        && skip("/usr/bin/python3.11 is needed (pyenv's interpreter lives under /root, mode 0700)")
    {
        return;
    }
    // A copy of the binary nobody can run, in a directory nobody can reach.
    let dir = TempDir::new("nobody");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let copy = dir.join("pysandbox");
    std::fs::copy(bin(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let copy = copy.to_string_lossy().into_owned();
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--reset-env",
    ];
    let secrets = TempDir::new("nobody-secret");
    std::fs::set_permissions(
        secrets.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (path, secret) = secret_file(&secrets);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let py = ["--python", python];
    let r = sandbox_as(&copy, &nobody, &py, &read_secret_code(&path));
    assert_imported(&r);
    assert!(!r.all_output().contains(&secret), "{}", r.all_output());
    // TCP, signals and the wall clock as nobody.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut sentinel = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sleep",
            "60",
        ])
        .spawn()
        .unwrap();
    let code = format!(
        "import socket, os\nprint('IMPORTED')\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1); print('CONNECTED')\nexcept OSError as e: print('refused', e)\nfor t in ({pid}, -1):\n    try: os.kill(t, 9); print('signalled', t)\n    except OSError as e: print('refused', t)\n",
        pid = sentinel.id()
    );
    let r = sandbox_as(&copy, &nobody, &py, &code);
    assert_imported(&r);
    assert!(
        !r.outcome.stdout.contains("CONNECTED"),
        "{}",
        r.outcome.stdout
    );
    std::thread::sleep(Duration::from_millis(50));
    assert!(listener.accept().is_err());
    assert!(sentinel.try_wait().unwrap().is_none(), "sentinel killed");
    let _ = sentinel.kill();
    let _ = sentinel.wait();
    let mut args = py.to_vec();
    args.extend(["--timeout", "1s"]);
    let r = sandbox_as(
        &copy,
        &nobody,
        &args,
        "print('IMPORTED', flush=True)\nwhile True: pass",
    );
    assert_eq!(r.outcome.limit.as_deref(), Some("wall"));
    assert!(
        r.outcome.wall_time >= 1.0 && r.outcome.wall_time < 1.5,
        "{}",
        r.outcome.wall_time
    );
}

fn unsafe_free_geteuid() -> u32 {
    // The test crate forbids nothing, but keep it simple: ask the kernel through /proc.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}
