//! The isolation steps every path takes before untrusted code runs, in one ordered list, and the
//! one table of where each path takes them.
//!
//! Five stages run these steps. A cold run is a jail (its init, [`Stage::ColdJail`]) and the
//! interpreter it starts ([`Stage::ColdInterpreter`], just before `execve`). A warm worker is a
//! jail too ([`Stage::WarmJail`], whose interpreter is the zygote), and every request child the
//! zygote forks runs the child steps itself, right after the fork, in Rust code of this crate
//! loaded into the zygote (`crates/zygote`): [`Stage::WarmRequest`] for a fresh run,
//! [`Stage::WarmSession`] for a session's child. The bootstrap Python makes none of these calls.
//!
//! ```text
//! step               cold jail  cold interp.  warm jail  warm request  warm session
//! network limits         ✓                        ✓          (the jail's network namespace)
//! ids                    ✓                        ✓ (0)
//! mount view             ✓                        ✓
//! hostname               ✓                        ✓
//! no_new_privs           ✓                        ✓
//! landlock               ✓                                              (own domain below)
//! seccomp                ✓                        ✓ (zygote filter)
//! session (setsid)                  ✓                          ✓             ✓
//! signals                           ✓
//! descriptors                       ✓                          ✓             ✓
//! mount namespace                                                            ✓ (own /tmp)
//! ipc namespace                                                ✓             ✓
//! working directory                 ✓                          ✓             ✓
//! resource limits                   ✓                          ✓             ✓
//! capabilities                                                 ✓             ✓
//! no_new_privs                                                 ✓             ✓ (inherited: again)
//! landlock                                                     ✓             ✓ (own domain)
//! seccomp                                                      ✓             ✓ (stacked filter)
//! ```
//!
//! A request child's PID namespace is made by the zygote before the fork (a new PID namespace
//! applies to the next child a process makes), and its `/tmp` is a fresh tmpfs the zygote
//! mounts after each run. A step that fails stops the stage: nothing of the code runs, and the
//! caller reports the step by name ([`StepError`]); a test-only switch ([`Injection`]) makes
//! any step fail on purpose so that every failure path is exercised.

use crate::landlock;
use crate::sys;
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

/// One isolation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    NetworkLimits,
    Ids,
    MountView,
    Hostname,
    NoNewPrivs,
    Landlock,
    Seccomp,
    Session,
    Signals,
    Descriptors,
    MountNamespace,
    IpcNamespace,
    WorkDir,
    Rlimits,
    Capabilities,
}

impl Step {
    /// The name used in error messages and by the test switch.
    pub fn name(self) -> &'static str {
        match self {
            Step::NetworkLimits => "network limits",
            Step::Ids => "ids",
            Step::MountView => "mount view",
            Step::Hostname => "hostname",
            Step::NoNewPrivs => "no_new_privs",
            Step::Landlock => "landlock",
            Step::Seccomp => "seccomp",
            Step::Session => "session",
            Step::Signals => "signals",
            Step::Descriptors => "descriptors",
            Step::MountNamespace => "mount namespace",
            Step::IpcNamespace => "ipc namespace",
            Step::WorkDir => "working directory",
            Step::Rlimits => "resource limits",
            Step::Capabilities => "capabilities",
        }
    }

    /// Every step, for the test switch's argument.
    pub fn from_name(name: &str) -> Option<Step> {
        PLAN.iter()
            .map(|(s, _)| *s)
            .find(|s| s.name() == name || s.name().replace(' ', "_") == name)
    }
}

/// Who runs a list of steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    ColdJail,
    ColdInterpreter,
    WarmJail,
    WarmRequest,
    WarmSession,
}

const STAGES: [Stage; 5] = [
    Stage::ColdJail,
    Stage::ColdInterpreter,
    Stage::WarmJail,
    Stage::WarmRequest,
    Stage::WarmSession,
];

