//! Real attacks against the real binary, each first shown to work with plain Python on the host
//! (so the test can fail), then run in the sandbox with assertions on host-side evidence.
//! Every attack script prints IMPORTED once its imports worked, so it cannot pass vacuously.
//! Every test runs over each execution path (cold, warm, session) as each caller (root, and
//! nobody through setpriv): `common::for_each_combo`.

mod common;

use common::*;
use std::net::TcpListener;
use std::time::Duration;

fn assert_imported(c: Combo, r: &Run) {
    assert!(
        r.outcome.stdout.contains("IMPORTED"),
        "{c}: the attack did not get going: {} {} {}",
        r.outcome.stdout,
        r.outcome.stderr,
        r.cli_stderr
    );
}

/// A secret in a file anyone may read on the host (mode 0644 in a 0755 directory): only the
/// sandbox keeps it from the code, also as nobody.
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
    // Also when the directory next to it is allowed: only what is allowed is visible.
    let other = TempDir::new("allowed");
    for_each_combo(|c| {
        let r = c.run(&[], &code);
        assert_imported(c, &r);
        assert!(!r.all_output().contains(&secret), "{c}: {}", r.all_output());
        let r = c.run(&["--allow-read", &other.str()], &code);
        assert_imported(c, &r);
        assert!(!r.all_output().contains(&secret), "{c}: {}", r.all_output());
    });
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
    let env = [("PYSANDBOX_TEST_SECRET", secret.as_str())];
    for_each_combo(|c| {
        let opts = RunOpts {
            env: &env,
            ..RunOpts::default()
        };
        let r = c.run_with(&[], code, &opts);
        assert_imported(c, &r);
        assert!(!r.all_output().contains(&secret), "{c}: {}", r.all_output());
    });
}

/// The code's environment is the policy's and nothing else on every path: a warm worker's
/// zygote starts with `LD_BIND_NOW=1` added (`warm::adds_bind_now`) and takes it out before any
/// code runs; a policy that names the variable keeps its own value.
#[test]
fn the_environment_is_the_policy_s_on_every_path() {
    let code = "import os\nprint(sorted(os.environ.items()))";
    for_each_combo(|c| {
        let r = c.run(&["--env", "GREETING=hi"], code);
        assert_eq!(
            r.outcome.stdout, "[('GREETING', 'hi')]\n",
            "{c}: {:?}",
            r.outcome
        );
        let r = c.run(&["--env", "GREETING=hi", "--env", "LD_BIND_NOW=mine"], code);
        assert_eq!(
            r.outcome.stdout, "[('GREETING', 'hi'), ('LD_BIND_NOW', 'mine')]\n",
            "{c}: {:?}",
            r.outcome
        );
    });
}

#[test]
fn writes_outside_tmp_do_not_reach_the_host() {
    // Anyone may write in the directory: only the sandbox stops the write, also as nobody.
    let dir = TempDir::new("write").writable_by_all();
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
    let clean = || {
        for p in [
            target.as_path(),
            std::path::Path::new("/etc/pysandbox-planted"),
            std::path::Path::new("/planted"),
            std::path::Path::new("/usr/planted"),
            std::path::Path::new("/tmp/inside.txt"),
        ] {
            let _ = std::fs::remove_file(p);
        }
    };
    clean();
    for_each_combo(|c| {
        let r = c.run(&[], &code);
        let planted = target.exists();
        let etc = std::path::Path::new("/etc/pysandbox-planted").exists();
        let root = std::path::Path::new("/planted").exists();
        let tmp = std::path::Path::new("/tmp/inside.txt").exists();
        clean();
        assert_imported(c, &r);
        assert!(
            r.outcome.stdout.contains("TMP inside"),
            "{c}: {}",
            r.outcome.stdout
        );
        assert!(!planted, "{c}: the file was created on the host");
        assert!(!etc && !root, "{c}: a file was created on the host");
        // The sandbox's /tmp is private: nothing of it persists on the host.
        assert!(!tmp, "{c}: the sandbox's /tmp file is on the host");
    });
}

#[test]
fn tcp_to_a_host_listener_is_refused_without_network() {
    let code = |port: u16| {
        format!(
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
        )
    };
    let listener = || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    };
    let (l, port) = listener();
    let (_, host) = on_host(&code(port), &[]);
    assert!(
        host.contains("CONNECTED 127.0.0.1"),
        "control failed: {host}"
    );
    drop(l);
    for_each_combo(|c| {
        let (l, port) = listener();
        let r = c.run(&[], &code(port));
        assert_imported(c, &r);
        assert!(
            !r.outcome.stdout.contains("CONNECTED"),
            "{c}: {}",
            r.outcome.stdout
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(l.accept().is_err(), "{c}: the listener saw a connection");
        // Positive control: with the host's network the same code connects.
        let r = c.run(&["--net", "host"], &code(port));
        assert!(
            r.outcome.stdout.contains("CONNECTED 127.0.0.1"),
            "{c}: {}",
            r.all_output()
        );
    });
}

#[test]
fn programs_cannot_be_started() {
    let dir = TempDir::new("exec").writable_by_all();
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
    for_each_combo(|c| {
        let r = c.run(&["--allow-write", &dir.str(), "--processes", "8"], &code);
        let ran = marker.exists();
        let _ = std::fs::remove_file(&marker);
        assert_imported(c, &r);
        assert!(!ran, "{c}: a program ran: {}", r.all_output());
        assert!(
            !r.outcome.stdout.contains("RAN"),
            "{c}: {}",
            r.outcome.stdout
        );
    });
}

