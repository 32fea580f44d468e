//! The interpreter's libraries are bound as one directory (`pysandbox_core::libview`, issue 15):
//! the jail must see exactly the files the single binds showed — the host's very libraries,
//! nothing else of the host's library directory, none of them writable (they are the host's very
//! inodes) — on every path, as root and unprivileged.

mod common;

use common::*;

const LIB: &str = "/lib/x86_64-linux-gnu";

#[test]
fn the_library_directory_holds_the_interpreters_libraries_and_nothing_else() {
    if !std::path::Path::new(LIB).join("libc.so.6").exists() {
        skip(&format!(
            "{LIB}/libc.so.6 is not where this test expects it"
        ));
        return;
    }
    // A file of the host's library directory that no interpreter needs (as root: planted).
    struct Planted(Option<std::path::PathBuf>);
    impl Drop for Planted {
        fn drop(&mut self) {
            if let Some(p) = &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let sentinel = Planted((euid() == 0).then(|| {
        let p = std::fs::canonicalize(LIB)
            .unwrap()
            .join(format!("pysandbox-view-sentinel-{}", random_hex(6)));
        write_file(&p, "SENTINEL");
        p
    }));
    // Listing the directory needs the view (single binds sit in a directory Landlock does not
    // open: a caller without a cache directory gets those); `exists` is a stat, which Landlock
    // does not govern: only what the mounts show decides it.
    let planted = sentinel.0.as_ref().map_or(String::from("none"), |p| {
        p.file_name().unwrap().to_string_lossy().into_owned()
    });
    let code = format!(
        r#"
import hashlib, os
try:
    print("names", " ".join(sorted(os.listdir("{LIB}"))))
except PermissionError:
    print("names libc.so.6")
print("sentinel", os.path.exists("{LIB}/{planted}"))
with open("{LIB}/libc.so.6", "rb") as f:
    print("libc", hashlib.sha256(f.read()).hexdigest())
# The view's files are hard links to the host's own libraries: writing through it would change
# the host's. Both tries must fail.
for what, how in (("write", lambda: open("{LIB}/libc.so.6", "r+b").write(b"X")),
                  ("create", lambda: open("{LIB}/planted-by-the-sandbox", "wb").write(b"X"))):
    try:
        how()
        print(what, "DONE")
    except OSError as e:
        print(what, "refused", e.errno)
"#
    );
    let (_, host) = on_host(
        &format!(
            "import hashlib\nprint(hashlib.sha256(open('{LIB}/libc.so.6', 'rb').read()).hexdigest())"
        ),
        &[],
    );
    let host_libc = host.trim().to_string();
    let host_count = std::fs::read_dir(LIB).unwrap().count();
    for_each_combo(|c| {
        let r = c.run(&[], &code);
        let out = &r.outcome.stdout;
        assert_eq!(
            r.outcome.exit_code,
            Some(0),
            "{c}: {out} {}",
            r.outcome.stderr
        );
        let names: Vec<&str> = out
            .lines()
            .find_map(|l| l.strip_prefix("names "))
            .unwrap_or_default()
            .split(' ')
            .collect();
        // The interpreter's libraries are there, as the host's very files…
        assert!(names.contains(&"libc.so.6"), "{c}: {names:?}");
        assert!(out.contains(&format!("libc {host_libc}")), "{c}: {out}");
        for n in &names {
            assert!(
                std::path::Path::new(LIB).join(n).exists(),
                "{c}: {n} is not a library of the host's"
            );
        }
        // Nothing written through it: the host's libc unchanged, no file created.
        assert!(
            out.contains("write refused") && out.contains("create refused"),
            "{c}: {out}"
        );
        let (_, after) = on_host(
            &format!(
                "import hashlib\nprint(hashlib.sha256(open('{LIB}/libc.so.6', 'rb').read()).hexdigest())"
            ),
            &[],
        );
        assert_eq!(after.trim(), host_libc, "{c}: the host's libc changed");
        assert!(
            !std::path::Path::new(LIB)
                .join("planted-by-the-sandbox")
                .exists(),
            "{c}: a file was created in the host's library directory"
        );
        let cache = std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/pysandbox");
        for view in std::fs::read_dir(&cache).into_iter().flatten().flatten() {
            assert!(
                !view.path().join("planted-by-the-sandbox").exists(),
                "{c}: a file was created in the view {}",
                view.path().display()
            );
        }
        // …and nothing else of the host's directory: not the planted file, not the rest.
        assert!(out.contains("sentinel False"), "{c}: {out}");
        assert!(!names.contains(&planted.as_str()), "{c}: {names:?}");
        assert!(
            names.len() < 100 && names.len() * 4 < host_count,
            "{c}: {} of the host's {host_count} files",
            names.len()
        );
    });
}
