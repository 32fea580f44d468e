//! Shared by the end-to-end tests. A sandboxed run goes through [`Combo::run`], which runs the
//! real `pysandbox` binary on one execution path (cold, warm, session) as one caller (root, an
//! unprivileged user) and decodes its outcome; [`for_each_combo`] runs a check over every
//! combination this machine offers.
#![allow(dead_code)]

use serde_json::json;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Arguments every attack run gets: the whole standard library (ctypes, socket, os), so that no
/// attack "passes" only because an import was refused.
pub const BASE_ARGS: &[&str] = &["--preset", "stdlib"];

#[derive(Debug, serde::Deserialize)]
pub struct Outcome {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub limit: Option<String>,
    pub cpu_time: f64,
    pub wall_time: f64,
    pub peak_memory: u64,
    pub stdout: String,
    pub stdout_truncated: bool,
    pub stderr: String,
    pub stderr_truncated: bool,
    /// A session's call ended the session (`pysandbox batch` with sessions only).
    #[serde(default)]
    pub ended: bool,
}

pub struct Run {
    /// The `pysandbox` process's own exit status: `pysandbox run`'s on the cold path,
    /// `pysandbox batch`'s on the warm and session paths (0 when every line got an answer).
    pub status: i32,
    pub outcome: Outcome,
    /// What `pysandbox` itself wrote on stderr.
    pub cli_stderr: String,
}

impl Run {
    /// Everything the code printed, for "the secret did not appear" checks.
    pub fn all_output(&self) -> String {
        format!(
            "{}{}{}",
            self.outcome.stdout, self.outcome.stderr, self.cli_stderr
        )
    }
}

/// The binary under test. Its warm workers load `libpysandbox_zygote.so` from beside it, which
/// `cargo build --workspace` builds and `cargo test` alone does not (it is a cdylib): `make test`
/// builds first.
pub fn bin() -> &'static str {
    static CHECKED: OnceLock<()> = OnceLock::new();
    let bin = env!("CARGO_BIN_EXE_pysandbox");
    CHECKED.get_or_init(|| {
        let lib = Path::new(bin).with_file_name("libpysandbox_zygote.so");
        assert!(
            lib.is_file(),
            "{} is missing: run `cargo build --release --workspace` (or `make test`) before \
             `cargo test`",
            lib.display()
        );
    });
    bin
}

/// The real interpreter: PATH's `python3.11` may be a pyenv shim script.
pub fn host_python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3.11")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3.11 on PATH");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// The control: the same attack with plain Python on the host. Returns (exit code, output).
pub fn on_host(code: &str, env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(host_python())
        .args(["-c", code])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run host python");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A kernel feature or tool a test needs is missing: fail under `PYSANDBOX_MUST_WORK=1` (CI),
/// otherwise say why the test is skipped. Returns true when the caller should return.
pub fn skip(reason: &str) -> bool {
    if std::env::var_os("PYSANDBOX_MUST_WORK").is_some_and(|v| v == "1") {
        panic!("required by PYSANDBOX_MUST_WORK=1: {reason}");
    }
    eprintln!("skipped: {reason}");
    true
}

/// A random lowercase hex string (secrets, names).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh directory (mode 0755) under `/var/tmp`, removed on drop. Not under `/tmp`: warm mode
/// refuses paths allowed from below `/tmp` (each request's fresh `/tmp` would hide them), and
/// the tests allow these directories on every path.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let base = Path::new("/var/tmp");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let p = base.join(format!("pysandbox-test-{tag}-{}", random_hex(6)));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, PermissionsExt::from_mode(0o755)).unwrap();
        TempDir(p)
    }

    /// Let anyone write in it (for attacks that write, so that only the sandbox stops them).
    pub fn writable_by_all(self) -> TempDir {
        std::fs::set_permissions(&self.0, PermissionsExt::from_mode(0o777)).unwrap();
        self
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn str(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write `text` to `path`, readable by anyone (mode 0644).
pub fn write_file(path: &Path, text: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    std::fs::set_permissions(path, PermissionsExt::from_mode(0o644)).unwrap();
}

/// Child processes of this test process that are zombies (not yet reaped).
pub fn zombie_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() > 1 && fields[0] == "Z" && fields[1] == me {
                found.push(stat.clone());
            }
        }
    }
    found
}

