//! Finding the host's real CPython and every file it needs inside the jail.
//!
//! The choice: `--python`, else `$PYSANDBOX_PYTHON`, else `python3.11` then `python3` on `PATH`.
//! pyenv puts bash shims on `PATH` (≈ 70 ms each, PITFALLS.md): anything that is not an ELF file
//! is asked once for its `sys.executable`, and the real binary is used from then on.
//!
//! What the jail needs is learned from one query run of the interpreter (its standard library,
//! `lib-dynload`, site-packages) and from `ldd` on the executable and every extension module (the
//! shared libraries, at the paths the dynamic loader will look for them). Extension modules of
//! site-packages link libraries the interpreter itself does not (numpy's wheels `libstdc++`,
//! pillow's `libpthread`; PITFALLS.md): those are resolved too, kept apart
//! ([`Interpreter::site_libraries`]) and bound only when site-packages are (the `full` preset).
//! The result is cached in `$XDG_CACHE_HOME/pysandbox` (or `~/.cache/pysandbox`), keyed by the
//! executable's path, size, modification time and inode and by each site-packages directory's
//! modification time and inode (installing or removing a package changes it), so a warm lookup
//! costs a few `stat`s and a small JSON read.

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bumped whenever the cached layout or the way it is computed changes. It is part of the cache
/// file's name too, so that binaries of two versions on one machine do not overwrite each
/// other's entry on every run.
const CACHE_VERSION: u32 = 4;

/// Environment variable naming the interpreter when `--python` is not given.
pub const PYTHON_ENV: &str = "PYSANDBOX_PYTHON";

/// Names tried on `PATH`, in order.
const CANDIDATES: [&str; 2] = ["python3.11", "python3"];

/// A resolved interpreter: its binary and the read-only binds that let it run in the jail.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Interpreter {
    /// The real ELF binary (canonical path), also its path inside the jail.
    pub executable: PathBuf,
    /// `sys.version` up to the first space, e.g. `3.11.7`.
    pub version: String,
    /// Files and directories bound read-only into the jail.
    pub binds: Vec<Bind>,
    /// The interpreter's site-packages directories that exist (bound only by the `full` preset).
    #[serde(default)]
    pub site_packages: Vec<PathBuf>,
    /// Shared libraries that site-packages' extension modules link and that are neither in
    /// [`Interpreter::binds`] nor inside a site-packages directory (bound with site-packages
    /// only). A wheel's own copies (`numpy.libs/`, `pillow.libs/`) live in site-packages and
    /// need no bind of their own.
    #[serde(default)]
    pub site_libraries: Vec<Bind>,
    /// `sys.prefix`.
    #[serde(default)]
    pub prefix: PathBuf,
    /// The standard library directory.
    #[serde(default)]
    pub stdlib: PathBuf,
}

/// One read-only bind: `source` on the host, visible at `target` in the jail.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub is_dir: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error(
        "no Python interpreter found (tried {tried}); install python3.11 or point pysandbox at one with --python PATH or ${PYTHON_ENV}"
    )]
    NotFound { tried: String },
    #[error("{path}: {source}; give an existing interpreter with --python PATH or ${PYTHON_ENV}")]
    Missing { path: PathBuf, source: io::Error },
    #[error("{0} is not executable")]
    NotExecutable(PathBuf),
    #[error("running {path} to learn its layout failed: {message}")]
    Query { path: PathBuf, message: String },
    #[error("{path} is not CPython 3 (it reports {found})")]
    NotCPython { path: PathBuf, found: String },
    #[error("listing the shared libraries of {path} with ldd failed: {message}")]
    Ldd { path: PathBuf, message: String },
}

