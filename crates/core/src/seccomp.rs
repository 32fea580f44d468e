//! The jail's seccomp-bpf filter: an allowlist, each entry with the reason CPython needs it.
//!
//! Order of checks, for every system call of the interpreter and its children:
//! 1. the architecture must be x86-64, and the number must not carry the x32 bit: anything else
//!    (i386 `int 0x80`, x32) kills the process, so no second syscall table is reachable;
//! 2. calls that only an attacker makes (`ptrace`, `mount`, `unshare`, `bpf`, …) kill the process;
//! 3. calls inspected by argument: `clone` (no namespace flags), `socket` (only `AF_UNIX` without
//!    network), `ioctl` (no `TIOCSTI`/`TIOCLINUX`), `execve` (per [`ExecPolicy`]), `open`,
//!    `openat` and the chmod family (no set-id bits, [`MODE_CHECKED`]), `setsockopt` (buffer
//!    sizes ignored, [`BUFFER_SIZES`]); `clone3` answers `ENOSYS` because its flags live in memory
//!    a filter cannot read, and glibc then uses `clone`;
//! 4. the allowlist;
//! 5. everything else fails with `EPERM`, so Python raises an ordinary `PermissionError` — among
//!    them the calls left out on purpose, with their reasons ([`REFUSED`]).
//!
//! The program is built by a small assembler with labels ([`Asm`]); `program()` is public so the
//! tests (and `pysandbox doctor`) can inspect it.

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

