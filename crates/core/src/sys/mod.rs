//! Safe wrappers around the raw system calls the jail needs. This module (with its submodules) is
//! the only place in pysandbox with `unsafe`; every block states the invariant it relies on.

pub(crate) mod landlock;
pub(crate) mod seccomp;

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cpath(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// The result of [`clone_jail`] / [`fork_pidfd`], seen from each side.
pub(crate) enum Forked {
    Parent { pid: libc::pid_t, pidfd: OwnedFd },
    Child,
}

/// `clone(2)` without a new stack (fork semantics) with the given namespace flags, returning a pidfd
/// of the child to the parent (`CLONE_PIDFD`).
///
/// Must only be called from a single-threaded process: the child continues with a copy of the
/// parent's memory, and locks held by other threads would stay locked forever. The CLI and the
/// worker binaries are single-threaded; library users in threaded programs spawn the binary.
pub(crate) fn clone_pidfd(ns_flags: libc::c_int) -> io::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let flags = (ns_flags | libc::CLONE_PIDFD | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: raw clone with a NULL stack behaves like fork(2): the child gets a copy of the address
    // space. `pidfd` is a valid out-pointer for CLONE_PIDFD (x86_64 argument order: flags, stack,
    // parent_tid, child_tid, tls). The caller guarantees the process is single-threaded.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            &mut pidfd as *mut libc::c_int,
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match cvt_long(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: pid as libc::pid_t,
            // SAFETY: the kernel stored a fresh pidfd we now own.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// A fork that also returns a pidfd of the child.
pub(crate) fn fork_pidfd() -> io::Result<Forked> {
    clone_pidfd(0)
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// An anonymous, sealed, read-only-by-contract memory file holding `data` (the code to run).
pub(crate) fn sealed_memfd(name: &CStr, data: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string; flags are valid.
    let fd = cvt(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: fresh fd owned by us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    io::Write::write_all(&mut file, data)?;
    io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a valid fd with an integer argument.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(OwnedFd::from(file))
}

/// Open `path` with `O_PATH | O_CLOEXEC` (no permission to read needed, just a handle for a bind
/// mount source or a Landlock rule).
pub(crate) fn open_path(path: &Path) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: valid C string and flags.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) })?;
    // SAFETY: fresh fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat2(AT_FDCWD, path, {O_PATH | O_CLOEXEC, resolve: RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS})` (Linux 5.6): like [`open_path`], but a symlink in any component,
/// the last one included, fails the call with `ELOOP` instead of being followed.
pub(crate) fn open_path_no_symlinks(path: &Path) -> io::Result<OwnedFd> {
    openat2(
        None,
        path,
        libc::O_PATH,
        0,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// `openat2(dir or AT_FDCWD, path, {flags | O_CLOEXEC, mode, resolve})` (Linux 5.6).
pub(crate) fn openat2(
    dir: Option<BorrowedFd>,
    path: &Path,
    flags: libc::c_int,
    mode: u64,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // struct open_how of linux/openat2.h (libc's is non-exhaustive, so not constructible here).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let c = cpath(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode,
        resolve,
    };
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `c` is a valid C string and `how` a valid struct open_how of the size passed; both
    // outlive the call.
    let fd = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    // SAFETY: fresh fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `mkdirat(dir, name, mode)`.
pub(crate) fn mkdirat(dir: BorrowedFd, name: &Path, mode: libc::mode_t) -> io::Result<()> {
    let c = cpath(name)?;
    // SAFETY: valid descriptor and C string.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) })?;
    Ok(())
}

/// `unlinkat(dir, name, 0)`.
pub(crate) fn unlinkat(dir: BorrowedFd, name: &Path) -> io::Result<()> {
    let c = cpath(name)?;
    // SAFETY: valid descriptor and C string.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) })?;
    Ok(())
}

pub(crate) fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let src = source.map(cpath).transpose()?;
    let tgt = cpath(target)?;
    // SAFETY: every pointer is either NULL or a valid NUL-terminated string that outlives the call.
    cvt(unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            tgt.as_ptr(),
            fstype.map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    })?;
    Ok(())
}

/// Mount flags (`MS_*`) currently set on the mount holding `path`, as far as they are locked in a
/// user namespace (nosuid, nodev, noexec, rdonly, atime flags): a read-only remount must keep them.
pub(crate) fn locked_mount_flags(path: &Path) -> io::Result<libc::c_ulong> {
    let c = cpath(path)?;
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    cvt(unsafe { libc::statvfs(c.as_ptr(), &mut st) })?;
    let map = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(map
        .iter()
        .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
        .fold(0, |acc, (_, ms)| acc | ms))
}

pub(crate) fn pivot_root_here() -> io::Result<()> {
    let dot = c".";
    // SAFETY: both arguments are valid C strings. pivot_root(".", ".") stacks the old root on top
    // of the new one at "/", to be detached right after (see `jail`).
    cvt_long(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) })?;
    // SAFETY: valid C string; MNT_DETACH is a valid flag.
    cvt(unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) })?;
    Ok(())
}