/// How code reaches the sandbox: the three execution paths of issue 11.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecPath {
    /// `pysandbox run --json`: a fresh jail for the run.
    Cold,
    /// `pysandbox batch --workers 1`, one line: a fresh child of a warm worker's zygote.
    Warm,
    /// `pysandbox batch --workers 1`, two lines of one session: a benign first call (`x = 1`),
    /// then the code, in the same child (its outcome is the second line's).
    Session,
}

/// Who starts `pysandbox`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The tests run as root, and so does `pysandbox`.
    Root,
    /// The tests run as root; `pysandbox` (a copy anyone may run) is started as uid and gid
    /// 65534 through `setpriv`, with `--python /usr/bin/python3.11` (pyenv's interpreter lives
    /// under /root, mode 0700).
    Nobody,
    /// The tests run as this unprivileged uid, and so does `pysandbox`.
    User(u32),
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Root => write!(f, "root"),
            Caller::Nobody => write!(f, "nobody (uid 65534)"),
            Caller::User(uid) => write!(f, "uid {uid}"),
        }
    }
}

/// The interpreter nobody runs (pyenv's lives under /root, mode 0700).
const NOBODY_PYTHON: &str = "/usr/bin/python3.11";
/// Starts a program as nobody, with a clean environment.
const SETPRIV: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--reset-env",
];

/// One execution path as one caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Combo {
    pub path: ExecPath,
    pub caller: Caller,
}

impl fmt::Display for Combo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = match self.path {
            ExecPath::Cold => "cold",
            ExecPath::Warm => "warm",
            ExecPath::Session => "session",
        };
        write!(f, "[{path} path, as {}]", self.caller)
    }
}

/// The effective uid of the tests.
pub fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The callers this machine offers: as root, root and nobody; as an unprivileged user, that
/// user. A tool the nobody runs need that is missing is a [`skip`] (a failure under
/// `PYSANDBOX_MUST_WORK=1`).
pub fn callers() -> Vec<Caller> {
    let uid = euid();
    if uid != 0 {
        return vec![Caller::User(uid)];
    }
    let mut callers = vec![Caller::Root];
    if nobody_binary().is_some() {
        callers.push(Caller::Nobody);
    }
    callers
}

/// Every combination of path and caller this machine offers: the three paths for each of
/// [`callers`] (6 as root, 3 as an unprivileged user).
pub fn combos() -> Vec<Combo> {
    let mut all = Vec::new();
    for caller in callers() {
        for path in [ExecPath::Cold, ExecPath::Warm, ExecPath::Session] {
            all.push(Combo { path, caller });
        }
    }
    all
}

/// Run `check` over every combination of [`combos`], each even when another fails, then fail
/// naming every combination that failed and its message.
pub fn for_each_combo(check: impl Fn(Combo)) {
    let all = combos();
    let mut failures = Vec::new();
    for c in &all {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(*c)));
        if let Err(payload) = result {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let message = if message.contains(&c.to_string()) {
                message
            } else {
                format!("{c} {message}")
            };
            failures.push(message);
        }
    }
    assert!(
        failures.is_empty(),
        "failed on {} of {} combinations:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n---\n")
    );
}

/// What [`Combo::run_with`] adds to a run.
#[derive(Default)]
pub struct RunOpts<'a> {
    /// Environment variables for the `pysandbox` process (through `env` after `setpriv`, which
    /// resets the environment).
    pub env: &'a [(&'a str, &'a str)],
    /// The `pysandbox` process's working directory.
    pub cwd: Option<&'a Path>,
    /// A program (and its arguments) that starts everything else, e.g. `/usr/bin/time -f ...`.
    pub wrapper: &'a [&'a str],
    /// Arguments in place of [`BASE_ARGS`] (another preset: a flag may be given once only).
    pub base_args: Option<&'a [&'a str]>,
}

