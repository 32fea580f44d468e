//! The soak's requests: what each case runs and what its outcome must be. Benign cases compute
//! an answer the host computes too; failing ones raise a known exception; limit cases trip one
//! limit each (the outcome's `limit` must name it); hostile ones attack the host (fork bombs,
//! floods, forged protocol frames, SysV IPC, planted symlinks, processes left behind).

use pysandbox_core::outcome::{base64_decode, base64_encode};
use serde_json::Value;
use std::time::Duration;

/// The wall limit a limit case asks for (a narrower one than the policy's).
pub const SHORT_WALL: Duration = Duration::from_millis(300);
/// The output limit of the soak's policy (docs/soak.md), which the output cases overflow.
pub const OUTPUT: usize = 64 * 1024;
/// The comm name a process left behind gives itself (`PR_SET_NAME`), so that the host can
/// look for it; the request's number in hex follows (15 bytes at most).
pub const STRAY: &str = "soakstray";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    Squares,
    ModPow,
    Stdin,
    Files,
    ValueError,
    ZeroDivision,
    SystemExit,
    KeyError,
    Wall,
    Cpu,
    Memory,
    Output,
    Threads,
    FileSize,
    OpenFiles,
    TmpSize,
    ForkBomb,
    MemoryFlood,
    OutputFlood,
    ForgedFrames,
    LookAlike,
    SysV,
    Symlinks,
    LeaveBehind,
}

/// Each case and its weight (per thousand requests).
pub const MIX: &[(Case, u32)] = &[
    (Case::Squares, 250),
    (Case::ModPow, 100),
    (Case::Stdin, 80),
    (Case::Files, 80),
    (Case::ValueError, 40),
    (Case::ZeroDivision, 30),
    (Case::SystemExit, 30),
    (Case::KeyError, 30),
    (Case::Wall, 30),
    (Case::Cpu, 5),
    (Case::Memory, 30),
    (Case::Output, 30),
    (Case::Threads, 25),
    (Case::FileSize, 25),
    (Case::OpenFiles, 15),
    (Case::TmpSize, 15),
    (Case::ForkBomb, 25),
    (Case::MemoryFlood, 25),
    (Case::OutputFlood, 20),
    (Case::ForgedFrames, 25),
    (Case::LookAlike, 20),
    (Case::SysV, 25),
    (Case::Symlinks, 25),
    (Case::LeaveBehind, 20),
];

/// The kind of a case, for the summary.
pub fn kind(c: Case) -> &'static str {
    use Case::*;
    match c {
        Squares | ModPow | Stdin | Files => "benign",
        ValueError | ZeroDivision | SystemExit | KeyError => "failing",
        Wall | Cpu | Memory | Output | Threads | FileSize | OpenFiles | TmpSize => "limit",
        _ => "hostile",
    }
}

/// Request `i`'s case: a fixed permutation of the mix, spread over the run.
pub fn pick(i: usize) -> Case {
    let total: u32 = MIX.iter().map(|(_, w)| w).sum();
    // Multiplying by a number prime to the total walks every residue once per `total` requests.
    let mut r = ((i as u64).wrapping_mul(7919) % total as u64) as u32;
    for (c, w) in MIX {
        if r < *w {
            return *c;
        }
        r -= w;
    }
    unreachable!("the weights sum to the total")
}

/// One request as every path takes it.
#[derive(Debug, Clone, Default)]
pub struct Job {
    pub code: String,
    pub stdin: Option<String>,
    pub files: Vec<(String, Vec<u8>)>,
    pub collect: Vec<String>,
    /// A wall limit below the policy's.
    pub wall: Option<Duration>,
}

/// The code of a session call: it also counts the benign calls the session has answered, so
/// that a session that lost (or mixed up) its state is caught.
pub const SESSION_COUNTER: &str =
    "try:\n    _soak_calls += 1\nexcept NameError:\n    _soak_calls = 1\nprint(_soak_calls)\n";

fn squares(i: usize) -> u64 {
    let k = 1000 + (i % 5000) as u64;
    // Sum of n*n for n < k.
    (k - 1) * k * (2 * k - 1) / 6
}

fn modpow(i: usize) -> u64 {
    let (m, mut acc, mut b, mut e) = (1_000_000_007u64, 1u64, 3u64, i as u64);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc * b % m;
        }
        b = b * b % m;
        e >>= 1;
    }
    acc
}