/// The table (columns in the order of [`STAGES`]); rows in the order the steps run.
const PLAN: &[(Step, [bool; 5])] = &[
    (Step::NetworkLimits, [true, false, true, false, false]),
    (Step::Ids, [true, false, true, false, false]),
    (Step::MountView, [true, false, true, false, false]),
    (Step::Hostname, [true, false, true, false, false]),
    (Step::NoNewPrivs, [true, false, true, false, false]),
    (Step::Landlock, [true, false, false, false, false]),
    (Step::Seccomp, [true, false, true, false, false]),
    (Step::Session, [false, true, false, true, true]),
    (Step::Signals, [false, true, false, false, false]),
    (Step::Descriptors, [false, true, false, true, true]),
    (Step::MountNamespace, [false, false, false, false, true]),
    (Step::IpcNamespace, [false, false, false, true, true]),
    (Step::WorkDir, [false, true, false, true, true]),
    (Step::Rlimits, [false, true, false, true, true]),
    (Step::Capabilities, [false, false, false, true, true]),
    (Step::NoNewPrivs, [false, false, false, true, true]),
    (Step::Landlock, [false, false, false, true, true]),
    (Step::Seccomp, [false, false, false, true, true]),
];

/// The steps `stage` takes, in order.
pub fn steps(stage: Stage) -> impl Iterator<Item = Step> {
    let col = STAGES
        .iter()
        .position(|s| *s == stage)
        .expect("every stage");
    PLAN.iter().filter(move |(_, on)| on[col]).map(|(s, _)| *s)
}

/// A step that failed, named.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", step.name())]
pub struct StepError {
    pub step: Step,
    pub message: String,
}

impl StepError {
    pub fn new(step: Step, message: impl std::fmt::Display) -> StepError {
        StepError {
            step,
            message: message.to_string(),
        }
    }
}

/// The test-only switch: fail `step` (in a warm worker: in its `child`-th child, counting from
/// 1; in a cold run, `child` is ignored). It can only make a run fail, never weaken one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Injection {
    pub step: Step,
    pub child: u64,
}

impl Injection {
    /// `STEP` or `STEP:N` (the Nth child of a warm worker; default 1).
    pub fn parse(text: &str) -> Result<Injection, String> {
        let (name, child) = match text.split_once(':') {
            Some((n, c)) => (n, c.parse().map_err(|_| format!("bad child number '{c}'"))?),
            None => (text, 1),
        };
        let step = Step::from_name(name).ok_or_else(|| {
            let names: Vec<_> = PLAN
                .iter()
                .map(|(s, _)| s.name().replace(' ', "_"))
                .collect();
            format!(
                "unknown step '{name}': expected one of {}",
                names.join(", ")
            )
        })?;
        Ok(Injection { step, child })
    }
}

/// Fail on purpose if the test switch names `step`.
pub fn check_injected(inject: Option<Step>, step: Step) -> Result<(), StepError> {
    if inject == Some(step) {
        return Err(StepError::new(step, "failure injected by the test switch"));
    }
    Ok(())
}

/// Resource limits of the process that runs the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimits {
    /// `RLIMIT_AS`.
    pub memory: Option<u64>,
    /// `RLIMIT_CPU`, hard = soft: the kernel's SIGKILL at the limit. Code cannot raise a soft
    /// limit above a hard one, so it cannot lift this one.
    pub cpu_seconds: Option<u64>,
    /// `RLIMIT_NPROC`: processes and threads of the sandbox's user in its user namespace, the
    /// ones already there (the jail's init, a zygote) included.
    pub nproc: u64,
    pub open_files: u64,
    pub file_size: u64,
}

