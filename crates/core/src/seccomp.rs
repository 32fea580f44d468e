//! The jail's seccomp-bpf filter: an allowlist, each entry with the reason CPython needs it.
//!
//! The decisions, for every system call of the interpreter and its children (the first rule
//! that names a call decides it):
//! 1. the architecture must be x86-64, and the number must not carry the x32 bit: anything else
//!    (i386 `int 0x80`, x32) kills the process, so no second syscall table is reachable;
//! 2. calls that only an attacker makes (`ptrace`, `mount`, `unshare`, `bpf`, …) kill the process;
//! 3. calls inspected by argument: `clone` (no namespace flags), `socket` (only `AF_UNIX` without
//!    network), `ioctl` (no `TIOCSTI`/`TIOCLINUX`), `execve` (per [`ExecPolicy`]), `open`,
//!    `openat` and the chmod family (no set-id bits, [`MODE_CHECKED`]), `setsockopt` (buffer
//!    sizes ignored, [`BUFFER_SIZES`]); `clone3` answers `ENOSYS` because its flags live in memory
//!    a filter cannot read, and glibc then uses `clone`; `madvise`, `mremap`, `fcntl` and `prctl`
//!    with only the values CPython and its libraries use ([`ARG_FILTERED`]);
//! 4. the allowlist: what the traced workloads use (`tools/seccomp/trace_workloads.sh`,
//!    SECURITY.md "A smaller kernel surface"), at most 120 calls with the argument-filtered ones
//!    ([`counts`]);
//! 5. everything else fails with `EPERM`, so Python raises an ordinary `PermissionError` — among
//!    them the calls left out on purpose, with their reasons ([`REFUSED`]).
//!
//! The program checks 1, then finds the call's number by a binary search over the ranges of
//! numbers that share a decision (about 8 comparisons per call; [`program`]). It is built by a
//! small assembler ([`Asm`]); `program()` is public so the tests (and `pysandbox doctor`) can
//! inspect it, and a test checks that it decides as the plain list of checks did, on every
//! number and option.

use crate::sys;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Whether the code may start programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecPolicy {
    /// No `execve` at all (`EPERM`).
    Deny,
    /// Exactly one: the interpreter's own start, approved through a user-notification listener;
    /// once the listener is closed every later `execve` fails with `ENOSYS`.
    FirstOnly,
    /// Any (the `subprocess` feature).
    Allow,
}

#[derive(Debug, Clone, Copy)]
pub struct SeccompOptions {
    pub exec: ExecPolicy,
    /// Sockets of every family (the `network` feature); otherwise only `AF_UNIX`.
    pub network: bool,
    /// The filter of a warm worker's zygote (trusted code only): it may also `unshare` and
    /// `mount` (a PID and mount namespace and a private /tmp per request), set capabilities,
    /// Landlock and seccomp filters for its request children, which add the strict filter.
    pub zygote: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("installing the seccomp filter failed: {0} (is seccomp enabled in this kernel?)")]
    Install(io::Error),
    #[error("waiting for the interpreter's execve: {0}")]
    Notify(io::Error),
    #[error("the seccomp filter is invalid: {0}")]
    Program(String),
}

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Offsets in struct seccomp_data.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_low(i: u32) -> u32 {
    16 + 8 * i
}

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const RET_NOTIFY: u32 = libc::SECCOMP_RET_USER_NOTIF;
const fn ret_errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// Calls an interpreter never needs and an attacker wants: the process is killed.
const KILL: &[(i64, &str)] = &[
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_process_madvise, "process_madvise"),
    (libc::SYS_pidfd_getfd, "pidfd_getfd"),
    (libc::SYS_kcmp, "kcmp"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_chroot, "chroot"),
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_setns, "setns"),
    (libc::SYS_fsopen, "fsopen"),
    (libc::SYS_fsconfig, "fsconfig"),
    (libc::SYS_fsmount, "fsmount"),
    (libc::SYS_fspick, "fspick"),
    (libc::SYS_move_mount, "move_mount"),
    (libc::SYS_open_tree, "open_tree"),
    (libc::SYS_mount_setattr, "mount_setattr"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_acct, "acct"),
    (libc::SYS_quotactl, "quotactl"),
    (libc::SYS_settimeofday, "settimeofday"),
    (libc::SYS_clock_settime, "clock_settime"),
    (libc::SYS_clock_adjtime, "clock_adjtime"),
    (libc::SYS_adjtimex, "adjtimex"),
    (libc::SYS_iopl, "iopl"),
    (libc::SYS_ioperm, "ioperm"),
    (libc::SYS_syslog, "syslog"),
    (libc::SYS_lookup_dcookie, "lookup_dcookie"),
    (libc::SYS_vhangup, "vhangup"),
    (libc::SYS_uselib, "uselib"),
    (libc::SYS_modify_ldt, "modify_ldt"),
];