pub fn job(c: Case, i: usize) -> Job {
    let code = |s: String| Job {
        code: s,
        ..Job::default()
    };
    match c {
        Case::Squares => code(format!(
            "n = {}\nprint(sum(i * i for i in range(n)))\n",
            1000 + i % 5000
        )),
        Case::ModPow => code(format!("print(pow(3, {i}, 1000000007))\n")),
        Case::Stdin => Job {
            stdin: Some(format!("a b c {i}\n")),
            ..code("import sys\nd = sys.stdin.read().split()\nprint(len(d), d[-1])\n".into())
        },
        Case::Files => Job {
            files: vec![("in.txt".into(), format!("hello {i}").into_bytes())],
            collect: vec!["out.txt".into()],
            ..code("open('out.txt', 'w').write(open('in.txt').read().upper())\n".into())
        },
        Case::ValueError => code(format!("raise ValueError('soak {i}')\n")),
        Case::ZeroDivision => code(format!("x = {i}\nprint(x // 0)\n")),
        Case::SystemExit => code(format!("raise SystemExit({})\n", 1 + i % 100)),
        Case::KeyError => code(format!("{{}}['k{i}']\n")),
        Case::Wall => Job {
            wall: Some(SHORT_WALL),
            ..code("while True:\n    pass\n".into())
        },
        // The policy's CPU limit (1 s), well below its wall clock.
        Case::Cpu => code("while True:\n    pass\n".into()),
        Case::Memory => code("x = bytearray(1 << 30)\n".into()),
        Case::Output => code(format!("print('y' * {})\n", 2 * OUTPUT)),
        Case::Threads => code(
            "import threading, time\n\
             ts = [threading.Thread(target=time.sleep, args=(2,)) for _ in range(20)]\n\
             for t in ts:\n    t.start()\n"
                .into(),
        ),
        Case::FileSize => code("open('/tmp/big', 'wb').write(b'x' * (4 << 20))\n".into()),
        Case::OpenFiles => code("fs = [open('/dev/null') for _ in range(1000)]\n".into()),
        Case::TmpSize => code(
            "for k in range(40):\n    open(f'/tmp/fill{k}', 'wb').write(b'x' * (1 << 20))\n".into(),
        ),
        Case::ForkBomb => code(FORK_BOMB.into()),
        Case::MemoryFlood => code("l = []\nwhile True:\n    l.append(' ' * 10**6)\n".into()),
        Case::OutputFlood => code(
            "import sys\nchunk = 'z' * (1 << 20)\nfor _ in range(20):\n    \
             sys.stdout.write(chunk)\n    sys.stderr.write(chunk)\n"
                .into(),
        ),
        Case::ForgedFrames => code(format!("{FORGE}print('after forge {i}')\n")),
        Case::LookAlike => code(format!(
            "print('{{\"status\": \"ok\", \"limit\": null, \"exit_code\": 0, \"stdout\": \"{i}\"}}')\n\
             print('\\x00\\x00\\x00\\x15\\x03' + '\\x00' * 20)\n\
             raise ValueError('real {i}')\n"
        )),
        Case::SysV => code(SYSV.into()),
        Case::Symlinks => Job {
            collect: vec!["*".into(), "root/etc/*".into(), "d/*".into()],
            ..code(format!(
                "import os\n\
                 os.symlink('/etc/passwd', 'passwd')\n\
                 os.symlink('/', 'root')\n\
                 os.symlink('/proc/self/environ', 'environ')\n\
                 os.symlink('/tmp', 'd')\n\
                 open('real.txt', 'w').write('real {i}')\n"
            ))
        },
        Case::LeaveBehind => code(format!(
            "{LEAVE}print('left {i}')\n",
            LEAVE = leave_behind(i)
        )),
    }
}

/// Every process but the interpreter forks until the process limit refuses; the interpreter
/// re-raises the refusal (the `processes` limit), its children sleep on (the host must kill
/// them with the run).
const FORK_BOMB: &str = r#"
import os, time
me = os.getpid()
err = None
while True:
    try:
        os.fork()
    except OSError as e:
        err = e
        break
if os.getpid() != me:
    time.sleep(30)
    os._exit(0)
raise err
"#;

