//! Escapes through what a run leaves behind in a writable allowed path (issue 11, items 2 and 3),
//! through the real binary, with host-side evidence and a control that shows the evidence would
//! have caught the escape:
//!
//! - a symlink planted by one run must not redirect the allowed paths of the next: the path is
//!   refused before anything runs (exit 2), nothing of the symlink's target is read or written;
//! - no set-uid or set-gid bit can be set on a file the host keeps.
//!
//! Each runs as root (the jail's user is the host's 65534) and as an unprivileged caller, whose
//! own files the jail's user owns: there a followed symlink hands over the caller's home.

mod common;

use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The sandbox's user as seen on the host when the tests run as root, and the unprivileged
/// caller of the `as_nobody` variants.
const NOBODY: u32 = 65534;

/// A `pysandbox run` that may be refused before it starts (no JSON outcome then).
struct Raw {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Raw {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// How `pysandbox` is started: directly, or as nobody (setpriv) from a copy it can run.
struct Caller {
    prefix: Vec<&'static str>,
    binary: String,
    extra: Vec<&'static str>,
    _dir: Option<TempDir>,
}

impl Caller {
    fn root() -> Caller {
        Caller {
            prefix: Vec::new(),
            binary: bin().to_string(),
            extra: Vec::new(),
            _dir: None,
        }
    }

    /// Uid/gid 65534 through setpriv, running a copy of the binary from a 0755 directory with
    /// Debian's interpreter (pyenv's lives under /root, mode 0700). None if that is impossible.
    fn nobody() -> Option<Caller> {
        if !is_root() {
            return None;
        }
        if Command::new("setpriv").arg("--version").output().is_err()
            && skip("setpriv (util-linux) is needed to run as nobody")
        {
            return None;
        }
        let python = "/usr/bin/python3.11";
        if !Path::new(python).exists() && skip("/usr/bin/python3.11 is needed to run as nobody") {
            return None;
        }
        let dir = TempDir::new("escapes-bin");
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let copy = dir.join("pysandbox");
        std::fs::copy(bin(), &copy).unwrap();
        std::fs::set_permissions(&copy, PermissionsExt::from_mode(0o755)).unwrap();
        Some(Caller {
            prefix: vec![
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--reset-env",
            ],
            binary: copy.to_string_lossy().into_owned(),
            extra: vec!["--python", python],
            _dir: Some(dir),
        })
    }