/// What the traced workloads use (SECURITY.md, "A smaller kernel surface";
/// tools/seccomp/trace_workloads.sh): every call here was made under the filter by the
/// interpreter, numpy/pandas/matplotlib/pillow, the features or the warm pool ("workloads"), or
/// by CPython's own regression tests of a module real programs use ("test_x"). Most frequent
/// first.
const ALLOW: &[(i64, &str)] = &[
    (libc::SYS_read, "reading files and pipes (workloads)"),
    (libc::SYS_write, "writing output (workloads)"),
    (libc::SYS_futex, "locks: the GIL, threads (workloads)"),
    (
        libc::SYS_mmap,
        "memory allocation, shared libraries, mmap (workloads)",
    ),
    (libc::SYS_munmap, "freeing memory (workloads)"),
    (libc::SYS_brk, "malloc's heap (workloads)"),
    (
        libc::SYS_mprotect,
        "the dynamic loader, thread stacks' guard pages (workloads)",
    ),
    (
        libc::SYS_newfstatat,
        "os.stat, the import system: glibc's stat, lstat and fstat (workloads)",
    ),
    (
        libc::SYS_fstat,
        "fstat of Rust's std in a warm zygote (workloads)",
    ),
    (libc::SYS_close, "closing descriptors (workloads)"),
    (
        libc::SYS_close_range,
        "subprocess and the jail closing inherited descriptors (workloads)",
    ),
    (libc::SYS_lseek, "file positions (workloads)"),
    (
        libc::SYS_pread64,
        "positional reads: the dynamic loader, sqlite3 (workloads)",
    ),
    (libc::SYS_pwrite64, "positional writes: sqlite3 (workloads)"),
    (
        libc::SYS_writev,
        "vectored writes: glibc's fatal-error messages, C libraries (test_os)",
    ),
    (libc::SYS_getdents64, "os.listdir, os.scandir (workloads)"),
    (libc::SYS_getcwd, "os.getcwd (workloads)"),
    (libc::SYS_chdir, "os.chdir, the jail's start (workloads)"),
    (
        libc::SYS_access,
        "os.access, the dynamic loader (workloads)",
    ),
    (
        libc::SYS_readlink,
        "os.readlink, sys.executable (workloads)",
    ),
    (
        libc::SYS_fdatasync,
        "sqlite3's commits (workloads), os.fdatasync",
    ),
    (libc::SYS_fsync, "os.fsync, sqlite3's journal (test_os)"),
    (libc::SYS_ftruncate, "os.ftruncate, mmap.resize (workloads)"),
    (
        libc::SYS_flock,
        "fcntl.flock: lock-file libraries (test_fcntl)",
    ),
    (libc::SYS_mkdir, "os.mkdir, tempfile.mkdtemp (workloads)"),
    (
        libc::SYS_rmdir,
        "os.rmdir, shutil.rmtree (test_tempfile, test_shutil)",
    ),
    (libc::SYS_unlink, "os.unlink (workloads)"),
    (
        libc::SYS_unlinkat,
        "shutil.rmtree, TemporaryDirectory's cleanup (test_tempfile, test_shutil)",
    ),
    (libc::SYS_rename, "os.rename (workloads)"),
    (libc::SYS_link, "os.link, sqlite3 (workloads)"),
    (libc::SYS_symlink, "os.symlink (workloads)"),
    (
        libc::SYS_fchown,
        "sqlite3 giving its journal the database's owner when uid 0 (warm workloads)",
    ),
    (libc::SYS_umask, "os.umask (test_os, test_tempfile)"),
    (
        libc::SYS_utimensat,
        "os.utime, shutil.copystat (test_shutil, test_os)",
    ),
    (libc::SYS_statfs, "os.statvfs (workloads)"),
    (libc::SYS_fstatfs, "os.fstatvfs, fpathconf (test_os)"),
    (libc::SYS_dup, "os.dup in C libraries (test_os)"),
    (libc::SYS_dup2, "os.dup2 (workloads)"),
    (libc::SYS_dup3, "os.dup2 with inheritable=False (workloads)"),
    (libc::SYS_pipe2, "os.pipe, subprocess (workloads)"),
    (libc::SYS_sendfile, "shutil.copyfile (test_shutil)"),
    (libc::SYS_rt_sigaction, "signal handlers (workloads)"),
    (
        libc::SYS_rt_sigprocmask,
        "signal masks, threads (workloads)",
    ),
    (
        libc::SYS_rt_sigreturn,
        "returning from a signal handler (workloads)",
    ),
    (libc::SYS_rt_sigpending, "signal.sigpending (workloads)"),
    (libc::SYS_rt_sigtimedwait, "signal.sigtimedwait (workloads)"),
    (
        libc::SYS_sigaltstack,
        "faulthandler's stack, stack-overflow handling (test_faulthandler)",
    ),
    (
        libc::SYS_kill,
        "os.kill within the jail's PID namespace (workloads)",
    ),
    (libc::SYS_tgkill, "signals to threads (workloads)"),
    (libc::SYS_getpid, "os.getpid (workloads)"),
    (libc::SYS_getppid, "os.getppid (workloads)"),
    (
        libc::SYS_gettid,
        "threading.get_native_id, glibc (workloads)",
    ),
    (libc::SYS_getuid, "os.getuid (workloads)"),
    (libc::SYS_geteuid, "os.geteuid (workloads)"),
    (libc::SYS_getgid, "os.getgid (workloads)"),
    (libc::SYS_getegid, "os.getegid (workloads)"),
    (
        libc::SYS_capget,
        "reading the (empty) capability sets: libcap, the warm child's check (tests/warm.rs)",
    ),
    (
        libc::SYS_getpgid,
        "os.killpg(os.getpgid(pid)), subprocess's process groups (test_subprocess)",
    ),
    (
        libc::SYS_getpgrp,
        "os.getpgrp (test_subprocess, test_posix)",
    ),
    (
        libc::SYS_getsid,
        "os.getsid (test_subprocess start_new_session)",
    ),
    (
        libc::SYS_setpgid,
        "subprocess's process_group, shells (test_subprocess)",
    ),
    (
        libc::SYS_setsid,
        "subprocess start_new_session, the jail's start (workloads)",
    ),
    (libc::SYS_uname, "platform, os.uname (workloads)"),
    (
        libc::SYS_prlimit64,
        "resource.getrlimit/setrlimit (can only lower hard limits) (workloads)",
    ),
    (libc::SYS_getrusage, "resource.getrusage (workloads)"),
    (libc::SYS_times, "os.times (workloads)"),
    (
        libc::SYS_clock_gettime,
        "time.process_time, clocks the vDSO does not serve (workloads)",
    ),
    (libc::SYS_clock_getres, "time.get_clock_info (test_time)"),
    (
        libc::SYS_gettimeofday,
        "the vDSO's fallback where the clock source has none (kvm-clock, hyperv)",
    ),
    (libc::SYS_clock_nanosleep, "time.sleep (workloads)"),
    (libc::SYS_alarm, "signal.alarm (test_signal)"),
    (libc::SYS_setitimer, "signal.setitimer (workloads)"),
    (
        libc::SYS_getrandom,
        "os.urandom, hash seeds, numpy (workloads)",
    ),
    (libc::SYS_set_robust_list, "thread start, glibc (workloads)"),
    (libc::SYS_set_tid_address, "thread start, glibc (workloads)"),
    (
        libc::SYS_rseq,
        "restartable sequences, glibc's thread start (workloads)",
    ),
    (libc::SYS_arch_prctl, "thread-local storage (workloads)"),
    (
        libc::SYS_sched_getaffinity,
        "os.sched_getaffinity, OpenBLAS (workloads)",
    ),
    (
        libc::SYS_sched_yield,
        "spinning threads of OpenMP and OpenBLAS (test_threading); a warm child's yield after its \
         answer (bootstrap/warm.py)",
    ),
    (
        libc::SYS_restart_syscall,
        "restarting an interrupted call (workloads)",
    ),
    (libc::SYS_exit, "thread exit (workloads)"),
    (libc::SYS_exit_group, "process exit (workloads)"),
    (libc::SYS_wait4, "os.waitpid, subprocess (workloads)"),
    (
        libc::SYS_vfork,
        "subprocess via posix_spawn (workloads; fork is clone)",
    ),
    (libc::SYS_poll, "select.poll, subprocess (workloads)"),
    (libc::SYS_pselect6, "select.select (workloads)"),
    (libc::SYS_epoll_create1, "asyncio, selectors (workloads)"),
    (libc::SYS_epoll_ctl, "asyncio, selectors (workloads)"),
    (libc::SYS_epoll_wait, "asyncio, selectors (workloads)"),
    (
        libc::SYS_eventfd2,
        "os.eventfd, event loops of C libraries (test_os)",
    ),
    (
        libc::SYS_socketpair,
        "unix socket pairs: multiprocessing, asyncio (workloads)",
    ),
    (
        libc::SYS_connect,
        "socket.connect: the namespace and Landlock decide where (workloads)",
    ),
    (libc::SYS_bind, "socket.bind (workloads)"),
    (libc::SYS_listen, "socket.listen (workloads)"),
    (libc::SYS_accept4, "socket.accept (workloads)"),
    (libc::SYS_shutdown, "socket.shutdown (test_socket)"),
    (libc::SYS_sendto, "socket.send (workloads)"),
    (libc::SYS_recvfrom, "socket.recv (workloads)"),
    (
        libc::SYS_sendmsg,
        "socket.sendmsg, multiprocessing (workloads)",
    ),
    (
        libc::SYS_recvmsg,
        "socket.recvmsg, multiprocessing (workloads)",
    ),
    (
        libc::SYS_sendmmsg,
        "glibc's resolver: parallel A and AAAA queries (test_socket)",
    ),
    (libc::SYS_getsockname, "socket.getsockname (workloads)"),
    (libc::SYS_getpeername, "socket.getpeername (workloads)"),
    (libc::SYS_getsockopt, "socket.getsockopt (test_socket)"),
    (libc::SYS_msync, "mmap.flush (workloads)"),
];

/// Allowed unless the mode argument (index given) carries `S_ISUID` or `S_ISGID`: then `EPERM`.
/// The nosuid mounts only protect the jail itself; a set-id program planted in a writable
/// allowed path would run with the caller's (or the jail user's) identity for whoever starts it
/// on the host. `mode_t` is an `unsigned int`, so the argument's low word is all of it; `open`
/// and `openat` only use the mode with `O_CREAT` or `O_TMPFILE`, and glibc passes 0 otherwise.
const MODE_CHECKED: &[(i64, u32, &str)] = &[
    (
        libc::SYS_openat,
        3,
        "opening files (Landlock and the mount tree decide which)",
    ),
    (libc::SYS_open, 2, "opening files (old entry point)"),
    (libc::SYS_chmod, 1, "os.chmod"),
    (libc::SYS_fchmod, 1, "os.fchmod"),
    (libc::SYS_fchmodat, 2, "os.chmod"),
];