pub(crate) fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe a valid byte buffer.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

pub(crate) fn set_ids(uid: libc::uid_t, gid: libc::gid_t, drop_groups: bool) -> io::Result<()> {
    if drop_groups {
        // SAFETY: an empty group list is valid.
        cvt(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    }
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::setresgid(gid, gid, gid) })?;
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::setresuid(uid, uid, uid) })?;
    Ok(())
}

pub(crate) fn geteuid() -> libc::uid_t {
    // SAFETY: always succeeds.
    unsafe { libc::geteuid() }
}

pub(crate) fn getegid() -> libc::gid_t {
    // SAFETY: always succeeds.
    unsafe { libc::getegid() }
}

pub(crate) fn set_pdeathsig_kill() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    cvt(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    Ok(())
}

pub(crate) fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

pub(crate) fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

pub(crate) fn setrlimit(
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: valid pointer to an initialised rlimit.
    cvt(unsafe { libc::setrlimit(resource, &lim) })?;
    Ok(())
}

pub(crate) fn getrlimit(resource: libc::__rlimit_resource_t) -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer to an rlimit for the duration of the call.
    cvt(unsafe { libc::getrlimit(resource, &mut lim) })?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Whether `len` more bytes of address space can be mapped now: an inaccessible anonymous
/// mapping, made and removed at once (`RLIMIT_AS` counts it as any other).
pub(crate) fn can_map(len: usize) -> bool {
    // SAFETY: a new private anonymous mapping at an address the kernel chooses overlaps no
    // existing memory and is never accessed.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: `p` and `len` are exactly the mapping made above, which nothing else refers to.
    unsafe { libc::munmap(p, len) };
    true
}

pub(crate) fn setsid() -> io::Result<()> {
    // SAFETY: no arguments.
    cvt(unsafe { libc::setsid() })?;
    Ok(())
}

/// Reset every signal disposition to its default and unblock all signals: ignored signals survive
/// execve (Rust ignores SIGPIPE), and the sandboxed program should start clean.
pub(crate) fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is a valid disposition for every catchable signal; errors (invalid
        // numbers reserved by libc) are harmless and ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty set is valid; sigprocmask with a valid set pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Place `fds[i]` at descriptor number `i` for every i, then close every other descriptor.
/// The resulting descriptors are inheritable (no CLOEXEC).
pub(crate) fn arrange_fds(fds: &[RawFd]) -> io::Result<()> {
    // First move everything above the target range so that dup2 never clobbers a source.
    let base = 64 + fds.len() as libc::c_int;
    let mut high = Vec::with_capacity(fds.len());
    for &fd in fds {
        // SAFETY: fcntl duplicating a descriptor we were given.
        high.push(cvt(unsafe {
            libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, base)
        })?);
    }
    for (i, &fd) in high.iter().enumerate() {
        // SAFETY: dup2 onto a small descriptor number; both are valid.
        cvt(unsafe { libc::dup2(fd, i as libc::c_int) })?;
    }
    close_from(fds.len() as libc::c_uint)
}

