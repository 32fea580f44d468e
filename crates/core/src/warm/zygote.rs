//! The zygote's configuration (descriptor 6 of `bootstrap/warm.py`), built from a resolved policy
//! by `pysandbox worker`.

use super::WarmError;
use crate::jail::Network;
use crate::landlock::{self, Access};
use crate::limits::Limits;
use crate::mounts::DEV_NODES;
use crate::policy::Resolved;
use crate::seccomp;
use serde_json::json;
use std::path::{Path, PathBuf};

/// What the zygote does with its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZygoteMode {
    /// Keep a fresh request child ready at all times (a pool's worker).
    Pool,
    /// Fork children only when asked, for sessions.
    Sessions,
}

/// Which request path a child takes once before its request (its first-use costs paid ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WarmUp {
    /// Running code (`pysandbox batch`, `run --warm`, the Rust API).
    #[default]
    Code,
    /// Also the Python package's exec/eval/call with data in and out.
    Api,
}

/// The zygote's configuration (JSON): the Landlock rules and seccomp program of its children,
/// their limits, the guard, the modules to preload.
pub fn zygote_config(
    resolved: &Resolved,
    preload: &[String],
    mode: ZygoteMode,
    warm_up: WarmUp,
) -> Result<String, WarmError> {
    let spec = &resolved.spec;
    // Every request gets a fresh tmpfs on /tmp: a bind below it would be gone after the first.
    if let Some(p) = spec
        .read_paths
        .iter()
        .chain(&spec.write_paths)
        .find(|p| p.starts_with("/tmp"))
    {
        return Err(WarmError::Worker(format!(
            "warm mode gives every request a fresh /tmp, so it cannot serve the allowed path \
             {} below it; allow the data from another directory, or run cold",
            p.display()
        )));
    }
    let abi = landlock::abi().map_err(|e| WarmError::Worker(e.to_string()))?;
    let handled = landlock::fs_rights(abi);
    let mut rules: Vec<(PathBuf, u64)> = Vec::new();
    let mut rule = |path: &Path, access: Access, is_dir: bool| {
        let mut r = landlock::rights(access, handled);
        if !is_dir {
            r &= landlock::FILE_RIGHTS;
        }
        rules.push((path.to_path_buf(), r));
    };
    // The interpreter's files: one rule per directory holding bound files (in the jail's root
    // such a directory holds nothing else), one per bound directory.
    let mut dirs: Vec<&Path> = Vec::new();
    for b in &spec.interpreter.binds {
        match b.target.parent() {
            _ if b.is_dir => rule(&b.target, Access::ReadExec, true),
            Some(parent) if parent != Path::new("/") => {
                if !dirs.contains(&parent) {
                    dirs.push(parent);
                }
            }
            _ => rule(&b.target, Access::ReadExec, false),
        }
    }
    for d in dirs {
        rule(d, Access::ReadExec, true);
    }
    for d in DEV_NODES {
        rule(Path::new(d), Access::ReadWrite, false);
    }
    for p in &spec.read_paths {
        rule(p, Access::Read, p.is_dir());
    }
    for p in &spec.write_paths {
        rule(p, Access::ReadWrite, p.is_dir());
    }
    // /tmp: one rule on the directory the per-request tmpfs is mounted over (see warm.py).
    let tmp = landlock::rights(Access::ReadWrite, handled);
    let net = if spec.network == Network::None && abi >= 4 {
        landlock::NET_BIND_TCP | landlock::NET_CONNECT_TCP
    } else {
        0
    };
    // Requests of one worker share its network namespace: scope abstract sockets always.
    let scoped = if abi >= 6 {
        landlock::SCOPE_SIGNAL | landlock::SCOPE_ABSTRACT_UNIX_SOCKET
    } else {
        0
    };
    let filter = seccomp::request_program();
    let mut hex = String::with_capacity(filter.len() * 16);
    for f in &filter {
        let mut b = Vec::with_capacity(8);
        b.extend_from_slice(&f.code.to_le_bytes());
        b.push(f.jt);
        b.push(f.jf);
        b.extend_from_slice(&f.k.to_le_bytes());
        for x in b {
            hex.push_str(&format!("{x:02x}"));
        }
    }
    let l: &Limits = &spec.limits;
    Ok(json!({
        "guard": resolved.guard,
        "limits": {
            "memory": l.memory,
            "cpu": l.cpu.map(|c| c.as_secs() + u64::from(c.subsec_nanos() > 0)),
            "processes": l.processes,
            "open_files": l.open_files,
            "file_size": l.file_size,
            "tmp_size": l.tmp_size,
        },
        "landlock": {"fs": handled, "net": net, "scoped": scoped, "rules": rules, "tmp": tmp},
        "seccomp": hex,
        "preload": preload,
        "prefork": mode == ZygoteMode::Pool,
        "api": warm_up == WarmUp::Api,
    })
    .to_string())
}