/// Left out of the allowlist on purpose (they fail with `EPERM`, like every call not listed),
/// with why: memory that `RLIMIT_AS` does not count, the host's state, a mode the filter cannot
/// vet.
const REFUSED: &[(i64, &str)] = &[
    (
        libc::SYS_memfd_create,
        "its pages are not counted by RLIMIT_AS once unmapped (a run with --memory 64M held 2 GiB in \
         memfds); tempfile and multiprocessing use /tmp, which tmp_size bounds",
    ),
    (
        libc::SYS_shmget,
        "SysV shared memory: segments are not counted by RLIMIT_AS once detached (2 GiB held with \
         --memory 64M) and outlive a request in a shared IPC namespace (a warm worker's)",
    ),
    (libc::SYS_shmat, "SysV shared memory (see shmget)"),
    (libc::SYS_shmdt, "SysV shared memory (see shmget)"),
    (libc::SYS_shmctl, "SysV shared memory (see shmget)"),
    (
        libc::SYS_semget,
        "SysV semaphores: objects outlive a request in a shared IPC namespace; \
         multiprocessing's locks are POSIX semaphores in /dev/shm (the jail's /tmp)",
    ),
    (libc::SYS_semop, "SysV semaphores (see semget)"),
    (libc::SYS_semtimedop, "SysV semaphores (see semget)"),
    (libc::SYS_semctl, "SysV semaphores (see semget)"),
    (
        libc::SYS_msgget,
        "SysV message queues: kernel memory outside RLIMIT_AS, objects outlive a request",
    ),
    (libc::SYS_msgsnd, "SysV message queues (see msgget)"),
    (libc::SYS_msgrcv, "SysV message queues (see msgget)"),
    (libc::SYS_msgctl, "SysV message queues (see msgget)"),
    (
        libc::SYS_mq_open,
        "POSIX message queues: kernel memory outside RLIMIT_AS (RLIMIT_MSGQUEUE is 0 as well)",
    ),
    (libc::SYS_mq_unlink, "POSIX message queues (see mq_open)"),
    (libc::SYS_mq_timedsend, "POSIX message queues (see mq_open)"),
    (libc::SYS_mq_timedreceive, "POSIX message queues (see mq_open)"),
    (libc::SYS_mq_notify, "POSIX message queues (see mq_open)"),
    (libc::SYS_mq_getsetattr, "POSIX message queues (see mq_open)"),
    (
        libc::SYS_sysinfo,
        "the host's uptime, load averages, RAM and task count; glibc's \
         sysconf(_SC_PHYS_PAGES) ignores the failure and returns an unspecified number",
    ),
    (
        libc::SYS_fchmodat2,
        "takes flags the filter cannot vet alongside a mode; glibc falls back to fchmodat",
    ),
    (
        libc::SYS_mknod,
        "device nodes, and regular files with set-id bits",
    ),
    (
        libc::SYS_mknodat,
        "device nodes, and regular files with set-id bits",
    ),
    (
        libc::SYS_creat,
        "a mode the filter would have to vet; glibc opens with openat",
    ),
    // Left out when the allowlist was cut to what the traced workloads use (issue 16): the
    // workload that needs each, if any.
    (
        libc::SYS_getitimer,
        "signal.getitimer: only test_signal",
    ),
    (
        libc::SYS_time,
        "unused: glibc's time() is served by the vDSO whatever the clock source",
    ),
    (
        libc::SYS_accept,
        "unused: the traced workloads' libc calls accept4 instead",
    ),
    (
        libc::SYS_epoll_create,
        "unused: the traced workloads' libc calls epoll_create1 instead",
    ),
    (
        libc::SYS_epoll_pwait,
        "unused: the traced workloads' libc calls epoll_wait instead",
    ),
    (
        libc::SYS_eventfd,
        "unused: the traced workloads' libc calls eventfd2 instead",
    ),
    (
        libc::SYS_fork,
        "unused: the traced workloads' libc calls clone instead",
    ),
    (
        libc::SYS_getrlimit,
        "unused: the traced workloads' libc calls prlimit64 instead",
    ),
    (
        libc::SYS_setrlimit,
        "unused: the traced workloads' libc calls prlimit64 instead",
    ),
    (
        libc::SYS_lstat,
        "unused: the traced workloads' libc calls newfstatat instead",
    ),
    (
        libc::SYS_stat,
        "unused: the traced workloads' libc calls newfstatat instead",
    ),
    (
        libc::SYS_nanosleep,
        "unused: the traced workloads' libc calls clock_nanosleep instead",
    ),
    (
        libc::SYS_pipe,
        "unused: the traced workloads' libc calls pipe2 instead",
    ),
    (
        libc::SYS_select,
        "unused: the traced workloads' libc calls pselect6 instead",
    ),
    (
        libc::SYS_ppoll,
        "unused: the traced workloads' libc calls poll instead",
    ),
    (
        libc::SYS_utime,
        "unused: the traced workloads' libc calls utimensat instead",
    ),
    (
        libc::SYS_utimes,
        "unused: the traced workloads' libc calls utimensat instead",
    ),
    (
        libc::SYS_futimesat,
        "unused: the traced workloads' libc calls utimensat instead",
    ),
    (
        libc::SYS_faccessat,
        "unused: the traced workloads' libc calls access instead",
    ),
    (
        libc::SYS_signalfd,
        "unused: the traced workloads' libc calls signalfd4 (itself unused) instead",
    ),
    (
        libc::SYS_renameat2,
        "unused: the traced workloads' libc calls rename instead",
    ),
    (
        libc::SYS_tkill,
        "unused: the traced workloads' libc calls tgkill instead",
    ),
    (
        libc::SYS_epoll_pwait2,
        "unused by every traced workload (glibc ≥ 2.35 only for epoll_pwait2())",
    ),
    (
        libc::SYS_statx,
        "unused on x86-64: glibc and musl stat with newfstatat, Rust's std falls back on EPERM",
    ),
    (
        libc::SYS_chown,
        "os.chown: only test_os/test_shutil/test_posix call it; the jail's user can only give its own files to itself",
    ),
    (
        libc::SYS_lchown,
        "os.lchown: only test_os/test_posix (see chown)",
    ),
    (
        libc::SYS_fchownat,
        "os.chown with dir_fd: only test_posix (see chown)",
    ),
    (
        libc::SYS_copy_file_range,
        "os.copy_file_range: only test_os; shutil copies with sendfile",
    ),
    (
        libc::SYS_splice,
        "os.splice: only test_os; the pipe-page splicing behind Dirty Pipe (CVE-2022-0847)",
    ),
    (
        libc::SYS_tee,
        "unused by every traced workload (pipe-page splicing, see splice)",
    ),
    (
        libc::SYS_faccessat2,
        "os.access with dir_fd, effective_ids or follow_symlinks=False: only test_os",
    ),
    (
        libc::SYS_fadvise64,
        "os.posix_fadvise: only test_os/test_posix",
    ),
    (
        libc::SYS_fallocate,
        "os.posix_fallocate: only test_posix",
    ),
    (
        libc::SYS_fchdir,
        "os.fchdir: only test_os/test_posix",
    ),
    (
        libc::SYS_get_robust_list,
        "unused by every traced workload (another thread's robust futex list)",
    ),
    (
        libc::SYS_getcpu,
        "unused: the vDSO serves sched_getcpu",
    ),
    (
        libc::SYS_getgroups,
        "os.getgroups: only test_os/test_posix",
    ),
    (
        libc::SYS_getpriority,
        "os.getpriority, os.nice: only test_os/test_posix",
    ),
    (
        libc::SYS_setpriority,
        "os.setpriority, os.nice: only test_os/test_posix",
    ),
    (
        libc::SYS_getresuid,
        "os.getresuid: only test_os/test_posix",
    ),
    (
        libc::SYS_getresgid,
        "os.getresgid: only test_os/test_posix",
    ),
    (
        libc::SYS_linkat,
        "os.link with dir_fd or follow_symlinks: only test_os/test_posix",
    ),
    (
        libc::SYS_mkdirat,
        "os.mkdir with dir_fd: only test_posix",
    ),
    (
        libc::SYS_readlinkat,
        "os.readlink with dir_fd: only test_posix",
    ),
    (
        libc::SYS_renameat,
        "os.rename with dir_fd: only test_posix",
    ),
    (
        libc::SYS_symlinkat,
        "os.symlink with dir_fd: only test_posix",
    ),
    (
        libc::SYS_membarrier,
        "unused by every traced workload (JIT runtimes)",
    ),
    (
        libc::SYS_mincore,
        "unused by every traced workload (page residency: a cache side channel)",
    ),
    (
        libc::SYS_preadv,
        "os.preadv: unused (glibc's preadv uses preadv2 only with flags)",
    ),
    (
        libc::SYS_pwritev,
        "os.pwritev: unused",
    ),
    (
        libc::SYS_preadv2,
        "os.preadv: only test_os/test_posix",
    ),
    (
        libc::SYS_pwritev2,
        "os.pwritev: only test_os/test_posix",
    ),
    (
        libc::SYS_readv,
        "os.readv: only test_os/test_posix",
    ),
    (
        libc::SYS_recvmmsg,
        "unused by every traced workload",
    ),
    (
        libc::SYS_rt_sigqueueinfo,
        "unused by every traced workload (signal.sigqueue is not in CPython)",
    ),
    (
        libc::SYS_rt_tgsigqueueinfo,
        "unused by every traced workload",
    ),
    (
        libc::SYS_rt_sigsuspend,
        "unused by every traced workload (signal.pause is the pause call, not this)",
    ),
    (
        libc::SYS_sched_get_priority_max,
        "os.sched_get_priority_max: only test_posix",
    ),
    (
        libc::SYS_sched_get_priority_min,
        "os.sched_get_priority_min: only test_posix",
    ),
    (
        libc::SYS_sched_getparam,
        "os.sched_getparam: only test_posix",
    ),
    (
        libc::SYS_sched_getscheduler,
        "os.sched_getscheduler: only test_posix",
    ),
    (
        libc::SYS_sched_setaffinity,
        "os.sched_setaffinity: only test_os/test_posix",
    ),
    (
        libc::SYS_signalfd4,
        "unused by every traced workload (CPython has no signalfd)",
    ),
    (
        libc::SYS_timer_create,
        "POSIX timers: unused by every traced workload (signal.setitimer is the itimer)",
    ),
    (
        libc::SYS_timer_settime,
        "POSIX timers: unused (see timer_create)",
    ),
    (
        libc::SYS_timer_gettime,
        "POSIX timers: unused (see timer_create)",
    ),
    (
        libc::SYS_timer_getoverrun,
        "POSIX timers: unused (see timer_create)",
    ),
    (
        libc::SYS_timer_delete,
        "POSIX timers: unused (see timer_create)",
    ),
    (
        libc::SYS_timerfd_create,
        "timer descriptors: unused by every traced workload (CPython has no timerfd in 3.11)",
    ),
    (
        libc::SYS_timerfd_settime,
        "timer descriptors: unused (see timerfd_create)",
    ),
    (
        libc::SYS_timerfd_gettime,
        "timer descriptors: unused (see timerfd_create)",
    ),
    (
        libc::SYS_truncate,
        "os.truncate on a path: only test_os/test_posix (os.ftruncate is allowed)",
    ),
    (
        libc::SYS_waitid,
        "os.waitid: only test_posix; subprocess waits with wait4",
    ),
    (
        libc::SYS_vmsplice,
        "unused: pipe-page splicing (see splice)",
    ),
    (
        libc::SYS_personality,
        "unused: it can turn off address-space randomisation (ADDR_NO_RANDOMIZE) for a later exec",
    ),
];

