//! The launch sequence of a jail, read top to bottom in [`init_main`]:
//!
//! ```text
//! supervisor (host)                       jail init, PID 1 of a new PID namespace
//! ─────────────────                       ─────────────────────────────────────────
//! open bind sources, pipes, memfds
//! clone(NEWUSER|NEWNS|NEWPID|NEWIPC|NEWUTS[|NEWNET]) ──►  wait for the id maps
//! write uid_map / gid_map, sync byte ──────────────────►  unix socket queues cut (its own network),
//!                                                         drop to the unprivileged id, die-with-parent
//!                                                         minimal root, pivot_root, old root detached
//!                                                         hostname, no_new_privs, Landlock, seccomp
//!                                                         fork the interpreter (PID 2):
//!                                                           new session, signals reset, fds arranged,
//!                                                           rlimits, execve (the one execve allowed)
//!                                                         approve that execve, then reap until PID 2
//! poll output, enforce the wall clock   ◄──── status ──── exits, and report its status
//! ```
//!
//! PID 1 stays a tiny init: the interpreter as PID 1 would ignore SIGXCPU (PITFALLS.md), and an
//! init also reaps zombies. When it exits, the kernel kills everything left in the namespace.
//!
//! The order of the steps, and which of them a warm worker's jail takes instead, is the table in
//! [`crate::isolate`]; the interpreter's own steps before `execve` are [`isolate::enter`], the
//! same code a warm request child runs after its fork.

use crate::isolate::{self, ChildSetup, Rlimits, Stage, Step, StepError};
use crate::landlock::{self, Access, LandlockRules};
use crate::layers::{Layer, Layers};
use crate::limits::Limits;
use crate::mounts::{self, BindKind, BindMount, MountError};
use crate::seccomp::{self, ExecPolicy, SeccompOptions};
use crate::sys;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, RawFd};
use std::path::{Path, PathBuf};

/// The id the sandboxed code runs as inside its user namespace ("nobody"). As root, it maps to
/// the host's 65534 too, so the jail never holds host root's files as their owner.
pub const INSIDE_ID: u32 = 65534;
pub const HOSTNAME: &str = "pysandbox";

/// Whether the jail gets a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A fresh network namespace with no interfaces but a down loopback: nothing is reachable.
    #[default]
    None,
    /// The host's network namespace (the `network` feature).
    Host,
}

