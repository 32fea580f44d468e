//! Raw Landlock calls (landlock(7)); the structs mirror `<linux/landlock.h>`.

use super::cvt_long;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

#[repr(C)]
#[derive(Default)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The highest Landlock ABI the kernel supports.
pub(crate) fn abi() -> io::Result<u32> {
    // SAFETY: with a null attribute, size 0 and the VERSION flag, the call only returns a number.
    let v = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    })?;
    Ok(v as u32)
}

/// A new ruleset handling these rights.
pub(crate) fn create_ruleset(fs: u64, net: u64, scoped: u64) -> io::Result<OwnedFd> {
    let attr = RulesetAttr {
        handled_access_fs: fs,
        handled_access_net: net,
        scoped,
    };
    // SAFETY: `attr` is a valid landlock_ruleset_attr of the size passed; the kernel accepts a
    // larger struct than it knows as long as the unknown tail is zero.
    let fd = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    })?;
    // SAFETY: the kernel returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Allow `access` beneath the file or directory open at `parent` (an `O_PATH` descriptor).
pub(crate) fn add_path_rule(
    ruleset: BorrowedFd,
    parent: BorrowedFd,
    access: u64,
) -> io::Result<()> {
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: parent.as_raw_fd(),
    };
    // SAFETY: `attr` is a valid, packed landlock_path_beneath_attr that outlives the call.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    })?;
    Ok(())
}

/// Enforce the ruleset on the calling thread (and what it starts). Needs `no_new_privs`.
pub(crate) fn restrict_self(ruleset: BorrowedFd) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we hold; no memory is passed.
    cvt_long(unsafe {
        libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32)
    })?;
    Ok(())
}
