//! Third-party packages with C extensions in the sandbox: numpy, pandas, matplotlib and pillow
//! (installed into the tests' interpreter by `make deps`) import and work on the cold, warm and
//! session paths with the `full` preset's defaults; `preload` makes them imported before a
//! request; the warm zygote stays single-threaded after its preloads; a preload the policy does
//! not allow is refused before anything runs; the libraries bound for site-packages do not widen
//! the view.
//!
//! As root only: the tests' other caller, uid 65534, runs Debian's `/usr/bin/python3.11`, which
//! has none of these packages (pyenv's interpreter lives under /root, mode 0700).

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const FULL: &[&str] = &["--preset", "full"];

/// The paths to test packages on: every path, as the callers that run the tests' interpreter.
/// `None` (after [`skip`]) when that interpreter lacks one of the packages.
fn package_combos() -> Option<Vec<Combo>> {
    static HAVE: OnceLock<bool> = OnceLock::new();
    let have = *HAVE.get_or_init(|| on_host("import numpy, pandas, matplotlib, PIL", &[]).0 == 0);
    if !have {
        skip(&format!(
            "numpy, pandas, matplotlib and pillow are needed in {} (make deps)",
            host_python()
        ));
    }
    have.then(|| {
        combos()
            .into_iter()
            .filter(|c| c.caller != Caller::Nobody)
            .collect()
    })
}

fn full<'a>() -> RunOpts<'a> {
    RunOpts {
        base_args: Some(FULL),
        ..RunOpts::default()
    }
}

fn ok(c: Combo, r: &Run) {
    assert_eq!(
        (r.outcome.exit_code, r.outcome.limit.as_deref()),
        (Some(0), None),
        "{c}: stdout {}\nstderr {}\n{}",
        r.outcome.stdout,
        r.outcome.stderr,
        r.cli_stderr
    );
}

const WORK: &str = r#"
import io
import numpy as np
a = np.arange(12, dtype=float).reshape(3, 4)
print("numpy", (a @ a.T).trace(), round(np.linalg.det(np.eye(3) * 2), 6))
import pandas as pd
df = pd.DataFrame({"x": np.arange(100), "y": np.arange(100) % 7})
d = df.describe()
print("pandas", d.shape, d.loc["mean", "x"], df.groupby("y").size().sum())
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot([0, 1, 2], [2, 0, 1])
fig.savefig("/tmp/plot.png")
png = open("/tmp/plot.png", "rb").read()
print("matplotlib", plt.get_backend().lower(), len(png) > 1000, png[:8].hex())
from PIL import Image
im = Image.new("RGB", (32, 16), (255, 0, 0))
buf = io.BytesIO()
im.save(buf, "PNG")
im2 = Image.open(io.BytesIO(buf.getvalue()))
print("pillow", im2.size, im2.getpixel((3, 3)), buf.getvalue()[:4].hex())
"#;

/// Real imports and real work, with the `full` preset's default limits, on every path.
#[test]
fn numpy_pandas_matplotlib_and_pillow_work_on_every_path() {
    let Some(combos) = package_combos() else {
        return;
    };
    for c in combos {
        let r = c.run_with(&[], WORK, &full());
        ok(c, &r);
        let out = &r.outcome.stdout;
        for line in [
            "numpy 506.0 8.0",
            "pandas (8, 2) 49.5 100",
            "matplotlib agg True 89504e470d0a1a0a",
            "pillow (32, 16) (255, 0, 0) 89504e47",
        ] {
            assert!(out.contains(line), "{c}: {line:?} not in {out}");
        }
        assert!(r.outcome.stderr.is_empty(), "{c}: {}", r.outcome.stderr);
    }
}

