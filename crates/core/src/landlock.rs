//! Landlock: the jail's filesystem rules again, enforced by the kernel on every `open`, plus TCP
//! and scoping rules. Behind the mount namespace this is a second wall: even a file that somehow
//! appeared in the jail's root could not be opened unless a rule allows it.
//!
//! Every access right the running kernel knows is handled (denied unless allowed), for the
//! filesystem (ABI 1–5), TCP bind/connect (ABI ≥ 4) and signal / abstract-unix-socket scoping
//! (ABI ≥ 6). Failure to apply any requested part is an error: the jail does not start.

use crate::sys;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

/// What a path allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Read files and list directories.
    Read,
    /// `Read` plus executing files (the interpreter and its libraries).
    ReadExec,
    /// Everything but executing: create, write, remove, rename, devices' ioctls.
    ReadWrite,
}

#[derive(Debug, Clone)]
pub struct LandlockRules {
    /// Paths inside the jail (after `pivot_root`) and what they allow.
    pub paths: Vec<(PathBuf, Access)>,
    /// The code cannot signal processes outside its Landlock domain (ABI ≥ 6).
    pub scope_signals: bool,
    /// The code cannot connect to abstract unix sockets outside its domain (ABI ≥ 6).
    pub scope_abstract_unix: bool,
    /// No TCP bind or connect at all (ABI ≥ 4).
    pub restrict_tcp: bool,
}

/// What was enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandlockStatus {
    pub abi: u32,
    pub tcp: bool,
    pub scope_signals: bool,
    pub scope_abstract_unix: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error(
        "Landlock is not available ({0}); it needs Linux ≥ 5.13 with CONFIG_SECURITY_LANDLOCK and \
         'landlock' in the lsm= boot parameter"
    )]
    Unsupported(io::Error),
    #[error("Landlock ABI {abi} cannot {what} (needs ABI {needs})")]
    TooOld {
        abi: u32,
        what: &'static str,
        needs: u32,
    },
    #[error("creating the Landlock ruleset: {0}")]
    Ruleset(io::Error),
    #[error("Landlock rule for {path}: {source}")]
    Rule { path: PathBuf, source: io::Error },
    #[error("enforcing the Landlock ruleset: {0}")]
    Restrict(io::Error),
}

pub const EXECUTE: u64 = 1 << 0;
pub const WRITE_FILE: u64 = 1 << 1;
pub const READ_FILE: u64 = 1 << 2;
pub const READ_DIR: u64 = 1 << 3;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
pub const NET_BIND_TCP: u64 = 1 << 0;
pub const NET_CONNECT_TCP: u64 = 1 << 1;
pub const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
pub const SCOPE_SIGNAL: u64 = 1 << 1;

/// Rights that apply to a file (not a directory); a rule on a file may carry only these.
pub const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

/// Filesystem rights known at `abi`.
pub fn fs_rights(abi: u32) -> u64 {
    let mut r = (1 << 13) - 1;
    if abi >= 2 {
        r |= REFER;
    }
    if abi >= 3 {
        r |= TRUNCATE;
    }
    if abi >= 5 {
        r |= IOCTL_DEV;
    }
    r
}

pub fn rights(access: Access, handled: u64) -> u64 {
    let r = match access {
        Access::Read => READ_FILE | READ_DIR,
        Access::ReadExec => READ_FILE | READ_DIR | EXECUTE,
        Access::ReadWrite => {
            READ_FILE
                | READ_DIR
                | WRITE_FILE
                | REMOVE_DIR
                | REMOVE_FILE
                | MAKE_CHAR
                | MAKE_DIR
                | MAKE_REG
                | MAKE_SOCK
                | MAKE_FIFO
                | MAKE_BLOCK
                | MAKE_SYM
                | REFER
                | TRUNCATE
                | IOCTL_DEV
        }
    };
    r & handled
}

/// The kernel's Landlock ABI version.
pub fn abi() -> Result<u32, LandlockError> {
    sys::landlock::abi().map_err(LandlockError::Unsupported)
}

