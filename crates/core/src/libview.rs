//! The interpreter's libraries as one directory: a cold run binds one directory where it bound
//! each library (forty-odd files: a mount point, a bind, an open and a Landlock rule each, about
//! 0.7 ms of a run).
//!
//! The directory lives in the private cache directory and holds exactly the files the binds
//! named, under the names the binds gave them (the loader's names): hard links to the very files
//! (the same inodes, so the same pages), or copies where a link is not allowed (another
//! filesystem, or `protected_hardlinks` and files the caller does not own). The view inside the
//! jail is the one the single binds made: the same names, the same contents, nothing else.
//!
//! Its name is a hash of what every source is (path, device, inode, size, mtime, mode: not the
//! ctime, which the view's own links change), taken
//! from the source opened as exactly as a bind opens it (no symlink in any component): a library
//! replaced or changed on the host (an upgrade writes a new file) names another directory, made
//! afresh. A directory is used only if it is ours and nobody else can write it, and it is made
//! whole under a temporary name and renamed into place. Without a private cache directory, or
//! for any failure, the libraries are bound one by one as before.

use crate::interp::{self, Bind};
use crate::paths;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Fewer library binds into one directory than this are left as they are.
const MIN_FILES: usize = 8;

/// One directory standing for several interpreter binds.
#[derive(Debug)]
pub(crate) struct LibraryView {
    /// The directory on the host.
    pub dir: PathBuf,
    /// Where it is bound in the jail: the directory the binds' targets share.
    pub target: PathBuf,
    /// The indices of the binds it stands for.
    pub covers: Vec<usize>,
}

/// The view for `binds` (the interpreter's), if one can stand for several of them: the file
/// binds into the directory most of them share, when no other bind (`others`: every other
/// target of the jail) lies below it.
pub(crate) fn library_view(binds: &[Bind], others: &[&Path]) -> Option<LibraryView> {
    view_in(&interp::cache_dir()?, binds, others)
}

fn view_in(cache: &Path, binds: &[Bind], others: &[&Path]) -> Option<LibraryView> {
    let target = shared_parent(binds)?;
    let covers: Vec<usize> = binds
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.is_dir && b.target.parent() == Some(target.as_path()))
        .map(|(i, _)| i)
        .collect();
    let below = |t: &Path| t.starts_with(&target);
    let uncovered = binds
        .iter()
        .enumerate()
        .any(|(i, b)| !covers.contains(&i) && below(&b.target));
    if covers.len() < MIN_FILES || uncovered || others.iter().any(|t| below(t)) {
        return None;
    }
    // The fast path: the directories the sources are in are as they were when the view was
    // last checked whole (see `Stamp`).
    let stamp = Stamp::of(cache, binds, &covers);
    if let Some(dir) = stamp.as_ref().and_then(|s| s.view(cache)) {
        return Some(LibraryView {
            dir,
            target,
            covers,
        });
    }
    let mut files = Vec::with_capacity(covers.len());
    // What is hashed: every source's name, path and identity, each piece ended by 0xff.
    let mut key: Vec<u8> = Vec::new();
    let mut add = |bytes: &[u8]| {
        key.extend(bytes);
        key.push(0xff);
    };
    for &i in &covers {
        let b = &binds[i];
        let name = b.target.file_name()?.to_str()?.to_string();
        if name.starts_with('.') || files.iter().any(|(n, _, _)| *n == name) {
            return None;
        }
        let file = File::from(paths::open_exact(&b.source).ok()?);
        let m = file.metadata().ok()?;
        if !m.is_file() {
            return None;
        }
        add(name.as_bytes());
        add(b.source.as_os_str().as_encoded_bytes());
        for n in [
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
            u64::from(m.mode()),
        ] {
            add(&n.to_le_bytes());
        }
        files.push((name, file, m.mode()));
    }
    let dir = cache.join(format!("libs-{:016x}", interp::fnv(&key)));
    if !interp::trusted_dir(&dir) {
        if !interp::private_dir(cache) {
            return None;
        }
        make(cache, &dir, &files).ok()?;
        if !interp::trusted_dir(&dir) {
            return None;
        }
    }
    if let Some(s) = stamp {
        s.record(cache, &dir, &files);
    }
    Some(LibraryView {
        dir,
        target,
        covers,
    })
}

/// What lets a run use a view without checking each of its forty-odd sources (an open and a
/// stat each, ~0.1 ms of every cold run): the identity and modification time of every directory
/// the sources are in, opened as exactly as a source is (no symlink in any component, so a
/// mount or a directory put in the way shows as another identity), recorded with the view's
/// name after a whole check found every file of the view a hard link to its source. A source can
/// then only name another file if an entry of its directory changed (a rename, as an upgrade
/// does, or an unlink and a new file), which changes the directory's modification time; a file
/// changed in place is the view's own file (the same inode). A view holding any copy is never
/// recorded (a copy does not follow its source), nor is one whose check failed, nor one whose
/// directories changed in the last [`SETTLED`].
struct Stamp {
    /// The record's file: named by what the binds are (names, sources).
    file: PathBuf,
    /// The directories' identities, hashed.
    dirs: u64,
    /// The newest of their modification times.
    newest: std::time::SystemTime,
}