/// Find the interpreter (see the module documentation) and what it needs.
pub fn resolve(explicit: Option<&Path>) -> Result<Interpreter, InterpError> {
    let chosen = match explicit {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os(PYTHON_ENV).filter(|v| !v.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => find_on_path()?,
        },
    };
    let meta = std::fs::metadata(&chosen).map_err(|source| InterpError::Missing {
        path: chosen.clone(),
        source,
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(InterpError::NotExecutable(chosen));
    }
    let dir = cache_dir();
    let exe = if is_elf(&chosen) {
        std::fs::canonicalize(&chosen).map_err(|source| InterpError::Missing {
            path: chosen.clone(),
            source,
        })?
    } else {
        wrapped_executable(&chosen, dir.as_deref())?
    };
    let key = CacheKey::of(&exe)?;
    if let Some(hit) = dir.as_deref().and_then(|d| cache_load(d, &key)) {
        return Ok(hit);
    }
    let (found, site) = inspect(&exe)?;
    if let Some(d) = &dir {
        cache_store(d, &key, &found, &site);
    }
    Ok(found)
}

fn find_on_path() -> Result<PathBuf, InterpError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    for name in CANDIDATES {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            {
                return Ok(p);
            }
        }
    }
    Err(InterpError::NotFound {
        tried: format!("{} on PATH", CANDIDATES.join(", ")),
    })
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The binary a wrapper runs, from the cache when the wrapper, the directory and pyenv's choice
/// of version are unchanged (pyenv picks the version from `$PYENV_VERSION`, `.python-version`
/// files from the working directory up, then `$PYENV_ROOT/version`).
fn wrapped_executable(wrapper: &Path, dir: Option<&Path>) -> Result<PathBuf, InterpError> {
    let m = std::fs::metadata(wrapper).map_err(|source| InterpError::Missing {
        path: wrapper.to_path_buf(),
        source,
    })?;
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    let stamp = |p: Option<PathBuf>| {
        p.and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| {
            i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
        })
    };
    let mut version_files = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        for d in cwd.ancestors() {
            version_files.push(stamp(Some(d.join(".python-version"))));
        }
    }
    let identity = format!(
        "{}|{}|{}|{}|{:?}|{:?}|{}|{:?}",
        wrapper.display(),
        m.size(),
        m.mtime(),
        m.ino(),
        std::env::var_os("PYENV_VERSION"),
        std::env::current_dir().ok(),
        stamp(root.map(|r| r.join("version"))),
        version_files,
    );
    let file = dir.map(|d| d.join(format!("wrapper-{:016x}.json", fnv(identity.as_bytes()))));
    if let Some(f) = &file {
        if trusted(f) && f.parent().is_some_and(trusted_dir) {
            if let Ok(text) = std::fs::read(f) {
                if let Ok((id, exe)) = serde_json::from_slice::<(String, PathBuf)>(&text) {
                    if id == identity && is_elf(&exe) {
                        return Ok(exe);
                    }
                }
            }
        }
    }
    let exe = real_executable(wrapper)?;
    if let (Some(f), Some(d)) = (&file, dir) {
        if let Ok(text) = serde_json::to_vec(&(identity, &exe)) {
            write_atomic(d, f, &text);
        }
    }
    Ok(exe)
}

pub(crate) const fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut i = 0;
    while i < bytes.len() {
        h = (h ^ bytes[i] as u64).wrapping_mul(0x100000001b3);
        i += 1;
    }
    h
}

/// Ask a wrapper (a pyenv shim, a script) for the binary it runs.
fn real_executable(wrapper: &Path) -> Result<PathBuf, InterpError> {
    let out = run(
        wrapper,
        &["-I", "-S", "-c", "import sys; print(sys.executable)"],
    )?;
    let exe = PathBuf::from(out.trim());
    if !exe.is_absolute() || !is_elf(&exe) {
        return Err(InterpError::Query {
            path: wrapper.to_path_buf(),
            message: format!(
                "it names {} as its executable, not an ELF binary",
                exe.display()
            ),
        });
    }
    std::fs::canonicalize(&exe).map_err(|source| InterpError::Missing { path: exe, source })
}

