//! The jail's filesystem: a fresh tmpfs root holding only read-only binds of the interpreter's own
//! files, four `/dev` nodes, a private size-limited `/tmp` and the paths the policy allows.

use crate::paths::{self, PathError};
use crate::sys;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Where the new root is assembled before `pivot_root`, inside the jail's private mount namespace
/// (the host's `/tmp` is not touched: the tmpfs hides it only in this namespace).
const STAGING: &str = "/tmp";

/// Device nodes the interpreter needs (`/dev/urandom` for hash seeds and `os.urandom`).
pub const DEV_NODES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    /// Read-only, nosuid, nodev (the interpreter, allowed read paths).
    ReadOnly,
    /// Writable, nosuid, nodev (paths the policy allows writing).
    ReadWrite,
    /// A host device node: read-only mount flags but device access kept.
    Device,
}

/// One bind mount. The jail's init opens the source right after `clone`, while it still has the
/// caller's credentials: once it switches to the unprivileged id it may not be able to walk to the
/// source any more (pyenv lives under `/root`, mode 0700). The source must be opened inside the
/// jail's mount namespace: the kernel refuses to bind a mount of another namespace (EINVAL).
/// Sources are opened without following symlinks ([`paths`]): what is bound is what is named.
#[derive(Debug)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub is_dir: bool,
    pub kind: BindKind,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// Not a `#[source]`: the message already says it all (no repeat in an error chain).
    #[error("bind source {0}")]
    Source(PathError),
    #[error("cannot make the host mounts private to the jail: {0}")]
    MakePrivate(io::Error),
    #[error("cannot mount the jail's root tmpfs: {0}")]
    RootTmpfs(io::Error),
    #[error("cannot create mount point {path}: {source}")]
    MountPoint { path: PathBuf, source: io::Error },
    #[error("cannot bind {target} into the jail: {source}")]
    Bind { target: PathBuf, source: io::Error },
    #[error("cannot make {target} read-only: {source}")]
    Remount { target: PathBuf, source: io::Error },
    #[error("cannot mount the private /tmp (size {size} bytes): {source}")]
    Tmp { size: u64, source: io::Error },
    #[error("pivot_root into the jail's root failed: {0}")]
    PivotRoot(io::Error),
}

/// Check a bind source on the host side, so that a missing path, or one through a symlink,
/// fails before anything starts (the jail's init opens it again: that open is the one that
/// counts).
pub fn check_bind(path: &Path, target: &Path, kind: BindKind) -> Result<BindMount, MountError> {
    let (_, is_dir) = paths::open_exact_kind(path).map_err(MountError::Source)?;
    Ok(BindMount {
        source: path.to_path_buf(),
        target: target.to_path_buf(),
        is_dir,
        kind,
    })
}

fn staged(target: &Path) -> PathBuf {
    Path::new(STAGING).join(target.strip_prefix("/").unwrap_or(target))
}