/// Calls allowed only with some values of one argument; any other value fails with `EPERM`.
/// The arguments are C `int`s or `unsigned int`s (mremap's flags an `unsigned long` whose high
/// bits the kernel refuses with `EINVAL`), so the low word is all of each.
pub struct ArgFilter {
    pub nr: i64,
    pub name: &'static str,
    /// Index of the inspected argument.
    pub arg: u32,
    /// The values allowed, each with the workload that uses it.
    pub allowed: &'static [(u32, &'static str)],
    pub reason: &'static str,
}

const ARG_FILTERED: &[ArgFilter] = &[
    ArgFilter {
        nr: libc::SYS_madvise,
        name: "madvise",
        arg: 2,
        allowed: MADVISE,
        reason: "the advice values glibc's malloc, numpy/OpenBLAS and the mmap module use; not \
                 MADV_DONTFORK/DOFORK/WIPEONFORK (memory surprises across fork), MADV_MERGEABLE \
                 (KSM: a side channel between processes), MADV_HWPOISON/SOFT_OFFLINE, \
                 MADV_PAGEOUT/COLD, MADV_POPULATE_*, MADV_COLLAPSE",
    },
    ArgFilter {
        nr: libc::SYS_mremap,
        name: "mremap",
        arg: 3,
        allowed: &[
            (0, "shrinking in place"),
            (
                libc::MREMAP_MAYMOVE as u32,
                "realloc of large blocks (glibc), mmap.resize",
            ),
        ],
        reason: "not MREMAP_FIXED (moving a mapping over another one at a chosen address) nor \
                 MREMAP_DONTUNMAP (the userfaultfd companion): neither is used",
    },
    ArgFilter {
        nr: libc::SYS_fcntl,
        name: "fcntl",
        arg: 1,
        allowed: FCNTL,
        reason: "descriptor flags, duplication, record locks, pipe sizes; not F_SETLEASE \
                 (leases: another opener of the file waits on the jail), F_NOTIFY (directory \
                 notification), F_SETOWN/F_SETSIG (signals the kernel sends on I/O), \
                 F_ADD_SEALS",
    },
    ArgFilter {
        nr: libc::SYS_prctl,
        name: "prctl",
        arg: 0,
        allowed: PRCTL,
        reason: "thread names and the parent-death signal; no option that changes the process's \
                 memory layout, dumpability, timer slack, subreaper status or seccomp",
    },
];

const MADVISE: &[(u32, &str)] = &[
    (libc::MADV_NORMAL as u32, "mmap.madvise (test_mmap)"),
    (libc::MADV_RANDOM as u32, "mmap.madvise"),
    (libc::MADV_SEQUENTIAL as u32, "mmap.madvise"),
    (libc::MADV_WILLNEED as u32, "mmap.madvise"),
    (
        libc::MADV_DONTNEED as u32,
        "glibc's free trimming thread stacks and heaps, numpy",
    ),
    (libc::MADV_FREE as u32, "mmap.madvise, allocators"),
    (
        libc::MADV_HUGEPAGE as u32,
        "numpy's large arrays (transparent huge pages)",
    ),
    (libc::MADV_NOHUGEPAGE as u32, "mmap.madvise"),
    (libc::MADV_DONTDUMP as u32, "mmap.madvise"),
    (libc::MADV_DODUMP as u32, "mmap.madvise"),
];

const FCNTL: &[(u32, &str)] = &[
    (libc::F_DUPFD as u32, "os.dup (old glibc), fcntl.fcntl"),
    (
        libc::F_GETFD as u32,
        "os.get_inheritable, the import system",
    ),
    (libc::F_SETFD as u32, "os.set_inheritable"),
    (libc::F_GETFL as u32, "os.get_blocking, io.open"),
    (libc::F_SETFL as u32, "os.set_blocking, sockets, asyncio"),
    (libc::F_GETLK as u32, "fcntl.lockf"),
    (libc::F_SETLK as u32, "sqlite3's locks, fcntl.lockf"),
    (libc::F_SETLKW as u32, "fcntl.lockf"),
    (libc::F_OFD_GETLK as u32, "fcntl.fcntl (test_fcntl)"),
    (libc::F_OFD_SETLK as u32, "fcntl.fcntl"),
    (libc::F_OFD_SETLKW as u32, "fcntl.fcntl"),
    (
        libc::F_DUPFD_CLOEXEC as u32,
        "os.dup, subprocess, the import system",
    ),
    (libc::F_GETPIPE_SZ as u32, "fcntl.fcntl (test_fcntl)"),
    (
        libc::F_SETPIPE_SZ as u32,
        "subprocess's pipesize (test_subprocess): pipe pages stay bounded per host user \
         (fs.pipe-user-pages-soft)",
    ),
];

/// `prctl` options of a cold jail and of a warm request child's code.
const PRCTL: &[(u32, &str)] = &[
    (libc::PR_SET_PDEATHSIG as u32, "multiprocessing helpers"),
    (libc::PR_GET_PDEATHSIG as u32, "reading it back"),
    (libc::PR_GET_DUMPABLE as u32, "reading it"),
    (
        libc::PR_SET_NAME as u32,
        "thread names (pthread_setname_np)",
    ),
    (
        libc::PR_GET_NAME as u32,
        "thread names (pthread_getname_np)",
    ),
    (
        libc::PR_CAPBSET_READ as u32,
        "reading the (empty) bounding set",
    ),
    (libc::PR_SET_NO_NEW_PRIVS as u32, "already set: a no-op"),
    (libc::PR_GET_NO_NEW_PRIVS as u32, "reading it"),
];

/// `prctl` options a warm zygote also uses when it isolates a request child (dropping
/// capabilities, locking securebits, no_new_privs, not dumpable); the request filter takes them
/// back ([`request_program`]).
const PRCTL_ZYGOTE: &[u32] = &[
    libc::PR_CAPBSET_DROP as u32,
    libc::PR_SET_SECUREBITS as u32,
    libc::PR_SET_DUMPABLE as u32,
];

/// `setsockopt(SOL_SOCKET, …)` options that size a socket's buffers: answered 0 without effect.
/// A unix socket holds up to its send buffer of data queued at its peer, in kernel memory that
/// `RLIMIT_AS` does not count; raised to `net.core.wmem_max` (4 MiB here, doubled by the kernel)
/// on every descriptor, one run with --memory 64M held 2 GiB. Left at the kernel's default
/// (`net.core.wmem_default`, 208 KiB here) they stay a small multiple of the open-files limit.
/// Refusing with `EPERM` would break programs that lower buffers without checking the result
/// (trio's wakeup socket pair); a size is a hint a program can live without.
const BUFFER_SIZES: &[u32] = &[
    libc::SO_SNDBUF as u32,
    libc::SO_RCVBUF as u32,
    libc::SO_SNDBUFFORCE as u32,
    libc::SO_RCVBUFFORCE as u32,
];
const RET_IGNORED: u32 = libc::SECCOMP_RET_ERRNO;

/// Kill-list calls a warm zygote needs for its request children.
const ZYGOTE: &[i64] = &[
    libc::SYS_unshare,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_setns,
];
/// Further calls only the zygote needs (the default denies them): `pidfd_open` and
/// `pidfd_send_signal` watch and wake its request children; `fchdir` reaches the covered
/// holder where the ended requests' `/tmp`s are moved (`warm::inside`).
const ZYGOTE_EXTRA: &[i64] = &[
    libc::SYS_fchdir,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_capset,
    libc::SYS_seccomp,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_restrict_self,
];

// Argument-inspected calls.
const NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP
    | 0x80) as u32; // CLONE_NEWTIME
const SETID_BITS: u32 = libc::S_ISUID | libc::S_ISGID;
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541c;

/// One decision of the filter for a system call number: a return value, or a block of code
/// that inspects an argument (and ends in returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Ret(u32),
    Block(usize),
}

/// Numbers at or above this one (and below the x32 bit) take the default; x86-64 has fewer.
const TABLE_LEN: u32 = 1024;

/// One rule of the filter: for a call number, a return value or a block of code that inspects
/// an argument (and ends in returns).
enum Rule {
    Ret(u32),
    Block(Asm),
}