fn run(program: &Path, args: &[&str]) -> Result<String, InterpError> {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .map_err(|e| InterpError::Query {
            path: program.to_path_buf(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(InterpError::Query {
            path: program.to_path_buf(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the query run reports.
#[derive(Debug, Deserialize)]
struct Layout {
    implementation: String,
    version: String,
    major: u32,
    prefix: PathBuf,
    stdlib: PathBuf,
    platstdlib: PathBuf,
    dynload: Option<PathBuf>,
    site: Vec<PathBuf>,
}

const QUERY: &str = r#"
import json, sys, sysconfig
try:
    import _sysconfigdata  # noqa: F401 (absent is fine)
except ImportError:
    pass
dynload = None
for p in sys.path:
    if p.endswith("lib-dynload"):
        dynload = p
paths = sysconfig.get_paths()
site = []
for k in ("purelib", "platlib"):
    if paths.get(k) and paths[k] not in site:
        site.append(paths[k])
print(json.dumps({
    "implementation": sys.implementation.name,
    "version": sys.version.split()[0],
    "major": sys.version_info[0],
    "prefix": sys.prefix,
    "stdlib": paths["stdlib"],
    "platstdlib": paths["platstdlib"],
    "dynload": dynload,
    "site": site,
}))
"#;

/// One query run and `ldd`: the interpreter's binds, and the stamps of the site-packages
/// directories it reports (existing or not) for the cache.
fn inspect(exe: &Path) -> Result<(Interpreter, Vec<DirStamp>), InterpError> {
    let out = run(exe, &["-I", "-S", "-c", QUERY])?;
    let layout: Layout = serde_json::from_str(out.trim()).map_err(|e| InterpError::Query {
        path: exe.to_path_buf(),
        message: format!("unexpected answer ({e}): {}", out.trim()),
    })?;
    if layout.implementation != "cpython" || layout.major != 3 {
        return Err(InterpError::NotCPython {
            path: exe.to_path_buf(),
            found: format!("{} {}", layout.implementation, layout.version),
        });
    }
    let mut binds: Vec<Bind> = Vec::new();
    let mut add = |path: &Path, is_dir: bool| {
        if let Ok(source) = std::fs::canonicalize(path) {
            if !binds.iter().any(|b| b.target == path) {
                binds.push(Bind {
                    source,
                    target: path.to_path_buf(),
                    is_dir,
                });
            }
        }
    };
    add(exe, false);
    let mut dirs = vec![layout.stdlib.clone()];
    if !layout.platstdlib.starts_with(&layout.stdlib) {
        dirs.push(layout.platstdlib.clone());
    }
    if let Some(d) = &layout.dynload {
        if !dirs.iter().any(|s| d.starts_with(s)) {
            dirs.push(d.clone());
        }
    }
    for d in &dirs {
        if d.is_dir() {
            add(d, true);
        }
    }
    // Shared libraries of the executable and of every extension module.
    let mut objects = vec![exe.to_path_buf()];
    if let Some(d) = &layout.dynload {
        if let Ok(entries) = std::fs::read_dir(d) {
            let mut sos: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "so"))
                .collect();
            sos.sort();
            objects.extend(sos);
        }
    }
    let mut libs = ldd(&objects)?;
    // glibc loads libgcc_s at run time to unwind threads; it is not a DT_NEEDED of anything.
    if let Some(libc) = libs
        .iter()
        .find(|l| l.file_name().is_some_and(|n| n == "libc.so.6"))
    {
        let gcc = libc.with_file_name("libgcc_s.so.1");
        if gcc.exists() {
            libs.push(gcc);
        }
    }
    libs.sort();
    libs.dedup();
    for lib in &libs {
        add(lib, false);
    }
    // Stamped before the walk: a package installed during it makes the next run look again.
    let stamps = layout.site.iter().map(|d| DirStamp::of(d)).collect();
    let site_packages: Vec<PathBuf> = layout.site.into_iter().filter(|p| p.is_dir()).collect();
    let site_libraries = site_libraries(&site_packages, &binds)?;
    let found = Interpreter {
        executable: exe.to_path_buf(),
        version: layout.version,
        binds,
        site_packages,
        site_libraries,
        prefix: layout.prefix,
        stdlib: layout.stdlib,
    };
    Ok((found, stamps))
}

/// Deepest directory level searched for extension modules below a site-packages directory.
const SITE_DEPTH: usize = 16;

/// The shared libraries that the extension modules of `site` (every `*.so` below it) link,
/// as `ldd` resolves them, less those already in `binds` and those inside `site` itself (a
/// wheel's `<name>.libs/`, reached through `$ORIGIN/..` run paths: bound with site-packages).
fn site_libraries(site: &[PathBuf], binds: &[Bind]) -> Result<Vec<Bind>, InterpError> {
    let mut objects = Vec::new();
    for d in site {
        extension_modules(d, SITE_DEPTH, &mut objects);
    }
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    objects.sort();
    let inside: Vec<PathBuf> = site
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect();
    let mut libs: Vec<Bind> = Vec::new();
    for lib in ldd_all(&objects)? {
        let target = normalize(&lib);
        let Ok(source) = std::fs::canonicalize(&target) else {
            continue;
        };
        let bound = |b: &Bind| b.target == target || (b.is_dir && target.starts_with(&b.target));
        if inside.iter().any(|d| source.starts_with(d))
            || binds.iter().any(bound)
            || libs.iter().any(bound)
        {
            continue;
        }
        libs.push(Bind {
            source,
            target,
            is_dir: false,
        });
    }
    libs.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(libs)
}

/// Every `*.so` file below `dir` (extension modules, and the libraries wheels ship), without
/// following symbolic links.
fn extension_modules(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        let path = e.path();
        if kind.is_dir() && depth > 0 && e.file_name() != "__pycache__" {
            extension_modules(&path, depth - 1, out);
        } else if kind.is_file() && path.extension().is_some_and(|x| x == "so") {
            out.push(path);
        }
    }
}

/// `ldd` over many objects, in a few processes at once (site-packages hold a hundred or more
/// extension modules: ~0.8 s in one `ldd` here). Paths of every process's answer, together.
fn ldd_all(objects: &[PathBuf]) -> Result<Vec<PathBuf>, InterpError> {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let chunk = objects.len().div_ceil(n).max(1);
    let children: Vec<_> = objects
        .chunks(chunk)
        .map(|c| {
            Command::new("ldd")
                .args(c)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| InterpError::Ldd {
                    path: c[0].clone(),
                    message: format!("{e} (is ldd, from libc-bin, installed?)"),
                })
        })
        .collect();
    let mut libs = Vec::new();
    for child in children {
        let out = child?.wait_with_output().map_err(|e| InterpError::Ldd {
            path: objects[0].clone(),
            message: e.to_string(),
        })?;
        libs.extend(parse_ldd(&String::from_utf8_lossy(&out.stdout)));
    }
    libs.sort();
    libs.dedup();
    Ok(libs)
}

/// `path` without `.` and `..` components, resolved by name (`ldd` prints the loader's path,
/// `.../numpy/_core/../../numpy.libs/x.so`; a bind's target has to be plain).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The libraries `ldd` resolves for `objects`, at the paths the loader uses.
fn ldd(objects: &[PathBuf]) -> Result<Vec<PathBuf>, InterpError> {
    let out = Command::new("ldd")
        .args(objects)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .map_err(|e| InterpError::Ldd {
            path: objects[0].clone(),
            message: format!("{e} (is ldd, from libc-bin, installed?)"),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let libs = parse_ldd(&text);
    if libs.is_empty() {
        return Err(InterpError::Ldd {
            path: objects[0].clone(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(libs)
}

/// Parse `ldd` output: `name => /path (addr)` lines and the loader's `/path (addr)` line. Lines
/// `name => not found` are skipped: the module that needs them fails to import in the jail just
/// as it does outside.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') && !path.ends_with(':') {
            libs.push(PathBuf::from(path));
        }
    }
    libs
}

/// Identity of an executable for the cache: a changed binary misses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheKey {
    version: u32,
    path: PathBuf,
    size: u64,
    mtime_ns: i128,
    inode: u64,
}

impl CacheKey {
    fn of(exe: &Path) -> Result<CacheKey, InterpError> {
        let m = std::fs::metadata(exe).map_err(|source| InterpError::Missing {
            path: exe.to_path_buf(),
            source,
        })?;
        Ok(CacheKey {
            version: CACHE_VERSION,
            path: exe.to_path_buf(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            inode: m.ino(),
        })
    }

    fn file(&self, dir: &Path) -> PathBuf {
        // One cache file per interpreter path and cache version.
        let h = fnv(self.path.as_os_str().as_encoded_bytes());
        dir.join(format!("interp-v{}-{h:016x}.bin", self.version))
    }
}

/// A site-packages directory's state: installing or removing a package adds or removes entries
/// in it (pip replaces a package's directory and its `.dist-info` on every install), which
/// changes its modification time. A directory that does not exist is stamped 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DirStamp {
    path: PathBuf,
    mtime_ns: i128,
    inode: u64,
}

impl DirStamp {
    fn of(path: &Path) -> DirStamp {
        let (mtime_ns, inode) = std::fs::metadata(path).map_or((0, 0), |m| {
            (
                i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                m.ino(),
            )
        });
        DirStamp {
            path: path.to_path_buf(),
            mtime_ns,
            inode,
        }
    }

    fn current(&self) -> bool {
        DirStamp::of(&self.path) == *self
    }
}

#[derive(Debug, PartialEq)]
struct CacheEntry {
    key: CacheKey,
    interpreter: Interpreter,
    site: Vec<DirStamp>,
}

/// What starts a cache entry's file.
const ENTRY_MAGIC: &[u8; 8] = b"PYSBIC4\n";

/// A cache entry's file: [`ENTRY_MAGIC`], then the fields in order, integers little-endian,
/// paths and strings as a u32 length and their bytes (any path, UTF-8 or not), lists as a u32
/// count and their items. Binary rather than JSON because every cold run reads it: JSON of
/// the interpreter's 50 binds cost 0.17 M instructions to parse, a sixth of the host's work
/// (callgrind), this a tenth of that.
impl CacheEntry {
    fn encode(&self) -> Vec<u8> {
        fn bytes(out: &mut Vec<u8>, b: &[u8]) {
            out.extend((b.len() as u32).to_le_bytes());
            out.extend(b);
        }
        fn path(out: &mut Vec<u8>, p: &Path) {
            bytes(out, p.as_os_str().as_bytes());
        }
        fn binds(out: &mut Vec<u8>, list: &[Bind]) {
            out.extend((list.len() as u32).to_le_bytes());
            for b in list {
                path(out, &b.source);
                path(out, &b.target);
                out.push(u8::from(b.is_dir));
            }
        }
        let mut out = ENTRY_MAGIC.to_vec();
        let k = &self.key;
        out.extend(k.version.to_le_bytes());
        path(&mut out, &k.path);
        out.extend(k.size.to_le_bytes());
        out.extend(k.mtime_ns.to_le_bytes());
        out.extend(k.inode.to_le_bytes());
        let i = &self.interpreter;
        path(&mut out, &i.executable);
        bytes(&mut out, i.version.as_bytes());
        binds(&mut out, &i.binds);
        out.extend((i.site_packages.len() as u32).to_le_bytes());
        for p in &i.site_packages {
            path(&mut out, p);
        }
        binds(&mut out, &i.site_libraries);
        path(&mut out, &i.prefix);
        path(&mut out, &i.stdlib);
        out.extend((self.site.len() as u32).to_le_bytes());
        for s in &self.site {
            path(&mut out, &s.path);
            out.extend(s.mtime_ns.to_le_bytes());
            out.extend(s.inode.to_le_bytes());
        }
        out
    }

    /// The entry in `data`, or `None` for anything but exactly what [`CacheEntry::encode`]
    /// writes (the caller then inspects the interpreter again).
    fn decode(data: &[u8]) -> Option<CacheEntry> {
        struct Reader<'a>(&'a [u8]);
        impl<'a> Reader<'a> {
            fn take(&mut self, n: usize) -> Option<&'a [u8]> {
                if n > self.0.len() {
                    return None;
                }
                let (head, rest) = self.0.split_at(n);
                self.0 = rest;
                Some(head)
            }
            fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
                self.take(N)?.try_into().ok()
            }
            fn u32(&mut self) -> Option<u32> {
                self.array().map(u32::from_le_bytes)
            }
            fn u64(&mut self) -> Option<u64> {
                self.array().map(u64::from_le_bytes)
            }
            fn i128(&mut self) -> Option<i128> {
                self.array().map(i128::from_le_bytes)
            }
            fn bytes(&mut self) -> Option<&'a [u8]> {
                let n = self.u32()? as usize;
                self.take(n)
            }
            fn path(&mut self) -> Option<PathBuf> {
                self.bytes()
                    .map(|b| PathBuf::from(std::ffi::OsStr::from_bytes(b)))
            }
            fn count(&mut self, item: usize) -> Option<usize> {
                // No more items than the bytes left could hold: garbage allocates nothing.
                let n = self.u32()? as usize;
                (n <= self.0.len() / item).then_some(n)
            }
            fn binds(&mut self) -> Option<Vec<Bind>> {
                let n = self.count(9)?;
                (0..n)
                    .map(|_| {
                        Some(Bind {
                            source: self.path()?,
                            target: self.path()?,
                            is_dir: match self.take(1)? {
                                [0] => false,
                                [1] => true,
                                _ => return None,
                            },
                        })
                    })
                    .collect()
            }
        }
        let mut r = Reader(data.strip_prefix(ENTRY_MAGIC)?);
        let key = CacheKey {
            version: r.u32()?,
            path: r.path()?,
            size: r.u64()?,
            mtime_ns: r.i128()?,
            inode: r.u64()?,
        };
        let executable = r.path()?;
        let version = String::from_utf8(r.bytes()?.to_vec()).ok()?;
        let binds = r.binds()?;
        let n = r.count(4)?;
        let site_packages = (0..n).map(|_| r.path()).collect::<Option<_>>()?;
        let interpreter = Interpreter {
            executable,
            version,
            binds,
            site_packages,
            site_libraries: r.binds()?,
            prefix: r.path()?,
            stdlib: r.path()?,
        };
        let n = r.count(28)?;
        let site = (0..n)
            .map(|_| {
                Some(DirStamp {
                    path: r.path()?,
                    mtime_ns: r.i128()?,
                    inode: r.u64()?,
                })
            })
            .collect::<Option<_>>()?;
        r.0.is_empty().then_some(CacheEntry {
            key,
            interpreter,
            site,
        })
    }
}

pub(crate) fn cache_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    base.is_absolute().then(|| base.join("pysandbox"))
}

