//! Shared by the end-to-end tests: every sandboxed run goes through [`sandbox`], which runs the
//! real `pysandbox` binary with `--json` and decodes its outcome.
#![allow(dead_code)]

use std::io::{Read, Write};
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
}

pub struct Run {
    /// The `pysandbox` process's own exit status.
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

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pysandbox")
}

/// Run `code` in the sandbox with [`BASE_ARGS`] and `extra` flags.
pub fn sandbox(extra: &[&str], code: &str) -> Run {
    sandbox_as(bin(), &[], extra, code)
}

/// Like [`sandbox`], with `pysandbox` started as `prefix... BIN` (e.g. setpriv to another user).
pub fn sandbox_as(binary: &str, prefix: &[&str], extra: &[&str], code: &str) -> Run {
    let (program, pre) = match prefix.split_first() {
        Some((p, rest)) => (*p, rest.to_vec()),
        None => (binary, Vec::new()),
    };
    let mut cmd = Command::new(program);
    cmd.args(&pre);
    if !prefix.is_empty() {
        cmd.arg(binary);
    }
    cmd.arg("run")
        .arg("--json")
        .args(BASE_ARGS)
        .args(extra)
        .args(["-c", code])
        .stdin(Stdio::null());
    let out = cmd.output().expect("start pysandbox");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cli_stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let outcome: Outcome = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("pysandbox gave no JSON outcome ({e}); stdout: {stdout}; stderr: {cli_stderr}")
    });
    Run {
        status: out.status.code().unwrap_or(-1),
        outcome,
        cli_stderr,
    }
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

/// A fresh directory under the host's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("pysandbox-test-{tag}-{}", random_hex(6)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
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

pub fn write_file(path: &Path, text: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
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