/// Everything the child steps need.
pub struct ChildSetup<'a> {
    pub stage: Stage,
    /// Placed at descriptors 0, 1, 2, … (the rest are closed).
    pub fds: &'a [RawFd],
    /// Keep the last of `fds` close-on-exec (the cold path's error pipe: it reports a failed
    /// `execve` only).
    pub last_cloexec: bool,
    /// Descriptors (above `fds`) that get a copy of descriptor 0 (close-on-exec) instead of
    /// staying closed: numbers objects inherited from a warm zygote may still close.
    pub placeholders: &'a [RawFd],
    pub rlimits: Rlimits,
    /// Mount options of a session's own `/tmp`.
    pub tmp_options: Option<&'a CString>,
    /// The Landlock ruleset prepared by the zygote (the jail's rules) and the rights of
    /// `/tmp`, added here: this child's `/tmp` is a tmpfs of its own, and Landlock rules name
    /// inodes. Its descriptor number after the Descriptors step is its index in `fds`.
    pub landlock: Option<(usize, u64)>,
    /// The filter stacked on the zygote's.
    pub seccomp: Option<&'a [libc::sock_filter]>,
    /// Called after each step (a traced warm child notes its phases).
    pub after_step: Option<fn(Step)>,
    pub inject: Option<Step>,
}

/// Run the child steps of `s.stage`, in order. `report` is where a failure should be written;
/// the Descriptors step moves it (to its index in `s.fds`).
pub fn enter(s: &ChildSetup<'_>, report: &mut RawFd) -> Result<(), StepError> {
    for step in steps(s.stage) {
        check_injected(s.inject, step)?;
        let fail = |e: io::Error| StepError::new(step, e);
        match step {
            // New session: no controlling terminal, so no TIOCSTI into the caller's.
            Step::Session => sys::setsid().map_err(fail)?,
            Step::Signals => sys::reset_signals(),
            Step::Descriptors => {
                let at = s.fds.iter().position(|f| f == report);
                sys::arrange_fds(s.fds).map_err(fail)?;
                for &fd in s.placeholders {
                    sys::dup_onto(0, fd).map_err(fail)?;
                }
                if s.last_cloexec {
                    sys::set_cloexec((s.fds.len() - 1) as RawFd).map_err(fail)?;
                }
                if let Some(i) = at {
                    *report = i as RawFd;
                }
            }
            Step::MountNamespace => {
                // A session overlaps with the worker's requests: it gets a /tmp of its own.
                sys::unshare(libc::CLONE_NEWNS).map_err(fail)?;
                sys::mount(
                    None,
                    Path::new("/"),
                    None,
                    libc::MS_REC | libc::MS_PRIVATE,
                    None,
                )
                .map_err(fail)?;
                mount_tmp(s.tmp_options).map_err(fail)?;
            }
            // SysV objects and POSIX message queues belong to an IPC namespace and outlive
            // the process that made them: each child gets a namespace of its own.
            Step::IpcNamespace => sys::unshare(libc::CLONE_NEWIPC).map_err(fail)?,
            Step::WorkDir => std::env::set_current_dir("/tmp").map_err(fail)?,
            Step::Rlimits => apply_rlimits(&s.rlimits)
                .map_err(|(what, e)| StepError::new(step, format!("setting {what}: {e}")))?,
            Step::Capabilities => sys::drop_all_capabilities().map_err(fail)?,
            Step::NoNewPrivs => sys::set_no_new_privs().map_err(fail)?,
            Step::Landlock => {
                if let Some((index, tmp_rights)) = s.landlock {
                    let ruleset = sys::adopt_fd(index as RawFd).map_err(fail)?;
                    landlock::restrict_with_tmp(ruleset, tmp_rights).map_err(fail)?;
                }
            }
            Step::Seccomp => {
                if let Some(prog) = s.seccomp {
                    sys::seccomp::install(prog, false).map_err(fail)?;
                }
            }
            Step::NetworkLimits | Step::Ids | Step::MountView | Step::Hostname => {
                unreachable!("jail steps are taken by the jail's init")
            }
        }
        if let Some(noted) = s.after_step {
            noted(step);
        }
    }
    Ok(())
}