/// The open descriptors >= `first` (below the open-files limit, at most 4096 looked at).
pub(crate) fn open_fds_from(first: RawFd) -> Vec<RawFd> {
    let soft = getrlimit(libc::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    let limit = soft.clamp(first as u64, 4096) as RawFd;
    (first..limit)
        // SAFETY: F_GETFD only reads the descriptor's flags; a closed number fails with EBADF.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect()
}

/// `dup3(from, to, O_CLOEXEC)`: `to` becomes a copy of `from` (whatever it was is closed).
pub(crate) fn dup_onto(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup3 takes plain integers; `to` is a number the caller owns.
    cvt(unsafe { libc::dup3(from, to, libc::O_CLOEXEC) })?;
    Ok(())
}

/// Close every descriptor >= `first`.
pub(crate) fn close_from(first: libc::c_uint) -> io::Result<()> {
    // SAFETY: close_range takes plain integers; closing descriptors nobody else uses here.
    cvt_long(unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) })?;
    Ok(())
}

/// Close every descriptor not in `keep`.
pub(crate) fn close_all_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<libc::c_uint> = keep.iter().map(|&fd| fd as libc::c_uint).collect();
    keep.sort_unstable();
    let mut next: libc::c_uint = 0;
    for fd in keep {
        if fd > next {
            // SAFETY: closing a range of descriptors not in the keep list.
            cvt_long(unsafe { libc::syscall(libc::SYS_close_range, next, fd - 1, 0) })?;
        }
        next = fd + 1;
    }
    close_from(next)
}

pub(crate) fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: path, argv and envp are NUL-terminated strings in NULL-terminated arrays that live
    // across the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// What std's runtime start does that a program which replaces it still needs: descriptors 0, 1