/// `--preload`: a request finds the modules imported before its code runs (cold runs import
/// them before the code too: the same state on every path); without it, a warm request does
/// not. The time of `import pandas` in the request is printed, not asserted.
#[test]
fn preloaded_modules_are_imported_before_the_request() {
    let Some(combos) = package_combos() else {
        return;
    };
    let code = r#"
import sys, time
before = [m in sys.modules for m in ("pandas", "matplotlib.pyplot")]
t = time.perf_counter()
import pandas, matplotlib.pyplot
print(before, "%.4f" % (time.perf_counter() - t))
"#;
    let preload = ["--preload", "pandas", "--preload", "matplotlib.pyplot"];
    for c in combos {
        let r = c.run_with(&preload, code, &full());
        ok(c, &r);
        assert!(
            r.outcome.stdout.starts_with("[True, True]"),
            "{c}: {}",
            r.outcome.stdout
        );
        let without = c.run_with(&[], code, &full());
        ok(c, &without);
        assert!(
            without.outcome.stdout.starts_with("[False, False]"),
            "{c}: {}",
            without.outcome.stdout
        );
        eprintln!(
            "{c}: import pandas, matplotlib.pyplot in the code took {} s preloaded, {} s not",
            r.outcome.stdout.split_whitespace().last().unwrap_or("?"),
            without
                .outcome
                .stdout
                .split_whitespace()
                .last()
                .unwrap_or("?"),
        );
    }
}

/// Processes below `pid` (host /proc), with their command name and thread count.
fn tree(pid: u32) -> Vec<(u32, u32, String, u32)> {
    descendants(pid)
        .into_iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            Some((
                p,
                field("PPid:").parse().ok()?,
                field("Name:"),
                field("Threads:").parse().ok()?,
            ))
        })
        .collect()
}