/// What `pysandbox batch` answered.
pub struct Batch {
    /// Its exit status (0 when every line got an answer that is not an error).
    pub status: i32,
    /// Its answers, in the order it wrote them.
    pub answers: Vec<serde_json::Value>,
    /// What it wrote on stderr.
    pub cli_stderr: String,
}

impl Batch {
    /// The answer to line `id`.
    pub fn answer(&self, id: i64) -> Option<&serde_json::Value> {
        self.answers.iter().find(|a| a["id"] == id)
    }
}

impl Caller {
    /// The binary this caller runs.
    pub fn binary(&self) -> String {
        match self {
            Caller::Nobody => nobody_binary().expect("callers() offers nobody only with its copy"),
            Caller::Root | Caller::User(_) => bin().to_string(),
        }
    }

    /// `pysandbox ARGS` as this caller: `opts.wrapper`, then (as nobody) setpriv and `env` with
    /// `opts.env`, the binary, `args`, [`BASE_ARGS`] (or `opts.base_args`), `--python
    /// /usr/bin/python3.11` as nobody, and `flags`.
    pub fn command(&self, args: &[&str], flags: &[&str], opts: &RunOpts<'_>) -> Command {
        let mut argv: Vec<String> = opts.wrapper.iter().map(|s| s.to_string()).collect();
        if *self == Caller::Nobody {
            argv.extend(SETPRIV.iter().map(|s| s.to_string()));
            if !opts.env.is_empty() {
                argv.push("env".into());
                argv.extend(opts.env.iter().map(|(k, v)| format!("{k}={v}")));
            }
        }
        argv.push(self.binary());
        let base = opts.base_args.unwrap_or(BASE_ARGS);
        argv.extend(args.iter().chain(base).map(|s| s.to_string()));
        if *self == Caller::Nobody {
            argv.extend(["--python".to_string(), NOBODY_PYTHON.to_string()]);
        }
        argv.extend(flags.iter().map(|s| s.to_string()));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if *self != Caller::Nobody {
            cmd.envs(opts.env.iter().copied());
        }
        if let Some(dir) = opts.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// `pysandbox batch` as this caller with [`BASE_ARGS`] and `flags`, fed `lines`.
    pub fn batch(&self, flags: &[&str], lines: &[serde_json::Value], opts: &RunOpts<'_>) -> Batch {
        let mut child = self
            .command(&["batch"], flags, opts)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("as {self}: starting pysandbox batch: {e}"));
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let mut stdin = child.stdin.take().unwrap();
        // Written from a thread: a batch's answers may fill its stdout before it has read all.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let cli_stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let answers = stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("as {self}: a batch line is not JSON ({e}): {l}; stderr: {cli_stderr}")
                })
            })
            .collect();
        Batch {
            status: out.status.code().unwrap_or(-1),
            answers,
            cli_stderr,
        }
    }

    /// A host program started as this caller (e.g. a sentinel process the code should not be
    /// able to signal: as nobody, one of nobody's own).
    pub fn host_command(&self, program: &str) -> Command {
        match self {
            Caller::Nobody => {
                let mut cmd = Command::new(SETPRIV[0]);
                cmd.args(&SETPRIV[1..]).arg(program);
                cmd
            }
            Caller::Root | Caller::User(_) => Command::new(program),
        }
    }
}