/// and 2 made valid (a closed one becomes /dev/null, so that no file opened later takes its
/// number and receives the output meant for it), and `SIGPIPE` ignored (a closed pipe is an
/// error to handle, not a death). Aborts, as std does, if /dev/null cannot be opened.
pub(crate) fn start_process() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    let closed: Vec<RawFd> = loop {
        // SAFETY: three valid pollfd structures that live across the call; no timeout.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
        if r >= 0 {
            break fds
                .iter()
                .filter(|p| p.revents & libc::POLLNVAL != 0)
                .map(|p| p.fd)
                .collect();
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // poll unusable: ask each descriptor instead.
            _ => {
                break (0..3)
                    .filter(|fd| {
                        // SAFETY: F_GETFD only reads the descriptor's flags.
                        let flags = unsafe { libc::fcntl(*fd, libc::F_GETFD) };
                        flags == -1
                            && io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
                    })
                    .collect();
            }
        }
    };
    for fd in closed {
        // SAFETY: a constant NUL-terminated path; the descriptor is deliberately left open.
        let got = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if got != fd {
            std::process::abort();
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN involves no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and skips atexit handlers, which belong to the parent's copy.
    unsafe { libc::_exit(code) }
}

/// Resource usage and status of a reaped child.
pub(crate) struct Reaped {
    pub pid: libc::pid_t,
    pub status: libc::c_int,
    pub rusage: libc::rusage,
}

/// An all-zero `rusage` (a plain C struct of integers).
#[cfg(test)]
pub(crate) fn zeroed_rusage() -> libc::rusage {
    // SAFETY: rusage consists of integers and timevals only; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// `wait4(pid, ..., flags)`; Ok(None) when `WNOHANG` found nothing.
pub(crate) fn wait4(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<Reaped>> {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid out-pointers.
        let ret = unsafe { libc::wait4(pid, &mut status, flags, &mut rusage) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if ret == 0 {
            return Ok(None);
        }
        return Ok(Some(Reaped {
            pid: ret,
            status,
            rusage,
        }));
    }
}

pub(crate) fn pidfd_kill(pidfd: BorrowedFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd and no siginfo.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// Whether `fd` is readable within `timeout_ms` (0: now; -1: waiting as long as it takes): a
/// pipe with data or at its end, a pidfd whose process has ended. An interrupted wait is
/// `Ok(false)`.
pub(crate) fn readable(fd: RawFd, timeout_ms: libc::c_int) -> io::Result<bool> {
    let mut p = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    Ok(poll(&mut p, timeout_ms)? > 0 && p[0].revents & libc::POLLIN != 0)
}

extern "C" {
    /// The C library's standard output stream (`<stdio.h>`).
    static stdout: *mut libc::FILE;
}

/// The C library's `stdout` made unbuffered (what `python -u` does to it): what native code
/// prints through stdio is written at once, so a process that ends with `_exit` loses none.
pub(crate) fn unbuffer_stdout() {
    // SAFETY: reading the C library's stream pointer, which it sets before main; setvbuf with
    // no buffer of ours to keep alive. The stream may have been written already (a preload or
    // the warmup printing through C): glibc's setvbuf flushes what it holds before switching.
    unsafe {
        if !stdout.is_null() {
            libc::setvbuf(stdout, std::ptr::null_mut(), libc::_IONBF, 0);
        }
    }
}

/// poll(2) over `fds` (fd, events) filling revents; returns the number ready. EINTR → Ok(0).
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
    // SAFETY: `fds` is a valid mutable slice of pollfd structures.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if ret == -1 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(ret as usize)
}

pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with integer arguments; an invalid fd yields EBADF.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

pub(crate) fn set_nonblocking(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: fcntl on a valid descriptor with integer arguments.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: same.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Make `fd` non-blocking unless it is already (one fcntl when it is).
pub(crate) fn ensure_nonblocking(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: fcntl on a valid descriptor with integer arguments.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: same.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// read(2) into `buf`; Ok(0) is end of file, WouldBlock surfaces as an error.
pub(crate) fn read(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<usize> {
    read_raw(fd.as_raw_fd(), buf)
}

/// read(2) on a raw descriptor number (after fork, where the jail's init holds inherited numbers).
/// A closed or invalid descriptor is an error (EBADF), never undefined behaviour.
pub(crate) fn read_raw(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// write(2) of the whole buffer to a raw descriptor (used after fork, where std's handles are not
/// ours to use).
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// One write(2); may write less than `buf` (or fail with WouldBlock on a non-blocking pipe).
pub(crate) fn write_some(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for reads of its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Number of threads of the calling process (from /proc/self/stat is too slow; use the task dir).
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// Run `f` in a forked child and return its exit code (tests of layers that restrict the calling
/// process for good). The child only runs `f` and exits without unwinding.
#[cfg(test)]
pub(crate) fn in_child(f: impl FnOnce() -> i32) -> io::Result<i32> {
    // SAFETY: fork has no memory-safety preconditions; in the child only `f` runs before _exit,
    // and glibc keeps malloc usable in the child of a threaded parent.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        let code = f();
        exit_now(code);
    }
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer for the duration of the call.
    cvt(unsafe { libc::waitpid(pid, &mut status, 0) })?;
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Ok(128 + libc::WTERMSIG(status))
    }
}

/// `mount_setattr(path, AT_RECURSIVE, {attr_set: set})`: add mount attributes (`MOUNT_ATTR_*`) to
/// the mount at `path` and every mount below it, in one call.
pub(crate) fn mount_setattr_recursive(path: &Path, set: u64) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let c = cpath(path)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `c` is a valid C string and `attr` a valid struct mount_attr of the size passed;
    // both outlive the call.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// Create an empty regular file (a mount point) without opening it.
pub(crate) fn mknod_file(path: &Path) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: valid C string; S_IFREG with dev 0 creates a plain empty file.
    cvt(unsafe { libc::mknod(c.as_ptr(), libc::S_IFREG | 0o644, 0) })?;
    Ok(())
}

/// `linkat(from, to, AT_SYMLINK_FOLLOW)`: a hard link to what `from` names (through a
/// `/proc/self/fd` magic link: the open file's inode).
pub(crate) fn link_following(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (cpath(from)?, cpath(to)?);
    // SAFETY: valid C strings; linkat only reads them.
    cvt(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })?;
    Ok(())
}

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`: a channel that keeps message boundaries
/// and carries descriptors (a warm worker's control channel).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// send(2) of one message with `MSG_NOSIGNAL`: a closed peer is `EPIPE`, not a SIGPIPE that
/// would kill the host process.
pub(crate) fn send(fd: BorrowedFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for reads of its length.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Most descriptors accepted with one message; the kernel drops any beyond them (`MSG_CTRUNC`).
pub(crate) const MAX_PASSED_FDS: usize = 8;

/// One message received.
pub(crate) struct Received {
    /// Bytes of the message; 0 is end of file.
    pub len: usize,
    /// The descriptors it carried (`SCM_RIGHTS`), received close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// The message or its descriptors did not fit.
    pub truncated: bool,
}

/// recvmsg(2) of one message into `buf`, with up to [`MAX_PASSED_FDS`] descriptors.
pub(crate) fn recv_with_fds(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<Received> {
    // Control buffer: 8-byte aligned (as `cmsghdr` requires), larger than
    // CMSG_SPACE(MAX_PASSED_FDS * 4) = 48 bytes.
    let mut control = [0u64; 16];
    // SAFETY: CMSG_SPACE only computes a size.
    let space =
        unsafe { libc::CMSG_SPACE((MAX_PASSED_FDS * std::mem::size_of::<libc::c_int>()) as u32) };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = (space as usize).min(std::mem::size_of_val(&control));
    let n = loop {
        // SAFETY: `msg` points at `iov` (valid for `buf`'s length) and `control` (valid for
        // `msg_controllen` bytes); all outlive the call.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within the
    // `msg_controllen` it set; each SCM_RIGHTS payload holds `cmsg_len - CMSG_LEN(0)` bytes of
    // descriptors that were installed in this process for us to own.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const libc::c_int;
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received {
        len: n,
        fds,
        truncated: msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0,
    })
}

/// shutdown(2) of the socket behind `fd` (every descriptor of it): `libc::SHUT_WR` and the peer
/// reads end of file; `SHUT_RDWR` also ends our reads.
pub(crate) fn shutdown(fd: BorrowedFd, how: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), how) })?;
    Ok(())
}

/// Take ownership of a descriptor number handed over by a caller outside Rust (the zygote
/// library's C entry points). Fails with `EBADF` if it is not open.
pub(crate) fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl with F_GETFD only checks that the descriptor is open.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the descriptor is open, and the caller's contract hands its ownership to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read everything a descriptor holds from offset 0 (a sealed memfd: the zygote's
/// configuration, read by the bootstrap too), without moving its offset.
pub(crate) fn read_whole(fd: BorrowedFd) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                out.len() as libc::off_t,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// `open(2)` of `path` with `flags` (close-on-exec added).
pub(crate) fn open(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: valid C string and flags; no mode is needed without O_CREAT.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: fresh fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// fork(2) through glibc (its at-fork bookkeeping runs: the child goes on running the
/// interpreter that called us). The caller must be single-threaded.
pub(crate) fn fork() -> io::Result<Option<libc::pid_t>> {
    // SAFETY: fork has no memory-safety preconditions; the zygote that calls it has one thread,
    // so no lock can be held by a thread that does not exist in the child.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 { None } else { Some(pid) })
}

/// `pidfd_open(pid, 0)`.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The process id (in the caller's PID namespace) a pidfd refers to, from
/// `/proc/self/fdinfo` (`None` once the process has been reaped, or without /proc).
pub(crate) fn pidfd_pid(pidfd: BorrowedFd) -> Option<libc::pid_t> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    let pid: libc::pid_t = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))?
        .trim()
        .parse()
        .ok()?;
    (pid > 0).then_some(pid)
}

/// `setns(2)`.
pub(crate) fn setns(fd: BorrowedFd, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we hold.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), nstype) })?;
    Ok(())
}

/// `unshare(2)`.
pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    cvt(unsafe { libc::unshare(flags) })?;
    Ok(())
}

/// Whether the calling process has one thread, asked of the kernel without `/proc` (a jail has
/// none): `unshare(CLONE_VM)` is refused with `EINVAL` by a process with another thread or
/// another process sharing its memory, and is a no-op otherwise ("not implemented, but pretend
/// it works if there is nothing to unshare": `check_unshare_flags` in kernel/fork.c).
pub(crate) fn single_threaded() -> io::Result<bool> {
    match unshare(libc::CLONE_VM) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Move the mount at `from` onto a new directory `name` (mode 0700) of the directory `dir` (an
/// `O_PATH` descriptor, which may be covered by other mounts): `fchdir` to `dir`, `mkdir`,
/// `mount(from, name, MS_MOVE)`, and back to `/`.
pub(crate) fn move_mount_into(from: &Path, dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    let from = cpath(from)?;
    // SAFETY: a valid descriptor; fchdir accepts O_PATH directories.
    cvt(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
    // SAFETY: a valid C string (relative to the working directory, `dir`).
    let r = cvt(unsafe { libc::mkdir(name.as_ptr(), 0o700) }).and_then(|_| {
        // SAFETY: valid C strings; MS_MOVE takes no filesystem type or data.
        cvt(unsafe {
            libc::mount(
                from.as_ptr(),
                name.as_ptr(),
                std::ptr::null(),
                libc::MS_MOVE,
                std::ptr::null(),
            )
        })
    });
    // SAFETY: valid C string.
    cvt(unsafe { libc::chdir(c"/".as_ptr()) })?;
    r.map(|_| ())
}

/// Whether the filesystem at `path` holds anything beyond its root: more than one inode in use,
/// or any block (`statfs`).
pub(crate) fn filesystem_in_use(path: &Path) -> io::Result<bool> {
    let c = cpath(path)?;
    // SAFETY: zeroed statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    cvt(unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    Ok(st.f_files.saturating_sub(st.f_ffree) > 1 || st.f_blocks != st.f_bfree)
}

/// `umount2(path, MNT_DETACH)`.
pub(crate) fn umount_detach(path: &Path) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: valid C string; MNT_DETACH is a valid flag.
    cvt(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) })?;
    Ok(())
}

/// Drop every capability of the calling thread (effective, permitted, inheritable), with
/// `capset(2)` (version 3: two 32-bit words per set).
pub(crate) fn drop_all_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `header` and `data` are valid structures of the layout capset(2) takes for
    // version 3 (a header and two data words), alive across the call.
    cvt_long(unsafe {
        libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr())
    })?;
    Ok(())
}

/// Lock the securebits so that uid 0 never gets capabilities back (`SECBIT_NOROOT`,
/// `SECBIT_NO_SETUID_FIXUP` and their locks), then drop every capability from the bounding set.
/// Needs `CAP_SETPCAP` (the zygote, uid 0 of its user namespace).
pub(crate) fn lock_securebits_and_bounding_set() -> io::Result<()> {
    const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
    const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
    const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
    let bits = SECBIT_NOROOT
        | SECBIT_NOROOT_LOCKED
        | SECBIT_NO_SETUID_FIXUP
        | SECBIT_NO_SETUID_FIXUP_LOCKED
        | SECBIT_KEEP_CAPS_LOCKED;
    // SAFETY: prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) })?;
    for cap in 0..64 as libc::c_ulong {
        // SAFETY: prctl with integer arguments; EINVAL past the last capability the kernel knows.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if ret != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(err);
        }
    }
    Ok(())
}

/// Send one message carrying `fds` (`SCM_RIGHTS`) with `MSG_NOSIGNAL`.
pub(crate) fn send_with_fds(sock: BorrowedFd, data: &[u8], fds: &[BorrowedFd]) -> io::Result<()> {
    let raw: Vec<libc::c_int> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut control = [0u64; 16];
    let payload = std::mem::size_of_val(raw.as_slice());
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    if space > std::mem::size_of_val(&control) || fds.len() > MAX_PASSED_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors",
        ));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer is 8-byte aligned and at least `space` bytes long, so the
        // first header and its `payload` bytes of data fit in it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload as u32) as usize;
            std::ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), payload);
        }
    }
    loop {
        // SAFETY: `msg` points at `iov` (valid for `data`) and `control`; all outlive the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `kill(2)` (tests of layers that scope signals).
#[cfg(test)]
pub(crate) fn kill_pid(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    cvt(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}