/// What CPython 3 (interpreter, threads, subprocess, ssl, sqlite3, asyncio, multiprocessing,
/// tempfile) needs, most frequent first.
const ALLOW: &[(i64, &str)] = &[
    (libc::SYS_read, "reading files and pipes"),
    (libc::SYS_write, "writing output"),
    (libc::SYS_futex, "locks: the GIL, threads"),
    (
        libc::SYS_mmap,
        "memory allocation, loading shared libraries",
    ),
    (libc::SYS_munmap, "freeing memory"),
    (libc::SYS_brk, "malloc's heap"),
    (
        libc::SYS_mprotect,
        "the dynamic loader, thread stacks' guard pages",
    ),
    (libc::SYS_mremap, "growing large allocations"),
    (libc::SYS_madvise, "returning freed memory"),
    (libc::SYS_newfstatat, "os.stat, the import system"),
    (libc::SYS_fstat, "os.fstat"),
    (libc::SYS_stat, "os.stat (old entry point)"),
    (libc::SYS_lstat, "os.lstat (old entry point)"),
    (libc::SYS_statx, "os.stat on newer glibc"),
    (libc::SYS_close, "closing descriptors"),
    (
        libc::SYS_close_range,
        "subprocess closing inherited descriptors",
    ),
    (libc::SYS_lseek, "file positions"),
    (libc::SYS_pread64, "positional reads (zipimport, sqlite3)"),
    (libc::SYS_pwrite64, "positional writes (sqlite3)"),
    (libc::SYS_readv, "vectored reads"),
    (libc::SYS_writev, "vectored writes"),
    (libc::SYS_preadv, "os.preadv"),
    (libc::SYS_pwritev, "os.pwritev"),
    (libc::SYS_preadv2, "os.preadv with flags"),
    (libc::SYS_pwritev2, "os.pwritev with flags"),
    (libc::SYS_getdents64, "os.listdir, os.scandir"),
    (libc::SYS_getcwd, "os.getcwd"),
    (libc::SYS_chdir, "os.chdir"),
    (libc::SYS_fchdir, "os.fchdir"),
    (libc::SYS_access, "os.access"),
    (libc::SYS_faccessat, "os.access"),
    (libc::SYS_faccessat2, "os.access on newer glibc"),
    (libc::SYS_readlink, "os.readlink"),
    (libc::SYS_readlinkat, "os.readlink"),
    (libc::SYS_fcntl, "descriptor flags"),
    (libc::SYS_flock, "fcntl.flock (sqlite3, dbm)"),
    (libc::SYS_fsync, "os.fsync"),
    (libc::SYS_fdatasync, "os.fdatasync"),
    (libc::SYS_ftruncate, "os.ftruncate"),
    (libc::SYS_truncate, "os.truncate"),
    (libc::SYS_fallocate, "os.posix_fallocate"),
    (libc::SYS_fadvise64, "os.posix_fadvise"),
    (libc::SYS_mkdir, "os.mkdir"),
    (libc::SYS_mkdirat, "os.mkdir"),
    (libc::SYS_rmdir, "os.rmdir"),
    (libc::SYS_unlink, "os.unlink"),
    (libc::SYS_unlinkat, "os.unlink"),
    (libc::SYS_rename, "os.rename"),
    (libc::SYS_renameat, "os.rename"),
    (libc::SYS_renameat2, "os.rename"),
    (libc::SYS_link, "os.link"),
    (libc::SYS_linkat, "os.link"),
    (libc::SYS_symlink, "os.symlink"),
    (libc::SYS_symlinkat, "os.symlink"),
    (libc::SYS_chown, "os.chown (own files in /tmp)"),
    (libc::SYS_fchown, "os.fchown"),
    (libc::SYS_lchown, "os.lchown"),
    (libc::SYS_fchownat, "os.chown"),
    (libc::SYS_umask, "os.umask"),
    (libc::SYS_utimensat, "os.utime"),
    (libc::SYS_utimes, "os.utime (old entry point)"),
    (libc::SYS_utime, "os.utime (old entry point)"),
    (libc::SYS_futimesat, "os.utime (old entry point)"),
    (libc::SYS_statfs, "os.statvfs"),
    (libc::SYS_fstatfs, "os.fstatvfs"),
    (libc::SYS_dup, "os.dup"),
    (libc::SYS_dup2, "os.dup2"),
    (libc::SYS_dup3, "os.dup2 with flags"),
    (libc::SYS_pipe, "os.pipe"),
    (libc::SYS_pipe2, "os.pipe, subprocess"),
    (libc::SYS_sendfile, "shutil.copyfile"),
    (libc::SYS_copy_file_range, "shutil.copyfile"),
    (libc::SYS_splice, "os.splice"),
    (libc::SYS_tee, "pipes"),
    (libc::SYS_rt_sigaction, "signal handlers"),
    (libc::SYS_rt_sigprocmask, "signal masks (threads)"),
    (libc::SYS_rt_sigreturn, "returning from a signal handler"),
    (libc::SYS_rt_sigpending, "signal.sigpending"),
    (libc::SYS_rt_sigtimedwait, "signal.sigtimedwait"),
    (libc::SYS_rt_sigsuspend, "signal.pause"),
    (libc::SYS_rt_sigqueueinfo, "signals within the jail"),
    (libc::SYS_rt_tgsigqueueinfo, "signals within the jail"),
    (libc::SYS_sigaltstack, "faulthandler's stack"),
    (libc::SYS_kill, "os.kill within the jail's PID namespace"),
    (libc::SYS_tgkill, "signals to threads"),
    (libc::SYS_tkill, "signals to threads"),
    (
        libc::SYS_pidfd_open,
        "subprocess and asyncio waiting for children",
    ),
    (libc::SYS_pidfd_send_signal, "signals to children"),
    (libc::SYS_getpid, "os.getpid"),
    (libc::SYS_getppid, "os.getppid"),
    (libc::SYS_gettid, "threading.get_native_id"),
    (libc::SYS_getuid, "os.getuid"),
    (libc::SYS_geteuid, "os.geteuid"),
    (libc::SYS_getgid, "os.getgid"),
    (libc::SYS_getegid, "os.getegid"),
    (libc::SYS_getresuid, "os.getresuid"),
    (libc::SYS_getresgid, "os.getresgid"),
    (libc::SYS_getgroups, "os.getgroups"),
    (libc::SYS_getpgrp, "os.getpgrp"),
    (libc::SYS_getpgid, "os.getpgid"),
    (libc::SYS_setpgid, "subprocess process groups"),
    (libc::SYS_getsid, "os.getsid"),
    (libc::SYS_setsid, "subprocess start_new_session"),
    (libc::SYS_capget, "reading (empty) capabilities"),
    (libc::SYS_uname, "platform, os.uname"),
    (libc::SYS_getrlimit, "resource.getrlimit"),
    (
        libc::SYS_setrlimit,
        "resource.setrlimit (can only lower hard limits)",
    ),
    (libc::SYS_prlimit64, "resource.prlimit"),
    (libc::SYS_getrusage, "resource.getrusage"),
    (libc::SYS_times, "os.times"),
    (libc::SYS_getpriority, "os.getpriority"),
    (libc::SYS_setpriority, "os.nice (can only lower priority)"),
    (libc::SYS_clock_gettime, "time.time, time.monotonic"),
    (libc::SYS_clock_getres, "time.get_clock_info"),
    (libc::SYS_clock_nanosleep, "time.sleep"),
    (libc::SYS_nanosleep, "time.sleep"),
    (libc::SYS_gettimeofday, "time (old entry point)"),
    (libc::SYS_time, "time (old entry point)"),
    (libc::SYS_alarm, "signal.alarm"),
    (libc::SYS_setitimer, "signal.setitimer"),
    (libc::SYS_getitimer, "signal.getitimer"),
    (libc::SYS_timer_create, "POSIX timers"),
    (libc::SYS_timer_settime, "POSIX timers"),
    (libc::SYS_timer_gettime, "POSIX timers"),
    (libc::SYS_timer_getoverrun, "POSIX timers"),
    (libc::SYS_timer_delete, "POSIX timers"),
    (libc::SYS_timerfd_create, "event loops"),
    (libc::SYS_timerfd_settime, "event loops"),
    (libc::SYS_timerfd_gettime, "event loops"),
    (libc::SYS_getrandom, "os.urandom, hash seeds, ssl"),
    (libc::SYS_set_robust_list, "thread start (glibc)"),
    (libc::SYS_get_robust_list, "thread bookkeeping"),
    (libc::SYS_set_tid_address, "thread start (glibc)"),
    (libc::SYS_rseq, "restartable sequences (glibc)"),
    (libc::SYS_arch_prctl, "thread-local storage"),
    (
        libc::SYS_prctl,
        "thread names, PR_SET_PDEATHSIG (privileged options need capabilities)",
    ),
    (libc::SYS_membarrier, "runtime memory barriers"),
    (libc::SYS_getcpu, "os.sched_getcpu"),
    (libc::SYS_sched_yield, "thread scheduling"),
    (
        libc::SYS_sched_getaffinity,
        "os.cpu_count, os.sched_getaffinity",
    ),
    (libc::SYS_sched_setaffinity, "os.sched_setaffinity"),
    (libc::SYS_sched_getparam, "os.sched_getparam"),
    (libc::SYS_sched_getscheduler, "os.sched_getscheduler"),
    (
        libc::SYS_sched_get_priority_max,
        "os.sched_get_priority_max",
    ),
    (
        libc::SYS_sched_get_priority_min,
        "os.sched_get_priority_min",
    ),
    (libc::SYS_restart_syscall, "restarting an interrupted call"),
    (libc::SYS_exit, "thread exit"),
    (libc::SYS_exit_group, "process exit"),
    (libc::SYS_wait4, "os.waitpid, subprocess"),
    (libc::SYS_waitid, "os.waitid, subprocess"),
    (libc::SYS_fork, "os.fork (bounded by the process limit)"),
    (libc::SYS_vfork, "subprocess via posix_spawn"),
    (libc::SYS_poll, "select.poll"),
    (libc::SYS_ppoll, "select.poll"),
    (libc::SYS_select, "select.select"),
    (libc::SYS_pselect6, "select.select"),
    (libc::SYS_epoll_create, "asyncio (old entry point)"),
    (libc::SYS_epoll_create1, "asyncio, selectors"),
    (libc::SYS_epoll_ctl, "asyncio, selectors"),
    (libc::SYS_epoll_wait, "asyncio, selectors"),
    (libc::SYS_epoll_pwait, "asyncio, selectors"),
    (libc::SYS_epoll_pwait2, "asyncio, selectors"),
    (libc::SYS_eventfd, "os.eventfd (old entry point)"),
    (libc::SYS_eventfd2, "os.eventfd, event loops"),
    (libc::SYS_signalfd, "signal file descriptors"),
    (libc::SYS_signalfd4, "signal file descriptors"),
    (
        libc::SYS_socketpair,
        "unix socket pairs (multiprocessing, asyncio)",
    ),
    (
        libc::SYS_connect,
        "socket.connect (the namespace and Landlock decide where)",
    ),
    (libc::SYS_bind, "socket.bind"),
    (libc::SYS_listen, "socket.listen"),
    (libc::SYS_accept, "socket.accept"),
    (libc::SYS_accept4, "socket.accept"),
    (libc::SYS_sendto, "socket.send"),
    (libc::SYS_recvfrom, "socket.recv"),
    (libc::SYS_sendmsg, "socket.sendmsg"),
    (libc::SYS_recvmsg, "socket.recvmsg"),
    (libc::SYS_sendmmsg, "socket.sendmsg (batched)"),
    (libc::SYS_recvmmsg, "socket.recvmsg (batched)"),
    (libc::SYS_shutdown, "socket.shutdown"),
    (libc::SYS_getsockname, "socket.getsockname"),
    (libc::SYS_getpeername, "socket.getpeername"),
    (libc::SYS_getsockopt, "socket.getsockopt"),
    (libc::SYS_mincore, "memory residency queries"),
    (libc::SYS_msync, "mmap.flush"),
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
/// Further calls only the zygote needs (the default denies them).
const ZYGOTE_EXTRA: &[i64] = &[
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

/// The filter for `opts`. Every decision returns right where it is made, so all jumps are short
/// (classic BPF offsets are 8 bits).
pub fn program(opts: &SeccompOptions) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let mut a = Asm::default();
    a.load(OFF_ARCH);
    a.unless_eq(AUDIT_ARCH_X86_64, RET_KILL);
    a.load(OFF_NR);
    a.jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1);
    a.ret(RET_KILL);
    for (nr, _) in KILL {
        if opts.zygote && ZYGOTE.contains(nr) {
            continue;
        }
        a.if_eq(*nr as u32, RET_KILL);
    }
    if opts.zygote {
        for nr in ZYGOTE.iter().chain(ZYGOTE_EXTRA) {
            a.if_eq(*nr as u32, RET_ALLOW);
        }
    }
    // clone: the flags are the first argument; the kernel only uses their low 32 bits for clone.
    a.when_eq(libc::SYS_clone as u32, |a| {
        a.load(off_arg_low(0));
        a.jump(libc::BPF_JSET, NS_FLAGS, 0, 1);
        a.ret(RET_KILL);
        a.ret(RET_ALLOW);
    })?;
    a.if_eq(libc::SYS_clone3 as u32, ret_errno(libc::ENOSYS));
    // Opening and chmod: no set-id bits (MODE_CHECKED).
    for (nr, arg, _) in MODE_CHECKED {
        a.when_eq(*nr as u32, |a| {
            a.load(off_arg_low(*arg));
            a.jump(libc::BPF_JSET, SETID_BITS, 0, 1);
            a.ret(ret_errno(libc::EPERM));
            a.ret(RET_ALLOW);
        })?;
    }
    // setsockopt: the level and the option name are `int`s.
    a.when_eq(libc::SYS_setsockopt as u32, |a| {
        a.load(off_arg_low(1));
        a.jump(libc::BPF_JEQ, libc::SOL_SOCKET as u32, 1, 0);
        a.ret(RET_ALLOW);
        a.load(off_arg_low(2));
        for opt in BUFFER_SIZES {
            a.if_eq(*opt, RET_IGNORED);
        }
        a.ret(RET_ALLOW);
    })?;
    // ioctl: the request is an `unsigned int` in the kernel, so the low word is all of it.
    a.when_eq(libc::SYS_ioctl as u32, |a| {
        a.load(off_arg_low(1));
        a.if_eq(TIOCSTI, ret_errno(libc::EPERM));
        a.if_eq(TIOCLINUX, ret_errno(libc::EPERM));
        a.ret(RET_ALLOW);
    })?;
    // socket: the family is an `int`.
    a.when_eq(libc::SYS_socket as u32, |a| {
        a.load(off_arg_low(0));
        if opts.network {
            // Every family but netlink: routing and firewall tables are nobody's business here.
            a.if_eq(libc::AF_NETLINK as u32, ret_errno(libc::EAFNOSUPPORT));
            a.ret(RET_ALLOW);
        } else {
            a.if_eq(libc::AF_UNIX as u32, RET_ALLOW);
            a.ret(ret_errno(libc::EAFNOSUPPORT));
        }
    })?;
    let exec = match opts.exec {
        ExecPolicy::Deny => ret_errno(libc::EPERM),
        ExecPolicy::FirstOnly => RET_NOTIFY,
        ExecPolicy::Allow => RET_ALLOW,
    };
    a.if_eq(libc::SYS_execve as u32, exec);
    a.if_eq(libc::SYS_execveat as u32, exec);
    for (nr, _) in ALLOW {
        a.if_eq(*nr as u32, RET_ALLOW);
    }
    // Explicit, whatever the default below becomes; after the allowlist, so that they cost
    // nothing to the calls it allows.
    for (nr, _) in REFUSED {
        a.if_eq(*nr as u32, ret_errno(libc::EPERM));
    }
    a.ret(ret_errno(libc::EPERM));
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

/// Number of entries of the allowlist and the kill list, for `pysandbox doctor`.
pub fn counts() -> (usize, usize) {
    (ALLOW.len(), KILL.len())
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
    /// `if acc == k { block }`, where the block ends in returns; the syscall number is reloaded
    /// after it for the checks that follow.
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
        assert_eq!(eval(&req, libc::SYS_read, x86, z), RET_ALLOW);
        assert_eq!(eval(&req, libc::SYS_read, 0x4000_0003, z), RET_KILL);
        // Everything else the zygote's filter still decides.
        assert_eq!(eval(&zygote, libc::SYS_ptrace, x86, z), RET_KILL);
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
        for nr in [libc::SYS_clone, libc::SYS_socket, libc::SYS_ioctl] {
            assert!(!seen.contains(&nr), "{nr} is inspected by argument");
        }
        assert!(
            !seen.contains(&libc::SYS_setsockopt),
            "setsockopt is inspected"
        );
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