#[test]
fn host_processes_cannot_be_seen_or_signalled() {
    for_each_combo(|c| {
        // A process of the caller's own (as nobody: nobody's), which the caller could kill.
        let mut sentinel = c.host_command("sleep").arg("60").spawn().unwrap();
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
        let r = c.run(&["--processes", "4"], &code);
        std::thread::sleep(Duration::from_millis(100));
        let alive = sentinel.try_wait().unwrap().is_none();
        // Control: the caller kills it from the host.
        let _ = c
            .host_command("kill")
            .args(["-9", &pid.to_string()])
            .status();
        let status = sentinel.wait().unwrap();
        assert_imported(c, &r);
        assert!(
            alive,
            "{c}: the host sentinel was killed: {}",
            r.outcome.stdout
        );
        assert!(
            !r.outcome.stdout.contains(&format!("{pid}]")),
            "{c}: {}",
            r.outcome.stdout
        );
        assert!(
            !status.success(),
            "{c}: control: the caller should have killed the sentinel"
        );
    });
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
    for_each_combo(|c| {
        let r = c.run(&[], code);
        assert_imported(c, &r);
        assert_eq!(r.outcome.signal, Some(31), "{c}: {}", r.all_output());
        assert!(
            !r.outcome.stdout.contains("ptrace returned"),
            "{c}: {}",
            r.outcome.stdout
        );
    });
}

#[test]
fn namespaces_and_mounts_cannot_be_changed() {
    // Control: an unprivileged user namespace works on the host (so the kill below is seccomp's).
    let (_, host) = on_host(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\npid = os.fork()\nif pid == 0:\n    os._exit(0 if libc.unshare(0x10000000) == 0 else 1)\nprint('child', os.waitpid(pid, 0)[1])",
        &[],
    );
    assert!(host.contains("child 0"), "control failed: {host}");
    for_each_combo(|c| {
        for (name, call) in [
            ("unshare", "libc.unshare(0x10000000)"), // CLONE_NEWUSER
            ("mount", "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)"),
            ("setns", "libc.setns(0, 0)"),
        ] {
            let code = format!(
                "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint('IMPORTED', flush=True)\nprint('{name} returned', {call}, ctypes.get_errno())\n"
            );
            let r = c.run(&[], &code);
            assert_imported(c, &r);
            let out = &r.outcome.stdout;
            assert!(
                r.outcome.signal == Some(31) || out.contains(&format!("{name} returned -1")),
                "{c}: {name}: {}",
                r.all_output()
            );
        }
    });
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
    for_each_combo(|c| {
        let r = c.run(&[], &code);
        assert_imported(c, &r);
        assert!(
            r.outcome.stderr.contains("SyntaxError"),
            "{c}: {}",
            r.outcome.stderr
        );
        assert!(!r.all_output().contains(&secret), "{c}: {}", r.all_output());
    });
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
    let env = [("PYSANDBOX_FRAME_SECRET", secret.as_str())];
    let tmp = std::env::temp_dir();
    let cwd = std::env::current_dir().unwrap();
    let cwd = cwd.to_string_lossy();
    for_each_combo(|c| {
        let opts = RunOpts {
            env: &env,
            cwd: Some(&tmp),
            ..RunOpts::default()
        };
        let r = c.run_with(&[], code, &opts);
        assert_imported(c, &r);
        let text = r.all_output();
        assert!(!text.contains(&secret), "{c}: {text}");
        assert!(!text.contains(&*cwd), "{c}: host cwd leaked: {text}");
    });
}

#[test]
fn tracebacks_show_the_users_own_lines() {
    for_each_combo(|c| {
        let r = c.run(
            &[],
            "print('IMPORTED')\ndef f(x):\n    return x / 0\nf(1)\n",
        );
        assert_imported(c, &r);
        assert_eq!(r.outcome.exit_code, Some(1), "{c}: {}", r.all_output());
        let err = &r.outcome.stderr;
        assert!(
            err.contains("line 3, in f") && err.contains("return x / 0"),
            "{c}: {err}"
        );
        assert!(err.contains("ZeroDivisionError"), "{c}: {err}");
        assert!(
            !err.contains("_pysandbox"),
            "{c}: bootstrap frames shown: {err}"
        );
    });
}

#[test]
fn segfault_is_reported_as_sigsegv() {
    let code = "import ctypes\nprint('IMPORTED', flush=True)\nctypes.string_at(0)\n";
    let (status, _) = on_host(code, &[]);
    assert_eq!(
        status, -1,
        "control: the host interpreter should die of a signal"
    );
    for_each_combo(|c| {
        let r = c.run(&[], code);
        assert_imported(c, &r);
        assert_eq!(r.outcome.signal, Some(11), "{c}: {}", r.all_output());
        // The exit status differs by path: `pysandbox run` exits 128+N for a run killed by
        // signal N; `pysandbox batch` exits 0 when every line got an answer.
        let status = match c.path {
            ExecPath::Cold => 128 + 11,
            ExecPath::Warm | ExecPath::Session => 0,
        };
        assert_eq!(r.status, status, "{c}: {}", r.all_output());
    });
}