    fn run(&self, flags: &[&str], code: &str) -> Raw {
        let mut cmd = match self.prefix.split_first() {
            Some((p, rest)) => {
                let mut c = Command::new(p);
                c.args(rest).arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        cmd.args(["run", "--json"])
            .args(BASE_ARGS)
            .args(&self.extra)
            .args(flags)
            .args(["-c", code])
            .stdin(Stdio::null());
        let out = cmd.output().expect("start pysandbox");
        Raw {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A directory the jail's user can use as its owner would: as root, the jail runs as 65534.
fn owned_dir(tag: &str, owner: u32, mode: u32) -> TempDir {
    let d = TempDir::new(tag);
    if is_root() {
        std::os::unix::fs::chown(d.path(), Some(owner), Some(owner)).unwrap();
    }
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(mode)).unwrap();
    d
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Reads `<path>/secret.txt` and writes `<path>/planted` with every means it has.
fn take_code(path: &Path) -> String {
    format!(
        r#"
import os
print("IMPORTED")
base = {base:?}
for f in (base + "/secret.txt", base + "/../secret.txt"):
    try:
        print(open(f).read())
    except Exception as e:
        print("denied:", type(e).__name__)
try:
    open(base + "/planted", "w").write("x")
    print("PLANTED")
except Exception as e:
    print("denied:", type(e).__name__)
"#,
        base = path.to_string_lossy()
    )
}

/// Run 1 with --allow-write D plants `D/out -> H`, H holding a secret and a writable spot; run 2,
/// given `D/out` (or a path below it) to read or write, must be refused before it runs.
fn planted_symlink_is_not_followed(caller: &Caller, owner: u32, home_mode: u32) {
    let d = owned_dir("plant", owner, 0o700);
    let h = owned_dir("home", owner, home_mode);
    let secret = format!("SECRET-{}", random_hex(12));
    let secret_path = h.join("secret.txt");
    write_file(&secret_path, &secret);
    std::fs::create_dir(h.join("sub")).unwrap();
    write_file(&h.join("sub/secret.txt"), &secret);
    if is_root() {
        for p in [&secret_path, &h.join("sub"), &h.join("sub/secret.txt")] {
            std::os::unix::fs::chown(p, Some(owner), Some(owner)).unwrap();
        }
    }
    std::fs::set_permissions(&secret_path, PermissionsExt::from_mode(0o600)).unwrap();

    // Run 1 plants the symlink, as the sandbox sees it (paths are the same inside).
    let out = d.join("out");
    let plant = format!(
        "import os\nos.symlink({h:?}, {out:?})\nprint('IMPORTED', os.readlink({out:?}))",
        h = h.str(),
        out = out.to_string_lossy()
    );
    let r = caller.run(&["--allow-write", &d.str()], &plant);
    assert_eq!(r.status, 0, "{}", r.all());
    assert!(r.stdout.contains("IMPORTED"), "{}", r.all());
    // Control: the symlink is really there on the host and leads to H.
    assert_eq!(std::fs::read_link(&out).unwrap(), h.path());
    assert_eq!(std::fs::canonicalize(&out).unwrap(), h.path());
    assert!(std::fs::metadata(out.join("secret.txt")).is_ok());

    let before = entries(h.path());
    let sub = out.join("sub");
    let cases: [(&str, &PathBuf, PathBuf); 4] = [
        ("--allow-write", &out, h.path().to_path_buf()),
        ("--allow-read", &out, h.path().to_path_buf()),
        ("--allow-read", &sub, h.join("sub")),
        ("--allow-write", &sub, h.join("sub")),
    ];
    for (flag, path, real) in cases {
        let p = path.to_string_lossy().into_owned();
        let r = caller.run(&[flag, &p], &take_code(path));
        assert_eq!(r.status, 2, "{flag} {p}: {}", r.all());
        // Nothing ran: the only answer is the outcome of a refused policy.
        let o: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap_or_default();
        assert_eq!(o["status"], "sandbox_error", "{flag} {p} ran: {}", r.all());
        assert_eq!(o["error"]["type"], "policy", "{flag} {p}: {}", r.all());
        assert!(!r.all().contains(&secret), "{flag} {p}: {}", r.all());
        // The message names the path, the symlinked component and the real path to allow.
        for needle in [
            format!("'{p}' goes through the symlink '{}'", out.display()),
            format!("allow the real path '{}' instead", real.display()),
        ] {
            assert!(
                r.stderr.contains(&needle),
                "{needle:?} not in: {}",
                r.stderr
            );
        }
        assert_eq!(entries(h.path()), before, "{flag} {p} created a file in H");
        assert_eq!(entries(&h.join("sub")), ["secret.txt"]);
    }

    // Control: H itself, allowed by its real path, is what the planted link would have handed
    // over: the same code reads the secret and writes into it.
    let r = caller.run(&["--allow-write", &h.str()], &take_code(h.path()));
    assert_eq!(r.status, 0, "{}", r.all());
    assert!(r.stdout.contains(&secret), "control: {}", r.all());
    assert!(r.stdout.contains("PLANTED"), "control: {}", r.all());
    assert!(h.join("planted").exists());
}

#[test]
fn symlink_planted_by_a_run_does_not_redirect_the_next() {
    // As root the jail's user is 65534: H is made readable and writable by it, so the control
    // can show what following the link would have exposed.
    planted_symlink_is_not_followed(&Caller::root(), NOBODY, 0o777);
}

#[test]
fn symlink_planted_by_a_run_does_not_hand_over_the_callers_home_as_nobody() {
    // An unprivileged caller: H is its home (mode 0700, a 0600 secret), which its jail's user
    // (the caller itself on the host) can read and write once H is bound.
    let Some(caller) = Caller::nobody() else {
        return;
    };
    planted_symlink_is_not_followed(&caller, NOBODY, 0o700);
}

/// Every way Python sets a mode, with S_ISUID and S_ISGID, on files in `dir`; one line per
/// attempt: "<what> <mode> ok|refused|error".
fn setid_code(dir: &Path) -> String {
    format!(
        r#"
import os
print("IMPORTED")
d = {dir:?}
dfd = os.open(d, os.O_RDONLY)
def attempt(what, mode, f):
    try:
        f()
        print(what, oct(mode), "ok")
    except PermissionError:
        print(what, oct(mode), "refused")
    except OSError as e:
        print(what, oct(mode), "error", e)
for mode in (0o4755, 0o2755, 0o6755):
    tag = oct(mode)[2:]
    for name in ("chmod", "fchmod", "fchmodat"):
        open(f"{{d}}/{{name}}-{{tag}}", "w").close()
    attempt("chmod", mode, lambda: os.chmod(f"{{d}}/chmod-{{tag}}", mode))
    fd = os.open(f"{{d}}/fchmod-{{tag}}", os.O_WRONLY)
    attempt("fchmod", mode, lambda: os.fchmod(fd, mode))
    os.close(fd)
    attempt("fchmodat", mode, lambda: os.chmod(f"fchmodat-{{tag}}", mode, dir_fd=dfd))
    flags = os.O_CREAT | os.O_WRONLY
    attempt("open", mode, lambda: os.close(os.open(f"{{d}}/open-{{tag}}", flags, mode)))
    attempt("openat", mode, lambda: os.close(os.open(f"openat-{{tag}}", flags, mode, dir_fd=dfd)))
    attempt("chmod-plain", 0o755, lambda: os.chmod(f"{{d}}/chmod-{{tag}}", 0o755))
"#,
        dir = dir.to_string_lossy()
    )
}

/// (file name, st_mode) of every file in `dir` with a set-id bit.
fn setid_files(dir: &Path) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().mode();
        if mode & 0o6000 != 0 {
            found.push((e.file_name().to_string_lossy().into_owned(), mode));
        }
    }
    found.sort();
    found
}

fn setid_bits_are_refused(caller: &Caller, owner: u32) {
    let w = owned_dir("setid", owner, 0o755);
    let r = caller.run(&["--allow-write", &w.str()], &setid_code(w.path()));
    assert_eq!(r.status, 0, "{}", r.all());
    let outcome: Outcome = serde_json::from_str(r.stdout.trim()).expect("a JSON outcome");
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"IMPORTED"), "{}", r.all());
    // 5 ways × 3 modes, each refused, and the plain chmod after them allowed.
    let refused = lines.iter().filter(|l| l.ends_with(" refused")).count();
    assert_eq!(refused, 15, "{}", outcome.stdout);
    let plain = lines
        .iter()
        .filter(|l| l.starts_with("chmod-plain") && l.ends_with(" ok"))
        .count();
    assert_eq!(plain, 3, "{}", outcome.stdout);
    // Host-side: the files are there (made by the sandbox), none with a set-id bit.
    assert!(w.join("fchmodat-4755").exists());
    assert_eq!(setid_files(w.path()), Vec::<(String, u32)>::new());
}

#[test]
fn setid_bits_cannot_be_planted() {
    // Control: the same code on the host, as root, sets every bit (the check would see them).
    let host = TempDir::new("setid-host");
    let (code, out) = on_host(&setid_code(host.path()), &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches(" ok").count(), 18, "{out}");
    if is_root() {
        // chmod-plain cleared the chmod files' bits; the 12 others keep theirs.
        assert_eq!(setid_files(host.path()).len(), 12, "{out}");
    }
    setid_bits_are_refused(&Caller::root(), NOBODY);
}

#[test]
fn setid_bits_cannot_be_planted_as_nobody() {
    let Some(caller) = Caller::nobody() else {
        return;
    };
    // Control: nobody may set the bits on its own files on the host.
    let host = owned_dir("setid-host-nobody", NOBODY, 0o755);
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3.11",
            "-c",
            &setid_code(host.path()),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(" ok").count(), 18, "{text}");
    assert_eq!(setid_files(host.path()).len(), 12, "{text}");
    setid_bits_are_refused(&caller, NOBODY);
}
