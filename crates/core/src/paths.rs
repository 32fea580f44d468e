//! Opening a host path exactly as it is named, never through a symlink.
//!
//! A writable allowed directory outlives the run that wrote it: code can plant `D/out -> /root`
//! there, and a later run given `--allow-write D/out` would, if the path were followed, get the
//! caller's home, writable (issue 11; PITFALLS.md). So every bind source — the paths a policy
//! allows and the interpreter's own files — is opened with `openat2(2)` and
//! `RESOLVE_NO_SYMLINKS`: a symlink in any component refuses the path. The descriptor opened is
//! what is bound and given to Landlock; the path is never walked again.
//!
//! The interpreter's sources are canonical already (`interp::inspect` resolves them), so the
//! rule costs them nothing; a policy path that goes through a symlink is refused with the real
//! path to allow instead.

use crate::sys;
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{}", symlink_message(path, link, target.as_deref(), real.as_deref()))]
    Symlink {
        path: PathBuf,
        /// The first component of `path` that is a symlink.
        link: PathBuf,
        /// What it points to, as written in the link.
        target: Option<PathBuf>,
        /// `path` with every symlink resolved, if that exists.
        real: Option<PathBuf>,
    },
    #[error("'{path}' cannot be opened without following symlinks: openat2 needs linux >= 5.6; run `pysandbox doctor`")]
    Unsupported { path: PathBuf },
    #[error("cannot open '{path}': {source}")]
    Open { path: PathBuf, source: io::Error },
}

impl PathError {
    /// The path does not exist (or a component of it is missing).
    pub fn is_not_found(&self) -> bool {
        matches!(self, PathError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn symlink_message(path: &Path, link: &Path, target: Option<&Path>, real: Option<&Path>) -> String {
    let mut m = format!(
        "'{}' goes through the symlink '{}'",
        path.display(),
        link.display()
    );
    if let Some(t) = target {
        let _ = write!(m, " (-> {})", t.display());
    }
    m.push_str(
        "; pysandbox does not follow symlinks in the paths it binds (a symlink planted by an \
         earlier run would redirect them): ",
    );
    match real {
        Some(r) => {
            let _ = write!(m, "allow the real path '{}' instead", r.display());
        }
        None => m.push_str("the link leads nowhere; allow an existing path without symlinks"),
    }
    m
}

/// Open `path` (`O_PATH`) without following a symlink in any of its components.
pub fn open_exact(path: &Path) -> Result<OwnedFd, PathError> {
    match sys::open_path_no_symlinks(path) {
        Ok(fd) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(explain_loop(path, e)),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Err(PathError::Unsupported {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(PathError::Open {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Open `path` like [`open_exact`] and say whether it is a directory.
pub fn open_exact_kind(path: &Path) -> Result<(OwnedFd, bool), PathError> {
    let fd = open_exact(path)?;
    let file = std::fs::File::from(fd);
    let is_dir = file
        .metadata()
        .map_err(|source| PathError::Open {
            path: path.to_path_buf(),
            source,
        })?
        .is_dir();
    Ok((OwnedFd::from(file), is_dir))
}

/// The error path only: find the component that is a symlink (`ELOOP` from `openat2` says that
/// there is one, not which).
fn explain_loop(path: &Path, source: io::Error) -> PathError {
    let mut prefix = PathBuf::new();
    for c in path.components() {
        prefix.push(c);
        if !matches!(c, Component::Normal(_)) {
            continue;
        }
        let is_link = std::fs::symlink_metadata(&prefix).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            return PathError::Symlink {
                path: path.to_path_buf(),
                target: std::fs::read_link(&prefix).ok(),
                link: prefix,
                real: std::fs::canonicalize(path).ok(),
            };
        }
    }
    // Replaced between the two looks: report what openat2 said.
    PathError::Open {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `data` to `name` below the directory `dir`, never outside it whatever the name says or
/// what `dir` holds: `name` must pass [`crate::outcome::check_file_name`] (relative, no `..`),
/// every component is resolved beneath `dir` without following a symlink (`openat2`
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), missing directories are made, and an existing file
/// of that name is replaced, not written through (it could be a hard link to another).
pub fn write_beneath(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    crate::outcome::check_file_name(name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let strict = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let mut cur = sys::open_path_no_symlinks(dir)?;
    let parts: Vec<&str> = name.split('/').collect();
    let (last, parents) = parts.split_last().expect("a checked name has a component");
    for p in parents {
        match sys::mkdirat(cur.as_fd(), Path::new(p), 0o755) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        cur = sys::openat2(
            Some(cur.as_fd()),
            Path::new(p),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            strict,
        )?;
    }
    match sys::unlinkat(cur.as_fd(), Path::new(last)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let fd = sys::openat2(
        Some(cur.as_fd()),
        Path::new(last),
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o644,
        strict,
    )?;
    std::fs::File::from(fd).write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pysandbox-paths-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("real/sub")).unwrap();
        d
    }

    #[test]
    fn symlinks_are_refused_in_every_component() {
        let d = scratch("links");
        symlink(d.join("real"), d.join("link")).unwrap();
        let (_, is_dir) = open_exact_kind(&d.join("real/sub")).unwrap();
        assert!(is_dir);
        for (named, link) in [
            (d.join("link"), d.join("link")),
            (d.join("link/sub"), d.join("link")),
        ] {
            match open_exact(&named) {
                Err(PathError::Symlink {
                    path,
                    link: l,
                    target,
                    real,
                }) => {
                    assert_eq!(path, named);
                    assert_eq!(l, link);
                    assert_eq!(target, Some(d.join("real")));
                    let want = std::fs::canonicalize(&named).unwrap();
                    assert_eq!(real.as_deref(), Some(want.as_path()));
                    let msg = open_exact(&named).unwrap_err().to_string();
                    assert!(msg.contains(&format!("allow the real path '{}'", want.display())));
                }
                other => panic!("{}: {other:?}", named.display()),
            }
        }
        symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        let e = open_exact(&d.join("dangling")).unwrap_err();
        assert!(e.to_string().contains("leads nowhere"), "{e}");
        let e = open_exact(&d.join("missing")).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