/// A directory modified less than this long ago is not recorded: file times come from a coarse
/// clock (a tick of some milliseconds), so a change made within the same tick as the one before
/// would leave the time as recorded (git's "racily clean" entries). Once this old, any later
/// change gives the directory another time.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

/// What starts a record.
const STAMP_MAGIC: &str = "pysandbox-libview-v1";

impl Stamp {
    fn of(cache: &Path, binds: &[Bind], covers: &[usize]) -> Option<Stamp> {
        let mut names: Vec<u8> = Vec::new();
        let mut dirs: Vec<&Path> = Vec::new();
        for &i in covers {
            let b = &binds[i];
            for part in [b.target.as_os_str(), b.source.as_os_str()] {
                names.extend(part.as_encoded_bytes());
                names.push(0xff);
            }
            let parent = b.source.parent()?;
            if !dirs.contains(&parent) {
                dirs.push(parent);
            }
        }
        let mut key: Vec<u8> = Vec::new();
        let mut newest = std::time::UNIX_EPOCH;
        for d in dirs {
            let m = File::from(paths::open_exact(d).ok()?).metadata().ok()?;
            newest = newest.max(m.modified().ok()?);
            key.extend(d.as_os_str().as_encoded_bytes());
            key.push(0xff);
            for n in [m.dev(), m.ino(), m.mtime() as u64, m.mtime_nsec() as u64] {
                key.extend(n.to_le_bytes());
            }
        }
        Some(Stamp {
            file: cache.join(format!("libs-{:016x}.stamp", interp::fnv(&names))),
            dirs: interp::fnv(&key),
            newest,
        })
    }

    /// The recorded view, if the directories are as recorded and the view is still ours.
    fn view(&self, cache: &Path) -> Option<PathBuf> {
        if !interp::trusted(&self.file) {
            return None;
        }
        let text = std::fs::read_to_string(&self.file).ok()?;
        let words: Vec<&str> = text.trim_end_matches('\n').split(' ').collect();
        let [magic, dirs, name] = words[..] else {
            return None;
        };
        let ok = magic == STAMP_MAGIC
            && dirs == format!("{:016x}", self.dirs)
            && name.starts_with("libs-")
            && !name.contains('/');
        let dir = cache.join(name);
        (ok && interp::trusted_dir(&dir)).then_some(dir)
    }

    /// Record `dir` as the view for these directories, if each of its files is a hard link to
    /// its source (`files`: the sources, open).
    fn record(&self, cache: &Path, dir: &Path, files: &[(String, File, u32)]) {
        let linked = files.iter().all(|(name, file, _)| {
            match (std::fs::symlink_metadata(dir.join(name)), file.metadata()) {
                (Ok(v), Ok(s)) => v.dev() == s.dev() && v.ino() == s.ino(),
                _ => false,
            }
        });
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        let settled = std::time::SystemTime::now()
            .duration_since(self.newest)
            .is_ok_and(|age| age >= SETTLED);
        if linked && settled {
            let text = format!("{STAMP_MAGIC} {:016x} {name}\n", self.dirs);
            interp::write_atomic(cache, &self.file, text.as_bytes());
        }
    }
}