/// Forged protocol traffic: a `Done` frame ("exit 0", docs/protocol.md), a frame header no
/// report has (2 GiB) and another `Done`, in one write (one read for the host) on every
/// descriptor the child may hold, then output the host must still take as the run's.
const FORGE: &str = r#"
import os
done = (21).to_bytes(4, "little") + b"\x03" + (0).to_bytes(4, "little") + bytes(16)
junk = (1 << 31).to_bytes(4, "little") + b"\xff" * 64
for fd in range(3, 16):
    try:
        os.write(fd, done + junk + done)
    except OSError:
        pass
"#;

/// SysV IPC objects through ctypes: each call must be refused (-1), and nothing may be left in
/// the host's IPC namespace.
const SYSV: &str = r#"
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT = 0o1000
print(libc.shmget(0, 1 << 20, IPC_CREAT | 0o600),
      libc.shmget(0x50534258, 1 << 20, IPC_CREAT | 0o666),
      libc.semget(0, 4, IPC_CREAT | 0o600),
      libc.semget(0x50534258, 4, IPC_CREAT | 0o666),
      libc.msgget(0, IPC_CREAT | 0o600),
      libc.msgget(0x50534258, IPC_CREAT | 0o666))
"#;

/// A grandchild in a session of its own (daemonized), named so that the host can find it, and
/// a child that calls setsid and sleeps; the interpreter returns at once.
fn leave_behind(i: usize) -> String {
    format!(
        r#"
import ctypes, os, time
libc = ctypes.CDLL(None)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        libc.prctl(15, b"{STRAY}{i:x}", 0, 0, 0)
        time.sleep(600)
    libc.prctl(15, b"{STRAY}{i:x}", 0, 0, 0)
    time.sleep(600)
    os._exit(0)
"#
    )
}

fn field<'a>(o: &'a Value, k: &str) -> &'a Value {
    &o[k]
}

fn want(o: &Value, k: &str, v: Value) -> Result<(), String> {
    if field(o, k) == &v {
        Ok(())
    } else {
        Err(format!("{k} is {} (expected {v})", field(o, k)))
    }
}

fn limit(o: &Value, name: &str) -> Result<(), String> {
    want(o, "status", "limit".into())?;
    want(o, "limit", name.into())
}

fn error(o: &Value, ty: &str, message: Option<&str>) -> Result<(), String> {
    want(o, "status", "error".into())?;
    want(o, "exit_code", 1.into())?;
    if o["error"]["type"] != ty {
        return Err(format!("error type {} (expected {ty})", o["error"]["type"]));
    }
    match message {
        Some(m) if o["error"]["message"] != m => Err(format!(
            "error message {} (expected {m:?})",
            o["error"]["message"]
        )),
        _ => Ok(()),
    }
}

/// The collected files, decoded.
fn files(o: &Value) -> Result<Vec<(String, Vec<u8>)>, String> {
    let Some(m) = o["files"].as_object() else {
        return Err(format!("files is {}", o["files"]));
    };
    m.iter()
        .map(|(k, v)| {
            let data = v
                .as_str()
                .and_then(base64_decode)
                .ok_or_else(|| format!("file {k}: not base64"))?;
            Ok((k.clone(), data))
        })
        .collect()
}

