//! Raw seccomp calls: installing a filter and answering user notifications.

use super::cvt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Install `program` for the calling thread's process (`SECCOMP_FILTER_FLAG_TSYNC` is not needed:
/// the jail's init is single-threaded). With `listener`, returns the user-notification fd.
pub(crate) fn install(
    program: &[libc::sock_filter],
    listener: bool,
) -> io::Result<Option<OwnedFd>> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter too long"))?,
        filter: program.as_ptr().cast_mut(),
    };
    let flags: libc::c_ulong = if listener {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        0
    };
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies the filter.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if listener {
        // SAFETY: with NEW_LISTENER the kernel returns a new descriptor that we now own.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as i32) }))
    } else {
        Ok(None)
    }
}

/// One pending notification: its id, the notifying task and the syscall number.
pub(crate) struct Notification {
    pub id: u64,
    pub pid: u32,
    pub nr: i32,
}

/// `SECCOMP_IOCTL_NOTIF_RECV`: blocks until a notification arrives.
pub(crate) fn receive(listener: BorrowedFd) -> io::Result<Notification> {
    // SAFETY: seccomp_notif is a plain C struct; all-zero is the required initial state.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one seccomp_notif into `n`, which is large enough (same struct
    // definition as the kernel's for this ABI).
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) })?;
    Ok(Notification {
        id: n.id,
        pid: n.pid,
        nr: n.data.nr,
    })
}

/// Let the notified syscall proceed as if no filter had stopped it.
pub(crate) fn allow(listener: BorrowedFd, id: u64) -> io::Result<()> {
    // SAFETY: plain C struct, zero is a valid value.
    let mut r: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
    r.id = id;
    r.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
    // SAFETY: the ioctl reads one seccomp_notif_resp from `r`.
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut r) })?;
    Ok(())
}

/// Fail the notified syscall with `errno`.
pub(crate) fn deny(listener: BorrowedFd, id: u64, errno: i32) -> io::Result<()> {
    // SAFETY: plain C struct, zero is a valid value.
    let mut r: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
    r.id = id;
    r.error = -errno;
    // SAFETY: the ioctl reads one seccomp_notif_resp from `r`.
    cvt(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut r) })?;
    Ok(())
}