/// The rules, in order of precedence (the first that names a number decides it): the kill list
/// (but the zygote's own calls), the zygote's calls, `clone`, `clone3`, the mode-checked calls,
/// `setsockopt`, `ioctl`, `socket`, `execve`/`execveat`, [`ARG_FILTERED`], [`ALLOW`],
/// [`REFUSED`]; every other number is refused with `EPERM`.
fn rules(opts: &SeccompOptions) -> Vec<(i64, Rule)> {
    let mut rules = Vec::new();
    let block = |code: &dyn Fn(&mut Asm)| {
        let mut a = Asm::default();
        code(&mut a);
        Rule::Block(a)
    };
    for (nr, _) in KILL {
        if !(opts.zygote && ZYGOTE.contains(nr)) {
            rules.push((*nr, Rule::Ret(RET_KILL)));
        }
    }
    if opts.zygote {
        for nr in ZYGOTE.iter().chain(ZYGOTE_EXTRA) {
            rules.push((*nr, Rule::Ret(RET_ALLOW)));
        }
    }
    // clone: the flags are the first argument; the kernel only uses their low 32 bits for clone.
    rules.push((
        libc::SYS_clone,
        block(&|a| {
            a.load(off_arg_low(0));
            a.jump(libc::BPF_JSET, NS_FLAGS, 0, 1);
            a.ret(RET_KILL);
            a.ret(RET_ALLOW);
        }),
    ));
    rules.push((libc::SYS_clone3, Rule::Ret(ret_errno(libc::ENOSYS))));
    // Opening and chmod: no set-id bits (MODE_CHECKED).
    for (nr, arg, _) in MODE_CHECKED {
        rules.push((
            *nr,
            block(&|a| {
                a.load(off_arg_low(*arg));
                a.jump(libc::BPF_JSET, SETID_BITS, 0, 1);
                a.ret(ret_errno(libc::EPERM));
                a.ret(RET_ALLOW);
            }),
        ));
    }
    // setsockopt: the level and the option name are `int`s.
    rules.push((
        libc::SYS_setsockopt,
        block(&|a| {
            a.load(off_arg_low(1));
            a.jump(libc::BPF_JEQ, libc::SOL_SOCKET as u32, 1, 0);
            a.ret(RET_ALLOW);
            a.load(off_arg_low(2));
            for opt in BUFFER_SIZES {
                a.if_eq(*opt, RET_IGNORED);
            }
            a.ret(RET_ALLOW);
        }),
    ));
    // ioctl: the request is an `unsigned int` in the kernel, so the low word is all of it.
    rules.push((
        libc::SYS_ioctl,
        block(&|a| {
            a.load(off_arg_low(1));
            a.if_eq(TIOCSTI, ret_errno(libc::EPERM));
            a.if_eq(TIOCLINUX, ret_errno(libc::EPERM));
            a.ret(RET_ALLOW);
        }),
    ));
    // socket: the family is an `int`.
    rules.push((
        libc::SYS_socket,
        block(&|a| {
            a.load(off_arg_low(0));
            if opts.network {
                // Every family but netlink: routing and firewall tables are nobody's business here.
                a.if_eq(libc::AF_NETLINK as u32, ret_errno(libc::EAFNOSUPPORT));
                a.ret(RET_ALLOW);
            } else {
                a.if_eq(libc::AF_UNIX as u32, RET_ALLOW);
                a.ret(ret_errno(libc::EAFNOSUPPORT));
            }
        }),
    ));
    let exec = match opts.exec {
        ExecPolicy::Deny => ret_errno(libc::EPERM),
        ExecPolicy::FirstOnly => RET_NOTIFY,
        ExecPolicy::Allow => RET_ALLOW,
    };
    rules.push((libc::SYS_execve, Rule::Ret(exec)));
    rules.push((libc::SYS_execveat, Rule::Ret(exec)));
    for f in ARG_FILTERED {
        rules.push((
            f.nr,
            block(&|a| {
                a.load(off_arg_low(f.arg));
                for (value, _) in f.allowed {
                    a.if_eq(*value, RET_ALLOW);
                }
                if opts.zygote && f.nr == libc::SYS_prctl {
                    for value in PRCTL_ZYGOTE {
                        a.if_eq(*value, RET_ALLOW);
                    }
                }
                a.ret(ret_errno(libc::EPERM));
            }),
        ));
    }
    for (nr, _) in ALLOW {
        rules.push((*nr, Rule::Ret(RET_ALLOW)));
    }
    // Explicit, whatever the default becomes.
    for (nr, _) in REFUSED {
        rules.push((*nr, Rule::Ret(ret_errno(libc::EPERM))));
    }
    rules
}

/// The decision for every number below [`TABLE_LEN`] ([`rules`]: the first that names it), and
/// the argument blocks they refer to.
fn decisions(opts: &SeccompOptions) -> (Vec<Decision>, Vec<Asm>) {
    let mut table: Vec<Option<Decision>> = vec![None; TABLE_LEN as usize];
    let mut blocks: Vec<Asm> = Vec::new();
    for (nr, rule) in rules(opts) {
        let e = &mut table[usize::try_from(nr).expect("syscall numbers are small")];
        if e.is_some() {
            continue;
        }
        *e = Some(match rule {
            Rule::Ret(k) => Decision::Ret(k),
            Rule::Block(a) => {
                blocks.push(a);
                Decision::Block(blocks.len() - 1)
            }
        });
    }
    let table = table
        .into_iter()
        .map(|d| d.unwrap_or(Decision::Ret(ret_errno(libc::EPERM))))
        .collect();
    (table, blocks)
}

/// The filter for `opts`: the architecture and x32 checks, then a binary search on the system
/// call number over the ranges of numbers that share a decision ([`decisions`]), whose leaves
/// return or jump to an argument block. About 8 comparisons per call, where a list of checks took
/// up to 300 (every call of the interpreter runs the filter), and a third of the instructions for
/// the kernel to check and compile at each start.
pub fn program(opts: &SeccompOptions) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let (table, blocks) = decisions(opts);
    let mut ranges: Vec<(u32, Decision)> = Vec::new();
    for (nr, d) in (0..TABLE_LEN).zip(table) {
        if !matches!(ranges.last(), Some((_, last)) if *last == d) {
            ranges.push((nr, d));
        }
    }
    let default = Decision::Ret(ret_errno(libc::EPERM));
    if ranges.last().is_some_and(|(_, last)| *last != default) {
        ranges.push((TABLE_LEN, default));
    }
    let mut a = Asm::default();
    a.header();
    // The search; a leaf with a block is a jump fixed up once the blocks' places are known.
    let mut fixups: Vec<(usize, usize)> = Vec::new();
    a.search(&ranges, &mut fixups);
    let mut starts = Vec::with_capacity(blocks.len());
    for b in blocks {
        starts.push(a.code.len());
        a.code.extend(b.code);
    }
    for (at, block) in fixups {
        a.code[at].k = u32::try_from(starts[block] - at - 1)
            .map_err(|_| SeccompError::Program("a block out of reach".into()))?;
    }
    a.finish()
}

/// The filter a warm request child adds on top of its zygote's ([`SeccompOptions::zygote`]):
/// it takes back exactly what the zygote may do beyond a cold jail. Stacked filters all apply,
/// so the child ends up with the cold jail's allowlist; this one stays short, which keeps both
/// loading it (on every request) and running it cheap.
pub fn request_program() -> Vec<libc::sock_filter> {
    let mut a = Asm::default();
    a.load(OFF_ARCH);
    a.unless_eq(AUDIT_ARCH_X86_64, RET_KILL);
    a.load(OFF_NR);
    for nr in ZYGOTE {
        a.if_eq(*nr as u32, RET_KILL);
    }
    for nr in ZYGOTE_EXTRA {
        a.if_eq(*nr as u32, ret_errno(libc::EPERM));
    }
    // The zygote's prctl options; the zygote's own filter still vets the others.
    let skip = 1 + 2 * PRCTL_ZYGOTE.len();
    a.jump(libc::BPF_JEQ, libc::SYS_prctl as u32, 0, skip as u8);
    a.load(off_arg_low(0));
    for value in PRCTL_ZYGOTE {
        a.if_eq(*value, ret_errno(libc::EPERM));
    }
    a.ret(RET_ALLOW);
    a.code
}

/// Install the filter on the calling process (which must have set `no_new_privs`). Returns the
/// user-notification listener with [`ExecPolicy::FirstOnly`].
pub fn install(opts: &SeccompOptions) -> Result<Option<OwnedFd>, SeccompError> {
    let prog = program(opts)?;
    sys::seccomp::install(&prog, opts.exec == ExecPolicy::FirstOnly).map_err(SeccompError::Install)
}

/// Approve the first `execve` of the child `pid` (the interpreter's start), then close the
/// listener: the kernel fails every later `execve` with `ENOSYS`. `Ok(false)` if the child died
/// first. Any other notification is refused.
pub fn approve_first_exec(
    listener: OwnedFd,
    pid: libc::pid_t,
    child: BorrowedFd,
) -> Result<bool, SeccompError> {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: child.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        sys::poll(&mut fds, -1).map_err(SeccompError::Notify)?;
        if fds[0].revents & libc::POLLIN != 0 {
            let n = match sys::seccomp::receive(listener.as_fd()) {
                Ok(n) => n,
                // The notifying task died between poll and receive.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(SeccompError::Notify(e)),
            };
            let is_exec = n.nr == libc::SYS_execve as i32 || n.nr == libc::SYS_execveat as i32;
            if n.pid == pid as u32 && is_exec {
                return match sys::seccomp::allow(listener.as_fd(), n.id) {
                    Ok(()) => Ok(true),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
                    Err(e) => Err(SeccompError::Notify(e)),
                };
            }
            let _ = sys::seccomp::deny(listener.as_fd(), n.id, libc::EPERM);
            continue;
        }
        if fds[1].revents != 0 {
            return Ok(false);
        }
    }
}