impl Combo {
    /// The outcomes (JSON) of `cells` run in cell mode with `extra` flags on this path: one
    /// cold run per cell, or one batch (a session's lines share its state).
    pub fn run_cells(
        &self,
        extra: &[&str],
        cells: &[&str],
        opts: &RunOpts<'_>,
    ) -> Vec<serde_json::Value> {
        let c = self;
        match c.path {
            ExecPath::Cold => cells
                .iter()
                .map(|code| {
                    let mut flags = extra.to_vec();
                    flags.extend(["-c", code]);
                    let out = c
                        .caller
                        .command(&["run", "--json", "--cell"], &flags, opts)
                        .output()
                        .unwrap();
                    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                        panic!(
                            "{c}: no outcome ({e}): {}",
                            String::from_utf8_lossy(&out.stderr)
                        )
                    })
                })
                .collect(),
            ExecPath::Warm | ExecPath::Session => {
                let lines: Vec<serde_json::Value> = cells
                    .iter()
                    .enumerate()
                    .map(|(i, code)| {
                        let mut l = json!({"id": i, "code": code, "mode": "cell"});
                        if c.path == ExecPath::Session {
                            l["session"] = json!("s");
                        }
                        l
                    })
                    .collect();
                let mut flags = vec!["--workers", "1"];
                flags.extend(extra);
                let b = c.caller.batch(&flags, &lines, opts);
                (0..cells.len() as i64)
                    .map(|i| {
                        b.answer(i)
                            .unwrap_or_else(|| panic!("{c}: no answer {i}: {}", b.cli_stderr))
                            .clone()
                    })
                    .collect()
            }
        }
    }

    /// Run `code` with [`BASE_ARGS`] and `extra` flags on this path as this caller.
    pub fn run(&self, extra: &[&str], code: &str) -> Run {
        self.run_with(extra, code, &RunOpts::default())
    }

    /// [`Combo::run`] with an environment, a working directory or a wrapper.
    pub fn run_with(&self, extra: &[&str], code: &str, opts: &RunOpts<'_>) -> Run {
        let session = |id: i64, code: &str| json!({"id": id, "code": code, "session": "s"});
        let lines = match self.path {
            ExecPath::Cold => return self.run_cold(extra, code, opts),
            ExecPath::Warm => vec![json!({"id": 1, "code": code})],
            ExecPath::Session => vec![session(1, "x = 1"), session(2, code)],
        };
        let mut flags = vec!["--workers", "1"];
        flags.extend(extra);
        let b = self.caller.batch(&flags, &lines, opts);
        let context = || format!("answers: {:?}; stderr: {}", b.answers, b.cli_stderr);
        let outcome = |id: i64| {
            let a = b
                .answer(id)
                .unwrap_or_else(|| panic!("{self}: no answer to line {id}; {}", context()));
            if a["status"] == "sandbox_error" {
                let e = &a["error"];
                panic!("{self}: line {id} got an error answer: {e}; {}", context());
            }
            serde_json::from_value::<Outcome>(a.clone())
                .unwrap_or_else(|e| panic!("{self}: line {id} is no outcome ({e}); {}", context()))
        };
        let outcome = if self.path == ExecPath::Session {
            let first = outcome(1);
            assert_eq!(
                first.exit_code,
                Some(0),
                "{self}: the session's first call failed: {first:?}; {}",
                context()
            );
            outcome(2)
        } else {
            outcome(1)
        };
        Run {
            status: b.status,
            outcome,
            cli_stderr: b.cli_stderr,
        }
    }

    fn run_cold(&self, extra: &[&str], code: &str, opts: &RunOpts<'_>) -> Run {
        let mut flags = extra.to_vec();
        flags.extend(["-c", code]);
        let out = self
            .caller
            .command(&["run", "--json"], &flags, opts)
            .output()
            .unwrap_or_else(|e| panic!("{self}: starting pysandbox run: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let cli_stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let outcome: Outcome = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!("{self}: pysandbox gave no JSON outcome ({e}); stdout: {stdout}; stderr: {cli_stderr}")
        });
        Run {
            status: out.status.code().unwrap_or(-1),
            outcome,
            cli_stderr,
        }
    }

    /// A host program started as this combination's caller.
    pub fn host_command(&self, program: &str) -> Command {
        self.caller.host_command(program)
    }
}