/// Restrict the calling process (and everything it starts) to `rules`, plus `handles`: files or
/// directories already open (`O_PATH`), with what they allow and whether they are directories.
/// `no_new_privs` must be set already.
pub fn apply(
    rules: &LandlockRules,
    handles: &[(BorrowedFd, Access, bool)],
) -> Result<LandlockStatus, LandlockError> {
    let abi = abi()?;
    let too_old = |what, needs| LandlockError::TooOld { abi, what, needs };
    if rules.restrict_tcp && abi < 4 {
        return Err(too_old("restrict TCP", 4));
    }
    if (rules.scope_signals || rules.scope_abstract_unix) && abi < 6 {
        return Err(too_old("scope signals and abstract unix sockets", 6));
    }
    let handled = fs_rights(abi);
    let net = if rules.restrict_tcp {
        NET_BIND_TCP | NET_CONNECT_TCP
    } else {
        0
    };
    let mut scoped = 0;
    if rules.scope_signals {
        scoped |= SCOPE_SIGNAL;
    }
    if rules.scope_abstract_unix {
        scoped |= SCOPE_ABSTRACT_UNIX_SOCKET;
    }
    let ruleset =
        sys::landlock::create_ruleset(handled, net, scoped).map_err(LandlockError::Ruleset)?;
    for (path, access) in &rules.paths {
        let rule_err = |source| LandlockError::Rule {
            path: path.clone(),
            source,
        };
        let fd = sys::open_path(path).map_err(rule_err)?;
        let is_dir = std::fs::metadata(path).map_err(rule_err)?.is_dir();
        let mut allowed = rights(*access, handled);
        if !is_dir {
            allowed &= FILE_RIGHTS;
        }
        sys::landlock::add_path_rule(ruleset.as_fd(), fd.as_fd(), allowed).map_err(rule_err)?;
    }
    for (i, (fd, access, is_dir)) in handles.iter().enumerate() {
        let mut allowed = rights(*access, handled);
        if !is_dir {
            allowed &= FILE_RIGHTS;
        }
        sys::landlock::add_path_rule(ruleset.as_fd(), *fd, allowed).map_err(|source| {
            LandlockError::Rule {
                path: PathBuf::from(format!("bind #{i}")),
                source,
            }
        })?;
    }
    sys::landlock::restrict_self(ruleset.as_fd()).map_err(LandlockError::Restrict)?;
    Ok(LandlockStatus {
        abi,
        tcp: rules.restrict_tcp,
        scope_signals: rules.scope_signals,
        scope_abstract_unix: rules.scope_abstract_unix,
    })
}

/// A ruleset holding `rules` (files or directories open as `O_PATH`, with their rights), not yet
/// enforced: a warm worker's zygote makes one per request child before the fork, and the child
/// adds its own `/tmp` and enforces it ([`restrict_with_tmp`]), which gives every child a
/// Landlock domain of its own.
pub fn prepare_ruleset(
    handled: u64,
    net: u64,
    scoped: u64,
    rules: &[(OwnedFd, u64)],
) -> io::Result<OwnedFd> {
    let ruleset = sys::landlock::create_ruleset(handled, net, scoped)?;
    for (fd, allowed) in rules {
        sys::landlock::add_path_rule(ruleset.as_fd(), fd.as_fd(), *allowed)?;
    }
    Ok(ruleset)
}

/// Add `/tmp` with `tmp_rights` to a ruleset from [`prepare_ruleset`] and enforce it on the
/// calling process (`no_new_privs` must be set).
pub fn restrict_with_tmp(ruleset: OwnedFd, tmp_rights: u64) -> io::Result<()> {
    let tmp = sys::open_path(std::path::Path::new("/tmp"))?;
    sys::landlock::add_path_rule(ruleset.as_fd(), tmp.as_fd(), tmp_rights)?;
    drop(tmp);
    sys::landlock::restrict_self(ruleset.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_per_abi_and_kind() {
        assert_eq!(fs_rights(1), (1 << 13) - 1);
        assert_eq!(fs_rights(7), (1 << 16) - 1);
        assert_eq!(rights(Access::Read, fs_rights(7)), READ_FILE | READ_DIR);
        assert_eq!(
            rights(Access::ReadWrite, fs_rights(1)) & (REFER | TRUNCATE),
            0
        );
        assert_eq!(rights(Access::ReadWrite, fs_rights(7)) & EXECUTE, 0);
    }

    /// Apply a ruleset in a child process (Landlock restricts the calling thread for good) and
    /// check from there what it allows; the parent reads the verdict from the exit status.
    #[test]
    fn enforced_in_a_child() {
        if abi().is_err() {
            assert!(
                std::env::var_os("PYSANDBOX_MUST_WORK").is_none(),
                "Landlock is required (PYSANDBOX_MUST_WORK)"
            );
            eprintln!("skipped: Landlock unavailable");
            return;
        }
        let dir = std::env::temp_dir().join(format!("pysandbox-landlock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("readable"), b"ok").unwrap();
        let outside = std::env::temp_dir().join(format!("pysandbox-ll-out-{}", std::process::id()));
        std::fs::write(&outside, b"secret").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rules = LandlockRules {
            paths: vec![(dir.clone(), Access::Read)],
            scope_signals: abi().unwrap() >= 6,
            scope_abstract_unix: false,
            restrict_tcp: abi().unwrap() >= 4,
        };
        let parent = std::process::id() as libc::pid_t;
        let code = crate::sys::in_child(|| {
            if crate::sys::set_no_new_privs().is_err() || apply(&rules, &[]).is_err() {
                return 10;
            }
            if std::fs::read(dir.join("readable")).ok().as_deref() != Some(b"ok".as_slice()) {
                return 11;
            }
            if std::fs::write(dir.join("new"), b"x").is_ok() {
                return 12;
            }
            if std::fs::read(&outside).is_ok() {
                return 13;
            }
            if rules.restrict_tcp && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return 14;
            }
            if rules.scope_signals && crate::sys::kill_pid(parent, 0).is_ok() {
                return 15;
            }
            0
        });
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&outside);
        assert_eq!(code.unwrap(), 0, "child verdict (see the numbered checks)");
    }
}
