//! Files in and out (issue 12), on every path and caller: files given are in the working
//! directory before the code runs, files matching the globs come back after it, bounded; a
//! symlink the code planted is never followed, a name it forges never leaves `--collect-dir`,
//! and bad names are refused before anything runs.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Run `code` on `c`'s path with `files` (name → bytes) and `collect` globs; the outcome's JSON.
fn run_files(
    c: Combo,
    flags: &[&str],
    files: &[(&str, &[u8])],
    collect: &[&str],
    code: &str,
    dir: &TempDir,
) -> Value {
    let b64 = |d: &[u8]| pysandbox_core::outcome::base64_encode(d);
    match c.path {
        ExecPath::Cold => {
            // (The harness adds `--preset stdlib`, and for nobody the interpreter it can run.)
            let mut args: Vec<String> = Vec::new();
            args.extend(flags.iter().map(|f| f.to_string()));
            for (name, data) in files {
                let p = dir.join(&format!("given-{}", name.replace('/', "_")));
                std::fs::write(&p, data).unwrap();
                args.push("--file".into());
                args.push(format!("{name}={}", p.display()));
            }
            for g in collect {
                args.push("--collect".into());
                args.push(g.to_string());
            }
            args.push("-c".into());
            args.push(code.into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = c
                .caller
                .command(&["run", "--json"], &args, &RunOpts::default())
                .output()
                .unwrap();
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "{c}: no outcome ({e}): {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        }
        ExecPath::Warm | ExecPath::Session => {
            let files: BTreeMap<&str, String> = files.iter().map(|(n, d)| (*n, b64(d))).collect();
            let mut line = json!({"id": 2, "code": code, "files": files, "collect": collect});
            let mut lines = vec![];
            if c.path == ExecPath::Session {
                lines.push(json!({"id": 1, "code": "x = 1", "session": "s"}));
                line["session"] = json!("s");
            }
            lines.push(line);
            let mut f = vec!["--workers", "1"];
            f.extend(flags);
            let b = c.caller.batch(&f, &lines, &RunOpts::default());
            b.answer(2)
                .unwrap_or_else(|| panic!("{c}: no answer: {}", b.cli_stderr))
                .clone()
        }
    }
}

fn decoded(o: &Value) -> BTreeMap<String, Vec<u8>> {
    o["files"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let d = pysandbox_core::outcome::base64_decode(v.as_str().unwrap()).unwrap();
                    (k.clone(), d)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn files_go_in_and_come_back_on_every_path() {
    for_each_combo(|c| {
        let dir = TempDir::new("files").writable_by_all();
        let code = "import os\n\
                    data = open('in/data.csv').read()\n\
                    os.makedirs('out/deep', exist_ok=True)\n\
                    open('out/deep/r.csv', 'w').write(data.upper())\n\
                    open('plot.png', 'wb').write(bytes(range(256)))\n\
                    open('skip.txt', 'w').write('not asked for')\n\
                    print(sorted(os.listdir('.')))";
        let o = run_files(
            c,
            &[],
            &[("in/data.csv", b"a,b\n1,2\n")],
            &["*.png", "out/*.csv"],
            code,
            &dir,
        );
        assert_eq!(o["status"], "ok", "{c}: {o}");
        let files = decoded(&o);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["out/deep/r.csv", "plot.png"],
            "{c}: {o}"
        );
        assert_eq!(files["out/deep/r.csv"], b"A,B\n1,2\n", "{c}");
        assert_eq!(files["plot.png"], (0..=255).collect::<Vec<u8>>(), "{c}");
        assert_eq!(o["files_truncated"], false, "{c}: {o}");
    });
}

#[test]
fn planted_symlinks_are_not_followed_and_bounds_hold() {
    for_each_combo(|c| {
        let dir = TempDir::new("files-links").writable_by_all();
        // A link to a file the sandbox can read (the interpreter's own): not sent; 120 small
        // files: 100 sent, the rest flagged.
        let code = "import os, sys\n\
                    os.symlink(os.__file__, 'link.txt')\n\
                    os.mkdir('d')\n\
                    os.symlink('/', 'd/root.txt')\n\
                    for i in range(120):\n    open('f%03d.txt' % i, 'w').write(str(i))";
        let o = run_files(c, &[], &[], &["*.txt"], code, &dir);
        assert_eq!(o["status"], "ok", "{c}: {o}");
        let files = decoded(&o);
        assert!(
            !files.contains_key("link.txt") && !files.contains_key("d/root.txt"),
            "{c}"
        );
        assert_eq!(files.len(), 100, "{c}: {:?}", files.keys());
        assert_eq!(o["files_truncated"], true, "{c}: {o}");
    });
}

#[test]
fn forged_names_never_leave_the_collect_dir() {
    // The code writes its own File frames (docs/protocol.md) with names that would escape: the
    // host drops them; `--collect-dir` writes nothing outside DIR, not even through a symlink
    // already in DIR.
    let dir = TempDir::new("files-forged").writable_by_all();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let outside = dir.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("link")).unwrap();
    let frame = |name: &str, data: &str| {
        let field = |b: &[u8]| {
            let mut v = (b.len() as u32).to_le_bytes().to_vec();
            v.extend_from_slice(b);
            v
        };
        let mut body = vec![7u8];
        body.extend(field(name.as_bytes()));
        body.extend(field(data.as_bytes()));
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend(body);
        f
    };
    let mut forged = Vec::new();
    for name in [
        "../escape.txt",
        "/tmp/abs.txt",
        "link/through.txt",
        "ok.txt",
    ] {
        forged.extend(frame(name, "FORGED"));
    }
    let hex: String = forged.iter().map(|b| format!("{b:02x}")).collect();
    let code = format!(
        "import os\nos.write(4, bytes.fromhex('{hex}'))\nopen('real.txt', 'w').write('real')"
    );
    let run = std::process::Command::new(bin())
        .args([
            "run",
            "--json",
            "--preset",
            "stdlib",
            "--collect",
            "*.txt",
            "--collect-dir",
        ])
        .arg(&out)
        .args(["-c", &code])
        .output()
        .unwrap();
    let o: Value = serde_json::from_slice(&run.stdout).unwrap();
    let files = decoded(&o);
    assert!(
        files.contains_key("real.txt") && files.contains_key("ok.txt"),
        "{o}"
    );
    assert!(
        !files.keys().any(|k| k.contains("..") || k.starts_with('/')),
        "{o}"
    );
    assert_eq!(o["files_truncated"], true, "{o}");
    // Host-side evidence: nothing outside DIR, nothing through the link.
    assert!(!dir.join("escape.txt").exists());
    assert!(!std::path::Path::new("/tmp/abs.txt").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert_eq!(std::fs::read(out.join("real.txt")).unwrap(), b"real");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("link/through.txt not written"), "{stderr}");
}

#[test]
fn bad_files_are_refused_before_anything_runs() {
    for_each_combo(|c| {
        let dir = TempDir::new("files-bad").writable_by_all();
        let marker = dir.join("ran");
        let code = format!("open({:?}, 'w').write('x')", marker.to_string_lossy());
        let flags = ["--allow-write", &dir.str()];
        for (name, want) in [
            ("../up.txt", "'..' component"),
            ("/abs.txt", "is absolute"),
            ("a//b", "empty component"),
        ] {
            let o = run_files(c, &flags, &[(name, b"x")], &[], &code, &dir);
            assert_eq!(o["status"], "sandbox_error", "{c} {name}: {o}");
            assert_eq!(o["error"]["type"], "policy", "{c} {name}: {o}");
            let msg = o["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains(want), "{c} {name}: {msg}");
        }
        if c.path != ExecPath::Cold {
            // (No NUL reaches a command line: only a batch line can carry one.)
            let o = run_files(c, &flags, &[("a\0b", b"x")], &[], &code, &dir);
            let msg = o["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains("contains a NUL byte"), "{c}: {o}");
        }
        let o = run_files(c, &flags, &[], &["../*"], &code, &dir);
        assert_eq!(o["status"], "sandbox_error", "{c}: {o}");
        let msg = o["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("collect: '../*'"), "{c}: {o}");
        // More files than a run may be given.
        let names: Vec<String> = (0..101).map(|i| format!("f{i}")).collect();
        let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        let o = run_files(c, &flags, &many, &[], &code, &dir);
        let msg = o["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("101 files given, at most 100"), "{c}: {o}");
        // Larger than the /tmp they go to.
        let big = vec![b'x'; 2 << 20];
        let o = run_files(
            c,
            &["--tmp-size", "1M", "--allow-write", &dir.str()],
            &[("big", &big)],
            &[],
            &code,
            &dir,
        );
        assert!(
            o["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("--tmp-size"),
            "{c}: {o}"
        );
        assert!(!marker.exists(), "{c}: the code ran");
    });
}

/// A batch line with a mode that is neither "script" nor "cell" is refused, naming the field
/// and the modes there are; nothing of it runs (the next line does).
#[test]
fn an_unknown_mode_is_refused() {
    for_each_combo(|c| {
        if c.path == ExecPath::Cold {
            return;
        }
        let session = |mut l: Value| {
            if c.path == ExecPath::Session {
                l["session"] = json!("s");
            }
            l
        };
        let lines = [
            session(json!({"id": 1, "code": "print('RAN')", "mode": "notebook"})),
            session(json!({"id": 2, "code": "print('next')"})),
        ];
        let b = c
            .caller
            .batch(&["--workers", "1"], &lines, &RunOpts::default());
        let bad = b
            .answer(1)
            .unwrap_or_else(|| panic!("{c}: {}", b.cli_stderr));
        assert_eq!(bad["status"], "sandbox_error", "{c}: {bad}");
        assert_eq!(bad["error"]["type"], "policy", "{c}: {bad}");
        let msg = bad["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("unknown mode 'notebook'") && msg.contains("\"cell\""),
            "{c}: {msg}"
        );
        assert_eq!(bad["stdout"], "", "{c}: {bad}");
        assert_eq!(
            b.answer(2).map(|a| a["stdout"].clone()),
            Some(json!("next\n")),
            "{c}"
        );
    });
}