/// A cache file is trusted only if we own it and nobody else can write it: it decides what is
/// bound into every jail.
pub(crate) fn trusted(path: &Path) -> bool {
    let euid = crate::sys::geteuid();
    match std::fs::symlink_metadata(path) {
        Ok(m) => m.is_file() && m.uid() == euid && m.mode() & 0o022 == 0,
        Err(_) => false,
    }
}

fn cache_load(dir: &Path, key: &CacheKey) -> Option<Interpreter> {
    let file = key.file(dir);
    if !trusted(&file) || !trusted_dir(dir) {
        return None;
    }
    let entry = CacheEntry::decode(&std::fs::read(&file).ok()?)?;
    (entry.key == *key && entry.site.iter().all(DirStamp::current)).then_some(entry.interpreter)
}

pub(crate) fn trusted_dir(dir: &Path) -> bool {
    let euid = crate::sys::geteuid();
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == euid && m.mode() & 0o022 == 0)
}

/// Best effort: a cache that cannot be written only costs the next run a query.
fn cache_store(dir: &Path, key: &CacheKey, interpreter: &Interpreter, site: &[DirStamp]) {
    let file = key.file(dir);
    let entry = CacheEntry {
        key: key.clone(),
        interpreter: interpreter.clone(),
        site: site.to_vec(),
    };
    write_atomic(dir, &file, &entry.encode());
}