/// How many system calls the cold filter allows, and how ([`counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Allowed whatever their arguments ([`ALLOW`]).
    pub allowed: usize,
    /// Allowed with some argument values only: `clone`, `socket`, `setsockopt`, `ioctl`,
    /// `execve`/`execveat` (per [`ExecPolicy`]), the mode-checked opens and chmods
    /// ([`MODE_CHECKED`]) and [`ARG_FILTERED`].
    pub filtered: usize,
    /// Refused by name with a reason ([`REFUSED`], and `clone3`'s `ENOSYS`); every other call
    /// not allowed fails with `EPERM` too.
    pub refused: usize,
    /// Kill the process ([`KILL`]).
    pub killed: usize,
}

impl Counts {
    /// The calls that can succeed: allowed plus argument-filtered (the ≤ 120 of issue 16).
    pub fn reachable(&self) -> usize {
        self.allowed + self.filtered
    }
}

/// The argument-inspected calls besides [`MODE_CHECKED`] and [`ARG_FILTERED`].
const INSPECTED: &[i64] = &[
    libc::SYS_clone,
    libc::SYS_socket,
    libc::SYS_setsockopt,
    libc::SYS_ioctl,
    libc::SYS_execve,
    libc::SYS_execveat,
];

/// The sizes of the filter's lists, for `pysandbox doctor` and the test that keeps the
/// reachable surface at most 120 calls.
pub fn counts() -> Counts {
    Counts {
        allowed: ALLOW.len(),
        filtered: INSPECTED.len() + MODE_CHECKED.len() + ARG_FILTERED.len(),
        refused: REFUSED.len() + 1,
        killed: KILL.len(),
    }
}

/// A tiny classic-BPF assembler: loads of `seccomp_data` words, jumps with explicit short
/// offsets, returns.
#[derive(Default)]
struct Asm {
    code: Vec<libc::sock_filter>,
}