/// The directory most file binds' targets are in.
fn shared_parent(binds: &[Bind]) -> Option<PathBuf> {
    let mut counts: Vec<(&Path, usize)> = Vec::new();
    for b in binds.iter().filter(|b| !b.is_dir) {
        let Some(p) = b.target.parent().filter(|p| *p != Path::new("/")) else {
            continue;
        };
        match counts.iter_mut().find(|(q, _)| *q == p) {
            Some((_, n)) => *n += 1,
            None => counts.push((p, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(p, _)| p.to_path_buf())
}

/// Make the view `dir`: built whole under a temporary name in `cache`, then renamed into place
/// (a concurrent run that made it first wins; the copy made here is dropped).
fn make(cache: &Path, dir: &Path, files: &[(String, File, u32)]) -> io::Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = cache.join(format!(".libs-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o755).create(&tmp)?;
    let filled = files
        .iter()
        .try_for_each(|(name, file, mode)| place(file, *mode, &tmp.join(name)));
    let done = filled.and_then(|()| std::fs::rename(&tmp, dir));
    if done.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if interp::trusted_dir(dir) {
        Ok(())
    } else {
        done
    }
}

/// `to` as a hard link to the open `file` (its inode, not its path), or else a copy of it,
/// readable by all and executable if it was, never set-id.
fn place(file: &File, mode: u32, to: &Path) -> io::Result<()> {
    let magic = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    if crate::sys::link_following(&magic, to).is_ok() {
        return Ok(());
    }
    let mut from = File::open(&magic)?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644 | (mode & 0o111))
        .open(to)?;
    io::copy(&mut from, &mut out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("pysandbox-libview-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn libs(src: &Path, n: usize) -> Vec<Bind> {
        (0..n)
            .map(|i| {
                let source = src.join(format!("libx{i}.so.{i}.0"));
                std::fs::write(&source, format!("library {i}")).unwrap();
                Bind {
                    source,
                    target: PathBuf::from(format!("/lib/x86_64-linux-gnu/libx{i}.so.{i}")),
                    is_dir: false,
                }
            })
            .collect()
    }

    /// The view holds exactly the bound files under their targets' names; a source replaced
    /// on the host (a new file, as an upgrade writes) makes a new view with the new content.
    #[test]
    fn the_view_holds_the_bound_files_and_follows_their_changes() {
        let d = scratch("view");
        let (src, cache) = (d.join("src"), d.join("cache"));
        std::fs::create_dir_all(&src).unwrap();
        let mut binds = libs(&src, 9);
        binds.push(Bind {
            source: src.clone(),
            target: PathBuf::from("/opt/py/lib/python3.11"),
            is_dir: true,
        });
        let v = view_in(&cache, &binds, &[Path::new("/dev/null")]).expect("a view");
        assert_eq!(v.target, Path::new("/lib/x86_64-linux-gnu"));
        assert_eq!(v.covers, (0..9).collect::<Vec<_>>());
        let mut names: Vec<_> = std::fs::read_dir(&v.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut want: Vec<_> = (0..9).map(|i| format!("libx{i}.so.{i}")).collect();
        want.sort();
        assert_eq!(names, want);
        assert_eq!(
            std::fs::read_to_string(v.dir.join("libx3.so.3")).unwrap(),
            "library 3"
        );
        // The same sources: the same directory, not made again.
        assert_eq!(view_in(&cache, &binds, &[]).unwrap().dir, v.dir);
        // One replaced by a new file: another directory, with the new content.
        let fresh = src.join("new");
        std::fs::write(&fresh, "library 3, patched").unwrap();
        std::fs::rename(&fresh, &binds[3].source).unwrap();
        let w = view_in(&cache, &binds, &[]).unwrap();
        assert_ne!(w.dir, v.dir);
        assert_eq!(
            std::fs::read_to_string(w.dir.join("libx3.so.3")).unwrap(),
            "library 3, patched"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Sources on another filesystem (tmpfs here: no hard link across) are copied: the same
    /// contents, readable by all, executable only if the source was, never set-id.
    #[test]
    fn sources_that_cannot_be_linked_are_copied() {
        use std::os::unix::fs::PermissionsExt;
        let shm = Path::new("/dev/shm");
        let d = scratch("copy");
        let src = shm.join(format!("pysandbox-libview-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(&src).unwrap();
        let same_fs =
            std::fs::metadata(&src).unwrap().dev() == std::fs::metadata(&d).unwrap().dev();
        let binds = libs(&src, 9);
        std::fs::set_permissions(&binds[0].source, std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        let v = view_in(&d.join("cache"), &binds, &[]).expect("a view");
        if !same_fs {
            let copied = v.dir.join("libx0.so.0");
            let m = std::fs::metadata(&copied).unwrap();
            assert_ne!(m.ino(), std::fs::metadata(&binds[0].source).unwrap().ino());
            assert_eq!(m.mode() & 0o7777, 0o755, "exec kept, set-id dropped");
            let other = std::fs::metadata(v.dir.join("libx1.so.1")).unwrap();
            assert_eq!(other.mode() & 0o7777, 0o644);
        }
        assert_eq!(
            std::fs::read_to_string(v.dir.join("libx5.so.5")).unwrap(),
            "library 5"
        );
        if !same_fs {
            // A copy does not follow its source: such a view is checked whole at every run.
            assert_eq!(stamps(&d.join("cache")), 0);
        }
        let _ = std::fs::remove_dir_all(&src);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// `dir`'s modification time put back past [`SETTLED`], as if it had been made long ago.
    fn age(dir: &Path) {
        let old = std::time::SystemTime::now() - SETTLED * 2;
        File::open(dir).unwrap().set_modified(old).unwrap();
    }

    /// The view records in `cache`.
    fn stamp_files(cache: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension() == Some("stamp".as_ref()))
            .collect()
    }

    fn stamps(cache: &Path) -> usize {
        stamp_files(cache).len()
    }

    /// A view of hard links is recorded with its sources' directories and used again while they
    /// are unchanged, without checking each source: a source changed in place is the view's
    /// own file (the same directory, the new content); one replaced by a new file changes its
    /// directory, so the view is checked whole and made again; a record others could have
    /// written, or one for a view that is gone, is not used; nor is a view once a file in it is
    /// no longer its source's inode (a record is only made for links).
    #[test]
    fn a_view_of_links_is_used_again_while_its_directories_are_unchanged() {
        let d = scratch("stamp");
        let (src, cache) = (d.join("src"), d.join("cache"));
        std::fs::create_dir_all(&src).unwrap();
        let binds = libs(&src, 9);
        // Just modified: checked whole, not recorded.
        let v = view_in(&cache, &binds, &[]).expect("a view");
        assert_eq!(stamps(&cache), 0);
        age(&src);
        assert_eq!(view_in(&cache, &binds, &[]).unwrap().dir, v.dir);
        assert_eq!(stamps(&cache), 1);
        assert_eq!(view_in(&cache, &binds, &[]).unwrap().dir, v.dir);
        // In place: the whole check would name another directory (size and mtime changed); the
        // record keeps this one, whose file is the source's inode.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&binds[2].source, "library 2, in place").unwrap();
        let w = view_in(&cache, &binds, &[]).unwrap();
        assert_eq!(w.dir, v.dir);
        assert_eq!(
            std::fs::read_to_string(w.dir.join("libx2.so.2")).unwrap(),
            "library 2, in place"
        );
        // Replaced by a new file (a rename changes the directory): checked whole, made again.
        let fresh = src.join("new");
        std::fs::write(&fresh, "library 4, new file").unwrap();
        std::fs::rename(&fresh, &binds[4].source).unwrap();
        age(&src);
        let x = view_in(&cache, &binds, &[]).unwrap();
        assert_ne!(x.dir, v.dir);
        assert_eq!(
            std::fs::read_to_string(x.dir.join("libx4.so.4")).unwrap(),
            "library 4, new file"
        );
        assert_eq!(view_in(&cache, &binds, &[]).unwrap().dir, x.dir);
        // A record others could have written: not used (the whole check finds the same view).
        let record = stamp_files(&cache).pop().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(
            &record,
            format!("{STAMP_MAGIC} 0000000000000000 libs-planted\n"),
        )
        .unwrap();
        std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            view_in(&cache, &binds, &[]).unwrap().dir,
            x.dir,
            "another hash"
        );
        let planted = std::fs::read_to_string(&record).unwrap();
        assert!(
            !planted.contains("planted"),
            "the whole check recorded again"
        );
        let name = x.dir.file_name().unwrap().to_str().unwrap().to_string();
        let text = planted.replace(&name, "libs-planted");
        std::fs::create_dir(cache.join("libs-planted")).unwrap();
        std::fs::set_permissions(
            cache.join("libs-planted"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(&record, &text).unwrap();
        std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(
            view_in(&cache, &binds, &[]).unwrap().dir,
            x.dir,
            "writable by others"
        );
        // The control: the same record, ours alone, is followed.
        std::fs::write(&record, &text).unwrap();
        std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            view_in(&cache, &binds, &[]).unwrap().dir,
            cache.join("libs-planted")
        );
        // The view it names gone: checked whole.
        std::fs::remove_dir(cache.join("libs-planted")).unwrap();
        assert_eq!(view_in(&cache, &binds, &[]).unwrap().dir, x.dir);
        // A file of the view that is not its source's inode: no record is made.
        std::fs::remove_file(&record).unwrap();
        let copy = x.dir.join("libx5.so.5");
        std::fs::remove_file(&copy).unwrap();
        std::fs::write(&copy, "library 5").unwrap();
        assert_eq!(view_in(&cache, &binds, &[]).unwrap().dir, x.dir);
        assert_eq!(stamps(&cache), 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// No view when few files share a directory, when another bind lies below it, when a
    /// source is reached through a symlink, or when the directory is not ours alone.
    #[test]
    fn no_view_where_it_would_not_be_the_same() {
        let d = scratch("none");
        let (src, cache) = (d.join("src"), d.join("cache"));
        std::fs::create_dir_all(&src).unwrap();
        let binds = libs(&src, 9);
        assert!(view_in(&cache, &binds[..MIN_FILES - 1], &[]).is_none());
        let below = Path::new("/lib/x86_64-linux-gnu/extra/file");
        assert!(view_in(&cache, &binds, &[below]).is_none());
        let mut linked = binds.clone();
        std::os::unix::fs::symlink(&binds[0].source, src.join("link")).unwrap();
        linked[0].source = src.join("link");
        assert!(view_in(&cache, &linked, &[]).is_none());
        let v = view_in(&cache, &binds, &[]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&v.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        // Writable by others: not used (made again under the same name fails: none).
        assert!(view_in(&cache, &binds, &[]).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }
}