/// A fresh `/tmp` tmpfs (nosuid, nodev) with `options` (size, inodes, mode).
pub(crate) fn mount_tmp(options: Option<&CString>) -> io::Result<()> {
    sys::mount(
        Some(Path::new("tmpfs")),
        Path::new("/tmp"),
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        options.map(|o| o.as_c_str()),
    )
}

/// The tmpfs options of a `/tmp` of `size` bytes: `nr_inodes` bounds the kernel memory that
/// `size=` does not count (empty files).
pub fn tmp_options(size: u64) -> CString {
    let nr_inodes = (size / 1024).max(1024);
    CString::new(format!("mode=1777,size={size},nr_inodes={nr_inodes}")).expect("no NUL")
}

fn apply_rlimits(l: &Rlimits) -> Result<(), (&'static str, io::Error)> {
    let set = |what: &'static str, res, soft: u64, hard: u64| {
        sys::setrlimit(res, soft, hard).map_err(|e| (what, e))
    };
    if let Some(mem) = l.memory {
        set("memory (RLIMIT_AS)", libc::RLIMIT_AS, mem, mem)?;
    }
    if let Some(cpu) = l.cpu_seconds {
        set("cpu time (RLIMIT_CPU)", libc::RLIMIT_CPU, cpu, cpu)?;
    }
    set(
        "processes (RLIMIT_NPROC)",
        libc::RLIMIT_NPROC,
        l.nproc,
        l.nproc,
    )?;
    set(
        "open files (RLIMIT_NOFILE)",
        libc::RLIMIT_NOFILE,
        l.open_files,
        l.open_files,
    )?;
    set(
        "file size (RLIMIT_FSIZE)",
        libc::RLIMIT_FSIZE,
        l.file_size,
        l.file_size,
    )?;
    set("core dumps (RLIMIT_CORE)", libc::RLIMIT_CORE, 0, 0)?;
    set("locked memory (RLIMIT_MEMLOCK)", libc::RLIMIT_MEMLOCK, 0, 0)?;
    set(
        "message queues (RLIMIT_MSGQUEUE)",
        libc::RLIMIT_MSGQUEUE,
        0,
        0,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_its_steps_in_order() {
        let cold: Vec<_> = steps(Stage::ColdInterpreter).collect();
        assert_eq!(
            cold,
            [
                Step::Session,
                Step::Signals,
                Step::Descriptors,
                Step::WorkDir,
                Step::Rlimits
            ]
        );
        let warm: Vec<_> = steps(Stage::WarmRequest).collect();
        // Seccomp last (a filter could refuse the calls of the steps after it), Landlock after
        // capabilities and no_new_privs.
        assert_eq!(warm.last(), Some(&Step::Seccomp));
        let at = |s| warm.iter().position(|x| *x == s).unwrap();
        assert!(at(Step::Capabilities) < at(Step::Landlock));
        assert!(at(Step::IpcNamespace) < at(Step::Capabilities));
        let session: Vec<_> = steps(Stage::WarmSession).collect();
        assert!(session.contains(&Step::MountNamespace) && !warm.contains(&Step::MountNamespace));
        let jail: Vec<_> = steps(Stage::ColdJail).collect();
        assert!(jail.contains(&Step::Landlock));
        assert!(!steps(Stage::WarmJail).any(|s| s == Step::Landlock));
    }

    #[test]
    fn injection_names() {
        assert_eq!(
            Injection::parse("landlock").unwrap(),
            Injection {
                step: Step::Landlock,
                child: 1
            }
        );
        assert_eq!(Injection::parse("ipc_namespace:2").unwrap().child, 2);
        assert!(Injection::parse("nothing")
            .unwrap_err()
            .contains("expected one of"));
        assert!(check_injected(Some(Step::Seccomp), Step::Seccomp).is_err());
        assert!(check_injected(Some(Step::Seccomp), Step::Landlock).is_ok());
    }
}