impl Asm {
    fn load(&mut self, offset: u32) {
        self.code.push(libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: offset,
        });
    }
    fn jump(&mut self, op: u32, k: u32, jt: u8, jf: u8) {
        self.code.push(libc::sock_filter {
            code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        });
    }
    fn ret(&mut self, k: u32) {
        self.code.push(libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k,
        });
    }
    /// Kill anything but x86-64 and the x32 call numbers, then load the call's number: no
    /// second system call table is reachable.
    fn header(&mut self) {
        self.load(OFF_ARCH);
        self.unless_eq(AUDIT_ARCH_X86_64, RET_KILL);
        self.load(OFF_NR);
        self.jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1);
        self.ret(RET_KILL);
    }
    /// `goto +k` (32-bit offset).
    fn ja(&mut self, k: u32) {
        self.code.push(libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JA) as u16,
            jt: 0,
            jf: 0,
            k,
        });
    }
    /// The binary search over `ranges` (each from its number to the next one's, the last to the
    /// end), the accumulator holding the system call number. A leaf with a block is a `ja` whose
    /// place and block go to `fixups`.
    fn search(&mut self, ranges: &[(u32, Decision)], fixups: &mut Vec<(usize, usize)>) {
        if let [(_, d)] = ranges {
            match *d {
                Decision::Ret(k) => self.ret(k),
                Decision::Block(b) => {
                    fixups.push((self.code.len(), b));
                    self.ja(0);
                }
            }
            return;
        }
        let mid = ranges.len() / 2;
        let mut low = Asm::default();
        let mut low_fixups = Vec::new();
        low.search(&ranges[..mid], &mut low_fixups);
        // acc >= the upper half's first number: skip the lower half.
        let skip = match u8::try_from(low.code.len()) {
            Ok(n) => {
                self.jump(libc::BPF_JGE, ranges[mid].0, n, 0);
                None
            }
            Err(_) => {
                self.jump(libc::BPF_JGE, ranges[mid].0, 0, 1);
                self.ja(0);
                Some(self.code.len() - 1)
            }
        };
        let base = self.code.len();
        fixups.extend(low_fixups.into_iter().map(|(at, b)| (base + at, b)));
        self.code.extend(low.code);
        if let Some(at) = skip {
            self.code[at].k = (self.code.len() - at - 1) as u32;
        }
        self.search(&ranges[mid..], fixups);
    }
    /// `if acc == k { return action }`.
    fn if_eq(&mut self, k: u32, action: u32) {
        self.jump(libc::BPF_JEQ, k, 0, 1);
        self.ret(action);
    }
    /// `if acc != k { return action }`.
    fn unless_eq(&mut self, k: u32, action: u32) {
        self.jump(libc::BPF_JEQ, k, 1, 0);
        self.ret(action);
    }
    fn finish(self) -> Result<Vec<libc::sock_filter>, SeccompError> {
        if self.code.len() > 4096 {
            return Err(SeccompError::Program(format!(
                "{} instructions (the kernel takes at most 4096)",
                self.code.len()
            )));
        }
        Ok(self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Asm {
        /// `if acc == k { block }`, where the block ends in returns; the syscall number is
        /// reloaded after it for the checks that follow.
        fn when_eq(&mut self, k: u32, block: impl FnOnce(&mut Asm)) -> Result<(), SeccompError> {
            let at = self.code.len();
            self.jump(libc::BPF_JEQ, k, 0, 0);
            block(self);
            let len = self.code.len() - at - 1;
            self.code[at].jf = u8::try_from(len)
                .map_err(|_| SeccompError::Program(format!("block of {len} instructions")))?;
            self.load(OFF_NR);
            Ok(())
        }
    }

    /// The filter as it was written before the binary search: the same rules as a list of
    /// checks, first match wins. The reference [`program`] must agree with on every number and
    /// argument.
    fn linear_program(opts: &SeccompOptions) -> Result<Vec<libc::sock_filter>, SeccompError> {
        let mut a = Asm::default();
        a.header();
        for (nr, rule) in rules(opts) {
            match rule {
                Rule::Ret(k) => a.if_eq(nr as u32, k),
                Rule::Block(b) => a.when_eq(nr as u32, |a| a.code.extend(b.code))?,
            }
        }
        a.ret(ret_errno(libc::EPERM));
        a.finish()
    }

    /// Run a classic BPF program on a seccomp_data, like the kernel does.
    fn eval(prog: &[libc::sock_filter], nr: i64, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let ins = prog[pc];
            let class = u32::from(ins.code) & 0x07;
            match class {
                c if c == libc::BPF_LD => {
                    let o = ins.k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                    pc += 1;
                }
                c if c == libc::BPF_JMP => {
                    let op = u32::from(ins.code) & 0xf0;
                    if op == libc::BPF_JA {
                        pc += 1 + ins.k as usize;
                        continue;
                    }
                    let taken = match op {
                        o if o == libc::BPF_JEQ => acc == ins.k,
                        o if o == libc::BPF_JGE => acc >= ins.k,
                        o if o == libc::BPF_JSET => acc & ins.k != 0,
                        _ => panic!("unexpected jump op {op:#x}"),
                    };
                    pc += 1 + usize::from(if taken { ins.jt } else { ins.jf });
                }
                c if c == libc::BPF_RET => return ins.k,
                _ => panic!("unexpected class {class}"),
            }
        }
    }

    fn opts(exec: ExecPolicy, network: bool) -> SeccompOptions {
        SeccompOptions {
            exec,
            network,
            zygote: false,
        }
    }

    /// The binary search decides every call as the list of checks it replaced: every number
    /// below the table's end and around the x32 bit, every architecture the checks name, with
    /// argument values that cross each argument check (the values each filter names, and
    /// neighbours), for every combination of options.
    #[test]
    fn the_search_decides_as_the_list_of_checks() {
        let mut values: Vec<u64> = vec![0, 1, 2, 3, 0x5401, u64::MAX, 0xffff_ffff, 1 << 32];
        values.extend([NS_FLAGS, SETID_BITS, TIOCSTI, TIOCLINUX].map(u64::from));
        values.extend(NS_FLAGS.to_le_bytes().iter().map(|b| u64::from(*b) << 8));
        values.extend((0..32).map(|b| 1u64 << b));
        values.extend(
            [
                libc::AF_UNIX,
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_NETLINK,
            ]
            .map(|f| f as u64),
        );
        values.extend([libc::SOL_SOCKET, libc::IPPROTO_TCP].map(|f| f as u64));
        values.extend(BUFFER_SIZES.iter().map(|v| u64::from(*v)));
        values.extend(PRCTL_ZYGOTE.iter().map(|v| u64::from(*v)));
        for f in ARG_FILTERED {
            for (v, _) in f.allowed {
                values.extend([
                    u64::from(*v),
                    u64::from(*v) + 1,
                    u64::from(v.wrapping_sub(1)),
                ]);
            }
        }
        values.sort_unstable();
        values.dedup();
        let mut numbers: Vec<i64> = (0..i64::from(TABLE_LEN) + 8).collect();
        numbers.extend([0x3fff_ffff, 0x4000_0000, 0x4000_0001, 0xffff_ffff, 1 << 32]);
        let mut checked = 0u64;
        for exec in [ExecPolicy::Deny, ExecPolicy::FirstOnly, ExecPolicy::Allow] {
            for network in [false, true] {
                for zygote in [false, true] {
                    let o = SeccompOptions {
                        exec,
                        network,
                        zygote,
                    };
                    let new = program(&o).unwrap();
                    let old = linear_program(&o).unwrap();
                    assert!(
                        new.len() * 3 < old.len() * 2,
                        "{} instructions against {}",
                        new.len(),
                        old.len()
                    );
                    for arch in [AUDIT_ARCH_X86_64, 0x4000_0003, 0] {
                        for &nr in &numbers {
                            let args = |v: u64, at: usize| {
                                let mut a = [0u64; 6];
                                a[at] = v;
                                a
                            };
                            for at in 0..3 {
                                for &v in &values {
                                    let a = args(v, at);
                                    assert_eq!(
                                        eval(&new, nr, arch, a),
                                        eval(&old, nr, arch, a),
                                        "{o:?}: number {nr}, arch {arch:#x}, args {a:?}"
                                    );
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 1_000_000, "{checked}");
    }

    #[test]
    fn filter_decisions() {
        let p = program(&opts(ExecPolicy::FirstOnly, false)).unwrap();
        let x86 = AUDIT_ARCH_X86_64;
        let run = |nr: i64, args: [u64; 6]| eval(&p, nr, x86, args);
        let z = [0u64; 6];
        assert_eq!(
            eval(&p, libc::SYS_read, 0x4000_0003, z),
            RET_KILL,
            "i386 arch"
        );
        assert_eq!(run(libc::SYS_read | 0x4000_0000, z), RET_KILL, "x32 bit");
        assert_eq!(run(libc::SYS_read, z), RET_ALLOW);
        assert_eq!(run(libc::SYS_ptrace, z), RET_KILL);
        assert_eq!(run(libc::SYS_unshare, z), RET_KILL);
        assert_eq!(run(libc::SYS_mount, z), RET_KILL);
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(run(libc::SYS_clone, [thread, 0, 0, 0, 0, 0]), RET_ALLOW);
        let userns = (libc::SIGCHLD | libc::CLONE_NEWUSER) as u64;
        assert_eq!(run(libc::SYS_clone, [userns, 0, 0, 0, 0, 0]), RET_KILL);
        assert_eq!(run(libc::SYS_clone3, z), ret_errno(libc::ENOSYS));
        assert_eq!(
            run(libc::SYS_socket, [libc::AF_UNIX as u64, 1, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            run(libc::SYS_socket, [libc::AF_INET as u64, 1, 0, 0, 0, 0]),
            ret_errno(libc::EAFNOSUPPORT)
        );
        assert_eq!(
            run(libc::SYS_ioctl, [0, u64::from(TIOCSTI), 0, 0, 0, 0]),
            ret_errno(libc::EPERM)
        );
        assert_eq!(
            run(libc::SYS_ioctl, [0, 0x5401, 0, 0, 0, 0]),
            RET_ALLOW,
            "TCGETS"
        );
        assert_eq!(run(libc::SYS_execve, z), RET_NOTIFY);
        assert_eq!(run(libc::SYS_setuid, z), ret_errno(libc::EPERM), "default");
        assert_eq!(run(9999, z), ret_errno(libc::EPERM));

        let net = program(&opts(ExecPolicy::Deny, true)).unwrap();
        assert_eq!(
            eval(
                &net,
                libc::SYS_socket,
                x86,
                [libc::AF_INET6 as u64, 1, 0, 0, 0, 0]
            ),
            RET_ALLOW
        );
        assert_eq!(
            eval(
                &net,
                libc::SYS_socket,
                x86,
                [libc::AF_NETLINK as u64, 3, 0, 0, 0, 0]
            ),
            ret_errno(libc::EAFNOSUPPORT)
        );
        assert_eq!(eval(&net, libc::SYS_execve, x86, z), ret_errno(libc::EPERM));
        let any = program(&opts(ExecPolicy::Allow, false)).unwrap();
        assert_eq!(eval(&any, libc::SYS_execveat, x86, z), RET_ALLOW);
    }

    #[test]
    fn request_filter_takes_back_the_zygotes_extras() {
        let z = [0u64; 6];
        let zygote = program(&SeccompOptions {
            exec: ExecPolicy::Deny,
            network: false,
            zygote: true,
        })
        .unwrap();
        let req = request_program();
        let x86 = AUDIT_ARCH_X86_64;
        assert_eq!(eval(&zygote, libc::SYS_unshare, x86, z), RET_ALLOW);
        assert_eq!(eval(&req, libc::SYS_unshare, x86, z), RET_KILL);
        assert_eq!(eval(&req, libc::SYS_mount, x86, z), RET_KILL);
        assert_eq!(eval(&req, libc::SYS_capset, x86, z), ret_errno(libc::EPERM));
        for nr in [
            libc::SYS_pidfd_open,
            libc::SYS_pidfd_send_signal,
            libc::SYS_fchdir,
        ] {
            assert_eq!(eval(&zygote, nr, x86, z), RET_ALLOW);
            assert_eq!(eval(&req, nr, x86, z), ret_errno(libc::EPERM));
            let cold = program(&opts(ExecPolicy::Deny, false)).unwrap();
            assert_eq!(eval(&cold, nr, x86, z), ret_errno(libc::EPERM));
        }
        assert_eq!(eval(&req, libc::SYS_read, x86, z), RET_ALLOW);
        assert_eq!(eval(&req, libc::SYS_read, 0x4000_0003, z), RET_KILL);
        // Everything else the zygote's filter still decides.
        assert_eq!(eval(&zygote, libc::SYS_ptrace, x86, z), RET_KILL);
    }

    #[test]
    fn argument_filters_allow_only_the_listed_values() {
        let x86 = AUDIT_ARCH_X86_64;
        let eperm = ret_errno(libc::EPERM);
        let zygote = program(&SeccompOptions {
            exec: ExecPolicy::Deny,
            network: false,
            zygote: true,
        })
        .unwrap();
        for opts in [
            opts(ExecPolicy::FirstOnly, false),
            opts(ExecPolicy::Allow, true),
        ] {
            let p = program(&opts).unwrap();
            let run = |nr: i64, args: [u64; 6]| eval(&p, nr, x86, args);
            // madvise(addr, len, advice)
            for advice in [libc::MADV_DONTNEED, libc::MADV_FREE, libc::MADV_HUGEPAGE] {
                assert_eq!(
                    run(libc::SYS_madvise, [0, 4096, advice as u64, 0, 0, 0]),
                    RET_ALLOW
                );
            }
            for advice in [
                libc::MADV_DONTFORK,
                libc::MADV_DOFORK,
                libc::MADV_MERGEABLE,
                libc::MADV_HWPOISON,
                libc::MADV_REMOVE,
                18, // MADV_WIPEONFORK
                21, // MADV_PAGEOUT
                25, // MADV_COLLAPSE
            ] {
                assert_eq!(
                    run(libc::SYS_madvise, [0, 4096, advice as u64, 0, 0, 0]),
                    eperm,
                    "advice {advice}"
                );
            }
            // mremap(old, old_size, new_size, flags, new_address)
            let maymove = libc::MREMAP_MAYMOVE as u64;
            assert_eq!(run(libc::SYS_mremap, [0, 1, 2, maymove, 0, 0]), RET_ALLOW);
            assert_eq!(run(libc::SYS_mremap, [0, 2, 1, 0, 0, 0]), RET_ALLOW);
            let fixed = maymove | libc::MREMAP_FIXED as u64;
            assert_eq!(run(libc::SYS_mremap, [0, 1, 1, fixed, 8192, 0]), eperm);
            assert_eq!(run(libc::SYS_mremap, [0, 1, 1, maymove | 4, 0, 0]), eperm);
            // fcntl(fd, cmd, arg)
            for cmd in [
                libc::F_GETFD,
                libc::F_SETFL,
                libc::F_SETLK,
                libc::F_DUPFD_CLOEXEC,
            ] {
                assert_eq!(run(libc::SYS_fcntl, [3, cmd as u64, 0, 0, 0, 0]), RET_ALLOW);
            }
            for cmd in [
                libc::F_SETLEASE,
                libc::F_NOTIFY,
                libc::F_SETOWN,
                10, // F_SETSIG
                libc::F_ADD_SEALS,
            ] {
                assert_eq!(
                    run(libc::SYS_fcntl, [3, cmd as u64, 0, 0, 0, 0]),
                    eperm,
                    "cmd {cmd}"
                );
            }
            // prctl(option, ...): the zygote's options are refused here, as are the others.
            assert_eq!(
                run(libc::SYS_prctl, [libc::PR_SET_NAME as u64, 0, 0, 0, 0, 0]),
                RET_ALLOW
            );
            for option in [
                libc::PR_SET_MM,
                libc::PR_SET_CHILD_SUBREAPER,
                libc::PR_SET_TIMERSLACK,
                libc::PR_SET_SECCOMP,
                libc::PR_SET_DUMPABLE,
                libc::PR_CAPBSET_DROP,
                libc::PR_SET_SECUREBITS,
                libc::PR_SET_PTRACER,
            ] {
                assert_eq!(
                    run(libc::SYS_prctl, [option as u64, 1, 0, 0, 0, 0]),
                    eperm,
                    "option {option}"
                );
            }
            // Left out of the allowlist: EPERM, not a kill.
            for nr in [
                libc::SYS_splice,
                libc::SYS_tee,
                libc::SYS_vmsplice,
                libc::SYS_personality,
            ] {
                assert_eq!(run(nr, [0; 6]), eperm, "syscall {nr}");
            }
        }
        // The zygote isolates its children with these prctl options; a request child's filter
        // takes them back, and the zygote's filter still refuses what neither list has.
        let req = request_program();
        for option in PRCTL_ZYGOTE {
            let args = [u64::from(*option), 1, 0, 0, 0, 0];
            assert_eq!(eval(&zygote, libc::SYS_prctl, x86, args), RET_ALLOW);
            assert_eq!(eval(&req, libc::SYS_prctl, x86, args), eperm);
        }
        let name = [libc::PR_SET_NAME as u64, 0, 0, 0, 0, 0];
        assert_eq!(eval(&req, libc::SYS_prctl, x86, name), RET_ALLOW);
        let subreaper = [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0];
        assert_eq!(eval(&zygote, libc::SYS_prctl, x86, subreaper), eperm);
        let dontfork = [0, 4096, libc::MADV_DONTFORK as u64, 0, 0, 0];
        assert_eq!(eval(&zygote, libc::SYS_madvise, x86, dontfork), eperm);
    }

    #[test]
    fn the_reachable_surface_stays_small() {
        let c = counts();
        assert!(
            c.reachable() <= 120,
            "{} calls reachable ({} allowed, {} argument-filtered): issue 16 keeps it at 120 \
             or fewer; add a call only with the workload that needs it",
            c.reachable(),
            c.allowed,
            c.filtered
        );
        // The counts are the filter's: every counted call is decided before the default.
        let p = program(&opts(ExecPolicy::Allow, true)).unwrap();
        let x86 = AUDIT_ARCH_X86_64;
        let allowed_somehow = (0..500)
            .filter(|nr| {
                (0..64).any(|v: u64| {
                    let args = [v, v, v, v, v, v];
                    let args_zero = [3, v, 0, 0, 0, 0];
                    eval(&p, *nr, x86, args) == RET_ALLOW
                        || eval(&p, *nr, x86, args_zero) == RET_ALLOW
                })
            })
            .count();
        assert_eq!(
            allowed_somehow,
            c.reachable(),
            "counts() and the program disagree"
        );
    }

    #[test]
    fn lists_do_not_overlap() {
        for (nr, name) in KILL {
            assert!(ALLOW.iter().all(|(a, _)| a != nr), "{name} in both lists");
        }
        let mut seen = std::collections::HashSet::new();
        let checked = MODE_CHECKED.iter().map(|(nr, _, r)| (nr, r));
        let refused = REFUSED.iter().map(|(nr, r)| (nr, r));
        for (nr, reason) in ALLOW
            .iter()
            .map(|(nr, r)| (nr, r))
            .chain(checked)
            .chain(refused)
        {
            assert!(seen.insert(nr), "{nr} listed twice");
            assert!(!reason.is_empty());
            assert!(KILL.iter().all(|(k, _)| k != nr), "{nr} also killed");
        }
        for nr in INSPECTED.iter().chain(ARG_FILTERED.iter().map(|f| &f.nr)) {
            assert!(
                seen.insert(nr),
                "{nr} is inspected by argument and listed elsewhere"
            );
            assert!(KILL.iter().all(|(k, _)| k != nr), "{nr} also killed");
        }
        for f in ARG_FILTERED {
            assert!(!f.reason.is_empty() && f.allowed.iter().all(|(_, r)| !r.is_empty()));
        }
    }

    #[test]
    fn setid_bits_cannot_be_set() {
        let x86 = AUDIT_ARCH_X86_64;
        for opts in [
            opts(ExecPolicy::FirstOnly, false),
            opts(ExecPolicy::Allow, true),
        ] {
            let p = program(&opts).unwrap();
            let run = |nr: i64, args: [u64; 6]| eval(&p, nr, x86, args);
            let eperm = ret_errno(libc::EPERM);
            let creat = (libc::O_CREAT | libc::O_WRONLY) as u64;
            for mode in [0o4755u64, 0o2755, 0o6777, 0o4000, 0o2000] {
                assert_eq!(
                    run(libc::SYS_chmod, [0, mode, 0, 0, 0, 0]),
                    eperm,
                    "{mode:o}"
                );
                assert_eq!(run(libc::SYS_fchmod, [3, mode, 0, 0, 0, 0]), eperm);
                let at = libc::AT_FDCWD as u64;
                assert_eq!(run(libc::SYS_fchmodat, [at, 0, mode, 0, 0, 0]), eperm);
                assert_eq!(run(libc::SYS_openat, [at, 0, creat, mode, 0, 0]), eperm);
                assert_eq!(run(libc::SYS_open, [0, creat, mode, 0, 0, 0]), eperm);
                assert_eq!(run(libc::SYS_creat, [0, mode, 0, 0, 0, 0]), eperm);
                assert_eq!(
                    run(libc::SYS_mknodat, [at, 0, mode | 0o100000, 0, 0, 0]),
                    eperm
                );
                assert_eq!(run(libc::SYS_fchmodat2, [at, 0, mode, 0, 0, 0]), eperm);
                // Only the low 32 bits are the mode: high garbage does not hide the bits.
                let hi = mode | 0xffff_0000_0000_0000;
                assert_eq!(run(libc::SYS_chmod, [0, hi, 0, 0, 0, 0]), eperm);
            }
            for mode in [0o755u64, 0o1777, 0o644, 0o600, 0] {
                assert_eq!(
                    run(libc::SYS_chmod, [0, mode, 0, 0, 0, 0]),
                    RET_ALLOW,
                    "{mode:o}"
                );
                assert_eq!(run(libc::SYS_fchmod, [3, mode, 0, 0, 0, 0]), RET_ALLOW);
                let at = libc::AT_FDCWD as u64;
                assert_eq!(run(libc::SYS_fchmodat, [at, 0, mode, 0, 0, 0]), RET_ALLOW);
                assert_eq!(run(libc::SYS_openat, [at, 0, creat, mode, 0, 0]), RET_ALLOW);
                assert_eq!(run(libc::SYS_open, [0, creat, mode, 0, 0, 0]), RET_ALLOW);
                // Bits above the low word are not part of a mode_t.
                let hi = mode | 0x0000_0c00_0000_0000;
                assert_eq!(run(libc::SYS_chmod, [0, hi, 0, 0, 0, 0]), RET_ALLOW);
            }
            // A plain open (glibc passes mode 0 without O_CREAT).
            let at = libc::AT_FDCWD as u64;
            assert_eq!(
                run(libc::SYS_openat, [at, 0, libc::O_RDONLY as u64, 0, 0, 0]),
                RET_ALLOW
            );
        }
    }

    #[test]
    fn memory_outside_the_address_space_limit_is_refused() {
        let p = program(&opts(ExecPolicy::FirstOnly, false)).unwrap();
        let x86 = AUDIT_ARCH_X86_64;
        let z = [0u64; 6];
        let eperm = ret_errno(libc::EPERM);
        for nr in [
            libc::SYS_memfd_create,
            libc::SYS_shmget,
            libc::SYS_shmat,
            libc::SYS_shmdt,
            libc::SYS_shmctl,
            libc::SYS_semget,
            libc::SYS_semop,
            libc::SYS_semtimedop,
            libc::SYS_semctl,
            libc::SYS_msgget,
            libc::SYS_msgsnd,
            libc::SYS_msgrcv,
            libc::SYS_msgctl,
            libc::SYS_mq_open,
            libc::SYS_mq_timedsend,
            libc::SYS_mq_timedreceive,
            libc::SYS_mq_unlink,
            libc::SYS_mq_notify,
            libc::SYS_mq_getsetattr,
            libc::SYS_sysinfo,
        ] {
            assert_eq!(eval(&p, nr, x86, z), eperm, "syscall {nr}");
        }
        // Socket buffer sizes are ignored (0, no effect); other options pass.
        let sol = libc::SOL_SOCKET as u64;
        for opt in [
            libc::SO_SNDBUF,
            libc::SO_RCVBUF,
            libc::SO_SNDBUFFORCE,
            libc::SO_RCVBUFFORCE,
        ] {
            let args = [3, sol, opt as u64, 0, 4, 0];
            assert_eq!(eval(&p, libc::SYS_setsockopt, x86, args), RET_IGNORED);
        }
        let reuse = [3, sol, libc::SO_REUSEADDR as u64, 0, 4, 0];
        assert_eq!(eval(&p, libc::SYS_setsockopt, x86, reuse), RET_ALLOW);
        // SO_SNDBUF's number at another level is another option (TCP_NODELAY is 1 too).
        let tcp = [3, libc::IPPROTO_TCP as u64, libc::SO_SNDBUF as u64, 0, 4, 0];
        assert_eq!(eval(&p, libc::SYS_setsockopt, x86, tcp), RET_ALLOW);
        // The zygote's filter refuses the same.
        let zygote = program(&SeccompOptions {
            exec: ExecPolicy::Deny,
            network: false,
            zygote: true,
        })
        .unwrap();
        assert_eq!(eval(&zygote, libc::SYS_memfd_create, x86, z), eperm);
        assert_eq!(eval(&zygote, libc::SYS_shmget, x86, z), eperm);
    }
}