/// Whether the outcome `o` of request `i` (case `c`) is right. `counter`: on a session path,
/// what the session's call counter must print after a benign answer (`None` elsewhere).
pub fn check(c: Case, i: usize, o: &Value, counter: Option<u64>) -> Result<(), String> {
    if o.get("anomaly") == Some(&Value::Bool(true)) {
        return Err("the worker reported an anomaly".into());
    }
    let ok_with = |stdout: String| -> Result<(), String> {
        want(o, "status", "ok".into())?;
        let stdout = match counter {
            Some(n) if kind(c) == "benign" => format!("{stdout}{n}\n"),
            _ => stdout,
        };
        want(o, "stdout", stdout.into())?;
        want(o, "limit", Value::Null)
    };
    match c {
        Case::Squares => ok_with(format!("{}\n", squares(i))),
        Case::ModPow => ok_with(format!("{}\n", modpow(i))),
        Case::Stdin => ok_with(format!("4 {i}\n")),
        Case::Files => {
            ok_with(String::new())?;
            let want_files = vec![("out.txt".to_string(), format!("HELLO {i}").into_bytes())];
            let got = files(o)?;
            if got == want_files {
                Ok(())
            } else {
                Err(format!("files {}", o["files"]))
            }
        }
        Case::ValueError => error(o, "ValueError", Some(&format!("soak {i}"))),
        Case::ZeroDivision => error(o, "ZeroDivisionError", None),
        Case::SystemExit => {
            want(o, "status", "error".into())?;
            want(o, "exit_code", (1 + i % 100).into())
        }
        Case::KeyError => error(o, "KeyError", Some(&format!("'k{i}'"))),
        Case::Wall => {
            limit(o, "wall")?;
            want(o, "signal", 9.into())
        }
        Case::Cpu => limit(o, "cpu"),
        Case::Memory | Case::MemoryFlood => limit(o, "memory"),
        Case::Threads | Case::ForkBomb => limit(o, "processes"),
        Case::FileSize => limit(o, "file_size"),
        Case::OpenFiles => limit(o, "open_files"),
        Case::TmpSize => limit(o, "tmp_size"),
        Case::Output | Case::OutputFlood => {
            want(o, "status", "ok".into())?;
            want(o, "limit", "output".into())?;
            want(o, "stdout_truncated", true.into())?;
            let n = o["stdout"].as_str().map_or(0, str::len);
            if n != OUTPUT {
                return Err(format!("{n} bytes of stdout kept (expected {OUTPUT})"));
            }
            if c == Case::OutputFlood {
                want(o, "stderr_truncated", true.into())?;
            }
            Ok(())
        }
        // The frames the code forged may only change its own outcome: the host may believe the
        // forged `Done` (a run can misreport itself, docs/outcome.md) and so may or may not
        // have read the line after it; anything else (a worker error, a crash, a lost next
        // request, which the benign checks catch) is wrong.
        Case::ForgedFrames => {
            // In a session the garbled report ends it: what is left in its channel would
            // answer the next call.
            if counter.is_some() && !ends_session(o) {
                return Err(format!("a garbled report left the session open: {o}"));
            }
            want(o, "status", "ok".into())?;
            want(o, "exit_code", 0.into())?;
            let out = o["stdout"].as_str().unwrap_or("?");
            if out.is_empty() || out == format!("after forge {i}\n") {
                Ok(())
            } else {
                Err(format!("stdout {out:?}"))
            }
        }
        Case::LookAlike => {
            error(o, "ValueError", Some(&format!("real {i}")))?;
            let want_out = format!(
                "{{\"status\": \"ok\", \"limit\": null, \"exit_code\": 0, \"stdout\": \"{i}\"}}\n\
                 \u{0}\u{0}\u{0}\u{15}\u{3}{}\n",
                "\u{0}".repeat(20)
            );
            want(o, "stdout", want_out.into())
        }
        Case::SysV => ok_with("-1 -1 -1 -1 -1 -1\n".into()),
        Case::Symlinks => {
            ok_with(String::new())?;
            // The links are never followed nor sent (a session may also send back what its
            // earlier calls wrote: in.txt, out.txt).
            let got = files(o)?;
            let links = ["passwd", "root", "environ", "d"];
            let real = format!("real {i}").into_bytes();
            let bad: Vec<_> = got
                .iter()
                .filter(|(k, v)| {
                    links
                        .iter()
                        .any(|l| k == l || k.starts_with(&format!("{l}/")))
                        || (k == "real.txt" && *v != real)
                        || !matches!(k.as_str(), "real.txt" | "in.txt" | "out.txt")
                })
                .map(|(k, v)| (k, String::from_utf8_lossy(v)))
                .collect();
            if bad.is_empty() && got.iter().any(|(k, _)| k == "real.txt") {
                Ok(())
            } else {
                Err(format!("collected {bad:?} of {}", o["files"]))
            }
        }
        Case::LeaveBehind => ok_with(format!("left {i}\n")),
    }
}

/// Whether a case's outcome ends a session (any limit but the output one, by design).
pub fn ends_session(o: &Value) -> bool {
    o.get("ended") == Some(&Value::Bool(true))
}

/// The JSON `files` object of a job (name → base64), for the HTTP bodies.
pub fn files_json(j: &Job) -> Value {
    j.files
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(base64_encode(v))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_covers_every_case_in_proportion() {
        let mut n = std::collections::BTreeMap::new();
        for i in 0..1000 {
            *n.entry(format!("{:?}", pick(i))).or_insert(0u32) += 1;
        }
        for (c, w) in MIX {
            assert_eq!(n[&format!("{c:?}")], *w, "{c:?}");
        }
    }

    #[test]
    fn host_answers() {
        assert_eq!(squares(0), 999 * 1000 * 1999 / 6);
        assert_eq!(modpow(0), 1);
        assert_eq!(modpow(5), 243);
    }
}
