//! How a run ends, through the real binary on every path and caller: a cold run and a fresh warm
//! child end with `_exit` after doing what the interpreter's own exit does that code can see
//! (`bootstrap/run.py`: `_pysandbox_end`, from `_pysandbox_exit` and from `bootstrap/warm.py`'s
//! `_warm_request`), not by tearing the interpreter down. What code sees must be the interpreter's: the exit status and message of `SystemExit`
//! (the host's interpreter is the control), threads that are not daemons joined, the atexit
//! functions run, the code's globals released (`__del__`, files left open flushed), and what
//! native code printed through C's stdio (kept in the C library's buffers, which `_exit` drops).

mod common;

use common::*;

/// Ends with a thread still running, an atexit function, an object whose `__del__` prints, and
/// a file left open whose text another `__del__` reads back after the file's object is gone.
const END: &str = r#"
import atexit, threading, time
class A:
    def __del__(self): print("del A")
f = open("/tmp/left-open", "w"); f.write("flushed at exit")
class Check:
    def __del__(self): print("file holds:", open("/tmp/left-open").read())
a = A(); c = Check()
atexit.register(print, "atexit ran")
def late(): time.sleep(0.2); print("thread done")
threading.Thread(target=late).start()
print("end of code")
"#;

#[test]
fn a_run_ends_with_the_threads_atexit_and_the_globals_of_the_code() {
    for_each_combo(|c| {
        if c.path == ExecPath::Session {
            // A session's call is not the end of its interpreter: nothing of this applies.
            return;
        }
        let r = c.run(&[], END);
        assert_eq!(
            r.outcome.stdout,
            "end of code\nthread done\natexit ran\ndel A\nfile holds: flushed at exit\n",
            "{c}: {:?}",
            r.outcome
        );
        assert_eq!(r.outcome.exit_code, Some(0), "{c}: {:?}", r.outcome);
    });
}

#[test]
fn system_exit_gives_the_interpreter_s_status_and_message() {
    let cases = [
        ("sys.exit()", 0),
        ("sys.exit(3)", 3),
        ("sys.exit(300)", 44),
        ("sys.exit(-1)", 255),
        ("sys.exit(2 ** 70)", 255),
        ("sys.exit(True)", 1),
        ("sys.exit('bye: a message')", 1),
        ("raise SystemExit(['a', 1])", 1),
    ];
    for (exit, want) in cases {
        let code = format!("import sys\nprint('before', flush=True)\n{exit}\nprint('never')");
        let (host_status, host_out) = on_host(&code, &[]);
        assert_eq!(
            host_status, want,
            "the host's interpreter on {exit}: {host_out}"
        );
        for_each_combo(|c| {
            let r = c.run(&[], &code);
            let o = &r.outcome;
            assert_eq!(o.exit_code, Some(want), "{c} {exit}: {o:?}");
            assert_eq!(
                format!("{}{}", o.stdout, o.stderr),
                host_out,
                "{c} {exit}: output differs from the host's"
            );
        });
    }
}

/// The streams at the end as the interpreter's exit takes them (`flush_std_files`): a stream the
/// code closed is skipped (status 0), a flush that fails gives status 120. A fresh warm child
/// once flushed a closed `sys.stdout` anyway and reported 120 where a cold run and the host
/// gave 0 (its end steps were a copy of the cold path's; they are one function now).
#[test]
fn the_streams_at_the_end_are_the_interpreter_s() {
    let cases = [
        "import sys\nprint('out', flush=True)\nsys.stdout.close()",
        "import sys\nprint('err', file=sys.stderr, flush=True)\nsys.stderr.close()",
        "import sys\nclass W:\n    def write(self, s): return len(s)\n    def flush(self): raise OSError('no')\nsys.stdout = W()",
    ];
    for code in cases {
        let (want, host_out) = on_host(code, &[]);
        for_each_combo(|c| {
            if c.path == ExecPath::Session {
                // A session's call is not the end of its interpreter.
                return;
            }
            let r = c.run(&[], code);
            let o = &r.outcome;
            assert_eq!(
                o.exit_code,
                Some(want),
                "{c} {code:?}: {o:?} (host: {host_out:?})"
            );
            if want == 0 {
                assert_eq!(
                    format!("{}{}", o.stdout, o.stderr),
                    host_out,
                    "{c} {code:?}"
                );
            }
        });
    }
}

#[test]
fn what_native_code_printed_through_c_stdio_is_kept() {
    // printf through ctypes: the C library buffers it (stdout is a pipe), and only its exit()
    // or an fflush writes it out.
    let code = "import ctypes\nctypes.CDLL(None).printf(b'from C %d\\n', 42)\n";
    let (status, host) = on_host(code, &[]);
    assert_eq!((status, host.as_str()), (0, "from C 42\n"), "the host");
    for_each_combo(|c| {
        let r = c.run(&[], code);
        assert_eq!(r.outcome.stdout, "from C 42\n", "{c}: {:?}", r.outcome);
        assert_eq!(r.outcome.exit_code, Some(0), "{c}: {:?}", r.outcome);
    });
}

/// The cold path's rule for native code (`_pysandbox_native`): with an extension module from
/// outside the standard library loaded (Pillow's, which unlike numpy's does not bring ctypes),
/// the run ends through the interpreter's own exit,
/// whose last garbage collection finalizes an object in a reference cycle; with only the
/// standard library's (json), through `_exit`, which does not (the one difference the fast end
/// keeps, docs/warm.md). The cold path only: a warm child never ends through the interpreter's
/// exit.
#[test]
fn native_code_from_outside_the_standard_library_gets_the_interpreter_s_exit() {
    let (status, _) = on_host(
        "import PIL._imaging, sys; assert '_ctypes' not in sys.modules",
        &[],
    );
    if status != 0 && skip("Pillow is not installed in the host interpreter (make deps)") {
        return;
    }
    let cycle = "import gc\nclass C:\n    def __del__(self): print('cycle finalized')\n\
                 gc.collect()\nc = C(); c.me = c; del c\nprint('end')\n";
    for (import, want) in [
        ("import PIL._imaging", "end\ncycle finalized\n"),
        ("import json", "end\n"),
    ] {
        let out = std::process::Command::new(bin())
            .args(["run", "--preset", "full", "--python", host_python(), "-c"])
            .arg(format!("{import}\n{cycle}"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "{import}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
