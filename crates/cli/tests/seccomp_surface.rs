//! The kernel surface the seccomp filter leaves (issue 16, "a smaller kernel surface"), through
//! the real binary on every path (cold, warm, session) and caller: calls that are allowed only
//! with some argument values (`madvise`, `mremap`, `prctl`, `fcntl`) are refused with the
//! others, calls left out of the allowlist (`splice`, `tee`, `vmsplice`, `personality`) are
//! refused (so is `fchdir`, which a warm zygote may call and its children may not), and
//! `userfaultfd` and `io_uring_setup` kill the process. Each call is made through
//! ctypes' raw `syscall()`, so no library fallback hides the kernel's answer; the same program on
//! the host is the control that shows every refused call works without the filter, and the
//! allowed values answer inside too (the filter does not refuse the call as a whole).

mod common;

use common::*;

/// Prints `NAME ok` or `NAME err ERRNO` for each call; `EPERM` is 1.
const CALLS: &str = r#"
import ctypes, mmap, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
print("IMPORTED", flush=True)

def call(name, nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    print(name, "ok" if r != -1 else "err %d" % ctypes.get_errno(), flush=True)

PAGE = mmap.PAGESIZE
def region(pages=1):
    # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
    return libc.mmap(None, pages * PAGE, 3, 0x22, -1, 0)

MADVISE, MREMAP, PRCTL, FCNTL, PERSONALITY = 28, 25, 157, 72, 135
SPLICE, TEE, VMSPLICE = 275, 276, 278
a = region()
call("madvise_dontneed", MADVISE, a, PAGE, 4)
call("madvise_dontfork", MADVISE, a, PAGE, 10)
call("madvise_wipeonfork", MADVISE, a, PAGE, 18)
call("mremap_maymove", MREMAP, region(), PAGE, 2 * PAGE, 1)
call("mremap_fixed", MREMAP, region(), PAGE, PAGE, 1 | 2, region())
call("mremap_dontunmap", MREMAP, region(), PAGE, PAGE, 1 | 4, 0)
name = ctypes.create_string_buffer(b"surface")
call("prctl_set_name", PRCTL, 15, ctypes.addressof(name), 0, 0, 0)
call("prctl_child_subreaper", PRCTL, 36, 1, 0, 0, 0)
call("prctl_timerslack", PRCTL, 29, 1000, 0, 0, 0)
r, w = os.pipe()
call("fcntl_getfd", FCNTL, r, 1)
call("fcntl_setpipe_sz", FCNTL, r, 1031, 1 << 20)
d = os.open("/tmp", os.O_RDONLY)
call("fcntl_notify", FCNTL, d, 1026, 4)
r2, w2 = os.pipe()
os.write(w, b"xy")
call("tee", TEE, r, w2, 1, 0)
call("splice", SPLICE, r, 0, w2, 0, 1, 0)
buf = ctypes.create_string_buffer(b"z")
iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 1)
call("vmsplice", VMSPLICE, w2, ctypes.addressof(iov), 1, 0)
call("personality_no_aslr", PERSONALITY, 0x0040000)
# A call a warm zygote may make (to reach its /tmp holder) and its children may not.
call("fchdir", 81, d)
print("DONE", flush=True)
"#;

const ALLOWED: &[&str] = &[
    "madvise_dontneed",
    "mremap_maymove",
    "prctl_set_name",
    "fcntl_getfd",
    "fcntl_setpipe_sz",
];
const REFUSED: &[&str] = &[
    "madvise_dontfork",
    "madvise_wipeonfork",
    "mremap_fixed",
    "mremap_dontunmap",
    "prctl_child_subreaper",
    "prctl_timerslack",
    "fcntl_notify",
    "tee",
    "splice",
    "vmsplice",
    "personality_no_aslr",
    "fchdir",
];

fn answers(out: &str) -> std::collections::HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn argument_filtered_and_left_out_calls_are_refused() {
    let (status, host) = on_host(CALLS, &[]);
    assert_eq!(status, 0, "control: {host}");
    let on_host = answers(&host);
    for name in ALLOWED.iter().chain(REFUSED) {
        assert_eq!(
            on_host.get(*name).map(String::as_str),
            Some("ok"),
            "control: {name} should work on the host: {host}"
        );
    }
    for_each_combo(|c| {
        let r = c.run(&[], CALLS);
        let out = &r.outcome.stdout;
        assert!(out.contains("DONE"), "{c}: {}", r.all_output());
        let inside = answers(out);
        for name in ALLOWED {
            assert_eq!(
                inside.get(*name).map(String::as_str),
                Some("ok"),
                "{c}: {name} is allowed: {out}"
            );
        }
        for name in REFUSED {
            assert_eq!(
                inside.get(*name).map(String::as_str),
                Some("err 1"),
                "{c}: {name} must fail with EPERM: {out}"
            );
        }
    });
}

#[test]
fn userfaultfd_and_io_uring_kill_the_process() {
    let calls = [
        // userfaultfd(O_CLOEXEC)
        ("userfaultfd", "libc.syscall(323, 0o2000000)"),
        // io_uring_setup(1, &params): 120 bytes of zeroed parameters
        (
            "io_uring_setup",
            "libc.syscall(425, 1, ctypes.create_string_buffer(120))",
        ),
    ];
    for (name, call) in calls {
        let code = format!(
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint('IMPORTED', flush=True)\nprint('{name} returned', {call}, ctypes.get_errno())\n"
        );
        // Control: on the host the call returns (a descriptor, or an errno such as a disabled
        // io_uring's): the process is not killed.
        let (status, host) = on_host(&code, &[]);
        assert!(
            status == 0 && host.contains(&format!("{name} returned")),
            "control: {host}"
        );
        for_each_combo(|c| {
            let r = c.run(&[], &code);
            assert!(
                r.outcome.stdout.contains("IMPORTED"),
                "{c}: {}",
                r.all_output()
            );
            assert_eq!(
                r.outcome.signal,
                Some(31),
                "{c}: {name}: {}",
                r.all_output()
            );
            assert!(!r.outcome.stdout.contains("returned"), "{c}: {name}");
        });
    }
}