/// Make `dir` (mode 0700) if it is missing; whether it is ours alone.
pub(crate) fn private_dir(dir: &Path) -> bool {
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    trusted_dir(dir)
}

/// Write `file` in the private cache directory `dir` through a temporary file and a rename.
pub(crate) fn write_atomic(dir: &Path, file: &Path, text: &[u8]) {
    if !private_dir(dir) {
        return;
    }
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| io::Write::write_all(&mut f, text));
    if written.is_err() || std::fs::rename(&tmp, file).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// What marks a compiled bootstrap on the `support` descriptor (see [`compiled_bootstrap`]).
pub const COMPILED_MAGIC: &[u8; 8] = b"\0PYSBMC\0";

/// The line of `bootstrap/support.py` above which is what a run with the guard always needs;
/// what follows it is compiled apart and loaded on demand (`_pysandbox_more`).
pub const SUPPORT_SPLIT: &str =
    "# ---- pysandbox: the rest, loaded on demand (_pysandbox_more) ----";

/// Python source built into the binary, with its hash (computed by the compiler, so that a
/// run does not hash the bootstrap's 40 KB to find its cached compilation).
pub struct StaticSource {
    pub text: &'static str,
    pub hash: u64,
}

impl StaticSource {
    pub const fn new(text: &'static str) -> StaticSource {
        StaticSource {
            text,
            hash: fnv(text.as_bytes()),
        }
    }
}