/// The copy of the binary (and of any `libpysandbox_*.so` next to it) that nobody can run, in a
/// directory of its own under the host's temp dir (mode 0755, owned by root). It is named after
/// the binary's path, size and time, made once (copied by `cp`, so that no descriptor of it
/// open for writing can reach a process this test forks: ETXTBSY), renamed into place whole and
/// reused by later test processes of the same build; a new build's copy removes the earlier
/// builds' copies of the same binary. `None` (after [`skip`]) without `setpriv` or
/// `/usr/bin/python3.11`.
pub fn nobody_binary() -> Option<String> {
    static COPY: OnceLock<Result<String, String>> = OnceLock::new();
    let copy = COPY.get_or_init(|| {
        if Command::new("setpriv").arg("--version").output().is_err() {
            return Err("setpriv (util-linux) is needed to run as nobody".into());
        }
        if !Path::new(NOBODY_PYTHON).exists() {
            return Err(format!(
                "{NOBODY_PYTHON} is needed to run as nobody (pyenv's interpreter lives under \
                 /root, mode 0700)"
            ));
        }
        Ok(make_nobody_copy())
    });
    match copy {
        Ok(path) => Some(path.clone()),
        Err(reason) => {
            skip(reason);
            None
        }
    }
}

fn make_nobody_copy() -> String {
    let original = Path::new(bin());
    let here = original.parent().unwrap();
    let mut files = vec![original.to_path_buf()];
    // `pysandbox server` becomes the server's binary, next to the command's.
    let server = here.join("pysandbox-server");
    if server.is_file() {
        files.push(server);
    }
    for e in std::fs::read_dir(here).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("libpysandbox_") && name.ends_with(".so") {
            files.push(e.path());
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in &files {
        let m = std::fs::metadata(f).unwrap();
        std::hash::Hash::hash(&(f, m.len(), m.mtime(), m.mtime_nsec()), &mut hasher);
    }
    let tag = std::hash::Hasher::finish(&hasher);
    let dir = std::env::temp_dir().join(format!("pysandbox-test-nobody-{tag:016x}"));
    let copy = dir.join("pysandbox");
    let trusted = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            m.uid() == euid() && m.mode() & 0o022 == 0 && !m.file_type().is_symlink()
        })
    };
    if !(trusted(&dir) && trusted(&copy)) {
        let staging = std::env::temp_dir().join(format!(
            "pysandbox-test-nobody-{tag:016x}.{}",
            random_hex(6)
        ));
        std::fs::create_dir(&staging).unwrap();
        for f in &files {
            let status = Command::new("cp")
                .arg("--")
                .arg(f)
                .arg(&staging)
                .status()
                .unwrap();
            assert!(status.success(), "copying {f:?} for nobody");
        }
        for e in std::fs::read_dir(&staging).unwrap().flatten() {
            std::fs::set_permissions(e.path(), PermissionsExt::from_mode(0o755)).unwrap();
        }
        // What it is a copy of, for the next build's copy to find this one stale.
        std::fs::write(staging.join("source"), bin()).unwrap();
        std::fs::set_permissions(&staging, PermissionsExt::from_mode(0o755)).unwrap();
        if std::fs::rename(&staging, &dir).is_ok() {
            // Copies of earlier builds of the same binary are stale (another checkout's are not).
            for e in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let source = std::fs::read_to_string(e.path().join("source"));
                if name.starts_with("pysandbox-test-nobody-")
                    && e.path() != dir
                    && trusted(&e.path())
                    && source.is_ok_and(|s| s == bin())
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        } else {
            // Another test process put its (identical) copy there first, or an untrusted
            // directory is in the way.
            let _ = std::fs::remove_dir_all(&staging);
            assert!(
                trusted(&dir) && trusted(&copy),
                "{dir:?} is in the way and not ours alone"
            );
        }
    }
    copy.to_string_lossy().into_owned()
}

/// `pid` and every process below it (the host's /proc: each task's `children`).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", all[i])) {
            for t in tasks.flatten() {
                let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                all.extend(
                    kids.split_whitespace()
                        .filter_map(|k| k.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    all
}

/// CPU ticks (utime + stime, 100 a second) of `pid` and every descendant, from the host's /proc:
/// host-side evidence of whether a sandbox still runs.
pub fn tree_cpu_ticks(pid: u32) -> u64 {
    descendants(pid)
        .iter()
        .map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}