/// The warm zygote has exactly one thread after importing numpy, pandas and matplotlib (counted
/// in the host's /proc while its worker serves); the same imports start threads without the
/// `full` preset's environment (the control, on the host), and a policy that lets a preload
/// start threads is refused by the zygote.
#[test]
fn warm_zygote_is_single_threaded_after_its_preloads() {
    if package_combos().is_none() {
        return;
    }
    let threads = "import numpy, threading, os; \
        print(len(os.listdir('/proc/self/task')))";
    let (_, host) = on_host(threads, &[("OPENBLAS_NUM_THREADS", "2")]);
    assert_eq!(host.trim(), "2", "control: OpenBLAS starts no thread here");

    let mut batch = Command::new(bin())
        .args(["batch", "--preset", "full", "--workers", "1"])
        .args(["--preload", "numpy,pandas,matplotlib.pyplot"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = batch.stdin.take().unwrap();
    writeln!(
        stdin,
        r#"{{"id": 1, "code": "import numpy; print(numpy.ones(3).sum())"}}"#
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut answer = String::new();
    BufReader::new(batch.stdout.take().unwrap())
        .read_line(&mut answer)
        .unwrap();
    assert!(answer.contains(r#""stdout":"3.0\n""#), "{answer}");
    // The worker is serving (its next request child is ready): look at its processes.
    let procs = tree(batch.id());
    drop(stdin);
    let out = batch.wait_with_output().unwrap();
    let name = |pid: u32| procs.iter().find(|p| p.0 == pid).map(|p| p.2.as_str());
    let pythons: Vec<_> = procs.iter().filter(|p| p.2.starts_with("python")).collect();
    let zygotes: Vec<_> = pythons
        .iter()
        .filter(|p| !name(p.1).unwrap_or("").starts_with("python"))
        .collect();
    assert_eq!(zygotes.len(), 1, "{procs:?}");
    for p in &pythons {
        assert_eq!(p.3, 1, "{p:?} has threads; {procs:?}");
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A policy that lets OpenBLAS start threads in the zygote: refused, with what to change.
    let lines = [serde_json::json!({"id": 1, "code": "print('RAN')"})];
    let flags = [
        "--env",
        "OPENBLAS_NUM_THREADS=2",
        "--preload",
        "numpy",
        "--workers",
        "1",
    ];
    let b = Caller::Root.batch(&flags, &lines, &full());
    assert_ne!(b.status, 0);
    assert!(b.answers.is_empty(), "{:?}", b.answers);
    assert!(
        b.cli_stderr.contains("more than one thread") && b.cli_stderr.contains("numpy"),
        "{}",
        b.cli_stderr
    );
}

/// With the `default` preset's import whitelist, a preload of a module the policy does not
/// allow is refused before anything runs: the message names the field and the fix, and the
/// code's marker never appears.
#[test]
fn a_preload_the_policy_does_not_allow_is_refused_before_anything_runs() {
    let default: &[&str] = &[];
    let opts = RunOpts {
        base_args: Some(default),
        ..RunOpts::default()
    };
    let code = "print('RAN')";
    for c in combos() {
        let Combo { caller, path } = c;
        let (status, stdout, stderr) = match path {
            ExecPath::Cold => {
                let out = caller
                    .host_command(&caller.binary())
                    .args(["run", "--preload", "numpy", "-c", code])
                    .output()
                    .unwrap();
                (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            }
            _ => {
                let lines = match path {
                    ExecPath::Warm => vec![serde_json::json!({"id": 1, "code": code})],
                    _ => vec![serde_json::json!({"id": 1, "code": code, "session": "s"})],
                };
                let b = caller.batch(&["--preload", "numpy"], &lines, &opts);
                (Some(b.status), format!("{:?}", b.answers), b.cli_stderr)
            }
        };
        assert_eq!(status, Some(2), "{c}: {stdout} {stderr}");
        assert!(!stdout.contains("RAN"), "{c}: {stdout}");
        for needle in ["invalid preload 'numpy'", "--allow-module numpy"] {
            assert!(stderr.contains(needle), "{c}: {stderr} lacks {needle}");
        }
    }
    // A module a feature grants: the hint names the feature.
    let out = Command::new(bin())
        .args(["run", "--preload", "socket", "-c", code])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("enable the 'network' feature"), "{stderr}");
}

/// A preload that does not fit the memory limit: the warm worker refuses to start and says how
/// much to give `--memory`; a cold run stops before the code with the memory limit named.
#[test]
fn preloads_too_large_for_the_memory_limit_say_what_to_raise() {
    let Some(combos) = package_combos() else {
        return;
    };
    let flags = ["--memory", "120M", "--preload", "pandas"];
    for c in combos {
        if c.path == ExecPath::Cold {
            let r = c.run_with(&flags, "print('RAN')", &full());
            assert_eq!(
                r.outcome.limit.as_deref(),
                Some("memory"),
                "{c}: {:?}",
                r.outcome
            );
            assert_eq!(r.status, 124, "{c}");
            assert!(!r.outcome.stdout.contains("RAN"), "{c}");
            assert!(
                r.outcome
                    .stderr
                    .contains("preload: importing 'pandas' failed"),
                "{c}: {}",
                r.outcome.stderr
            );
            continue;
        }
        let lines = match c.path {
            ExecPath::Warm => vec![serde_json::json!({"id": 1, "code": "print('RAN')"})],
            _ => vec![serde_json::json!({"id": 1, "code": "print('RAN')", "session": "s"})],
        };
        let mut all = vec!["--workers", "1"];
        all.extend(flags);
        let b = c.caller.batch(&all, &lines, &full());
        assert_ne!(b.status, 0, "{c}");
        assert!(!format!("{:?}", b.answers).contains("RAN"), "{c}");
        for needle in ["memory limit of 120M", "--memory", "pandas"] {
            assert!(b.cli_stderr.contains(needle), "{c}: {}", b.cli_stderr);
        }
    }
}

/// Attack control: the libraries bound for site-packages' extension modules are single files,
/// so a file next to them that no module links (a sentinel planted in the host's library
/// directory) stays invisible, while the library itself is there and numpy imports. (Binding
/// the directory instead would show the sentinel: the control on the host sees it.)
#[test]
fn site_library_binds_do_not_widen_the_view() {
    let Some(combos) = package_combos() else {
        return;
    };
    let libstdcxx = "/lib/x86_64-linux-gnu/libstdc++.so.6";
    if !std::path::Path::new(libstdcxx).exists() {
        skip(&format!("{libstdcxx} is not where this test expects it"));
        return;
    }
    let dir = std::fs::canonicalize(libstdcxx)
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    struct Planted(std::path::PathBuf);
    impl Drop for Planted {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let sentinel = Planted(dir.join(format!("pysandbox-test-sentinel-{}", random_hex(6))));
    write_file(&sentinel.0, "SENTINEL");
    let code = format!(
        r#"
import os, numpy
lib = "/lib/x86_64-linux-gnu"
print("lib", os.path.exists("{libstdcxx}"))
print("sentinel", any(os.path.exists(d + "/{name}") for d in (lib, "/usr" + lib)))
"#,
        name = sentinel.0.file_name().unwrap().to_string_lossy()
    );
    let (_, host) = on_host(&code, &[]);
    assert!(host.contains("sentinel True"), "control: {host}");
    for c in combos {
        let r = c.run_with(&[], &code, &full());
        ok(c, &r);
        let out = &r.outcome.stdout;
        // `exists` is a stat: Landlock does not govern it, only what the mounts show does.
        assert!(
            out.contains("lib True") && out.contains("sentinel False"),
            "{c}: {out}"
        );
    }
}

/// The width and height of a PNG given as base64 (its IHDR), or why it is not one.
fn png_size(b64: &Value) -> Result<(u32, u32), String> {
    let bytes = b64
        .as_str()
        .and_then(pysandbox_core::outcome::base64_decode)
        .ok_or_else(|| format!("not base64: {b64}"))?;
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return Err(format!("not a PNG: {:?}", &bytes[..bytes.len().min(16)]));
    }
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    Ok((be(16), be(20)))
}

/// The sizes of the PNGs among `o`'s results, and which result is the main one.
fn pngs(o: &Value) -> Vec<((u32, u32), bool)> {
    o["results"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .filter(|r| r["data"]["image/png"].is_string())
        .map(|r| {
            (
                png_size(&r["data"]["image/png"]).unwrap_or_else(|e| panic!("{e}: {o}")),
                r["is_main_result"] == true,
            )
        })
        .collect()
}

const PLOTS: &str = r#"
import matplotlib.pyplot as plt
import pandas as pd
from PIL import Image
fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
ax.plot([1, 2])
plt.show()
plt.figure(figsize=(3, 1), dpi=50)
plt.plot([2, 1])
display(Image.new("RGB", (8, 4), (255, 0, 0)))
pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
"#;

/// Cell mode with the real packages, on every path, with and without matplotlib.pyplot
/// preloaded (a preloaded pyplot is switched to the capturing backend): `plt.show()` and a
/// figure still open at the end each give an image/png of the figure's own size, and are
/// closed; a PIL image gives its PNG; a DataFrame as the last value is the main result, as
/// text/html (a table) and text/plain.
#[test]
fn cells_show_plots_images_and_tables_on_every_path() {
    let Some(combos) = package_combos() else {
        return;
    };
    let after = "import matplotlib.pyplot as plt\nlen(plt.get_fignums())";
    for c in combos {
        let mut variants: Vec<&[&str]> = vec![&[]];
        if c.path != ExecPath::Cold {
            variants.push(&["--preload", "matplotlib.pyplot", "--preload", "pandas"]);
            // A warmup that draws text in the zygote (matplotlib keeps the font file open)
            // and leaves its figure open (closed after the warmup).
            variants.push(&[
                "--preload",
                "matplotlib.pyplot",
                "--warmup",
                "import io\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.set_title('t')\n\
                 fig.savefig(io.BytesIO(), format='png')\nplt.figure()",
            ]);
        }
        for flags in variants {
            let o = c.run_cells(flags, &[PLOTS, after], &full());
            let (cell, after) = (&o[0], &o[1]);
            assert_eq!(cell["status"], "ok", "{c} {flags:?}: {cell}");
            assert_eq!(
                pngs(cell),
                vec![((100, 50), false), ((8, 4), false), ((150, 50), false)],
                "{c} {flags:?}: show(), the PIL image, the figure left open"
            );
            let results = cell["results"].as_array().unwrap();
            assert_eq!(results.len(), 4, "{c} {flags:?}: {cell}");
            let main = &results[3];
            assert_eq!(main["is_main_result"], true, "{c} {flags:?}: {main}");
            let html = main["data"]["text/html"].as_str().unwrap_or("");
            assert!(
                html.contains("<table") && html.contains("<td>x</td>"),
                "{c} {flags:?}: {main}"
            );
            let text = main["data"]["text/plain"].as_str().unwrap_or("");
            assert!(
                text.contains('a') && text.contains('y'),
                "{c} {flags:?}: {main}"
            );
            assert!(cell["stderr"] == "", "{c} {flags:?}: {}", cell["stderr"]);
            // The figures were closed (in a session this is the same interpreter).
            assert_eq!(
                after["results"][0]["data"]["text/plain"], "0",
                "{c}: {after}"
            );
        }
    }
}

/// A session keeps its figures like a notebook: one built (and shown) in one cell is shown
/// again, changed, as the next cell's value, once, as the main result.
#[test]
fn a_session_shows_a_figure_from_an_earlier_cell() {
    let Some(combos) = package_combos() else {
        return;
    };
    for c in combos.into_iter().filter(|c| c.path == ExecPath::Session) {
        let o = c.run_cells(
            &[],
            &[
                "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(2, 2), dpi=40)\nax.plot([1, 2])",
                "ax.set_title('again')\nfig.set_size_inches(3, 2)\nfig",
            ],
            &full(),
        );
        assert_eq!(pngs(&o[0]), vec![((80, 80), false)], "{c}: {}", o[0]);
        assert_eq!(pngs(&o[1]), vec![((120, 80), true)], "{c}: {}", o[1]);
        assert_eq!(
            o[1]["results"].as_array().unwrap().len(),
            1,
            "{c}: {}",
            o[1]
        );
    }
}

/// `IPython.display.display` (which prints when no IPython shell runs) adds results in cell
/// mode, imported in the cell or preloaded, including raw MIME bundles.
#[test]
fn ipython_display_adds_results() {
    let Some(combos) = package_combos() else {
        return;
    };
    if on_host("import IPython.display", &[]).0 != 0 {
        skip(&format!(
            "IPython is needed in {} (make deps)",
            host_python()
        ));
        return;
    }
    let code = "from IPython.display import display, HTML\n\
                display(HTML('<i>x</i>'))\n\
                display({'text/plain': 'raw', 'application/json': {'a': 1}}, raw=True)\n\
                print('printed')";
    for c in combos {
        let mut variants: Vec<&[&str]> = vec![&[]];
        if c.path != ExecPath::Cold {
            variants.push(&["--preload", "IPython.display"]);
        }
        for flags in variants {
            let o = &c.run_cells(flags, &[code], &full())[0];
            assert_eq!(o["status"], "ok", "{c} {flags:?}: {o}");
            let r = o["results"].as_array().unwrap();
            assert_eq!(r.len(), 2, "{c} {flags:?}: {o}");
            assert_eq!(r[0]["data"]["text/html"], "<i>x</i>", "{c} {flags:?}: {o}");
            assert_eq!(r[1]["data"]["application/json"], "{\"a\": 1}", "{c}: {o}");
            assert_eq!(r[1]["data"]["text/plain"], "raw", "{c} {flags:?}: {o}");
            // Nothing of the displayed objects went to stdout, only the print.
            assert_eq!(o["stdout"], "printed\n", "{c} {flags:?}: {o}");
        }
    }
}

/// A module planted in the tests' interpreter's site-packages for one test, removed after.
struct PlantedModule(std::path::PathBuf);

impl PlantedModule {
    fn new(stem: &str, source: &str) -> PlantedModule {
        let (status, site) = on_host("import site; print(site.getsitepackages()[0])", &[]);
        assert_eq!(status, 0, "{site}");
        let path = std::path::Path::new(site.trim()).join(format!("{stem}.py"));
        write_file(&path, source);
        PlantedModule(path)
    }
}

impl Drop for PlantedModule {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A preload that keeps a file open (as matplotlib keeps the fonts it has drawn with) and
/// registers an after-fork hook: a warm child runs the hook as after os.fork(), and when the
/// inherited object closes its descriptor, none of the child's own descriptors goes with it
/// (it closes a /dev/null placeholder under the number the zygote's file had, which is never
/// one of the child's pipes). Before this, such a close took whatever the child had opened
/// since under that number, or its stdout: the request ended with status 1 and no output.
#[test]
fn a_preload_holding_a_file_does_not_break_the_children() {
    let Some(combos) = package_combos() else {
        return;
    };
    let stem = format!("pysandbox_test_fdholder_{}", random_hex(4));
    let _module = PlantedModule::new(
        &stem,
        "import os\n\
         held = open(os.__file__, 'rb')\n\
         ran_at_fork = []\n\
         os.register_at_fork(after_in_child=lambda: ran_at_fork.append(os.getpid()))\n",
    );
    let code = format!(
        r#"
import os, {stem} as m
mine = [open("/tmp/f%d" % i, "w") for i in range(40)]
m.held.close()
for f in mine:
    f.write("kept")
    f.close()
print("hook", len(m.ran_at_fork), "low", m.held.fileno() if not m.held.closed else "closed")
print("files", sum(open("/tmp/f%d" % i).read() == "kept" for i in range(40)))
"#
    );
    let preload = ["--preload", &stem];
    for c in combos.into_iter().filter(|c| c.path != ExecPath::Cold) {
        for round in 0..2 {
            let r = c.run_with(&preload, &code, &full());
            ok(c, &r);
            let out = &r.outcome.stdout;
            assert!(
                out.contains("hook 1 low closed") && out.contains("files 40"),
                "{c} round {round}: {out}"
            );
        }
    }
}