/// Everything a jail needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct JailSpec {
    pub interpreter: crate::interp::Interpreter,
    /// Arguments after `argv[0]` (which is the interpreter's path).
    pub args: Vec<String>,
    /// The whole environment of the interpreter (empty unless the policy passes variables).
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    pub read_paths: Vec<PathBuf>,
    pub write_paths: Vec<PathBuf>,
    pub network: Network,
    /// Whether the code may start programs (the `subprocess` feature).
    pub allow_exec: bool,
    /// A warm worker (`crate::warm`): the interpreter is a zygote that forks one isolated child
    /// per request. It runs as uid 0 of the jail's user namespace with that namespace's
    /// capabilities (to give each request its own PID, IPC and mount namespaces), is not
    /// confined by Landlock (which forbids mounting), and never runs untrusted code itself:
    /// every request child drops the capabilities and applies Landlock and the strict seccomp
    /// filter first.
    pub warm: bool,
    /// A warm worker's zygote library on the host, bound read-only into the jail at
    /// [`crate::warm::LIBRARY_IN_JAIL`].
    pub zygote_library: Option<PathBuf>,
    /// The test-only switch: this step of the jail or of the interpreter's setup fails.
    pub inject: Option<Step>,
    /// The layer matrix's test-only switch: these layers are off ([`crate::layers`]).
    pub disabled: Layers,
}

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("waiting for the supervisor's id maps: {0}")]
    Sync(io::Error),
    #[error("switching to the sandbox user {INSIDE_ID}: {0}")]
    SetIds(io::Error),
    #[error("setting die-with-parent: {0}")]
    DeathSignal(io::Error),
    #[error("supervisor exited during setup")]
    ParentGone,
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("setting the hostname: {0}")]
    Hostname(io::Error),
    #[error("landlock: {0}")]
    Landlock(#[from] landlock::LandlockError),
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(io::Error),
    #[error("seccomp: {0}")]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("starting the interpreter process: {0}")]
    Fork(io::Error),
    #[error("the interpreter did not start: {0}")]
    Exec(io::Error),
    #[error("arranging file descriptors: {0}")]
    Fds(io::Error),
    #[error(transparent)]
    Step(#[from] StepError),
}

/// What the supervisor prepares before `clone`: everything that allocates or opens host files.
pub(crate) struct Prepared {
    pub binds: Vec<BindMount>,
    pub exe: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub limits: Limits,
    pub landlock: LandlockRules,
    /// What each of `binds` allows, for its Landlock rule.
    pub access: Vec<Access>,
    pub seccomp: SeccompOptions,
    /// The jail has a network namespace of its own (its queue limits are set: see
    /// [`limit_unix_queues`]).
    pub own_network: bool,
    pub warm: bool,
    /// The supervisor runs as host root (known before the id maps change what geteuid says).
    pub host_root: bool,
    pub inject: Option<Step>,
    pub disabled: Layers,
}

/// Descriptors the jail's init holds (raw numbers of the supervisor's descriptors, inherited).
pub(crate) struct InitFds {
    /// Readable end; the supervisor writes one byte once the id maps are in place and keeps its
    /// end open for the jail's life, so a hang-up means the supervisor is gone.
    pub sync: RawFd,
    /// Setup errors, as text. Close-on-exec: the interpreter's copy vanishes when it starts.
    pub error: RawFd,
    /// The interpreter's exit status, written by init when it reaps it.
    pub status: RawFd,
    /// Descriptors handed to the interpreter as 0, 1, 2, 3, …
    pub child: Vec<RawFd>,
}

impl Prepared {
    pub(crate) fn new(spec: &JailSpec) -> Result<Prepared, MountError> {
        let mut binds = Vec::new();
        // Landlock rules for the binds are added through their source descriptors (rules belong
        // to inodes, which a bind shares); only /tmp, a fresh tmpfs, is named by path.
        let mut access = Vec::new();
        // The libraries as one directory where they can be (crate::libview): one bind for
        // forty-odd files.
        let mut others: Vec<&Path> = mounts::DEV_NODES.iter().map(Path::new).collect();
        others.extend(spec.read_paths.iter().map(PathBuf::as_path));
        others.extend(spec.write_paths.iter().map(PathBuf::as_path));
        if spec.zygote_library.is_some() {
            others.push(Path::new(crate::warm::LIBRARY_IN_JAIL));
        }
        let view = crate::libview::library_view(&spec.interpreter.binds, &others);
        for (i, b) in spec.interpreter.binds.iter().enumerate() {
            if view.as_ref().is_some_and(|v| v.covers.contains(&i)) {
                continue;
            }
            binds.push(mounts::check_bind(
                &b.source,
                &b.target,
                BindKind::ReadOnly,
            )?);
            access.push(Access::ReadExec);
        }
        if let Some(v) = &view {
            binds.push(mounts::check_bind(&v.dir, &v.target, BindKind::ReadOnly)?);
            access.push(Access::ReadExec);
        }
        for dev in mounts::DEV_NODES {
            binds.push(mounts::check_bind(
                Path::new(dev),
                Path::new(dev),
                BindKind::Device,
            )?);
            access.push(Access::ReadWrite);
        }
        for p in &spec.read_paths {
            binds.push(mounts::check_bind(p, p, BindKind::ReadOnly)?);
            access.push(Access::Read);
        }
        for p in &spec.write_paths {
            binds.push(mounts::check_bind(p, p, BindKind::ReadWrite)?);
            access.push(Access::ReadWrite);
        }
        if let Some(lib) = &spec.zygote_library {
            let target = Path::new(crate::warm::LIBRARY_IN_JAIL);
            binds.push(mounts::check_bind(lib, target, BindKind::ReadOnly)?);
            access.push(Access::ReadExec);
        }
        let rules = vec![(PathBuf::from("/tmp"), Access::ReadWrite)];
        let cstr = |s: &str| CString::new(s.as_bytes()).unwrap_or_default();
        let exe = cstr(&spec.interpreter.executable.to_string_lossy());
        let mut argv = vec![exe.clone()];
        argv.extend(spec.args.iter().map(|a| cstr(a)));
        let mut envp: Vec<CString> = spec
            .env
            .iter()
            .map(|(k, v)| cstr(&format!("{k}={v}")))
            .collect();
        if spec.warm && crate::warm::adds_bind_now(&spec.env) {
            envp.push(cstr(&format!("{}=1", crate::warm::BIND_NOW_ENV)));
        }
        let abi = landlock::abi().unwrap_or(0);
        Ok(Prepared {
            binds,
            exe,
            argv,
            envp,
            limits: spec.limits.clone(),
            access,
            landlock: LandlockRules {
                paths: rules,
                // Scoping (ABI 6) keeps sibling jails from signalling each other or meeting on
                // abstract unix sockets, and the code from the host's abstract sockets even where
                // the network namespace is the host's (the layer matrix: otherwise the namespace
                // alone stood there); on older kernels the PID and network namespaces separate
                // them.
                scope_signals: abi >= 6,
                scope_abstract_unix: abi >= 6,
                restrict_tcp: spec.network == Network::None && abi >= 4,
            },
            seccomp: SeccompOptions {
                exec: if spec.allow_exec {
                    ExecPolicy::Allow
                } else {
                    ExecPolicy::FirstOnly
                },
                network: spec.network == Network::Host,
                zygote: spec.warm,
            },
            own_network: spec.network == Network::None && !spec.disabled.off(Layer::NetNamespace),
            warm: spec.warm,
            host_root: sys::geteuid() == 0,
            inject: spec.inject,
            disabled: spec.disabled,
        })
    }
}

/// Exit code of init when the jail could not be set up (the message is on the error pipe).
pub(crate) const SETUP_FAILED: i32 = 125;

/// Entry point of the jail's init (PID 1), in the child of `clone`. Never returns.
pub(crate) fn init_main(p: Prepared, fds: InitFds) -> ! {
    match init(p, &fds) {
        Ok(()) => sys::exit_now(0),
        Err(e) => {
            report_to(fds.error, &e);
            sys::exit_now(SETUP_FAILED)
        }
    }
}

fn init(p: Prepared, fds: &InitFds) -> Result<(), JailError> {
    // Keep only what the jail needs: nothing else of the host's crosses into it.
    let mut keep = vec![fds.sync, fds.error, fds.status];
    keep.extend(&fds.child);
    sys::close_all_except(&keep).map_err(JailError::Fds)?;
    // Before dropping to the sandbox user: see `BindMount`.
    let sources = mounts::open_sources(&p.binds)?;

    let mut byte = [0u8; 1];
    match sys::read_raw(fds.sync, &mut byte) {
        Ok(1) => {}
        Ok(_) => return Err(JailError::ParentGone),
        Err(e) => return Err(JailError::Sync(e)),
    }
    let stage = if p.warm {
        Stage::WarmJail
    } else {
        Stage::ColdJail
    };
    let mut listener = None;
    for step in isolate::steps(stage) {
        isolate::check_injected(p.inject, step)?;
        if p.disabled.skips(step) {
            continue;
        }
        match step {
            Step::NetworkLimits => {
                if p.own_network {
                    limit_unix_queues()?;
                }
            }
            Step::Ids => {
                // As host root, drop the supplementary groups (root's group 0 would otherwise
                // follow us in); an unprivileged caller cannot (setgroups is denied in its user
                // namespace) and need not.
                let inside = if p.warm { 0 } else { INSIDE_ID };
                sys::set_ids(inside, inside, p.host_root).map_err(JailError::SetIds)?;
                // After set_ids: a credential change clears the parent-death signal.
                sys::set_pdeathsig_kill().map_err(JailError::DeathSignal)?;
                let mut pfd = [libc::pollfd {
                    fd: fds.sync,
                    events: libc::POLLIN,
                    revents: 0,
                }];
                if sys::poll(&mut pfd, 0).map_err(JailError::Sync)? > 0
                    && pfd[0].revents & libc::POLLHUP != 0
                {
                    return Err(JailError::ParentGone);
                }
                sys::set_not_dumpable().map_err(JailError::NoNewPrivs)?;
            }
            Step::MountView if p.disabled.off(Layer::MountView) => {
                mounts::host_view(p.limits.tmp_size)?
            }
            Step::MountView => mounts::build_root(&p.binds, &sources, p.limits.tmp_size)?,
            Step::Hostname => sys::sethostname(HOSTNAME).map_err(JailError::Hostname)?,
            // The jail's init dropped its capabilities with set_ids (a warm jail's keeps them
            // for its zygote), and without CAP_SYS_ADMIN both Landlock and seccomp require it.
            Step::NoNewPrivs => sys::set_no_new_privs().map_err(JailError::NoNewPrivs)?,
            Step::Landlock => {
                let handles: Vec<_> = sources
                    .iter()
                    .zip(&p.binds)
                    .zip(&p.access)
                    .map(|((fd, b), a)| (fd.as_fd(), *a, b.is_dir))
                    .collect();
                landlock::apply(&p.landlock, &handles)?;
            }
            Step::Seccomp => listener = seccomp::install(&p.seccomp)?,
            other => unreachable!("{} is not a jail step", other.name()),
        }
    }
    drop(sources);

    let (pid, pidfd) = match sys::fork_pidfd().map_err(JailError::Fork)? {
        sys::Forked::Child => {
            drop(listener);
            interpreter(&p, fds)
        }
        sys::Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    if let Some(listener) = listener {
        // Allow exactly the execve that starts the interpreter; closing the listener makes the
        // kernel fail every later execve with ENOSYS.
        seccomp::approve_first_exec(listener, pid, pidfd.as_fd())?;
    }
    // The interpreter's copy of the error pipe closed at execve; ours closes now, so the
    // supervisor sees end-of-file once the interpreter runs.
    let _ = sys::close_all_except(&[fds.status]);
    loop {
        match sys::wait4(-1, 0) {
            Ok(Some(r)) if r.pid == pid => {
                let rec = status_record(r.status, &r.rusage);
                let _ = sys::write_all(fds.status, &rec);
                return Ok(());
            }
            Ok(_) => continue,
            Err(_) => return Ok(()),
        }
    }
}

/// Queued connections and datagrams of unix sockets hold kernel memory that no rlimit counts:
/// a listening socket keeps every connection not yet accepted, with what its (closed) client
/// wrote, up to a send buffer (~208 KiB) each, and a datagram socket keeps its queue of
/// datagrams. With the host's defaults (4096 connections, 10 datagrams) one run held hundreds of
/// MiB through a few descriptors. In the jail's own network namespace both queues are cut to
/// one entry (two can wait): every descriptor then pins at most a few send buffers. Set while
/// init still has its capabilities in the namespace and the host's /proc is mounted (its
/// `sys/net` shows the writer's own network namespace).
fn limit_unix_queues() -> Result<(), JailError> {
    for (path, value) in [
        ("/proc/sys/net/core/somaxconn", "1"),
        ("/proc/sys/net/unix/max_dgram_qlen", "1"),
    ] {
        std::fs::write(path, value).map_err(|e| {
            JailError::Step(StepError::new(Step::NetworkLimits, format!("{path}: {e}")))
        })?;
    }
    Ok(())
}

/// Length of the status record init writes when the interpreter ends.
pub(crate) const STATUS_LEN: usize = 29;

/// The interpreter's end as seen by init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusRecord {
    /// Ok(exit code) or Err(signal).
    pub end: Result<i32, i32>,
    pub cpu_micros: u64,
    pub maxrss_kib: u64,
    pub _reserved: u32,
}

/// Status record: kind (0 exited, 1 signalled), value, CPU time in µs, peak RSS in KiB of the
/// interpreter (and its reaped children), all little-endian.
fn status_record(status: libc::c_int, ru: &libc::rusage) -> [u8; STATUS_LEN] {
    let (kind, value) = if libc::WIFSIGNALED(status) {
        (1u8, libc::WTERMSIG(status))
    } else {
        (0u8, libc::WEXITSTATUS(status))
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let cpu = micros(ru.ru_utime) + micros(ru.ru_stime);
    let mut rec = [0u8; STATUS_LEN];
    rec[0] = kind;
    rec[1..5].copy_from_slice(&value.to_le_bytes());
    rec[5..13].copy_from_slice(&cpu.to_le_bytes());
    rec[13..21].copy_from_slice(&(ru.ru_maxrss as u64).to_le_bytes());
    rec
}

/// Decode [`status_record`].
pub(crate) fn parse_status_record(rec: &[u8]) -> Option<StatusRecord> {
    if rec.len() != STATUS_LEN {
        return None;
    }
    let value = i32::from_le_bytes(rec[1..5].try_into().ok()?);
    let end = match rec[0] {
        0 => Ok(value),
        1 => Err(value),
        _ => return None,
    };
    Some(StatusRecord {
        end,
        cpu_micros: u64::from_le_bytes(rec[5..13].try_into().ok()?),
        maxrss_kib: u64::from_le_bytes(rec[13..21].try_into().ok()?),
        _reserved: 0,
    })
}

/// The interpreter's side (PID 2): its isolation steps, then `execve`. Never returns: a
/// failure is reported on the error pipe.
fn interpreter(p: &Prepared, fds: &InitFds) -> ! {
    let l = &p.limits;
    // The error pipe goes last and keeps close-on-exec: it reports a failed execve only.
    let mut arranged = fds.child.clone();
    arranged.push(fds.error);
    let setup = ChildSetup {
        stage: Stage::ColdInterpreter,
        fds: &arranged,
        last_cloexec: true,
        placeholders: &[],
        rlimits: Rlimits {
            memory: l.memory,
            cpu_seconds: l.cpu.map(|c| c.as_secs() + u64::from(c.subsec_nanos() > 0)),
            // init runs as the same user in this user namespace and counts as one process.
            nproc: u64::from(l.processes) + 1,
            open_files: u64::from(l.open_files),
            file_size: l.file_size,
        },
        tmp_options: None,
        landlock: None,
        seccomp: None,
        after_step: None,
        inject: p.inject,
        disabled: p.disabled,
    };
    let mut report = fds.error;
    if let Err(e) = isolate::enter(&setup, &mut report) {
        report_to(report, &JailError::Step(e));
        sys::exit_now(127);
    }
    let err = JailError::Exec(sys::execve(&p.exe, &p.argv, &p.envp));
    report_to(report, &err);
    sys::exit_now(127)
}

fn report_to(fd: RawFd, err: &JailError) {
    let _ = sys::write_all(fd, err.to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_records_round_trip() {
        // SAFETY-free: a zeroed rusage is a valid value of the plain C struct.
        let mut ru: libc::rusage = unsafe_free_zeroed_rusage();
        ru.ru_utime.tv_sec = 1;
        ru.ru_stime.tv_usec = 250;
        ru.ru_maxrss = 4096;
        // A normal exit with code 3 is encoded in bits 8..16 of a wait status.
        let r = parse_status_record(&status_record(3 << 8, &ru)).unwrap();
        assert_eq!(r.end, Ok(3));
        assert_eq!(r.cpu_micros, 1_000_250);
        assert_eq!(r.maxrss_kib, 4096);
        // Killed by SIGKILL: the low 7 bits hold the signal.
        let r = parse_status_record(&status_record(9, &ru)).unwrap();
        assert_eq!(r.end, Err(9));
        let mut bad = status_record(0, &ru);
        bad[0] = 7;
        assert_eq!(parse_status_record(&bad), None);
        assert_eq!(parse_status_record(&[0, 0]), None);
    }

    fn unsafe_free_zeroed_rusage() -> libc::rusage {
        crate::sys::zeroed_rusage()
    }
}