fn mount_point(path: &Path, is_dir: bool) -> Result<(), MountError> {
    let err = |source| MountError::MountPoint {
        path: path.to_path_buf(),
        source,
    };
    if is_dir {
        std::fs::create_dir_all(path).map_err(err)?;
    } else {
        if let Some(parent) = path.parent() {
            if !parent.is_dir() {
                std::fs::create_dir_all(parent).map_err(err)?;
            }
        }
        match sys::mknod_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

/// Open every bind source (`O_PATH`, no symlink followed in any component), in the jail's mount
/// namespace, with the caller's credentials. These descriptors are what is bound and what
/// Landlock's rules name: a path swapped for a symlink after [`check_bind`] is refused here.
pub fn open_sources(binds: &[BindMount]) -> Result<Vec<OwnedFd>, MountError> {
    binds
        .iter()
        .map(|b| paths::open_exact(&b.source).map_err(MountError::Source))
        .collect()
}

/// Bind the open source at the (existing) staged target.
fn attach(b: &BindMount, fd: &OwnedFd) -> Result<(), MountError> {
    let target = staged(&b.target);
    // The magic link names the already-open source without walking its host path again.
    let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    sys::mount(Some(&source), &target, None, libc::MS_BIND, None).map_err(|source| {
        MountError::Bind {
            target: b.target.clone(),
            source,
        }
    })
}

/// Set the bind's own flags with a remount (for binds made after the tree went read-only).
fn remount(b: &BindMount) -> Result<(), MountError> {
    let target = staged(&b.target);
    let mut flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID;
    match b.kind {
        BindKind::ReadOnly => flags |= libc::MS_RDONLY | libc::MS_NODEV,
        BindKind::ReadWrite => flags |= libc::MS_NODEV,
        // Device nodes ignore a read-only mount for their I/O; nodev would block them.
        BindKind::Device => flags |= libc::MS_RDONLY,
    }
    // Flags of the source mount are locked in a user namespace: a remount must repeat them.
    let locked = sys::locked_mount_flags(&target).map_err(|source| MountError::Remount {
        target: b.target.clone(),
        source,
    })?;
    flags |= locked;
    sys::mount(None, &target, None, flags, None).map_err(|source| MountError::Remount {
        target: b.target.clone(),
        source,
    })
}

/// Build the new root from `binds`, mount a `tmp_size` tmpfs at `/tmp`, `pivot_root` into it and
/// detach the old root. Runs inside the jail's fresh mount namespace. `sources` are the
/// descriptors from [`open_sources`], in the same order as `binds`.
///
/// The read-only part of the tree (the root tmpfs and every read-only bind, dozens of them: the
/// interpreter's files and libraries) is made read-only, nosuid and nodev by one recursive
/// `mount_setattr` rather than a remount per bind; writable binds, devices and `/tmp` come after.
pub fn build_root(
    binds: &[BindMount],
    sources: &[OwnedFd],
    tmp_size: u64,
) -> Result<(), MountError> {
    slave_everything()?;
    let root_opts = CString::new("mode=0755,size=4m,nr_inodes=4096").expect("no NUL");
    sys::mount(
        Some(Path::new("tmpfs")),
        Path::new(STAGING),
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&root_opts),
    )
    .map_err(MountError::RootTmpfs)?;
    // Paths allowed under /tmp go on top of the private /tmp, the rest before it.
    let under_tmp = |b: &BindMount| b.target.starts_with("/tmp");
    let all = || binds.iter().zip(sources);
    // Every mount point outside /tmp first: the root is read-only afterwards.
    for (b, _) in all().filter(|(b, _)| !under_tmp(b)) {
        mount_point(&staged(&b.target), b.is_dir)?;
    }
    // /dev/shm is where POSIX semaphores and shared memory live (multiprocessing): point it at
    // the private /tmp rather than giving the jail a second writable place.
    let dev = staged(Path::new("/dev"));
    mount_point(&dev, true)?;
    std::os::unix::fs::symlink("/tmp", dev.join("shm")).map_err(|source| {
        MountError::MountPoint {
            path: PathBuf::from("/dev/shm"),
            source,
        }
    })?;
    let tmp = staged(Path::new("/tmp"));
    mount_point(&tmp, true)?;
    let read_only = |b: &BindMount| b.kind == BindKind::ReadOnly && !under_tmp(b);
    for (b, fd) in all().filter(|(b, _)| read_only(b)) {
        attach(b, fd)?;
    }
    sys::mount_setattr_recursive(
        Path::new(STAGING),
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )
    .map_err(|source| MountError::Remount {
        target: PathBuf::from("/"),
        source,
    })?;
    for (b, fd) in all().filter(|(b, _)| !read_only(b) && !under_tmp(b)) {
        attach(b, fd)?;
        remount(b)?;
    }
    let tmp_opts = crate::isolate::tmp_options(tmp_size);
    sys::mount(
        Some(Path::new("tmpfs")),
        &tmp,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&tmp_opts),
    )
    .map_err(|source| MountError::Tmp {
        size: tmp_size,
        source,
    })?;
    for (b, fd) in all().filter(|(b, _)| under_tmp(b)) {
        mount_point(&staged(&b.target), b.is_dir)?;
        attach(b, fd)?;
        remount(b)?;
    }

    std::env::set_current_dir(STAGING).map_err(MountError::PivotRoot)?;
    // Detach the old root: without this, the host's filesystem would stay reachable under it.
    sys::pivot_root_here().map_err(MountError::PivotRoot)?;
    std::env::set_current_dir("/").map_err(MountError::PivotRoot)
}

/// The layer matrix's "mount view off" ([`crate::layers`]): the host's tree stays the root (in
/// this private mount namespace, its mounts made slaves so nothing propagates back), with only
/// a fresh private `/tmp` (the code's working directory) over the host's.
pub fn host_view(tmp_size: u64) -> Result<(), MountError> {
    slave_everything()?;
    let tmp_opts = crate::isolate::tmp_options(tmp_size);
    crate::isolate::mount_tmp(Some(&tmp_opts)).map_err(|source| MountError::Tmp {
        size: tmp_size,
        source,
    })
}

/// Every mount of this (new) namespace a slave: mounts made here do not propagate back to the
/// host's shared mounts.
fn slave_everything() -> Result<(), MountError> {
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_SLAVE,
        None,
    )
    .map_err(MountError::MakePrivate)
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_paths_stay_under_staging() {
        assert_eq!(
            staged(Path::new("/usr/lib/x.so")),
            PathBuf::from("/tmp/usr/lib/x.so")
        );
        assert_eq!(staged(Path::new("/")), PathBuf::from("/tmp/"));
    }

    /// The jail's init opens what the host checked again: a path swapped for a symlink in
    /// between is refused there too.
    #[test]
    fn sources_swapped_for_a_symlink_are_refused() {
        let d = std::env::temp_dir().join(format!("pysandbox-mounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("real")).unwrap();
        std::fs::create_dir_all(d.join("allowed")).unwrap();
        let allowed = d.join("allowed");
        let bind = check_bind(&allowed, &allowed, BindKind::ReadWrite).unwrap();
        assert!(bind.is_dir);
        assert_eq!(open_sources(std::slice::from_ref(&bind)).unwrap().len(), 1);
        std::fs::remove_dir(&allowed).unwrap();
        std::os::unix::fs::symlink(d.join("real"), &allowed).unwrap();
        match open_sources(&[bind]) {
            Err(MountError::Source(PathError::Symlink { link, .. })) => assert_eq!(link, allowed),
            other => panic!("{other:?}"),
        }
        let e = check_bind(&allowed, &allowed, BindKind::ReadOnly).unwrap_err();
        assert!(e.to_string().contains("goes through the symlink"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