/// The cold bootstrap compiled by `exe` and marshalled, behind [`COMPILED_MAGIC`]: the length
/// (u32, little-endian) of `run` marshalled (the code of `bootstrap/run.py`, file name
/// `<string>` as under `-c`), `run`, then `support` compiled (`<pysandbox>`) behind the magic
/// again, split at [`SUPPORT_SPLIT`]: the length of the part above marshalled, that part, then
/// the part below marshalled (on the file's own line numbers) to the end. Each is read only when
/// needed, at its offset (`pread`): the stub reads `run` alone, a run with the guard the part
/// above, and `_pysandbox_more` the rest when a run needs it (a traceback, the API, cells).
/// What a cold run hands its interpreter instead of the sources, so that it compiles neither
/// the 60 lines it always runs nor the 1,000 it runs with the guard (about 1 and 7 ms). Cached in
/// the private cache directory per interpreter binary and sources; `None` when it cannot be made
/// (then the sources are handed over: the same code, compiled inside).
pub fn compiled_bootstrap(
    exe: &Path,
    run: &StaticSource,
    support: &StaticSource,
) -> Option<Vec<u8>> {
    compiled_in(&cache_dir()?, exe, run, support)
}

fn compiled_in(
    dir: &Path,
    exe: &Path,
    run: &StaticSource,
    support: &StaticSource,
) -> Option<Vec<u8>> {
    let key = CacheKey::of(exe).ok()?;
    let file = dir.join(format!(
        "bootstrap-v{}-{:016x}-{:016x}-{:016x}.bin",
        key.version,
        fnv(key.path.as_os_str().as_encoded_bytes()),
        run.hash,
        support.hash
    ));
    let header = serde_json::to_vec(&key).ok()?;
    // A file we own that nobody else can write, for this very binary: the code it holds runs
    // inside the sandbox only, but it must be ours.
    if trusted(&file) && trusted_dir(dir) {
        if let Some(data) = read_behind(&file, &header) {
            if data.starts_with(COMPILED_MAGIC) {
                return Some(data);
            }
        }
    }
    // Compiling on the host costs a process start: worth it only once, so only where the result
    // can be kept (a caller without a private cache directory compiles inside, as before).
    if !private_dir(dir) {
        return None;
    }
    let compiled = compile_on_host(exe, run.text, support.text)?;
    let mut data = header;
    data.push(b'\n');
    let at = data.len();
    data.extend(COMPILED_MAGIC);
    data.extend(compiled);
    write_atomic(dir, &file, &data);
    data.drain(..at);
    Some(data)
}

/// What `file` holds after a first line that is `header`, or `None`. Read apart, so that the
/// bulk (the compiled bootstrap's 60 KB) is not moved after reading.
fn read_behind(file: &Path, header: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(file).ok()?;
    let mut first = vec![0; header.len() + 1];
    f.read_exact(&mut first).ok()?;
    if first[..header.len()] != *header || first[header.len()] != b'\n' {
        return None;
    }
    let size = f.metadata().ok()?.len() as usize;
    let mut data = Vec::with_capacity(size.saturating_sub(first.len()));
    f.read_to_end(&mut data).ok()?;
    Some(data)
}

