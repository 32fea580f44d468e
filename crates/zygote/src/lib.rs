//! `libpysandbox_zygote.so`: loaded once by a warm worker's zygote (`bootstrap/warm.py`, with
//! ctypes) so that every process, namespace and isolation call of the warm path is made by the
//! same Rust code as the cold path's (`pysandbox_core::isolate`), not by Python with syscall
//! numbers. Its entry points take and return integers only, but `pysandbox_zygote_serve`, which
//! also takes the interpreter's after-fork function.
//!
//! `#[no_mangle]` is what exports a symbol for ctypes to find; the `unsafe_code` lint counts it,
//! hence the one `allow` per entry point. The only other unsafe code is the call of that
//! after-fork function.
#![deny(unsafe_code)]

use std::os::raw::c_int;

/// The frame protocol this library speaks; the bootstrap checks it against its configuration.
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn pysandbox_zygote_protocol() -> c_int {
    pysandbox_core::protocol::VERSION as c_int
}

/// Serve the host: takes ownership of `config_fd` (the zygote's configuration) and `ctl_fd`
/// (the control socket). In a child, once it is isolated, calls `after_fork` (the bootstrap
/// passes the interpreter's `PyOS_AfterFork_Child`; the library is a `PyDLL`, so the GIL is held
/// as `os.fork()` holds it), then returns 1 for a fresh request child or 2 for a session child,
/// plus 4 if a request is already waiting on descriptor 3; 0 in the zygote once the host has
/// gone; -1 if the zygote could not start. A child so makes no call through ctypes before its
/// request: a first ctypes call in a fresh child copies some 60 pages.
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn pysandbox_zygote_serve(
    config_fd: c_int,
    ctl_fd: c_int,
    after_fork: Option<unsafe extern "C" fn()>,
) -> c_int {
    use pysandbox_core::warm;
    let role = warm::serve_inside(config_fd, ctl_fd);
    if role != warm::ROLE_REQUEST && role != warm::ROLE_SESSION {
        return role;
    }
    if let Some(f) = after_fork {
        // SAFETY: the bootstrap passes the address of `PyOS_AfterFork_Child` of the interpreter
        // this library is loaded in, a `void (void)` function, and calls this entry point with
        // the GIL held (PyDLL): the state `os.fork()` calls it in, in the child.
        unsafe { f() };
    }
    warm::trace::mark(warm::trace::BOOTSTRAP_PHASES[0]);
    match warm::request_waiting(warm::REQUEST_FD, 0) {
        Ok(true) => role | warm::ROLE_WAITING,
        _ => role,
    }
}

/// A traced child (`PYSANDBOX_TRACE_PHASES`): the bootstrap's phase `phase` (an index of
/// `trace::BOOTSTRAP_PHASES`) has just ended. A no-op otherwise, or for an unknown index.
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn pysandbox_zygote_mark(phase: c_int) {
    use pysandbox_core::warm::trace;
    if let Some(name) = usize::try_from(phase)
        .ok()
        .and_then(|i| trace::BOOTSTRAP_PHASES.get(i))
    {
        trace::mark(name);
    }
}

/// A traced child: write its phases to `fd` (the report pipe) as one frame. 0, or -1 if the
/// write failed. Nothing is written unless the child is traced.
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn pysandbox_zygote_trace(fd: c_int) -> c_int {
    match pysandbox_core::warm::trace::send_trace(fd) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// Whether `fd` has something to read (1), nothing within `timeout_ms` (0; -1 waits), or cannot
/// be asked (-1): a child takes its warm-up only while no request waits.
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn pysandbox_zygote_readable(fd: c_int, timeout_ms: c_int) -> c_int {
    match pysandbox_core::warm::request_waiting(fd, timeout_ms) {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(_) => -1,
    }
}