/// Our own bootstrap sources compiled by the interpreter on the host (as [`inspect`] queries
/// it): the marshalled pair of [`compiled_bootstrap`].
fn compile_on_host(exe: &Path, run: &str, support: &str) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new(exe)
        .args([
            "-I",
            "-S",
            "-c",
            &format!(
                "import marshal, sys\n\
                 run, support = sys.stdin.buffer.read().split(b'\\0', 1)\n\
                 core, split, rest = support.partition({SUPPORT_SPLIT:?}.encode())\n\
                 code = marshal.dumps(compile(core, '<pysandbox>', 'exec'))\n\
                 if split:\n\
                 \x20   rest = b'\\n' * core.count(b'\\n') + rest\n\
                 \x20   rest = marshal.dumps(compile(rest, '<pysandbox>', 'exec'))\n\
                 inner = b'\\0PYSBMC\\0' + len(code).to_bytes(4, 'little') + code + rest\n\
                 run = marshal.dumps(compile(run, '<string>', 'exec'))\n\
                 sys.stdout.buffer.write(len(run).to_bytes(4, 'little') + run + inner)"
            ),
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let mut input = Vec::with_capacity(run.len() + 1 + support.len());
    input.extend(run.as_bytes());
    input.push(0);
    input.extend(support.as_bytes());
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_parsed() {
        let text = "/x/python:\n\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibpython3.11.so.1.0 => /opt/py/lib/libpython3.11.so.1.0 (0x00007f1b)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1a)\n\
            \tlibgone.so.1 => not found\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f1c)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/opt/py/lib/libpython3.11.so.1.0"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("pysandbox-interp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn shims_are_not_elf_and_are_resolved() {
        let d = scratch("shim");
        let shim = d.join("python3");
        let real = resolve(None).expect("a python on PATH").executable;
        std::fs::write(
            &shim,
            format!("#!/bin/sh\nexec {} \"$@\"\n", real.display()),
        )
        .unwrap();
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!is_elf(&shim));
        assert!(is_elf(&real));
        assert_eq!(resolve(Some(&shim)).unwrap().executable, real);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn resolved_interpreter_has_its_files() {
        let i = resolve(None).unwrap();
        assert!(i.version.starts_with('3'), "{}", i.version);
        let has = |name: &str| {
            i.binds
                .iter()
                .any(|b| b.target.to_string_lossy().contains(name))
        };
        assert!(has("libc.so.6") && has("ld-linux"), "{:?}", i.binds);
        assert!(i.binds.iter().any(|b| b.is_dir && b.target == i.stdlib));
        assert!(i
            .binds
            .iter()
            .all(|b| b.target.is_absolute() && b.source.exists()));
    }

    #[test]
    fn cache_misses_when_the_binary_changes_and_distrusts_writable_files() {
        let d = scratch("cache");
        let exe = d.join("fake-python");
        std::fs::write(&exe, b"\x7fELF v1").unwrap();
        let key = CacheKey::of(&exe).unwrap();
        let mut interp = resolve(None).unwrap();
        interp.version = "9.9.9".into();
        cache_store(&d, &key, &interp, &[]);
        assert_eq!(cache_load(&d, &key).unwrap().version, "9.9.9");
        // A changed binary: size and mtime differ.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&exe, b"\x7fELF version 2").unwrap();
        let key2 = CacheKey::of(&exe).unwrap();
        assert!(cache_load(&d, &key2).is_none());
        // A cache file others can write is ignored.
        cache_store(&d, &key2, &interp, &[]);
        let file = key2.file(&d);
        assert!(cache_load(&d, &key2).is_some());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(cache_load(&d, &key2).is_none());
        // Garbage is ignored too.
        std::fs::write(&file, b"{not an entry").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(cache_load(&d, &key2).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A cache entry reads back as written, whatever bytes its paths hold, and anything else
    /// (every truncation, a byte more, another version's magic, a bad flag) reads as nothing.
    #[test]
    fn cache_entries_read_back_exactly() {
        use std::os::unix::ffi::OsStringExt;
        let odd = PathBuf::from(OsString::from_vec(b"/lib/\xff\nodd \"x\"".to_vec()));
        let bind = |s: &Path, d: bool| Bind {
            source: s.to_path_buf(),
            target: PathBuf::from("/t").join(s.file_name().unwrap()),
            is_dir: d,
        };
        let entry = CacheEntry {
            key: CacheKey {
                version: CACHE_VERSION,
                path: odd.clone(),
                size: u64::MAX,
                mtime_ns: -1_234_567_890_123_456_789,
                inode: 42,
            },
            interpreter: Interpreter {
                executable: "/usr/bin/python3.11".into(),
                version: "3.11.7".into(),
                binds: vec![
                    bind(&odd, false),
                    bind(Path::new("/usr/lib/python3.11"), true),
                ],
                site_packages: vec!["/a".into(), odd.clone()],
                site_libraries: vec![bind(Path::new("/x/libz.so.1"), false)],
                prefix: "/usr".into(),
                stdlib: PathBuf::new(),
            },
            site: vec![DirStamp {
                path: odd.clone(),
                mtime_ns: i128::MAX,
                inode: 7,
            }],
        };
        let data = entry.encode();
        assert_eq!(CacheEntry::decode(&data), Some(entry));
        for n in 0..data.len() {
            assert_eq!(CacheEntry::decode(&data[..n]), None, "truncated at {n}");
        }
        assert_eq!(CacheEntry::decode(&[&data[..], b"\0"].concat()), None);
        let mut other = data.clone();
        other[6] = b'2';
        assert_eq!(CacheEntry::decode(&other), None);
        // The first bind's is_dir flag: neither 0 nor 1.
        let at = ENTRY_MAGIC.len() + 4 + 4 + odd.as_os_str().len() + 8 + 16 + 8;
        let at = at + 4 + "/usr/bin/python3.11".len() + 4 + "3.11.7".len() + 4;
        let at = at + 4 + odd.as_os_str().len() + 4 + "/t/".len() + odd.file_name().unwrap().len();
        assert_eq!(data[at], 0);
        let mut bad = data.clone();
        bad[at] = 2;
        assert_eq!(CacheEntry::decode(&bad), None);
    }

    /// Installing or removing a package changes its site-packages directory: the entry made
    /// before is not used, and one made for a missing directory is not used once it exists.
    #[test]
    fn the_bootstrap_is_compiled_once_and_cached_and_only_our_own_cache_is_used() {
        let Ok(interp) = resolve(None) else {
            return;
        };
        let d = scratch("support");
        let exe = &interp.executable;
        let (run, source) = (StaticSource::new("Y = 2\n"), StaticSource::new("X = 1\n"));
        let first = compiled_in(&d, exe, &run, &source).expect("compiled");
        assert!(first.starts_with(COMPILED_MAGIC));
        // The second time from the cache: the same bytes.
        assert_eq!(compiled_in(&d, exe, &run, &source).as_ref(), Some(&first));
        let file = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains("bootstrap-"))
            .unwrap();
        // Another content in a file that is ours alone is what the next run gets (the control)…
        let mut planted = std::fs::read(&file).unwrap();
        let at = planted.len() - first.len();
        planted.truncate(at);
        planted.extend(COMPILED_MAGIC);
        planted.extend(b"planted");
        std::fs::write(&file, &planted).unwrap();
        let got = compiled_in(&d, exe, &run, &source).unwrap();
        assert!(got.ends_with(b"planted"));
        // …but not when others could have written it: compiled again, and the file replaced.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(compiled_in(&d, exe, &run, &source).as_ref(), Some(&first));
        assert_eq!(compiled_in(&d, exe, &run, &source).as_ref(), Some(&first));
        // Source the interpreter cannot compile: none (the caller hands over the source).
        assert_eq!(
            compiled_in(&d, exe, &run, &StaticSource::new("def (")),
            None
        );
        assert_eq!(
            compiled_in(&d, exe, &StaticSource::new("def ("), &source),
            None
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn cache_misses_when_site_packages_change() {
        let d = scratch("site");
        let exe = d.join("fake-python");
        std::fs::write(&exe, b"\x7fELF").unwrap();
        let site = d.join("site-packages");
        let key = CacheKey::of(&exe).unwrap();
        let interp = resolve(None).unwrap();
        cache_store(&d, &key, &interp, &[DirStamp::of(&site)]);
        assert!(cache_load(&d, &key).is_some());
        std::fs::create_dir(&site).unwrap();
        assert!(cache_load(&d, &key).is_none());
        cache_store(&d, &key, &interp, &[DirStamp::of(&site)]);
        assert!(cache_load(&d, &key).is_some());
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::create_dir(site.join("newpkg")).unwrap();
        assert!(cache_load(&d, &key).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn loader_paths_are_normalized_by_name() {
        assert_eq!(
            normalize(Path::new("/sp/numpy/_core/../../numpy.libs/./libx.so")),
            PathBuf::from("/sp/numpy.libs/libx.so")
        );
    }

    /// Extension modules are found below site-packages; a symbolic link (to a directory
    /// elsewhere, or to a library) is not followed.
    #[test]
    fn extension_modules_are_found_without_following_links() {
        let d = scratch("walk");
        std::fs::create_dir_all(d.join("pkg/sub")).unwrap();
        std::fs::create_dir_all(d.join("elsewhere")).unwrap();
        for f in [
            "pkg/a.cpython-311-x86_64-linux-gnu.so",
            "pkg/sub/b.abi3.so",
            "pkg/c.py",
        ] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        std::fs::write(d.join("elsewhere/hidden.so"), b"").unwrap();
        std::os::unix::fs::symlink(d.join("elsewhere"), d.join("pkg/link")).unwrap();
        std::os::unix::fs::symlink(d.join("elsewhere/hidden.so"), d.join("pkg/l.so")).unwrap();
        let mut found = Vec::new();
        extension_modules(&d.join("pkg"), SITE_DEPTH, &mut found);
        found.sort();
        assert_eq!(
            found,
            vec![
                d.join("pkg/a.cpython-311-x86_64-linux-gnu.so"),
                d.join("pkg/sub/b.abi3.so")
            ]
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    /// With numpy installed (`make deps`), its `libstdc++` is a site library, and the
    /// libraries numpy ships in `numpy.libs` are not (site-packages holds them).
    #[test]
    fn site_libraries_are_what_extension_modules_link_outside_site_packages() {
        let i = resolve(None).unwrap();
        assert!(i
            .site_libraries
            .iter()
            .all(|b| !b.is_dir && b.source.exists() && b.target.is_absolute()));
        for b in &i.site_libraries {
            assert!(
                !i.site_packages.iter().any(|s| b.source.starts_with(s)),
                "{b:?} is inside site-packages"
            );
            assert!(!i.binds.iter().any(|x| x.target == b.target), "{b:?} twice");
        }
        let numpy = i.site_packages.iter().any(|s| s.join("numpy").is_dir());
        if numpy {
            assert!(
                i.site_libraries
                    .iter()
                    .any(|b| b.target.to_string_lossy().contains("libstdc++")),
                "{:?}",
                i.site_libraries
            );
        }
    }
}
